"""Resampling voxel arrays between regular grids (e.g. a CT onto a coarser dose grid).

The image is treated as piecewise constant over its voxels. ``mode="mean"`` gives each target
voxel the exact average of the source image over the part of the target voxel that the source
covers (a box filter integrated exactly, not sampled). Because grids are separable, that
average factorises into three 1-D overlap matrices::

    W_x[j, i] = |[tx_j, tx_{j+1}] intersect [sx_i, sx_{i+1}]|   (cm), likewise W_y, W_z,
    out[c, b, a] = sum_{k,j,i} W_z[c,k] W_y[b,j] W_x[a,i] img[k,j,i] / (sum_k W_z[c,k] sum_j W_y[b,j] sum_i W_x[a,i])

which is the overlap-volume-weighted mean, since the overlap volume of two boxes is the product
of the 1-D overlaps. Consequences (tested):

* a constant image stays exactly constant (up to float rounding);
* the integral of the image is preserved over the region both grids cover:
  ``sum_j out_j * overlap_volume_j = integral of img over (target box intersect source box)``;
  in particular, when the target grid covers the same box as the source, the volume-weighted
  mean HU is preserved;
* target voxels that do not overlap the source at all get ``fill`` (NaN by default).

``mode="nearest"`` takes the source voxel containing each target voxel centre (for label
arrays such as material indices).

Averaging HU rather than densities is a deliberate approximation: the HU->density calibration
is piecewise linear, so averaging before or after conversion agrees within each linear segment
and differs only in voxels that mix segments (e.g. bone/soft-tissue edges).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from brachymc.errors import GeometryError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry

#: z slices processed together in :func:`resample_to` (bounds the float64 working memory).
_Z_CHUNK = 32


def _voxel_triple(voxel_cm: Sequence[float] | float) -> tuple[float, float, float]:
    try:
        v = np.asarray(voxel_cm, dtype=np.float64)
    except (TypeError, ValueError):
        raise GeometryError(f"voxel size must be three positive lengths (dx, dy, dz) in cm, got {voxel_cm!r}") from None
    if v.ndim == 0:
        v = np.full(3, float(v))
    if v.shape != (3,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise GeometryError(f"voxel size must be three positive lengths (dx, dy, dz) in cm, got {voxel_cm!r}")
    return tuple(float(x) for x in v)


def coarser_grid(geometry: GridGeometry, voxel_cm: Sequence[float] | float) -> GridGeometry:
    """A grid of voxels ``voxel_cm`` = (dx, dy, dz) cm covering the box of ``geometry``.

    Along each axis the count is the box length divided by the new voxel size, rounded to the
    nearest whole number (halves round up; at least 1), and the new grid is centred on the centre
    of the original box. The new box therefore differs from the old one by less than one new
    voxel in total per axis (at most half a voxel at each end); it is identical when the voxel
    size divides the box length. A scalar ``voxel_cm`` means cubic voxels. Finer voxels are
    allowed too (the name reflects the usual use: a dose grid coarser than the CT).
    """
    v = _voxel_triple(voxel_cm)
    counts = (geometry.nx, geometry.ny, geometry.nz)
    new_n, origin = [], []
    for a in range(3):
        length = counts[a] * geometry.spacing[a]
        m = max(1, int(np.floor(length / v[a] + 0.5 + 1e-9)))
        centre = geometry.origin[a] + 0.5 * length
        new_n.append(m)
        origin.append(centre - 0.5 * m * v[a])
    return GridGeometry(shape=(new_n[2], new_n[1], new_n[0]), spacing=v, origin=tuple(origin))


def overlap_matrix(src_edges: np.ndarray, dst_edges: np.ndarray) -> np.ndarray:
    """1-D overlap lengths ``W[j, i]`` (cm) of target interval j with source interval i."""
    s = np.asarray(src_edges, dtype=np.float64)
    t = np.asarray(dst_edges, dtype=np.float64)
    lo = np.maximum(t[:-1, None], s[None, :-1])
    hi = np.minimum(t[1:, None], s[None, 1:])
    return np.clip(hi - lo, 0.0, None)


def _row_normalised(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = w.sum(axis=1)
    covered = total > 0
    wn = np.zeros_like(w)
    wn[covered] = w[covered] / total[covered, None]
    return wn, covered


def _nearest_index(src: GridGeometry, dst: GridGeometry, axis: int) -> tuple[np.ndarray, np.ndarray]:
    n = (src.nx, src.ny, src.nz)[axis]
    c = dst.centers(axis)
    f = (c - src.origin[axis]) / src.spacing[axis]
    idx = np.floor(f).astype(np.int64)
    idx[(idx == n) & np.isclose(f, n)] = n - 1        # a centre on the high face belongs to the last voxel
    inside = (idx >= 0) & (idx < n)
    return np.clip(idx, 0, n - 1), inside


def resample_to(array: np.ndarray, from_geometry: GridGeometry, to_geometry: GridGeometry,
                mode: str = "mean", fill: float = np.nan) -> np.ndarray:
    """Resample ``array`` (nz, ny, nx) on ``from_geometry`` onto ``to_geometry``.

    Args:
        mode: ``"mean"`` (exact overlap-weighted average, float64 result) or ``"nearest"``
            (source voxel containing each target centre; keeps the input dtype when ``fill`` fits it).
        fill: value of target voxels outside the source (no overlap / centre outside).

    The grids may be anywhere relative to each other; only their overlap matters.
    """
    arr = np.asarray(array)
    if arr.shape != tuple(from_geometry.shape):
        raise GeometryError(f"array shape {arr.shape} does not match the source grid {tuple(from_geometry.shape)}")
    if mode == "nearest":
        (ix, inx), (iy, iny), (iz, inz) = (_nearest_index(from_geometry, to_geometry, a) for a in range(3))
        out = arr[np.ix_(iz, iy, ix)]
        inside = inz[:, None, None] & iny[None, :, None] & inx[None, None, :]
        if not inside.all():
            out = out.astype(np.result_type(arr.dtype, fill))
            out[~inside] = fill
        return out
    if mode != "mean":
        raise GeometryError(f"resample mode must be 'mean' or 'nearest', got {mode!r}")
    wx, cx = _row_normalised(overlap_matrix(from_geometry.edges(0), to_geometry.edges(0)))
    wy, cy = _row_normalised(overlap_matrix(from_geometry.edges(1), to_geometry.edges(1)))
    wz, cz = _row_normalised(overlap_matrix(from_geometry.edges(2), to_geometry.edges(2)))
    # Source z slices that matter, then contract x and y chunk by chunk, z last.
    used_z = np.flatnonzero(wz.any(axis=0))
    mz, my, mx = to_geometry.shape
    out = np.zeros((mz, my, mx), dtype=np.float64)
    if used_z.size:
        k0, k1 = int(used_z[0]), int(used_z[-1]) + 1
        partial = np.empty((k1 - k0, my, mx), dtype=np.float64)
        for z0 in range(k0, k1, _Z_CHUNK):
            z1 = min(z0 + _Z_CHUNK, k1)
            block = arr[z0:z1].astype(np.float64) @ wx.T                       # (kz, ny, mx)
            partial[z0 - k0:z1 - k0] = np.einsum("bj,kja->kba", wy, block)      # (kz, my, mx)
        out = np.tensordot(wz[:, k0:k1], partial, axes=(1, 0))                  # (mz, my, mx)
    covered = cz[:, None, None] & cy[None, :, None] & cx[None, None, :]
    if not covered.all():
        out[~covered] = fill
    return out


def resample_ct(ct: CTVolume, voxel_cm: Sequence[float] | float) -> CTVolume:
    """The CT on the grid :func:`coarser_grid` (``ct.geometry``, ``voxel_cm``) by overlap-weighted
    HU averaging (``mode="mean"``); HU float32; UIDs, patient and source fields are kept."""
    target = coarser_grid(ct.geometry, voxel_cm)
    hu = resample_to(ct.hu, ct.geometry, target, mode="mean")
    if not np.all(np.isfinite(hu)):   # cannot happen for a grid from coarser_grid; guard anyway
        raise GeometryError(f"{ct.source or 'CT'}: resampled grid has voxels outside the CT")
    return dataclasses.replace(ct, hu=hu.astype(np.float32), geometry=target)
