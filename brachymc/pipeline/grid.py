"""The calculation grid of a patient run: crop to the seeds, resample, pad; checked before transport.

Steps (:func:`calculation_grid`), all on the host and before any photon is transported:

1. **Seeds in the CT.** Every seed *centre* must lie inside the CT box (an error lists the
   seeds that do not, 1-based, in mm). A seed whose solid reaches past the CT edge is accepted.
2. **Crop** (``[ct] crop_margin_mm``): the CT voxels meeting the seeds' box widened by the margin,
   and at least by the seed's reach (the radius of its bounding sphere), clipped to the CT.
3. **Resample** (``[ct] calculation_voxel_mm``): overlap-weighted mean HU on the coarser grid
   (:func:`brachymc.geometry.resample.resample_ct`).
4. **Pad**: where a seed's solid still reaches past the grid (only at the CT edge), whole voxels
   are added on that side and filled with the adjacent medium (edge values of the HU or of the
   egsphant media and densities), so that the world holds every seed entirely. The report says so.
5. **Checks**: no voxel side above :data:`~brachymc.pipeline.config.MAX_CALC_VOXEL_MM`, at most
   :data:`MAX_GRID_VOXELS` voxels.

The grid's position is kept as DICOM patient coordinates (cm inside, mm in messages).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from brachymc.errors import ConfigError, GeometryError
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.pipeline.config import MAX_CALC_VOXEL_MM
from brachymc.pipeline.notes import Note

#: more calculation voxels than this cannot be tallied in memory (two float64 sums each, plus
#: the phantom and the TG-43 grid): the run file needs a crop or coarser voxels
MAX_GRID_VOXELS = 60_000_000

_AXES = "xyz"


def _mm(v_cm) -> str:
    return "(" + ", ".join(f"{10.0 * float(x):.4g}" for x in np.ravel(v_cm)) + ")"


def seed_reach_cm(model) -> float:
    """Radius (cm) of the sphere about a seed's centre that holds its whole solid."""
    zlo, zhi, rs = model.bounds()
    return float(math.sqrt(max(zlo * zlo, zhi * zhi) + rs * rs))


def box_text(g: GridGeometry) -> str:
    lo, hi = np.array(g.origin), np.array(g.upper)
    return ", ".join(f"{a} {10 * lo[k]:.1f}..{10 * hi[k]:.1f}" for k, a in enumerate(_AXES)) + " mm"


def check_seed_centres(positions_cm: np.ndarray, geometry: GridGeometry, where: str) -> None:
    """Every seed centre must lie inside the CT box; the error names the seeds (1-based, mm)."""
    p = np.asarray(positions_cm, float)
    lo, hi = np.array(geometry.origin), np.array(geometry.upper)
    bad = np.flatnonzero(np.any(p < lo, axis=1) | np.any(p > hi, axis=1))
    if bad.size:
        first = ", ".join(f"#{i + 1} at {_mm(p[i])} mm" for i in bad[:5])
        raise GeometryError(f"{where}: {bad.size} seed(s) outside the CT volume ({first}"
                            f"{' ...' if bad.size > 5 else ''}); the CT spans {box_text(geometry)} "
                            "(DICOM patient coordinates)")


def crop_slices(geometry: GridGeometry, lo_cm: np.ndarray, hi_cm: np.ndarray) -> tuple[slice, slice, slice]:
    """Index slices (z, y, x) of the voxels meeting the box [lo, hi] (cm), clipped to the grid."""
    o, s = np.array(geometry.origin), np.array(geometry.spacing)
    n = np.array([geometry.nx, geometry.ny, geometry.nz])
    i0 = np.clip(np.floor((lo_cm - o) / s + 1e-9).astype(int), 0, n - 1)
    i1 = np.clip(np.ceil((hi_cm - o) / s - 1e-9).astype(int), i0 + 1, n)
    return slice(int(i0[2]), int(i1[2])), slice(int(i0[1]), int(i1[1])), slice(int(i0[0]), int(i1[0]))


def sub_geometry(g: GridGeometry, sl) -> GridGeometry:
    """The grid of the voxels ``sl`` = (z, y, x) slices of ``g``."""
    z, y, x = sl
    return GridGeometry(shape=(int(z.stop - z.start), int(y.stop - y.start), int(x.stop - x.start)),
                        spacing=g.spacing,
                        origin=(float(g.origin[0] + x.start * g.spacing[0]), float(g.origin[1] + y.start * g.spacing[1]),
                                float(g.origin[2] + z.start * g.spacing[2])))


def pad_widths(geometry: GridGeometry, positions_cm: np.ndarray, reach_cm: float) -> np.ndarray:
    """Voxels to add below and above each axis (array (3, 2), x/y/z) so that every seed's
    bounding sphere lies inside the grid."""
    p = np.asarray(positions_cm, float)
    lo, hi, sp = np.array(geometry.origin), np.array(geometry.upper), np.array(geometry.spacing)
    need_lo = np.maximum(lo - (p.min(axis=0) - reach_cm), 0.0)
    need_hi = np.maximum((p.max(axis=0) + reach_cm) - hi, 0.0)
    return np.stack([np.ceil(need_lo / sp - 1e-9), np.ceil(need_hi / sp - 1e-9)], axis=1).astype(int)


def padded_geometry(g: GridGeometry, widths: np.ndarray) -> GridGeometry:
    w = np.asarray(widths, int)
    n = np.array([g.nx, g.ny, g.nz]) + w.sum(axis=1)
    origin = np.array(g.origin) - w[:, 0] * np.array(g.spacing)
    return GridGeometry(shape=(int(n[2]), int(n[1]), int(n[0])), spacing=g.spacing, origin=tuple(float(v) for v in origin))


def pad_zyx(a: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """``a`` (z, y, x) padded by ``widths`` (x/y/z, below/above) with its edge values."""
    w = np.asarray(widths, int)
    return np.pad(a, ((w[2, 0], w[2, 1]), (w[1, 0], w[1, 1]), (w[0, 0], w[0, 1])), mode="edge")


@dataclass
class CalculationGrid:
    """What :func:`calculation_grid` made: the grid, the CT (or phantom) on it, and how."""

    geometry: GridGeometry
    ct: object | None                      # CTVolume on the grid (None for egsphant input)
    phantom: VoxelPhantom | None           # egsphant phantom on the grid
    ct_geometry: GridGeometry              # the CT as read
    crop_margin_mm: float | None
    cropped: bool
    resampled_mm: tuple[float, float, float] | None
    padding: dict = field(default_factory=dict)     # "x-" -> voxels added, for sides that were padded
    padded_seeds: tuple[int, ...] = ()             # 1-based seeds reaching past the CT
    notes: list = field(default_factory=list)      # Note

    def describe(self) -> dict:
        g = self.geometry
        return {"shape_zyx": list(g.shape), "voxel_mm": [round(10 * v, 6) for v in g.spacing],
                "origin_mm": [round(10 * v, 6) for v in g.origin], "extent": box_text(g),
                "ct_shape_zyx": list(self.ct_geometry.shape),
                "ct_voxel_mm": [round(10 * v, 6) for v in self.ct_geometry.spacing],
                "ct_extent": box_text(self.ct_geometry),
                "crop_margin_mm": self.crop_margin_mm, "resampled_to_mm": list(self.resampled_mm)
                if self.resampled_mm else None, "padding_voxels": dict(self.padding),
                "padded_for_seeds": list(self.padded_seeds)}


def calculation_grid(ct, phantom: VoxelPhantom | None, positions_cm: np.ndarray, reach_cm: float, *,
                     crop_margin_mm: float | None, calculation_voxel_mm, source: str,
                     ct_file: str, plan_file: str) -> CalculationGrid:
    """Crop, resample and pad the CT (or egsphant phantom) for the seeds; see the module docstring.

    ``source``: the run file (named in messages about its keys); ``ct_file``/``plan_file``: the
    inputs named in messages about them.
    """
    full = ct.geometry if ct is not None else phantom.geometry
    check_seed_centres(positions_cm, full, plan_file)
    p = np.asarray(positions_cm, float)
    notes: list = []
    geom, cropped = full, False
    if crop_margin_mm is not None:
        m = max(crop_margin_mm / 10.0, reach_cm)
        sl = crop_slices(full, p.min(0) - m, p.max(0) + m)
        geom = sub_geometry(full, sl)
        cropped = geom.shape != full.shape
        if ct is not None:
            ct = replace(ct, hu=np.ascontiguousarray(ct.hu[sl]), geometry=geom)
        else:
            phantom = VoxelPhantom(geom, phantom.materials, np.ascontiguousarray(phantom.material_index[sl]),
                                   np.ascontiguousarray(phantom.density[sl]))
        notes.append(Note("grid_cropped", f"calculation grid cropped to the seeds +/- {crop_margin_mm:g} mm: "
                          f"{box_text(geom)}", {"margin_mm": crop_margin_mm, "extent": box_text(geom)}))
    resampled = None
    if calculation_voxel_mm is not None:
        if ct is None:
            raise ConfigError(f"{source}: [ct].calculation_voxel_mm needs a CT (HU) input, not an egsphant phantom")
        from brachymc.geometry.resample import coarser_grid, resample_ct

        target = coarser_grid(geom, tuple(v / 10.0 for v in calculation_voxel_mm))
        if target.n_voxels > MAX_GRID_VOXELS:
            raise ConfigError(f"{source}: [ct].calculation_voxel_mm {list(calculation_voxel_mm)} gives "
                              f"{target.n_voxels:,} voxels (at most {MAX_GRID_VOXELS:,}); use coarser voxels or "
                              "[ct].crop_margin_mm")
        ct = resample_ct(ct, tuple(v / 10.0 for v in calculation_voxel_mm))
        geom = ct.geometry
        resampled = tuple(float(v) for v in calculation_voxel_mm)
        notes.append(Note("grid_resampled", f"CT resampled to {' x '.join(f'{v:g}' for v in resampled)} mm voxels "
                          f"(overlap-weighted mean HU): {geom.shape[2]} x {geom.shape[1]} x {geom.shape[0]} voxels",
                          {"voxel_mm": list(resampled)}))
    else:
        big = max(geom.spacing) * 10.0
        if big > MAX_CALC_VOXEL_MM:
            raise ConfigError(f"{ct_file}: the CT's {big:g} mm voxels cannot resolve the seeds' dose (at most "
                              f"{MAX_CALC_VOXEL_MM:g} mm); set [ct].calculation_voxel_mm in {source}")
    widths = pad_widths(geom, p, reach_cm)
    padding: dict = {}
    padded_seeds: tuple[int, ...] = ()
    if widths.any():
        lo, hi = np.array(geom.origin), np.array(geom.upper)
        out = np.any(p - reach_cm < lo - 1e-9, axis=1) | np.any(p + reach_cm > hi + 1e-9, axis=1)
        padded_seeds = tuple(int(i) + 1 for i in np.flatnonzero(out))
        for k, a in enumerate(_AXES):
            for side, sign in ((0, "-"), (1, "+")):
                if widths[k, side]:
                    padding[f"{a}{sign}"] = int(widths[k, side])
        geom = padded_geometry(geom, widths)
        if ct is not None:
            ct = replace(ct, hu=pad_zyx(ct.hu, widths), geometry=geom)
        else:
            phantom = VoxelPhantom(geom, phantom.materials, pad_zyx(phantom.material_index, widths),
                                   pad_zyx(phantom.density, widths))
        sides = ", ".join(f"{n} voxel{'s' if n > 1 else ''} at {s}" for s, n in padding.items())
        which = ", ".join(f"#{i}" for i in padded_seeds[:8]) + (" ..." if len(padded_seeds) > 8 else "")
        verb = f"seed {which} reaches" if len(padded_seeds) == 1 else f"seeds {which} reach"
        notes.append(Note("grid_padded", f"{verb} past the CT edge: the phantom is padded with the adjacent medium "
                          f"({sides})", {"seeds": list(padded_seeds), "padding": padding}, level="warning"))
    if geom.n_voxels > MAX_GRID_VOXELS:
        raise ConfigError(f"{source}: the calculation grid has {geom.n_voxels:,} voxels (at most {MAX_GRID_VOXELS:,}); "
                          "set [ct].crop_margin_mm or a coarser [ct].calculation_voxel_mm")
    return CalculationGrid(geometry=geom, ct=ct, phantom=phantom, ct_geometry=full, crop_margin_mm=crop_margin_mm,
                           cropped=cropped, resampled_mm=resampled, padding=padding, padded_seeds=padded_seeds,
                           notes=notes)
