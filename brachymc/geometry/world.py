"""Transport worlds: the geometry the transport core steps photons through.

A world tells the transport, for every photon of the bank, the distance to the next geometric
boundary, the medium (material index and mass density) on that step and the scoring bin the
step's track length belongs to (-1: not scored, e.g. inside a seed), and it moves photons across
boundaries. The transport core (``mc/transport.py``) is the same for every world.

Interface (all arrays on the backend, photons along the last axis)::

    materials: tuple[Material, ...]      # material index m refers to materials[m]
    n_scores: int; score_shape: tuple    # scoring bins, and their shape for results
    score_volume: ndarray | float        # cm3 of scoring medium per bin (host)
    score_density: xp array (n_scores,)  # g/cm3 of the scoring medium (energy bookkeeping)
    check_source(source)                 # raise if the source does not fit
    init_state(xp, pos, tag) -> dict     # per-photon geometry state for new photons (tag: source tag)
    geometry_step(xp, bank) -> (t, m, rho, score_index, ctx)
    cross(xp, bank, crossing, ctx) -> inside   # after photons moved by t: update state
    score_escape(xp, bank, escaped, scores)    # optional: photons leaving the world
    score_interaction(xp, bank, idx, kind, e_in, e_out, e_fl, scores)   # optional: interaction sites
                                               # (see mc/array_engine.py; used by the photon budget)
"""

from __future__ import annotations

import numpy as np

from brachymc.errors import GeometryError
from brachymc.geometry.dda import cross_face, distance_to_face, flat_index
from brachymc.geometry.phantom import VoxelPhantom


class VoxelWorld:
    """A voxel phantom: exact DDA stepping; each voxel is a scoring bin."""

    def __init__(self, phantom: VoxelPhantom, backend):
        self.phantom = phantom
        self.geom = phantom.geometry
        self.materials = tuple(phantom.materials)
        self.n_scores = self.geom.n_voxels
        self.score_shape = tuple(self.geom.shape)
        self.score_volume = self.geom.voxel_volume
        xp = backend.xp
        self.mat = backend.asarray(phantom.material_index.reshape(-1))
        self.rho = backend.asarray(phantom.density.reshape(-1), dtype=xp.float64)
        self.score_density = self.rho

    def check_source(self, source) -> None:
        pts = source.bounding_points()
        inside = self.geom.contains(pts)
        if not np.all(inside):
            bad = pts[~inside][0]
            raise GeometryError(
                f"source point {tuple(np.round(bad, 4))} cm lies outside the phantom "
                f"{tuple(np.round(self.geom.origin, 4))} - {tuple(np.round(self.geom.upper, 4))} cm"
            )

    def init_state(self, xp, pos, tag=None) -> dict:
        g = self.geom
        ivox = xp.stack([
            xp.clip(xp.floor((pos[a] - g.origin[a]) / g.spacing[a]).astype(xp.int64), 0, (g.nx, g.ny, g.nz)[a] - 1)
            for a in range(3)
        ])
        return {"ivox": ivox}

    def geometry_step(self, xp, b):
        flat = flat_index(b["ivox"], self.geom)
        t, axis = distance_to_face(xp, b["pos"], b["dir"], b["ivox"], self.geom)
        return t, self.mat[flat].astype(xp.int64), self.rho[flat], flat, axis

    def cross(self, xp, b, crossing, axis):
        new_ivox, new_pos, inside = cross_face(xp, b["pos"], b["dir"], b["ivox"], axis, self.geom)
        b["ivox"] = xp.where(crossing, new_ivox, b["ivox"])
        b["pos"] = xp.where(crossing, new_pos, b["pos"])
        return inside | ~crossing
