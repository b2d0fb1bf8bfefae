"""Which ROIs of a structure set a patient run evaluates, and where each one lies.

Every ROI of the RTSTRUCT is read, selected (``[structures] rois`` / ``exclude``), rasterised and
classified before any transport, so that no structure can stop a run afterwards:

=================  ==============================================================================
status             meaning (what the run does with it)
=================  ==============================================================================
``evaluated``      entirely on the calculation grid: MC and TG-43 DVHs
``partial``        partly outside the calculation grid or the CT: MC DVH on the covered part,
                   TG-43 DVH on the covered part (compared with the MC) and on the whole ROI
``outside_grid``   inside the CT but not on the calculation grid (e.g. cropped away): TG-43 only
``outside_ct``     contours, but none of their volume inside the CT: listed, no DVH
``empty``          no contours in the file: listed, no DVH
``excluded``       not selected by ``rois`` / ``exclude``: listed, not rasterised
=================  ==============================================================================

"Whole ROI" means the ROI within the CT (and the calculation grid, which may reach past the CT
edge where it was padded for a seed). It is rasterised on the calculation grid's own lattice
extended over the CT (:func:`extended_lattice`), so the covered and uncovered parts of an ROI are
made of the same voxels and the covered fraction is exact for the rasterisation. The voxels
beyond the calculation grid are kept as points (voxel centres) and weights for the TG-43 DVH.

Only the target is checked hard: a missing, empty, outside or unresolvable target is an error
raised here (fewer than :data:`MIN_TARGET_VOXELS` calculation voxels of it: the calculation voxel
is too coarse for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brachymc.errors import ConfigError
from brachymc.geometry.phantom import GridGeometry
from brachymc.geometry.structures import contour_planes, rasterise, slab_bounds, structure_volume_cc
from brachymc.pipeline.notes import Note

#: a target must cover at least this many calculation voxels (its volume / voxel volume)
MIN_TARGET_VOXELS = 10.0
#: fractions above this count as whole (rasterisation rounding)
WHOLE = 0.999
TARGET_TYPES = ("GTV", "CTV", "PTV")


@dataclass
class RoiInfo:
    """One ROI of the structure set, as the run sees it (volumes in cm3, colours 0..255)."""

    name: str
    number: int
    color: tuple[int, int, int]
    roi_type: str
    status: str
    contour_volume_cc: float | None = None      # the contours' own volume (slab model), all of it
    volume_in_ct_cc: float = 0.0                # rasterised, within the CT (and the calculation grid)
    volume_on_grid_cc: float = 0.0              # rasterised, on the calculation grid
    beyond_ct: bool = False                     # the contours reach past the CT box
    mask: np.ndarray | None = None              # fractional mask on the calculation grid
    outside_points_cm: np.ndarray | None = None  # (m, 3) voxel centres of the ROI beyond the grid
    outside_weights: np.ndarray | None = None    # (m,) their fractions inside the ROI (and the CT)
    role: str = ""                              # "target", "cord" or ""

    @property
    def covered_fraction(self) -> float | None:
        """Share of the whole ROI (within the CT) that the calculation grid covers."""
        return self.volume_on_grid_cc / self.volume_in_ct_cc if self.volume_in_ct_cc > 0 else None

    @property
    def in_ct_fraction(self) -> float | None:
        if not self.contour_volume_cc:
            return None
        return min(1.0, self.volume_in_ct_cc / self.contour_volume_cc)

    @property
    def on_grid(self) -> bool:
        """Evaluated with an MC dose (wholly or partly on the calculation grid)."""
        return self.status in ("evaluated", "partial") and self.mask is not None

    @property
    def is_target_like(self) -> bool:
        return self.role == "target" or self.roi_type in TARGET_TYPES

    def describe(self) -> str:
        cf = self.covered_fraction
        return {
            "evaluated": "evaluated",
            "partial": (f"{100 * cf:.1f} % of it on the calculation grid (MC on that part, TG-43 on the whole ROI)"
                        if cf is not None and cf < WHOLE else "evaluated")
            + (f"; {100 * (self.in_ct_fraction or 0):.1f} % of its contoured volume lies inside the CT"
               if self.beyond_ct and self.in_ct_fraction is not None else ""),
            "outside_grid": "inside the CT but outside the calculation grid (TG-43 DVH only)",
            "outside_ct": "no part of it inside the CT (no DVH)",
            "empty": "no contours in the structure set (no DVH)",
            "excluded": "not evaluated ([structures] rois / exclude)",
        }[self.status]

    def to_json(self) -> dict:
        return {"name": self.name, "number": self.number, "type": self.roi_type, "role": self.role or None,
                "status": self.status, "description": self.describe(), "color_rgb": list(self.color),
                "contour_volume_cc": self.contour_volume_cc, "volume_in_ct_cc": self.volume_in_ct_cc,
                "volume_on_grid_cc": self.volume_on_grid_cc, "covered_fraction": self.covered_fraction,
                "in_ct_fraction": self.in_ct_fraction}


@dataclass
class RoiSet:
    """The ROIs of a run, in the order of the file, and the notes about them."""

    rois: dict[str, RoiInfo] = field(default_factory=dict)
    target: str | None = None
    cord: str | None = None
    notes: list = field(default_factory=list)
    source: str = ""

    def on_grid(self) -> dict[str, RoiInfo]:
        return {n: r for n, r in self.rois.items() if r.on_grid}

    def masks(self) -> dict[str, np.ndarray]:
        return {n: r.mask for n, r in self.rois.items() if r.on_grid}

    def with_dvh(self) -> dict[str, RoiInfo]:
        """ROIs that get a DVH: on the grid, or in the CT beyond it (TG-43 only)."""
        return {n: r for n, r in self.rois.items() if r.status in ("evaluated", "partial", "outside_grid")}

    def find(self, name: str | None) -> RoiInfo | None:
        if not name:
            return None
        for n, r in self.rois.items():
            if n.lower() == name.lower():
                return r
        return None

    def to_json(self) -> list[dict]:
        return [r.to_json() for r in self.rois.values()]


# ---------------------------------------------------------------------------------------------
def extended_lattice(calc: GridGeometry, ct: GridGeometry) -> tuple[GridGeometry, tuple[int, int, int]]:
    """The calculation grid's lattice widened to cover the CT box; and the (ix, iy, iz) offset of
    the calculation grid's voxel (0, 0, 0) in it."""
    o, sp = np.array(calc.origin), np.array(calc.spacing)
    n = np.array([calc.nx, calc.ny, calc.nz])
    lo, hi = np.array(ct.origin), np.array(ct.upper)
    k0 = np.minimum(0, np.floor((lo - o) / sp + 1e-6).astype(int))
    k1 = np.maximum(n, np.ceil((hi - o) / sp - 1e-6).astype(int))
    size = k1 - k0
    ext = GridGeometry(shape=(int(size[2]), int(size[1]), int(size[0])), spacing=calc.spacing,
                       origin=tuple(float(v) for v in o + k0 * sp))
    return ext, tuple(int(-k) for k in k0)


def _overlap_1d(edges: np.ndarray, lo: float, hi: float, step: float) -> np.ndarray:
    return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, step) / step


def _unique_names(structures) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for st in structures:
        key = st.name
        if key in seen:
            key = f"{st.name} #{st.number}"
        seen[key] = 1
        out.append(key)
    return out


def _lookup(names: list[str], wanted: str, what: str, rtstruct) -> str:
    for n in names:
        if n.lower() == wanted.lower():
            return n
    raise ConfigError(f"{rtstruct}: no ROI named {wanted!r} ([structures].{what}); ROIs: {', '.join(names) or 'none'}")


def evaluate_rois(structure_set, calc: GridGeometry, ct: GridGeometry, *, rois=None, exclude=(),
                  target: str | None = None, cord: str | None = None, also=(), subsamples: int = 3,
                  source: str = "", rtstruct: str = "") -> RoiSet:
    """Select, rasterise and classify the ROIs of ``structure_set`` (see the module docstring).

    ``also``: ROI names rasterised on the calculation grid even when not selected (contour
    overrides of the phantom). ``source``: the run file; ``rtstruct``: the structure set file
    (both named in messages). Raises :class:`ConfigError` for unknown names and an unusable target.
    """
    structures = list(structure_set.structures)
    names = _unique_names(structures)
    by_name = dict(zip(names, structures))
    chosen = names if rois is None else [_lookup(names, n, "rois", rtstruct) for n in rois]
    roles = {}
    if target:
        roles[_lookup(names, target, "target", rtstruct)] = "target"
    if cord:
        roles.setdefault(_lookup(names, cord, "cord", rtstruct), "cord")
    out = RoiSet(source=rtstruct)
    out.target = next((n for n, r in roles.items() if r == "target"), None)
    out.cord = next((n for n, r in roles.items() if r == "cord"), None)
    excl = set()
    for n in exclude:
        hit = [m for m in names if m.lower() == n.lower()]
        if not hit:
            out.notes.append(Note("roi_exclude_unknown", f"[structures].exclude: no ROI named {n!r} in {rtstruct}",
                                  {"roi": n}))
        excl.update(hit)
    selected = {n for n in chosen if n not in excl} | set(roles)
    wanted_masks = {n for n in names if any(n.lower() == a.lower() for a in also)}
    ext, off = extended_lattice(calc, ct)
    dz_mm = 10.0 * calc.spacing[2]
    vcc = calc.voxel_volume
    n_calc = np.array([calc.nx, calc.ny, calc.nz])
    ct_lo, ct_hi = np.array(ct.origin), np.array(ct.upper)
    for name in names:
        st = by_name[name]
        info = RoiInfo(name=name, number=st.number, color=tuple(st.color), roi_type=st.roi_type,
                       status="excluded", role=roles.get(name, ""))
        out.rois[name] = info
        if name not in selected and name not in wanted_masks:
            continue
        if not st.contours:
            info.status = "empty"
            continue
        plane_z, polys = contour_planes(st)
        zlo, zhi = slab_bounds(plane_z, dz_mm)
        pts = np.concatenate([np.concatenate(p) for p in polys])
        bmin = np.array([pts[:, 0].min(), pts[:, 1].min(), zlo.min()]) / 10.0
        bmax = np.array([pts[:, 0].max(), pts[:, 1].max(), zhi.max()]) / 10.0
        info.contour_volume_cc = structure_volume_cc(st, thickness_mm=dz_mm)
        info.beyond_ct = bool(np.any(bmin < ct_lo - 1e-6) or np.any(bmax > ct_hi + 1e-6))
        # the ROI's box on the extended lattice (it covers the CT and the calculation grid)
        eo, sp = np.array(ext.origin), np.array(ext.spacing)
        n_ext = np.array([ext.nx, ext.ny, ext.nz])
        i0 = np.clip(np.floor((bmin - eo) / sp).astype(int), 0, n_ext)
        i1 = np.clip(np.ceil((bmax - eo) / sp).astype(int), 0, n_ext)
        if np.any(i1 <= i0):
            info.status = "outside_ct"
            continue
        # on the grid: rasterised on the calculation grid itself (bounded by the ROI's box there)
        on_grid = rasterise(st, calc, subsamples)
        info.volume_on_grid_cc = float(on_grid.sum(dtype=np.float64) * vcc)
        if info.volume_on_grid_cc > 0 or name in wanted_masks:
            info.mask = on_grid
        # beyond the grid: the ROI's box on the extended lattice minus the grid, weighted by the
        # fraction of each voxel inside the CT
        c0 = np.clip(np.array(off) - i0, 0, i1 - i0)
        c1 = np.clip(np.array(off) + n_calc - i0, 0, i1 - i0)
        beyond_part = np.any(c0 > 0) or np.any(c1 < i1 - i0)
        beyond = None
        if beyond_part:
            sub = GridGeometry(shape=(int(i1[2] - i0[2]), int(i1[1] - i0[1]), int(i1[0] - i0[0])),
                               spacing=ext.spacing, origin=tuple(float(v) for v in eo + i0 * sp))
            f = [_overlap_1d(sub.edges(a), ct_lo[a], ct_hi[a], sp[a]) for a in range(3)]
            beyond = rasterise(st, sub, subsamples).astype(np.float64)
            beyond *= f[2][:, None, None] * f[1][None, :, None] * f[0][None, None, :]
            if np.all(c1 > c0):
                beyond[int(c0[2]):int(c1[2]), int(c0[1]):int(c1[1]), int(c0[0]):int(c1[0])] = 0.0
        info.volume_in_ct_cc = info.volume_on_grid_cc + (float(beyond.sum() * vcc) if beyond is not None else 0.0)
        if name not in selected:
            continue                       # rasterised for an override only
        k = np.flatnonzero(beyond.reshape(-1) > 0) if beyond is not None else np.zeros(0, int)
        if k.size:
            iz, iy, ix = np.unravel_index(k, sub.shape)
            info.outside_points_cm = np.stack([sub.centers(0)[ix], sub.centers(1)[iy], sub.centers(2)[iz]], axis=1)
            info.outside_weights = beyond.reshape(-1)[k]
        if info.volume_in_ct_cc <= 0:
            info.status, info.mask = "outside_ct", (on_grid if name in wanted_masks else None)
        elif info.volume_on_grid_cc <= 0:
            info.status = "outside_grid"
        elif info.covered_fraction < WHOLE or info.beyond_ct:
            info.status = "partial"
        else:
            info.status = "evaluated"
    _check_target(out, calc, source, rtstruct)
    for name, r in out.rois.items():
        if r.status in ("empty", "outside_ct", "outside_grid", "partial"):
            out.notes.append(Note(f"roi_{r.status}", f"ROI {name!r}: {r.describe()}",
                                  {"roi": name, "covered_fraction": r.covered_fraction,
                                   "in_ct_fraction": r.in_ct_fraction}, level="warning"))
    excluded = [n for n, r in out.rois.items() if r.status == "excluded"]
    if excluded:
        out.notes.append(Note("roi_excluded", f"ROIs not evaluated ([structures] rois / exclude): {', '.join(excluded)}",
                              {"rois": excluded}))
    return out


def _check_target(out: RoiSet, calc: GridGeometry, source: str, rtstruct: str) -> None:
    if out.target is None:
        return
    t = out.rois[out.target]
    why = {"empty": "has no contours", "outside_ct": "lies outside the CT",
           "outside_grid": "lies outside the calculation grid (see [ct].crop_margin_mm)"}
    if t.status in why:
        raise ConfigError(f"{rtstruct}: the target ROI {t.name!r} ([structures].target in {source}) {why[t.status]}; "
                          "nothing to evaluate")
    n_vox = t.volume_on_grid_cc / calc.voxel_volume
    if n_vox < MIN_TARGET_VOXELS:
        raise ConfigError(
            f"{source}: [ct].calculation_voxel_mm: voxels of {' x '.join(f'{10 * v:g}' for v in calc.spacing)} mm "
            f"cannot resolve the target {t.name!r} ({t.volume_on_grid_cc:.3g} cm3 = {n_vox:.2g} voxels; at least "
            f"{MIN_TARGET_VOXELS:g} are needed)")
