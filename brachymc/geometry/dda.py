"""Exact voxel stepping (3D DDA, Amanatides & Woo 1987) for banks of rays.

The functions are pure and written against an array namespace ``xp``; the transport calls
:func:`distance_to_face` and :func:`cross_face` every step, and :func:`trace_segments` uses the
same two functions to return the voxels and chord lengths of straight segments (tests, analytic
dose integrals).

A ray's voxel is carried as integer indices (ix, iy, iz), never recomputed from its position,
so rounding of positions cannot put a ray in the wrong voxel.
"""

from __future__ import annotations

import numpy as np

from brachymc.geometry.phantom import GridGeometry

_INF = 1e30


def distance_to_face(xp, pos, direction, ivox, geom: GridGeometry):
    """Distance (cm) to the next voxel face and the axis (0, 1, 2) it is on.

    Args:
        pos: (3, n) positions (cm); direction: (3, n) unit vectors; ivox: (3, n) integer voxel indices.
    Returns:
        ``(t, axis)``: (n,) distances >= 0 and (n,) int8 axes.
    """
    ts = []
    for a in range(3):
        d = direction[a]
        lo = geom.origin[a] + ivox[a] * geom.spacing[a]
        plane = xp.where(d > 0, lo + geom.spacing[a], lo)
        safe = xp.where(d != 0, d, 1.0)
        t = xp.where(d != 0, (plane - pos[a]) / safe, _INF)
        ts.append(xp.maximum(t, 0.0))
    t = xp.minimum(xp.minimum(ts[0], ts[1]), ts[2])
    axis = xp.where(ts[0] == t, 0, xp.where(ts[1] == t, 1, 2)).astype(xp.int8)
    return t, axis


def cross_face(xp, pos, direction, ivox, axis, geom: GridGeometry):
    """Step the voxel index across the face on ``axis`` and snap the position onto that face.

    ``pos`` must already be advanced to the face. Returns ``(ivox, pos, inside)`` where
    ``inside`` is False for rays that left the grid.
    """
    shape = (geom.nx, geom.ny, geom.nz)
    new_idx = []
    new_pos = []
    inside = None
    for a in range(3):
        on = axis == a
        step = xp.where(direction[a] > 0, 1, -1)
        plane = geom.origin[a] + (ivox[a] + (step > 0)) * geom.spacing[a]
        new_pos.append(xp.where(on, plane, pos[a]))
        ia = xp.where(on, ivox[a] + step, ivox[a])
        new_idx.append(ia)
        ok = (ia >= 0) & (ia < shape[a])
        inside = ok if inside is None else inside & ok
    return xp.stack(new_idx), xp.stack(new_pos), inside


def flat_index(ivox, geom: GridGeometry):
    """Flat voxel index (iz * ny + iy) * nx + ix as int64."""
    return (ivox[2].astype(np.int64) * geom.ny + ivox[1]) * geom.nx + ivox[0]


def trace_segments(xp, p0, p1, geom: GridGeometry, max_steps: int | None = None):
    """Voxels crossed by segments p0 -> p1 and the chord length in each.

    Args:
        p0, p1: (n, 3) end points (cm). Segments must start inside the grid; the part outside
            the grid is dropped.
    Returns:
        List of ``(flat_indices, lengths)`` NumPy array pairs, one per segment, in the order visited.
    """
    p0 = xp.asarray(p0, dtype=xp.float64).T.copy()
    p1 = xp.asarray(p1, dtype=xp.float64).T
    delta = p1 - p0
    length = xp.sqrt(xp.sum(delta * delta, axis=0))
    direction = delta / xp.where(length > 0, length, 1.0)
    lo = xp.asarray(geom.origin)[:, None]
    sp = xp.asarray(geom.spacing)[:, None]
    dims = xp.asarray([geom.nx, geom.ny, geom.nz])[:, None]
    ivox = xp.clip(xp.floor((p0 - lo) / sp).astype(xp.int64), 0, dims - 1)
    n = p0.shape[1]
    remaining = length.copy()
    alive = remaining > 0
    rows, vox, lens = [], [], []
    pos = p0
    limit = max_steps or (geom.nx + geom.ny + geom.nz + 3) * 2
    for _ in range(limit):
        if not bool(alive.any()):
            break
        t, axis = distance_to_face(xp, pos, direction, ivox, geom)
        step = xp.where(alive, xp.minimum(t, remaining), 0.0)
        rows.append(xp.nonzero(alive)[0])
        vox.append(flat_index(ivox, geom)[alive])
        lens.append(step[alive])
        pos = pos + direction * step
        remaining = remaining - step
        cross = alive & (remaining > 0)  # the step ended on a face, not at the segment end
        new_ivox, new_pos, inside = cross_face(xp, pos, direction, ivox, axis, geom)
        ivox = xp.where(cross, new_ivox, ivox)
        pos = xp.where(cross, new_pos, pos)
        alive = cross & inside
    to_np = (lambda a: a.get()) if hasattr(xp, "asnumpy") else np.asarray
    rows_a = to_np(xp.concatenate(rows)) if rows else np.zeros(0, int)
    vox_a = to_np(xp.concatenate(vox)) if vox else np.zeros(0, np.int64)
    len_a = to_np(xp.concatenate(lens)) if lens else np.zeros(0)
    order = np.argsort(rows_a, kind="stable")
    rows_a, vox_a, len_a = rows_a[order], vox_a[order], len_a[order]
    bounds = np.searchsorted(rows_a, np.arange(n + 1))
    return [(vox_a[bounds[i]:bounds[i + 1]], len_a[bounds[i]:bounds[i + 1]]) for i in range(n)]
