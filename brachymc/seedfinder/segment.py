"""Metal segmentation relative to the local background, and the components it forms.

HU scales differ between scanners and reconstructions (seeds saturate at 3071 HU on 12-bit
images and exceed it in extended-HU ones), so nothing here uses an absolute metal threshold:

1. **Reference level**: the median HU of the body (soft tissue, ~ 40 HU on a calibrated scan);
   **body**: voxels above -400 HU relative to it, holes filled slice by slice, the largest
   3-D component (on a 4x coarser in-plane grid).
2. **Local background**: the median HU of each block (~12 x 12 mm in-plane, >= 3 mm in z)
   that holds candidate voxels, over its voxels below the candidate level; bone, soft tissue and
   fat thus each set their own background.
3. **Cores**: voxels more than ``core_excess_hu`` above their local background - only metal
   gets there (dense cortical bone stays ~ 1000-1500 HU above soft tissue);
   **candidates**: voxels more than ``candidate_excess_hu`` above it. A component of candidates
   that holds a core is kept within ``grow_mm`` of its cores (so a seed lying against cortical
   bone does not swallow the bone); a component without a core is kept only if it is compact
   (no larger than a few seeds): a seed lying in-plane in a 5 mm slice may stay below the core
   level, a bone surface never is compact.
4. **Saturation**: when many voxels sit exactly at the image maximum, the scan is taken as
   clipped there and the image model is clipped too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

STRUCT26 = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class ScanLevels:
    """Scan-wide levels: reference (soft tissue) HU, the clip level (None: not saturated), noise."""

    reference_hu: float
    clip_hu: float | None
    noise_hu: float
    max_hu: float


@dataclass(frozen=True)
class Component:
    """One connected metal region: its voxel indices (iz, iy, ix), local background, core count."""

    index: np.ndarray              # (n, 3) int voxel indices
    background_hu: float
    n_core: int
    peak_hu: float


def body_mask(hu: np.ndarray, reference_hu: float, step: int = 4) -> np.ndarray:
    """Coarse body mask on the in-plane grid subsampled by ``step`` (nz, ny//step, nx//step)."""
    small = hu[:, ::step, ::step] > reference_hu - 400.0
    filled = np.zeros_like(small)
    for k in range(small.shape[0]):
        filled[k] = ndimage.binary_fill_holes(small[k])
    lab, n = ndimage.label(filled)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        filled = lab == int(np.argmax(sizes))
    return filled


def scan_levels(hu: np.ndarray) -> ScanLevels:
    """Reference level, saturation and noise of a CT (see the module docstring)."""
    sample = hu[:, ::4, ::4]
    above_air = sample[sample > -500.0]
    ref = float(np.median(above_air)) if above_air.size else float(np.median(sample))
    soft = above_air[np.abs(above_air - ref) < 150.0] if above_air.size else sample.ravel()
    if soft.size > 10:
        mad = float(np.median(np.abs(soft - np.median(soft))))
        noise = max(1.4826 * mad, 1.0)
    else:
        noise = 10.0
    hmax = float(hu.max())
    n_at_max = int(np.count_nonzero(hu >= hmax - 0.5))
    clip = hmax if n_at_max >= 4 else None
    return ScanLevels(reference_hu=ref, clip_hu=clip, noise_hu=noise, max_hu=hmax)


def _block_background(hu, cand, block, low_cut):
    """Median HU (below ``low_cut`` relative values) of each block holding candidate voxels."""
    idx = np.argwhere(cand)
    bidx = idx // np.asarray(block)
    keys, inv = np.unique(bidx, axis=0, return_inverse=True)
    bg = np.empty(len(keys))
    for i, kk in enumerate(keys):
        sl = tuple(slice(int(k * b), int((k + 1) * b)) for k, b in zip(kk, block))
        vals = hu[sl]
        ok = vals[vals < low_cut]
        bg[i] = float(np.median(ok)) if ok.size >= 8 else np.nan
    return idx, bg[inv.ravel()]


def find_components(hu: np.ndarray, voxel_mm, levels: ScanLevels, core_excess_hu: float,
                    candidate_excess_hu: float, grow_mm: float, compact_max_mm3: float):
    """Metal components (list of :class:`Component`) and the rejected compact-less regions' count."""
    dx, dy, dz = (float(v) for v in voxel_mm)
    ref = levels.reference_hu
    first = hu > ref + candidate_excess_hu
    if not first.any():
        return [], 0
    block = (max(1, int(round(3.0 / dz))), max(4, int(round(12.0 / dy))), max(4, int(round(12.0 / dx))))
    idx, bg = _block_background(hu, first, block, ref + candidate_excess_hu)
    bg = np.where(np.isfinite(bg), bg, ref)
    vals = hu[idx[:, 0], idx[:, 1], idx[:, 2]]
    excess = vals - bg
    keep = excess > candidate_excess_hu
    idx, bg, excess = idx[keep], bg[keep], excess[keep]
    if not len(idx):
        return [], 0
    cand = np.zeros(hu.shape, bool)
    cand[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    core = np.zeros(hu.shape, bool)
    c_idx = idx[excess > core_excess_hu]
    core[c_idx[:, 0], c_idx[:, 1], c_idx[:, 2]] = True
    # labelled within the candidates' bounding box (the same components, without a pass over
    # the whole CT)
    lo, hi = idx.min(0), idx.max(0) + 1
    crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    lab, n = ndimage.label(cand[crop], structure=STRUCT26)
    out: list[Component] = []
    rejected = 0
    voxel_volume = dx * dy * dz
    for i, csl in enumerate(ndimage.find_objects(lab), 1):
        if csl is None:
            continue
        m = lab[csl] == i
        sl = tuple(slice(c.start + int(a), c.stop + int(a)) for c, a in zip(csl, lo))
        cm = core[sl] & m
        if cm.any():
            # keep the candidates within grow_mm of a core voxel
            # adjacent slices count as within reach however thick the slices are
            dist = ndimage.distance_transform_edt(~cm, sampling=(min(dz, grow_mm), dy, dx))
            region = m & (dist <= grow_mm)
            sub, ns = ndimage.label(region, structure=STRUCT26)
            for j in range(1, ns + 1):
                r = sub == j
                nc = int(np.count_nonzero(r & cm))
                if nc == 0:
                    continue
                out.append(_component(hu, sl, r, nc, ref, candidate_excess_hu))
            if dz >= SEPARATE_SLICE_MM:
                out.extend(_separate_pieces(hu, sl, m, region, cm, compact_max_mm3 / voxel_volume,
                                            ref, candidate_excess_hu))
        else:
            if m.sum() * voxel_volume <= compact_max_mm3:
                out.append(_component(hu, sl, m, 0, ref, candidate_excess_hu))
            else:
                rejected += 1
    return out, rejected


#: slices at least this thick (mm) let a seed lying in the slice stay below the metal level; a
#: piece of a cored candidate component beyond the cores' reach is then a component of its own
#: when it peaks on its own in a slice without cores (:func:`_separate_pieces`)
SEPARATE_SLICE_MM = 4.0


def _separate_pieces(hu, sl, m, region, cores, max_voxels, ref, candidate_excess_hu) -> list:
    """The pieces of the candidate component ``m`` (a box ``sl``) beyond the cores' reach
    (``region``) that stand on their own: a seed lying in-plane in a thick slice, below the metal
    level, touching a seed of the next slice corner to corner. Such a piece peaks on its own (its
    highest voxel a local maximum, not next to the reach of the cores) in a slice that holds no
    core voxel, and is compact. Pieces that rise towards the cores are that seed's blur tails; a
    piece in a slice with cores is bone beside the seed. Measured on the 12 scans with 5 mm slices
    (stop 23), without the slice rule: 546 -> 551 of 610 seeds found, 33 false seeds before and
    after; the slice rule costs 2 of the 5 there. It is needed elsewhere: without it, and at any
    slice thickness, a piece of bone beside a seed became a component of its own, its voxels
    joined the seed's background hole and the fill then counted the bone as seed (2 false seeds
    each on a 1 mm and a 2.5 mm scan)."""
    near = ndimage.binary_dilation(region, structure=STRUCT26)
    rest, nr = ndimage.label(m & ~region, structure=STRUCT26)
    box = hu[sl]
    core_slices = cores.any(axis=(1, 2))
    out = []
    for j in range(1, nr + 1):
        r = rest == j
        pk = np.unravel_index(int(np.argmax(np.where(r, box, -np.inf))), r.shape)
        nb = tuple(slice(max(q - 1, 0), q + 2) for q in pk)
        if near[pk] or core_slices[pk[0]] or box[nb].max() > box[pk] or r.sum() > max_voxels:
            continue
        out.append(_component(hu, sl, r, 0, ref, candidate_excess_hu))
    return out


def _component(hu, sl, region, n_core, ref, candidate_excess_hu) -> Component:
    loc = np.argwhere(region) + np.array([s.start for s in sl])
    return Component(index=loc, background_hu=float("nan"), n_core=n_core,
                     peak_hu=float(hu[loc[:, 0], loc[:, 1], loc[:, 2]].max()))


#: thickest slices (mm) across which the background fill may interpolate along z. A line through
#: the slices spans at least three of them (the metal's slice and one either side, its blur tail):
#: up to ~9 mm at 3 mm slices, over which a vertebra's cortex and endplates still continue, so the
#: slices above and below tell the background in the seed's slice (measured on the three 2.5 mm
#: validation scans: 3 false seeds and 3 missed, against 7 and 6 from in-plane lines only); at
#: 5 mm slices it spans >= 15 mm and the slice above or below holds other anatomy (measured on the
#: two 5 mm scans: 12 missed and 9 false, against 9 and 6 from in-plane lines only).
MAX_FILL_THROUGH_SLICE_MM = 3.0


def inpainted_background(box_hu: np.ndarray, hole: np.ndarray, voxel_mm, noise_hu: float = 20.0,
                         max_through_slice_mm: float = MAX_FILL_THROUGH_SLICE_MM, with_spread: bool = False):
    """Background of a component's box: the image with the metal and its blur tails (``hole``)
    filled in from the voxels around them.

    Each hole voxel takes the interpolation along a line through it whose two ends (outside the
    hole) agree (:func:`brachymc.seedfinder._kernel.directional_fill`; of several such lines the
    brightest, since lines across a thin bright plate agree too): a seed lying against bone - a
    vertebral cortex, a pedicle, an endplate - gets the bone's level on the bone's side and the
    soft tissue's on the other, the edge running through the hole as it runs outside it, so the
    bone next to a seed is not counted as seed (a smooth, harmonic fill blurs the edge and leaves
    part of the bone in the seed's excess: measured, single seeds against bone then counted up to
    2 seeds' worth). Lines leave the slice plane only where slices are at most
    ``max_through_slice_mm`` thick (:data:`MAX_FILL_THROUGH_SLICE_MM`). Voxels that no line leaves
    at both ends (holes reaching the box's edge) take the harmonic fill of their slice. With
    ``with_spread`` also each filled voxel's spread (HU: how far the ends of its line differ; 0
    outside the hole, the noise for the harmonic fill's voxels): about the noise in smooth
    anatomy, hundreds of HU in bone whose texture no line follows.
    """
    from brachymc.seedfinder._kernel import directional_fill, fill_directions

    dz = float(voxel_mm[2])
    img = np.ascontiguousarray(box_hu, dtype=np.float64)
    dirs = fill_directions(dz <= max_through_slice_mm)
    out, spread = directional_fill(img, np.ascontiguousarray(hole), dirs, float(noise_hu))
    bad = np.isnan(out)
    if bad.any():
        out[bad] = harmonic_fill(img, hole, slices=np.flatnonzero(bad.any(axis=(1, 2))))[bad]
        spread[bad] = float(noise_hu)
    return (out, spread) if with_spread else out


def harmonic_fill(box_hu: np.ndarray, hole: np.ndarray, slices=None) -> np.ndarray:
    """The image with ``hole`` filled slice by slice by harmonic interpolation (Laplace's equation,
    the surrounding voxels as boundary values, no flux through the box's edges); with ``slices``
    (indices) only those slices are filled, the others returned as they are (each slice is solved
    on its own, so a slice's fill does not depend on which others are filled)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    out = np.array(box_hu, dtype=np.float64)
    nz, ny, nx = out.shape
    for k in (range(nz) if slices is None else slices):
        h = hole[k]
        n = int(h.sum())
        if n == 0:
            continue
        if n == h.size:
            out[k] = np.median(box_hu) if not hole.all() else out[k]
            continue
        idx = -np.ones((ny, nx), np.int64)
        iy, ix = np.nonzero(h)
        idx[iy, ix] = np.arange(n)
        rows, cols, vals = [], [], []
        rhs = np.zeros(n)
        deg = np.zeros(n)
        img = out[k]
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            jy, jx = iy + dy, ix + dx
            inside = (jy >= 0) & (jy < ny) & (jx >= 0) & (jx < nx)
            deg += inside
            jy_, jx_ = jy[inside], jx[inside]
            src = np.flatnonzero(inside)
            nb = idx[jy_, jx_]
            unk = nb >= 0
            rows.append(src[unk])
            cols.append(nb[unk])
            vals.append(-np.ones(int(unk.sum())))
            np.add.at(rhs, src[~unk], img[jy_[~unk], jx_[~unk]])
        rows.append(np.arange(n))
        cols.append(np.arange(n))
        vals.append(deg)
        A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
        out[k][iy, ix] = spsolve(A, rhs)
    return out


def split_off_thick_metal(comps: list[Component], hu: np.ndarray, voxel_mm, core_level_hu: float,
                          thick_mm: float = 2.0, margin_mm: float = 2.5, min_core: int = 3) -> list[Component]:
    """Separate seeds from solid metal they touch through its blooming (a pedicle screw, a rod).

    A component whose metal (core voxels, above ``core_level_hu``) holds a solid part thicker than
    seeds - what survives an in-plane morphological opening with a disc of radius ``thick_mm``
    (seeds are 0.8 mm across, a screw's shaft 5-7 mm) - is cut: its *body* is the part within
    ``margin_mm`` of that solid metal (its blooming), and every other piece of it that holds at
    least ``min_core`` core voxels becomes a component of its own (seeds lying next to the screw);
    smaller pieces stay with the body, which is recognised as other metal later.
    """
    dx, dy, dz = (float(v) for v in voxel_mm)
    out: list[Component] = []
    for comp in comps:
        idx = comp.index
        lo = idx.min(0)
        shape = tuple(idx.max(0) - lo + 1)
        if comp.n_core == 0 or min(shape[1] * dy, shape[2] * dx) < 2 * thick_mm:
            out.append(comp)
            continue
        m = np.zeros(shape, bool)
        j = idx - lo
        m[j[:, 0], j[:, 1], j[:, 2]] = True
        core = m & np.zeros(shape, bool)
        vals = hu[idx[:, 0], idx[:, 1], idx[:, 2]]
        jc = j[vals > core_level_hu]
        core[jc[:, 0], jc[:, 1], jc[:, 2]] = True
        # solid metal: what survives an in-plane opening with a disc of radius thick_mm (a seed,
        # 0.8 mm across, does not; a screw's shaft and head do, in their own shape)
        ry, rx = int(np.ceil(thick_mm / dy)), int(np.ceil(thick_mm / dx))
        yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
        disc = (yy * dy) ** 2 + (xx * dx) ** 2 <= thick_mm ** 2
        solid = np.zeros(shape, bool)
        for k in range(shape[0]):
            if core[k].any():
                solid[k] = ndimage.binary_opening(np.pad(core[k], ry + rx), structure=disc)[ry + rx:-(ry + rx) or None,
                                                                                            ry + rx:-(ry + rx) or None]
        if not solid.any():
            out.append(comp)
            continue
        dist = ndimage.distance_transform_edt(~solid, sampling=(dz, dy, dx))
        body = m & (dist <= margin_mm)
        rest, n = ndimage.label(m & ~body, structure=STRUCT26)
        pieces = []
        for i in range(1, n + 1):
            r = rest == i
            nc = int(np.count_nonzero(r & core))
            if nc >= min_core:
                pieces.append((r, nc))
            else:
                body |= r
        if not pieces:
            out.append(comp)
            continue
        for r, nc in [(body, int(np.count_nonzero(body & core)))] + pieces:
            loc = np.argwhere(r) + lo
            out.append(Component(index=loc, background_hu=float("nan"), n_core=nc,
                                 peak_hu=float(hu[loc[:, 0], loc[:, 1], loc[:, 2]].max())))
    return out
