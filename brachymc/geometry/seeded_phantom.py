"""Voxel phantoms that contain seeds as analytic objects (inter-seed effects).

Seeds are placed by centre and axis; every voxel that overlaps a seed's bounding sphere knows
which seeds it holds, and every photon in such a voxel is traced through those seeds' solids
(next-surface rule, medium from the step's midpoint), so photons from one seed are attenuated
by the others. In ``superposition`` mode a photon sees only the seed that emitted it, as the
TG-43 formalism assumes.

Dose in a voxel partly occupied by seeds is the energy deposited in the phantom medium divided
by the mass of the medium part: the medium volume of each such voxel is estimated once per run
by sampling points in the seeds (the volume correction); voxels with (almost) no medium left are
masked (``medium_fraction`` below ``mask_fraction``): they score nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brachymc.errors import GeometryError
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.geometry.seed import SeedModel, orthonormal_frame
from brachymc.geometry.single_seed import _sphere_roots
from brachymc.geometry.world import VoxelWorld
from brachymc.materials import MaterialLibrary


@dataclass(frozen=True)
class SeedPlacement:
    """A seed in the phantom: centre (cm) and unit axis (world frame)."""

    center: tuple[float, float, float]
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)


class SeededVoxelWorld(VoxelWorld):
    """A :class:`VoxelWorld` holding seeds of one model.

    Args:
        phantom: the voxel phantom (materials of the seeds are appended to its materials).
        model: the seed model of all seeds.
        placements: where the seeds are.
        library: resolves the seed materials.
        backend: array backend.
        mode: ``"full"`` (all seeds present) or ``"superposition"`` (only the emitting seed).
        volume_samples: points per seed for the volume correction.
        mask_fraction: voxels whose medium fraction is below this are masked.
    """

    def __init__(self, phantom: VoxelPhantom, model: SeedModel, placements, library: MaterialLibrary, backend,
                 mode: str = "full", volume_samples: int = 400_000, mask_fraction: float = 1e-3):
        if mode not in ("full", "superposition"):
            raise GeometryError(f"seed mode must be 'full' or 'superposition', got {mode!r}")
        mats = list(phantom.materials)
        for s in model.solids:
            m = library[s.material]
            if m not in mats:
                mats.append(m)
        ph = VoxelPhantom(phantom.geometry, tuple(mats), phantom.material_index, phantom.density)
        super().__init__(ph, backend)
        xp = backend.xp
        self.model = model
        self.mode = mode
        self.placements = tuple(placements)
        if not self.placements:
            raise GeometryError("no seeds placed")
        g = self.geom
        self.centers = np.array([p.center for p in self.placements], float)
        ax = np.array([p.axis for p in self.placements], float)
        norms = np.linalg.norm(ax, axis=1)
        if np.any(norms == 0):
            raise GeometryError("a seed axis is the zero vector")
        self.axes = ax / norms[:, None]
        zlo, zhi, rs = model.bounds()
        self.seed_radius = float(np.sqrt(max(zlo * zlo, zhi * zhi) + rs * rs)) * (1 + 1e-9) + 1e-7
        lo, hi = np.array(g.origin), np.array(g.upper)
        for k, c in enumerate(self.centers):
            if np.any(c - self.seed_radius < lo) or np.any(c + self.seed_radius > hi):
                raise GeometryError(f"seed {k} at {tuple(np.round(c, 3))} cm is not entirely inside the phantom")
        self._check_overlaps()
        # voxel -> seeds whose bounding sphere meets the voxel
        vox_lists: dict[int, list[int]] = {}
        for k, c in enumerate(self.centers):
            i0 = np.floor((c - self.seed_radius - lo) / np.array(g.spacing)).astype(int)
            i1 = np.floor((c + self.seed_radius - lo) / np.array(g.spacing)).astype(int)
            i0 = np.clip(i0, 0, [g.nx - 1, g.ny - 1, g.nz - 1])
            i1 = np.clip(i1, 0, [g.nx - 1, g.ny - 1, g.nz - 1])
            ix, iy, iz = np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(i0, i1)], indexing="ij")
            ix, iy, iz = ix.ravel(), iy.ravel(), iz.ravel()
            vlo = lo + np.stack([ix, iy, iz], 1) * np.array(g.spacing)
            nearest = np.clip(c, vlo, vlo + np.array(g.spacing))
            meets = np.sum((nearest - c) ** 2, axis=1) <= self.seed_radius**2
            for f in ((iz[meets] * g.ny + iy[meets]) * g.nx + ix[meets]).tolist():
                vox_lists.setdefault(f, []).append(k)
        flagged = np.array(sorted(vox_lists), dtype=np.int64)
        self.max_per_voxel = max(len(v) for v in vox_lists.values())
        table = -np.ones((flagged.size, self.max_per_voxel), dtype=np.int64)
        for row, f in enumerate(flagged):
            table[row, : len(vox_lists[f])] = vox_lists[f]
        self._flagged = xp.asarray(flagged)
        self._flag_table = xp.asarray(table)
        # dense voxel -> row of _flag_table (-1: no seed), an O(1) gather per photon-step
        row = np.full(g.n_voxels, -1, dtype=np.int32)
        row[flagged] = np.arange(flagged.size, dtype=np.int32)
        self._flag_row = xp.asarray(row)
        self._centers = xp.asarray(self.centers)
        self._axes = xp.asarray(self.axes)
        self._solid_mat = xp.asarray([mats.index(library[s.material]) for s in model.solids], dtype=xp.int64)
        self._solid_rho = xp.asarray([library[s.material].density for s in model.solids], dtype=xp.float64)
        self.medium_fraction, self.score_volume = self._volume_correction(volume_samples, mask_fraction)
        self.mask = (self.medium_fraction < mask_fraction).reshape(g.shape)

    # ---- set-up ---------------------------------------------------------------------------------
    def _check_overlaps(self) -> None:
        c = self.centers
        if len(c) < 2:
            return
        d = np.linalg.norm(c[:, None, :] - c[None, :, :], axis=-1)
        np.fill_diagonal(d, np.inf)
        if d.min() >= 2 * self.seed_radius:
            return
        # bounding spheres overlap: check the solids themselves by sampling
        rng = np.random.default_rng(7)
        zlo, zhi, rs = self.model.bounds()
        for i, j in zip(*np.nonzero(d < 2 * self.seed_radius)):
            if i >= j:
                continue
            pts = _sample_in_seed(self.model, self.centers[i], self.axes[i], 20_000, rng)
            z, r2 = self._local(j, pts)
            if np.any(self.model.locate(np, z, r2) >= 0):
                raise GeometryError(f"seeds {i} and {j} overlap (centres {tuple(np.round(c[i], 3))} and "
                                    f"{tuple(np.round(c[j], 3))} cm)")

    def _local(self, k: int, pts: np.ndarray):
        d = pts - self.centers[k]
        z = d @ self.axes[k]
        return z, np.maximum(np.sum(d * d, axis=1) - z * z, 0.0)

    def _volume_correction(self, n: int, mask_fraction: float):
        frac = 1.0 - seed_volume_fraction(self.geom, self.model, self.centers, self.axes, n)
        vol = np.where(frac < mask_fraction, np.inf, frac * self.geom.voxel_volume)
        return frac, vol

    # ---- world interface ----------------------------------------------------------------------
    def init_state(self, xp, pos, tag=None) -> dict:
        st = super().init_state(xp, pos, tag)
        n = pos.shape[1]
        st["src"] = xp.full(n, -1, dtype=xp.int64) if tag is None else xp.asarray(tag, dtype=xp.int64)
        return st

    def geometry_step(self, xp, b):
        t_face, m, rho, flat, axis = super().geometry_step(xp, b)
        t = t_face
        row = self._flag_row[flat]
        flagged = row >= 0
        sidx = flat
        if bool(flagged.any()):
            idx = xp.nonzero(flagged)[0]
            p, d = b["pos"][:, idx], b["dir"][:, idx]
            tt = t_face[idx]
            cand = self._flag_table[row[idx]]                        # (k, K)
            seeds = []
            for j in range(self.max_per_voxel):
                sid = cand[:, j]
                valid = sid >= 0
                if self.mode == "superposition":
                    valid &= sid == b["src"][idx]
                s = xp.clip(sid, 0, None)
                c, a = self._centers[s].T, self._axes[s].T
                rel = p - c
                p2 = xp.sum(rel * rel, axis=0)
                pdf = xp.sum(rel * d, axis=0)
                inside = p2 < self.seed_radius * self.seed_radius
                t_sph = _sphere_roots(xp, pdf, p2, self.seed_radius)
                z = xp.sum(rel * a, axis=0)
                w = xp.sum(d * a, axis=0)
                r2 = xp.maximum(p2 - z * z, 0.0)
                # surfaces of the seed's solids matter only inside its bounding sphere
                tj = t_sph.copy()
                sel = xp.nonzero(inside & valid)[0]
                if int(sel.shape[0]):
                    tj[sel] = self.model.distance_to_surface(xp, z[sel], r2[sel], w[sel],
                                                             (pdf - z * w)[sel])
                tt = xp.where(valid, xp.minimum(tt, tj), tt)
                seeds.append((valid, c, a))
            # medium on the step from its midpoint
            mid = p + d * (tt * 0.5)
            mm, rr, ss = m[idx], rho[idx], sidx[idx]
            for valid, c, a in seeds:
                rel = mid - c
                zm = xp.sum(rel * a, axis=0)
                r2m = xp.maximum(xp.sum(rel * rel, axis=0) - zm * zm, 0.0)
                loc = xp.where(valid, self.model.locate(xp, zm, r2m), -1)
                ins = loc >= 0
                li = xp.clip(loc, 0, None)
                mm = xp.where(ins, self._solid_mat[li], mm)
                rr = xp.where(ins, self._solid_rho[li], rr)
                ss = xp.where(ins, -1, ss)
            t = t_face.copy()
            t[idx] = tt
            m = m.copy()
            m[idx] = mm
            rho = rho.copy()
            rho[idx] = rr
            sidx = flat.copy()
            sidx[idx] = ss
        face = t >= t_face
        return t, m, rho, sidx, (axis, face)

    def cross(self, xp, b, crossing, ctx):
        axis, face = ctx
        return super().cross(xp, b, crossing & face, axis)


def _sample_in_seed(model: SeedModel, center: np.ndarray, axis: np.ndarray, n: int, rng) -> np.ndarray:
    """Points uniform in a seed's bounding cylinder that lie inside one of its solids (world frame)."""
    zlo, zhi, rs = model.bounds()
    z = zlo + (zhi - zlo) * rng.random(n)
    r = rs * np.sqrt(rng.random(n))
    ph = 2 * np.pi * rng.random(n)
    x, y = r * np.cos(ph), r * np.sin(ph)
    inside = model.locate(np, z, r * r) >= 0
    e1, e2, a = orthonormal_frame(axis)
    pts = center + np.outer(x, e1) + np.outer(y, e2) + np.outer(z, a)
    return pts[inside]


def seed_volume_fraction(geometry: GridGeometry, model: SeedModel, centers, axes, n: int = 400_000,
                         seed: int = 2718) -> np.ndarray:
    """Fraction (nz, ny, nx) of each voxel's volume occupied by the seeds (Monte Carlo estimate).

    ``n`` points are drawn uniformly in each seed's bounding cylinder; those inside a solid count
    for the voxel they fall in (relative standard error of a voxel's seed volume ~ 1/sqrt(n x
    fraction of the seed in it)). Deterministic for a given ``seed``.
    """
    g = geometry
    zlo, zhi, rs = model.bounds()
    cyl = np.pi * rs * rs * (zhi - zlo)
    occupied = np.zeros(g.n_voxels)
    rng = np.random.default_rng(seed)
    centers = np.atleast_2d(np.asarray(centers, float))
    axes = np.atleast_2d(np.asarray(axes, float))
    for c, a in zip(centers, axes):
        pts = _sample_in_seed(model, c, a / np.linalg.norm(a), n, rng)
        pts = pts[g.contains(pts)]
        iv = g.voxel_of(pts)
        flat = (iv[:, 2] * g.ny + iv[:, 1]) * g.nx + iv[:, 0]
        occupied += np.bincount(flat, minlength=g.n_voxels) * cyl / n
    return np.clip(occupied / g.voxel_volume, 0.0, 1.0).reshape(g.shape)


def seed_positions_from(placements) -> list[SeedPlacement]:
    """Placements from (center, axis) pairs or bare centres."""
    out = []
    for p in placements:
        if isinstance(p, SeedPlacement):
            out.append(p)
        elif len(p) == 2 and np.ndim(p[0]) == 1:
            out.append(SeedPlacement(tuple(map(float, p[0])), tuple(map(float, p[1]))))
        else:
            out.append(SeedPlacement(tuple(map(float, p))))
    return out


__all__ = ["SeedPlacement", "SeededVoxelWorld", "seed_positions_from"]
