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

It is used only when ``TransportSettings(fused=True)``, the backend is CuPy and the world is a
plain :class:`~brachymc.geometry.world.VoxelWorld` without dose-to-water scoring; everything else
(interactions, seeds) stays in array code. ``fused`` is **off by default**: the kernel has been
compiled (nvcc, sm_90) but not yet run on a GPU, and ``tests/test_gpu.py`` compares it with the
array twin on the first GPU run (identical random-number use, so doses agree to rounding).
"""

from __future__ import annotations

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
    bool* hit_out, bool* inside_out, long long* m_out, double* rho_out, long long* flat_out)
{
    const long long k = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (k >= n) return;
    const double px = pos[k], py = pos[n + k], pz = pos[2 * n + k];
    const double dx = dir[k], dy = dir[n + k], dz = dir[2 * n + k];
    long long ix = ivox[k], iy = ivox[n + k], iz = ivox[2 * n + k];
    const long long flat = (iz * ny + iy) * nx + ix;
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
    """The fused step for one (VoxelWorld, tables) pair on the CuPy backend."""

    BLOCK = 256

    def __init__(self, world, tables, backend):
        import cupy as cp

        self.cp = cp
        # no FMA contraction: the array twin rounds after every operation (one CuPy kernel each), so
        # the fused step reproduces it to the last bit and both follow the same histories
        self.kernel = cp.RawKernel(VOXEL_STEP_SOURCE, "voxel_step", options=("--fmad=false",))
        self.world = world
        g = world.geom
        self.grid = (float(g.origin[0]), float(g.origin[1]), float(g.origin[2]),
                     float(g.spacing[0]), float(g.spacing[1]), float(g.spacing[2]),
                     int(g.nx), int(g.ny), int(g.nz))
        self.mat = cp.ascontiguousarray(world.mat.astype(cp.int32))
        self.rho = cp.ascontiguousarray(world.rho.astype(cp.float64))
        self.ln_mu = cp.ascontiguousarray(tables.ln_mu, dtype=cp.float64)
        self.ln_muen = cp.ascontiguousarray(tables.ln_muen, dtype=cp.float64)
        self.n_e = int(self.ln_mu.shape[1])

    def __call__(self, b, sc):
        """Advance bank ``b`` in place; returns (hit, m, rho, flat, inside)."""
        cp = self.cp
        n = int(b["e"].shape[0])
        for key in ("pos", "dir", "ivox", "e", "wt", "nmfp", "scat", "ie", "fe"):
            b[key] = cp.ascontiguousarray(b[key])
        b["ivox"] = b["ivox"].astype(cp.int64, copy=False)
        hit = cp.empty(n, dtype=cp.bool_)
        inside = cp.empty(n, dtype=cp.bool_)
        m = cp.empty(n, dtype=cp.int64)
        rho = cp.empty(n, dtype=cp.float64)
        flat = cp.empty(n, dtype=cp.int64)
        prim = sc.primary if sc.primary is not None else sc.kerma
        grid_blocks = (n + self.BLOCK - 1) // self.BLOCK
        self.kernel(
            (grid_blocks,), (self.BLOCK,),
            (cp.int64(n), b["pos"], b["dir"], b["ivox"], b["e"], b["wt"], b["nmfp"], b["scat"], b["ie"], b["fe"],
             self.mat, self.rho, self.ln_mu, self.ln_muen, cp.int64(self.n_e),
             *(cp.float64(v) for v in self.grid[:6]), *(cp.int64(v) for v in self.grid[6:]),
             sc.kerma, prim, cp.int32(1 if sc.primary is not None else 0),
             hit, inside, m, rho, flat))
        return hit, m, rho, flat, inside
