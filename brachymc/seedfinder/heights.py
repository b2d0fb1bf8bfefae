"""The height (z) of a seed lying in a thick slice, from how its image is shared between slices.

A seed lying in the plane of a 5 mm slice looks the same anywhere on the flat top of the slice
profile: a least-squares fit has no gradient in z there and stays where it started, and an
intensity centroid over the slices is drawn to whatever else lies in the patch (bone under-filled
in the slice next to it). What does carry the height is the seed's own image reaching into the
slice beside it: a seed within ~1 mm of a slice boundary puts a copy of its in-plane image there,
a fraction of its strength set by the slice profile's ramp. So, per seed (the others of its
cluster subtracted through their fitted images):

1. the *template*: the seed's in-plane image (its fitted segment, laid flat, blurred in-plane);
   its *footprint*: the voxels where it exceeds FOOTPRINT_FRACTION of its peak;
2. per slice, the share a_s: the least-squares scale of the template to that slice's excess
   (signed: the noise averages out) over the footprint, relative to the largest; a slice whose
   excess has another shape (the template explains less than SHAPE_MIN_EXPLAINED of it, what it
   leaves is beyond the noise, and its share is above SHARE_SMALL: bone, a streak, another seed)
   is left out; the noise of a voxel is the image's and, where the background was filled in
   under the metal, the fill's spread;
3. the shares the scan's image model predicts for a flat seed at height h (its calibrated slice
   profile and axial blur, :meth:`~brachymc.seedfinder.appearance.SeedAppearance.z_offsets`),
   compared with the measured ones, each with the spread of its noise and SHARE_MODEL_SD for
   what the model leaves out (the partial-volume non-linearity of metal, the seed's tilt);
4. the height: the middle of the heights across the seed's slice whose chi^2 is within
   CHI2_LEVEL of the least. A seed wholly inside a slice gets the middle of the slice's flat
   part (its centre: the least expected error for a position the image cannot tell); a seed at
   a boundary the height whose share matches. (A posterior mean was tried first: on the model's
   own images the flat part's breadth outweighed a boundary's narrow match and pulled such seeds
   1-2 mm inwards.)

Measured on the twelve 5 mm validation and held-out scans, among the seeds found lying flat within
1 mm in-plane of a true seed: heights more than 2.5 mm off 21 -> 12, RMS 1.57 -> 1.29 mm; 540 ->
546 of 610 seeds found, 39 -> 33 false (method: ``docs/seed_finding.md``, step 9).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from brachymc.seedfinder.appearance import SeedAppearance, seed_images
from brachymc.seedfinder.fit import Patch, SeedFit

#: slices at least this thick (mm), seeds tilted less than SHARE_MAX_UZ (|u_z|) out of the plane
SHARE_SLICE_MM = 4.0
SHARE_MAX_UZ = 0.3
#: the footprint: template above this fraction of its peak
FOOTPRINT_FRACTION = 0.1
#: a slice whose share is above SHARE_SMALL of the largest must look like the seed (the template
#: explains this fraction of its excess) to count
SHAPE_MIN_EXPLAINED = 0.5
SHARE_SMALL = 0.1
#: spread of a measured share beyond its noise (fraction of the largest share)
SHARE_MODEL_SD = 0.1
#: the heights whose misfit is within this of the least (chi^2): the estimate is their middle
CHI2_LEVEL = 1.0
#: height grid step (mm) and how far beyond the seed's slice it reaches (mm)
GRID_STEP_MM = 0.1
GRID_MARGIN_MM = 0.5


def _seed_length(fit: SeedFit, app: SeedAppearance, i: int) -> float:
    return float(fit.lengths[i]) if fit.lengths is not None else float(app.length_mm)


@dataclass(frozen=True)
class SliceShares:
    """One seed's measured slice shares: the slice centres (mm), each slice's share (relative to the
    largest usable one) and its sd, which slices count, the seed's in-plane axis, its template (unit
    line density, laid flat, at every voxel of the patch) and, per slice, the footprint's voxels."""

    z_mm: np.ndarray
    shares: np.ndarray
    sd: np.ndarray
    usable: np.ndarray
    axis: np.ndarray
    template: np.ndarray
    in_slice: tuple[np.ndarray, ...]


def slice_shares(patch: Patch, app: SeedAppearance, fit: SeedFit, i: int) -> SliceShares:
    """Steps 1-2 for seed ``i`` of ``fit``."""
    pts = patch.points
    sig = app.sigma
    data = patch.hu - patch.background          # signed: the noise averages out
    for j in range(fit.k):
        if j != i:
            data -= seed_images(pts, fit.centers[j:j + 1], fit.axes[j:j + 1], fit.amplitudes[j:j + 1],
                                _seed_length(fit, app, j), sig, app.z_offsets())[0]
    c = fit.centers[i]
    u = np.array([fit.axes[i][0], fit.axes[i][1], 0.0])
    u = u / max(float(np.linalg.norm(u)), 1e-12)
    flat = pts.copy()
    flat[:, 2] = c[2]
    template = seed_images(flat, c[None], u[None], np.ones(1), _seed_length(fit, app, i), sig, np.zeros(1))[0]
    foot = template > FOOTPRINT_FRACTION * float(template.max())
    zs = np.unique(np.round(pts[:, 2], 6))
    in_slice = tuple(foot & (np.abs(pts[:, 2] - z) < 1e-5) for z in zs)
    # each voxel's noise: the image's, and where the background was filled in under the metal the
    # fill's spread (hundreds of HU beside bone)
    spread = np.zeros(len(pts)) if patch.background_spread is None else np.nan_to_num(patch.background_spread)
    var_hu = patch.noise_hu ** 2 + spread ** 2
    a, tt, explained = np.zeros(len(zs)), np.zeros(len(zs)), np.ones(len(zs))
    a_var = np.full(len(zs), np.inf)
    beyond_noise = np.zeros(len(zs), bool)
    for s, m in enumerate(in_slice):
        t = template[m]
        tt[s] = float(t @ t)
        if m.sum() < 3 or tt[s] <= 0:
            continue
        a_var[s] = float((t * t) @ var_hu[m]) / tt[s] ** 2
        a[s] = max(float(t @ data[m]) / tt[s], 0.0)
        r = data[m] - a[s] * t
        explained[s] = 1.0 - float(r @ r) / max(float(data[m] @ data[m]), 1e-9)
        # what the template leaves is more than the noise (3 sd of chi^2 with n degrees of freedom)
        beyond_noise[s] = float(r @ r) / float(var_hu[m].sum()) > 1.0 + 3.0 * np.sqrt(2.0 / m.sum())
    # the largest share among the slices that look like the seed (bone can project more)
    unlike = (explained < SHAPE_MIN_EXPLAINED) & beyond_noise
    alike = (tt > 0) & ~unlike
    top = max(float(a[alike].max() if alike.any() else a.max()), 1e-12)
    usable = (tt > 0) & ~((a > SHARE_SMALL * top) & unlike)
    top = max(float(a[usable].max() if usable.any() else top), 1e-12)
    return SliceShares(z_mm=zs, shares=a / top, sd=np.sqrt(a_var) / top, usable=usable, axis=u, template=template,
                       in_slice=in_slice)


def height_from_shares(patch: Patch, app: SeedAppearance, fit: SeedFit, i: int) -> float:
    """Steps 3-4: the height (mm) of seed ``i`` lying flat, from its slice shares."""
    m = slice_shares(patch, app, fit, i)
    z_main = float(m.z_mm[int(np.argmax(np.where(m.usable, m.shares, -1.0)))])
    half = 0.5 * app.slice_mm + GRID_MARGIN_MM
    grid = np.arange(z_main - half, z_main + half + 1e-9, GRID_STEP_MM)
    c = np.repeat(fit.centers[i][None], len(grid), axis=0)
    c[:, 2] = grid
    # the seed's image at each height, projected on the template slice by slice: the predicted shares
    imgs = seed_images(patch.points, c, np.repeat(m.axis[None], len(grid), axis=0), np.ones(len(grid)),
                       _seed_length(fit, app, i), app.sigma, app.z_offsets())
    pred = np.zeros((len(grid), len(m.z_mm)))
    for s, sel in enumerate(m.in_slice):
        t = m.template[sel]
        if float(t @ t) > 0:
            pred[:, s] = imgs[:, sel] @ t / float(t @ t)
    pred /= np.maximum(pred.max(axis=1, keepdims=True), 1e-12)
    w = np.where(m.usable, 1.0 / (m.sd ** 2 + SHARE_MODEL_SD ** 2), 0.0)
    scale = (pred * w) @ m.shares / np.maximum((pred * pred) @ w, 1e-12)
    chi2 = ((m.shares[None, :] - scale[:, None] * pred) ** 2) @ w
    allowed = chi2 <= chi2.min() + CHI2_LEVEL
    return float(grid[allowed].mean())


def refine_heights(patch: Patch, app: SeedAppearance, fit: SeedFit) -> SeedFit:
    """The fit with each seed that lies within SHARE_MAX_UZ of the slice plane at the height its
    slice shares give (slices >= SHARE_SLICE_MM; otherwise the fit unchanged)."""
    if app.slice_mm < SHARE_SLICE_MM:
        return fit
    centers = fit.centers.copy()
    for i in range(fit.k):
        if abs(float(fit.axes[i][2])) < SHARE_MAX_UZ:
            centers[i, 2] = height_from_shares(patch, app, fit, i)
    return replace(fit, centers=centers)
