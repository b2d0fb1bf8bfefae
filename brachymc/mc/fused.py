"""Fused GPU kernel for the voxel step (CuPy RawKernel), beside its pure-array twin.

The array transport (:meth:`brachymc.mc.transport.Transport._step`) does one step of every photon
as ~40 separate array operations (table look-ups, three face distances, minimum, scoring,
scatter-add, move, face crossing), each reading and writing the whole bank from GPU memory.
:data:`VOXEL_STEP_SOURCE` does the same arithmetic for a plain voxel world in one kernel, one
thread per photon, reading each photon's state once and writing it once:

per photon-step (bank in float64/int64): reads pos, dir (48 B), ivox (24 B), e, wt, nmfp, fe
(32 B), ie (8 B), scat (1 B), material (2 B) and density (8 B) of its voxel, 4 table values
(32 B); writes pos, nmfp, ivox (80 B), hit/inside flags (2 B), m, rho, voxel (24 B) and one or two
float64 atomic adds (8-16 B): ~270 B and ~60 flops, against ~2.5 kB moved by the array version.

It is used only when ``TransportSettings(fused=True)`` and the backend is CuPy. Photons in voxels
that hold (part of) a seed are *deferred*: the kernel leaves them untouched and the world's own
array code (seed ray tracing) steps them; interactions stay in array code. ``fused="emulate"``
runs :meth:`FusedVoxelStep.twin`, the kernel's semantics in array code, on any backend: the CPU
tests check that the hybrid (twin + deferred array step) reproduces the plain array transport. ``fused`` is **off by default**: the kernel has been
compiled (nvcc, sm_90) but not yet run on a GPU, and ``tests/test_gpu.py`` compares it with the
array twin on the first GPU run (identical random-number use, so doses agree to rounding).
"""

from __future__ import annotations

import numpy as np

VOXEL_STEP_SOURCE = r"""
extern "C" __global__ void voxel_step(
    const long long n,
    double* pos, const double* dir, long long* ivox,
    const double* e, const double* wt, double* nmfp, const bool* scat,
    const long long* ie, const double* fe,
    const int* mat, const double* rho_vox,
    const double* ln_mu, const double* ln_muen, const long long n_e,
    const double ox, const double oy, const double oz,
    const double sx, const double sy, const double sz,
    const long long nx, const long long ny, const long long nz,
    double* kerma, double* primary, const int score_primary,
    double* water, const long long water_m,
    const unsigned char* seed_voxel, const int has_seeds,
    bool* hit_out, bool* inside_out, long long* m_out, double* rho_out, long long* flat_out, bool* deferred_out)
{
    const long long k = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (k >= n) return;
    long long ix = ivox[k], iy = ivox[n + k], iz = ivox[2 * n + k];
    const long long flat = (iz * ny + iy) * nx + ix;
    // voxels that hold (part of) a seed are left to the array code, photon untouched
    const bool deferred = has_seeds && seed_voxel[flat];
    deferred_out[k] = deferred;
    if (deferred) { hit_out[k] = false; inside_out[k] = true; m_out[k] = 0; rho_out[k] = 0.0; flat_out[k] = flat; return; }
    const double px = pos[k], py = pos[n + k], pz = pos[2 * n + k];
    const double dx = dir[k], dy = dir[n + k], dz = dir[2 * n + k];
    const long long m = (long long)mat[flat];
    const double rho = rho_vox[flat];
    const long long i = ie[k];
    const double f = fe[k];
    const double* row = ln_mu + m * n_e;
    const double mu = rho * exp(row[i] + f * (row[i + 1] - row[i]));
    const double* rowen = ln_muen + m * n_e;
    const double muen = exp(rowen[i] + f * (rowen[i + 1] - rowen[i]));

    // distance to the next voxel face (same rule as geometry.dda.distance_to_face)
    double tx = 1e300, ty = 1e300, tz = 1e300;
    if (dx != 0.0) { double lo = ox + ix * sx; tx = ((dx > 0.0 ? lo + sx : lo) - px) / dx; if (tx < 0.0) tx = 0.0; }
    if (dy != 0.0) { double lo = oy + iy * sy; ty = ((dy > 0.0 ? lo + sy : lo) - py) / dy; if (ty < 0.0) ty = 0.0; }
    if (dz != 0.0) { double lo = oz + iz * sz; tz = ((dz > 0.0 ? lo + sz : lo) - pz) / dz; if (tz < 0.0) tz = 0.0; }
    double t_face = fmin(fmin(tx, ty), tz);
    const int axis = (tx == t_face) ? 0 : ((ty == t_face) ? 1 : 2);

    const double d_int = (mu > 0.0) ? nmfp[k] / mu : 1e300;
    const bool hit = d_int < t_face;
    const double d = hit ? d_int : t_face;

    // track-length estimator of collision kerma
    const double score = wt[k] * e[k] * muen * d;
    atomicAdd(&kerma[flat], score);
    if (score_primary && !scat[k]) atomicAdd(&primary[flat], score);
    if (water_m >= 0) {
        const double* roww = ln_muen + water_m * n_e;
        atomicAdd(&water[flat], wt[k] * e[k] * exp(roww[i] + f * (roww[i + 1] - roww[i])) * d);
    }

    double nxp = px + dx * d, nyp = py + dy * d, nzp = pz + dz * d;
    nmfp[k] = nmfp[k] - mu * d;
    bool inside = true;
    if (!hit) {
        if (axis == 0) { long long st = dx > 0.0 ? 1 : -1; nxp = ox + (ix + (st > 0)) * sx; ix += st; }
        else if (axis == 1) { long long st = dy > 0.0 ? 1 : -1; nyp = oy + (iy + (st > 0)) * sy; iy += st; }
        else { long long st = dz > 0.0 ? 1 : -1; nzp = oz + (iz + (st > 0)) * sz; iz += st; }
        inside = (ix >= 0) && (ix < nx) && (iy >= 0) && (iy < ny) && (iz >= 0) && (iz < nz);
    }
    pos[k] = nxp; pos[n + k] = nyp; pos[2 * n + k] = nzp;
    ivox[k] = ix; ivox[n + k] = iy; ivox[2 * n + k] = iz;
    hit_out[k] = hit; inside_out[k] = inside;
    m_out[k] = m; rho_out[k] = rho; flat_out[k] = flat;
}
"""


class FusedVoxelStep:
    """The fused voxel step for one (voxel world, tables) pair.

    Photons in voxels without seeds are advanced by the kernel (or, with ``emulate=True``, by its
    array twin :meth:`twin`, which does exactly what the kernel does); photons in voxels that hold
    a seed are returned as *deferred*, untouched, for the world's own (seed-tracing) array code.
    """

    BLOCK = 256

    def __init__(self, world, tables, backend, water_index: int | None = None, emulate: bool = False):
        self.world, self.tables, self.backend = world, tables, backend
        self.xp = xp = backend.xp
        self.emulate = bool(emulate)
        self.water_index = water_index
        g = world.geom
        self.grid = (float(g.origin[0]), float(g.origin[1]), float(g.origin[2]),
                     float(g.spacing[0]), float(g.spacing[1]), float(g.spacing[2]),
                     int(g.nx), int(g.ny), int(g.nz))
        seed_voxel = np.zeros(g.n_voxels, dtype=np.uint8)
        flagged = getattr(world, "_flagged", None)
        if flagged is not None:
            seed_voxel[backend.asnumpy(flagged)] = 1
        self.has_seeds = bool(seed_voxel.any())
        self.seed_voxel = xp.asarray(seed_voxel)
        if not self.emulate:
            import cupy as cp

            # no FMA contraction: the array twin rounds after every operation (one CuPy kernel
            # each), so the kernel reproduces it to the last bit and both follow the same histories
            self.kernel = cp.RawKernel(VOXEL_STEP_SOURCE, "voxel_step", options=("--fmad=false",))
            self.mat = cp.ascontiguousarray(world.mat.astype(cp.int32))
            self.rho = cp.ascontiguousarray(world.rho.astype(cp.float64))
            self.ln_mu = cp.ascontiguousarray(tables.ln_mu, dtype=cp.float64)
            self.ln_muen = cp.ascontiguousarray(tables.ln_muen, dtype=cp.float64)
            self.n_e = int(self.ln_mu.shape[1])

    def __call__(self, b, sc):
        """Advance bank ``b`` in place; returns (hit, m, rho, flat, inside, deferred)."""
        return self.twin(b, sc) if self.emulate else self._launch(b, sc)

    # ---- the kernel --------------------------------------------------------------------------
    def _launch(self, b, sc):
        cp = self.xp
        n = int(b["e"].shape[0])
        for key in ("pos", "dir", "ivox", "e", "wt", "nmfp", "scat", "ie", "fe"):
            b[key] = cp.ascontiguousarray(b[key])
        b["ivox"] = b["ivox"].astype(cp.int64, copy=False)
        hit = cp.empty(n, dtype=cp.bool_)
        inside = cp.empty(n, dtype=cp.bool_)
        deferred = cp.empty(n, dtype=cp.bool_)
        m = cp.empty(n, dtype=cp.int64)
        rho = cp.empty(n, dtype=cp.float64)
        flat = cp.empty(n, dtype=cp.int64)
        prim = sc.primary if sc.primary is not None else sc.kerma
        water = sc.water if sc.water is not None else sc.kerma
        wm = -1 if (sc.water is None or self.water_index is None) else int(self.water_index)
        blocks = (n + self.BLOCK - 1) // self.BLOCK
        self.kernel(
            (blocks,), (self.BLOCK,),
            (cp.int64(n), b["pos"], b["dir"], b["ivox"], b["e"], b["wt"], b["nmfp"], b["scat"], b["ie"], b["fe"],
             self.mat, self.rho, self.ln_mu, self.ln_muen, cp.int64(self.n_e),
             *(cp.float64(v) for v in self.grid[:6]), *(cp.int64(v) for v in self.grid[6:]),
             sc.kerma, prim, cp.int32(1 if sc.primary is not None else 0),
             water, cp.int64(wm), self.seed_voxel, cp.int32(1 if self.has_seeds else 0),
             hit, inside, m, rho, flat, deferred))
        return hit, m, rho, flat, inside, deferred

    # ---- its array twin ----------------------------------------------------------------------
    def twin(self, b, sc):
        """The kernel's semantics in array code: plain-voxel step for photons outside seed voxels."""
        from brachymc.geometry.dda import cross_face, distance_to_face, flat_index
        from brachymc.mc import interactions as ia

        xp, T, bk, w = self.xp, self.tables, self.backend, self.world
        n = b["e"].shape[0]
        flat_all = flat_index(b["ivox"], w.geom)
        deferred = (self.seed_voxel[flat_all] != 0) if self.has_seeds else xp.zeros(n, dtype=bool)
        hit = xp.zeros(n, dtype=bool)
        inside = xp.ones(n, dtype=bool)
        m = xp.zeros(n, dtype=xp.int64)
        rho = xp.zeros(n, dtype=xp.float64)
        idx = xp.nonzero(~deferred)[0]
        if int(idx.shape[0]) == 0:
            return hit, m, rho, flat_all, inside, deferred
        pos, d3, iv = b["pos"][:, idx], b["dir"][:, idx], b["ivox"][:, idx]
        flat = flat_all[idx]
        mm = w.mat[flat].astype(xp.int64)
        rr = w.rho[flat]
        t_face, axis = distance_to_face(xp, pos, d3, iv, w.geom)
        ie, fe = b["ie"][idx], b["fe"][idx]
        mu = rr * ia.interp_log(T.ln_mu, mm, ie, fe, xp)
        d_int = xp.where(mu > 0, b["nmfp"][idx] / xp.where(mu > 0, mu, 1.0), np.inf)
        h = d_int < t_face
        d = xp.where(h, d_int, t_face)
        we = b["wt"][idx] * b["e"][idx]
        score = we * ia.interp_log(T.ln_muen, mm, ie, fe, xp) * d
        bk.scatter_add(sc.kerma, flat, score)
        if sc.primary is not None:
            bk.scatter_add(sc.primary, flat, xp.where(b["scat"][idx], 0.0, score))
        if sc.water is not None and self.water_index is not None:
            mw = xp.full_like(mm, int(self.water_index))
            bk.scatter_add(sc.water, flat, we * ia.interp_log(T.ln_muen, mw, ie, fe, xp) * d)
        pos = pos + d3 * d
        new_iv, new_pos, ins = cross_face(xp, pos, d3, iv, axis, w.geom)
        crossing = ~h
        b["pos"][:, idx] = xp.where(crossing, new_pos, pos)
        b["ivox"][:, idx] = xp.where(crossing, new_iv, iv)
        b["nmfp"][idx] = b["nmfp"][idx] - mu * d
        hit[idx], m[idx], rho[idx], inside[idx] = h, mm, rr, ins | ~crossing
        return hit, m, rho, flat_all, inside, deferred
