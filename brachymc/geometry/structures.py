"""Structures (ROIs) on a dose grid: partial-volume rasterisation of planar contour stacks.

A structure is a stack of closed axial polygons in DICOM patient coordinates (LPS, **mm**), as
read from an RT Structure Set (:mod:`brachymc.io.dicom_rtstruct`). It is turned into a fractional
mask on a :class:`~brachymc.geometry.phantom.GridGeometry` (cm): the fraction of each voxel's
volume inside the structure, float32 in [0, 1], arrays ``[iz, iy, ix]``. The fraction is what
:mod:`brachymc.dvh` takes as voxel weights.

The slab model (how a stack of contour planes fills space, used by :func:`rasterise` and
:func:`structure_volume_cc` alike):

* contours whose z agree within ``PLANE_TOL_MM`` (0.01 mm) form one contour plane;
* each plane stands for the slab reaching half-way to its neighbouring planes, i.e. a point at
  height z belongs to the plane nearest to z;
* the lowest (highest) plane's slab reaches half the spacing to its one neighbour below (above)
  it, and nothing of the structure lies beyond;
* a structure drawn on one plane only gets a slab of the given thickness (for :func:`rasterise`
  the dose-grid z spacing, centred on the plane).

For uniform plane spacing h this gives every plane a thickness h, the convention of treatment
planning systems and of dicompyler-core's DVH calculation (its plane thickness is the smallest
plane spacing). Within a plane, points inside an odd number of the plane's contours are inside
the structure (even-odd rule), so holes (a contour inside a contour) and islands (disjoint
contours) need no labels.

In z the overlap of each voxel with every slab is computed exactly (the limit of infinitely many
z sub-samples); in-plane each voxel is sampled on an s x s grid of points (s = ``subsamples``),
tested with a vectorised even-odd scan-line test. Only the voxels under each plane's contour
bounding box are processed, so a large CT-sized grid costs little more than the structure.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from brachymc.errors import GeometryError
from brachymc.geometry.phantom import GridGeometry

PLANE_TOL_MM = 0.01            # contours closer than this in z share one plane (DS precision)
_MAX_PAIRS = 4_000_000         # (scan line x polygon edge) pairs handled at once


# ----------------------------------------------------------------------------------------------
# contour planes
# ----------------------------------------------------------------------------------------------

def _contour_list(obj) -> list[np.ndarray]:
    """The contours of a Structure (anything with ``.contours``) or a sequence of (N, 3) arrays (mm)."""
    contours = getattr(obj, "contours", obj)
    name = getattr(obj, "name", None)
    where = f"structure {name!r}" if name else "contours"
    out = []
    for i, c in enumerate(contours):
        a = np.asarray(c, dtype=float)
        if a.ndim != 2 or a.shape[1] != 3:
            raise GeometryError(f"{where}: contour {i} must be an (N, 3) array of points in mm, got shape {a.shape}")
        if a.shape[0] < 3:
            raise GeometryError(f"{where}: contour {i} has {a.shape[0]} points; a closed polygon needs at least 3")
        if not np.all(np.isfinite(a)):
            raise GeometryError(f"{where}: contour {i} contains NaN or infinite coordinates")
        if np.ptp(a[:, 2]) > PLANE_TOL_MM:
            raise GeometryError(f"{where}: contour {i} is not axial (z spans {a[:, 2].min():.4f} to "
                                f"{a[:, 2].max():.4f} mm); only axial planar contours are supported")
        out.append(a)
    return out


def contour_planes(contours) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """Group contours into planes: (plane z in mm ascending, per plane the (N, 2) x-y polygons in mm).

    ``contours`` is a Structure or a sequence of (N, 3) arrays in mm. Contours within
    ``PLANE_TOL_MM`` in z share a plane (whose z is their mean).
    """
    items = sorted(((float(np.mean(c[:, 2])), c[:, :2]) for c in _contour_list(contours)), key=lambda t: t[0])
    zs: list[list[float]] = []
    polys: list[list[np.ndarray]] = []
    for z, xy in items:
        if zs and z - zs[-1][0] <= PLANE_TOL_MM:
            zs[-1].append(z)
            polys[-1].append(xy)
        else:
            zs.append([z])
            polys.append([xy])
    return np.array([np.mean(g) for g in zs], dtype=float), polys


def slab_bounds(plane_z_mm: np.ndarray, single_thickness_mm: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper z (mm) of each plane's slab under the slab model (see the module docstring)."""
    z = np.asarray(plane_z_mm, dtype=float)
    if z.size == 0:
        return z.copy(), z.copy()
    if z.size == 1:
        if single_thickness_mm is None or not single_thickness_mm > 0:
            raise GeometryError(f"a structure drawn on one plane (z = {z[0]:.3f} mm) needs a slab thickness")
        half = 0.5 * float(single_thickness_mm)
        return z - half, z + half
    mids = 0.5 * (z[1:] + z[:-1])
    lower = np.concatenate([[z[0] - 0.5 * (z[1] - z[0])], mids])
    upper = np.concatenate([mids, [z[-1] + 0.5 * (z[-1] - z[-2])]])
    return lower, upper


# ----------------------------------------------------------------------------------------------
# in-plane even-odd sampling
# ----------------------------------------------------------------------------------------------

def _edges(polys: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """All polygon edges (x1, y1, x2, y2) of the closed polygons; horizontal edges dropped."""
    p1 = np.concatenate([p for p in polys])
    p2 = np.concatenate([np.roll(p, -1, axis=0) for p in polys])
    keep = p1[:, 1] != p2[:, 1]
    return p1[keep, 0], p1[keep, 1], p2[keep, 0], p2[keep, 1]


def inside_even_odd(polys: Sequence[np.ndarray], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Whether the points of the grid ``xs`` x ``ys`` lie inside the polygons (even-odd rule).

    ``polys``: closed polygons, (N, 2) arrays of (x, y) without a repeated first point. ``xs``
    must be evenly spaced and ascending. Returns a bool array (len(ys), len(xs)). A horizontal
    scan line through each row of points counts the polygon edges it crosses left of each point
    (half-open rule on the edge end points, so a vertex on the line is counted once).
    """
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    m, n = ys.size, xs.size
    if m == 0 or n == 0 or not polys:
        return np.zeros((m, n), dtype=bool)
    x1, y1, x2, y2 = _edges(polys)
    if x1.size == 0:
        return np.zeros((m, n), dtype=bool)
    step = float(xs[1] - xs[0]) if n > 1 else 1.0
    slope = (x2 - x1) / (y2 - y1)
    out = np.empty((m, n), dtype=bool)
    rows_per_chunk = max(1, _MAX_PAIRS // x1.size)
    for r0 in range(0, m, rows_per_chunk):
        yc = ys[r0:r0 + rows_per_chunk]
        mc = yc.size
        cross = (y1[None, :] <= yc[:, None]) != (y2[None, :] <= yc[:, None])
        rows, cols = np.nonzero(cross)
        xc = x1[cols] + (yc[rows] - y1[cols]) * slope[cols]
        # first sample strictly right of the crossing; crossings right of every sample drop out
        k = np.clip(np.floor((xc - xs[0]) / step).astype(np.int64) + 1, 0, n)
        toggles = np.bincount(rows * (n + 1) + k, minlength=mc * (n + 1)).reshape(mc, n + 1)[:, :n]
        out[r0:r0 + mc] = np.bitwise_xor.accumulate((toggles & 1).astype(np.uint8), axis=1).astype(bool)
    return out


def _plane_fraction(polys: Sequence[np.ndarray], geometry: GridGeometry, s: int):
    """In-plane fraction of each voxel inside the plane's polygons, over their bounding box.

    Returns ``(iy0, ix0, frac)`` with ``frac`` (nyb, nxb) float64, or ``None`` when the polygons
    miss the grid.
    """
    pts = np.concatenate(polys)
    x0, y0 = 10.0 * geometry.origin[0], 10.0 * geometry.origin[1]
    dx, dy = 10.0 * geometry.spacing[0], 10.0 * geometry.spacing[1]
    ix0 = max(0, int(np.floor((pts[:, 0].min() - x0) / dx)))
    ix1 = min(geometry.nx, int(np.ceil((pts[:, 0].max() - x0) / dx)))
    iy0 = max(0, int(np.floor((pts[:, 1].min() - y0) / dy)))
    iy1 = min(geometry.ny, int(np.ceil((pts[:, 1].max() - y0) / dy)))
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    nxb, nyb = ix1 - ix0, iy1 - iy0
    xs = x0 + (ix0 + (np.arange(nxb * s) + 0.5) / s) * dx
    ys = y0 + (iy0 + (np.arange(nyb * s) + 0.5) / s) * dy
    inside = inside_even_odd(polys, xs, ys)
    frac = inside.reshape(nyb, s, nxb, s).mean(axis=(1, 3))
    return iy0, ix0, frac


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def rasterise(structure_or_contours, geometry: GridGeometry, subsamples: int = 4) -> np.ndarray:
    """Fraction of each voxel of ``geometry`` inside a structure: float32 (nz, ny, nx) in [0, 1].

    ``structure_or_contours``: a :class:`~brachymc.io.dicom_rtstruct.Structure` or a sequence of
    closed axial contours, (N, 3) arrays in mm (LPS). ``geometry`` is in cm.

    Rule (the slab model of the module docstring): each contour plane fills the slab reaching
    half-way to its neighbouring planes; the lowest/highest plane's slab reaches half the spacing
    to its neighbour below/above it and the structure ends there; a single-plane structure fills
    one dose-grid z spacing centred on its plane. A voxel's fraction is the sum over the slabs it
    overlaps of (overlap length / voxel height, exact) x (in-plane fraction of the voxel inside
    that plane's contours, from ``subsamples`` x ``subsamples`` points per voxel, even-odd rule).
    Contour points outside the grid are fine (the structure is clipped to the grid).
    """
    s = int(subsamples)
    if s < 1:
        raise GeometryError(f"subsamples must be >= 1, got {subsamples!r}")
    out = np.zeros(tuple(geometry.shape), dtype=np.float32)
    plane_z, polys = contour_planes(structure_or_contours)
    if plane_z.size == 0:
        return out
    dz = 10.0 * geometry.spacing[2]
    lower, upper = slab_bounds(plane_z, dz)
    z_edges = 10.0 * geometry.edges(2)
    for p in range(plane_z.size):
        lo, hi = lower[p], upper[p]
        overlap = np.minimum(z_edges[1:], hi) - np.maximum(z_edges[:-1], lo)
        iz = np.nonzero(overlap > 1e-9 * dz)[0]
        if iz.size == 0:
            continue
        res = _plane_fraction(polys[p], geometry, s)
        if res is None:
            continue
        iy0, ix0, frac = res
        wz = overlap[iz] / dz
        out[iz, iy0:iy0 + frac.shape[0], ix0:ix0 + frac.shape[1]] += \
            (wz[:, None, None] * frac[None]).astype(np.float32)
    np.clip(out, 0.0, 1.0, out=out)      # slab weights of one voxel sum to 1 up to rounding
    return out


def structure_masks(structure_set, geometry: GridGeometry, names: Iterable[str] | None = None,
                    subsamples: int = 4) -> dict[str, np.ndarray]:
    """Fractional masks (see :func:`rasterise`) of the structures of a StructureSet.

    ``names``: the structures to rasterise (looked up case-insensitively; an unknown name raises
    the structure set's lookup error listing the names available); default all of them. The
    dictionary is keyed by the names as given (by the structures' own names by default).
    """
    if names is None:
        return {st.name: rasterise(st, geometry, subsamples) for st in structure_set.structures}
    return {name: rasterise(structure_set[name], geometry, subsamples) for name in names}


def polygon_area_mm2(xy: np.ndarray) -> float:
    """Unsigned area (mm2) of a simple closed polygon (N, 2) by the shoelace formula."""
    x, y = np.asarray(xy, float)[:, 0], np.asarray(xy, float)[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def plane_area_mm2(polys: Sequence[np.ndarray]) -> float:
    """Area (mm2) of the even-odd region of non-crossing polygons on one plane.

    Each polygon's area counts with sign (-1)^depth, depth = the number of other polygons that
    contain it (a hole in an organ subtracts, an island in the hole adds again).
    """
    from matplotlib.path import Path

    total = 0.0
    paths = [Path(p) for p in polys]
    for i, p in enumerate(polys):
        depth = sum(1 for j, q in enumerate(paths) if j != i and q.contains_point(tuple(p[0])))
        total += (-1) ** depth * polygon_area_mm2(p)
    return total


def structure_volume_cc(contours, thickness_mm: float | None = None) -> float:
    """Analytic volume (cm3) of a contour stack: sum of plane area x slab thickness.

    Uses the slab model of :func:`rasterise` (interior planes: half-way to both neighbours; end
    planes: half the spacing to their neighbour beyond them), so a rasterisation on any grid that
    encloses the structure converges to this value. A single-plane structure needs
    ``thickness_mm``. ``contours``: a Structure or a sequence of (N, 3) arrays in mm.
    """
    plane_z, polys = contour_planes(contours)
    if plane_z.size == 0:
        return 0.0
    lower, upper = slab_bounds(plane_z, thickness_mm)
    areas = np.array([plane_area_mm2(p) for p in polys])
    return float(np.sum(areas * (upper - lower)) / 1000.0)

