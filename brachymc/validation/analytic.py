"""Analytic reference doses for validating the transport.

The primary (unscattered) dose of an isotropic monoenergetic point source is

    D_p(r) = S E (mu_en/rho)(medium at r) exp(-int_0^r mu dl) / (4 pi r^2)

with the attenuation integral taken exactly through the voxel phantom: every plane crossing
of the ray is found (Siddon's method, an implementation independent of the transport's DDA),
and mu is summed over the resulting chords. Voxel averages use Gauss-Legendre points.
"""

from __future__ import annotations

import numpy as np

from brachymc.constants import KEV_PER_G_TO_GY
from brachymc.geometry.phantom import VoxelPhantom
from brachymc.mc.physics import PhysicsTables


def optical_depth(phantom: VoxelPhantom, mu_per_cm_of_material: np.ndarray, start: np.ndarray,
                  points: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Exact int mu dl (dimensionless) from ``start`` (3,) to each of ``points`` (n, 3), cm.

    ``mu_per_cm_of_material[m]`` is mu/rho of material m (cm2/g); voxel densities multiply it.
    """
    g = phantom.geometry
    start = np.asarray(start, float)
    points = np.atleast_2d(np.asarray(points, float))
    planes = [g.edges(a) for a in range(3)]
    mat = phantom.material_index.reshape(-1)
    rho = phantom.density.reshape(-1).astype(np.float64)
    out = np.empty(len(points))
    for lo in range(0, len(points), chunk):
        p = points[lo:lo + chunk]
        d = p - start[None, :]
        ts = [np.zeros((len(p), 1)), np.ones((len(p), 1))]
        for a in range(3):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (planes[a][None, :] - start[a]) / d[:, a:a + 1]
            t = np.where(np.isfinite(t) & (t > 0) & (t < 1), t, 1.0)
            ts.append(t)
        t = np.sort(np.concatenate(ts, axis=1), axis=1)
        mid = 0.5 * (t[:, 1:] + t[:, :-1])
        seg = np.diff(t, axis=1) * np.linalg.norm(d, axis=1)[:, None]
        xyz = start[None, None, :] + mid[..., None] * d[:, None, :]
        iv = np.floor((xyz - np.array(g.origin)) / np.array(g.spacing)).astype(np.int64)
        iv = np.clip(iv, 0, np.array([g.nx, g.ny, g.nz]) - 1)
        flat = (iv[..., 2] * g.ny + iv[..., 1]) * g.nx + iv[..., 0]
        out[lo:lo + chunk] = np.sum(seg * mu_per_cm_of_material[mat[flat]] * rho[flat], axis=1)
    return out


def primary_dose_point_source(phantom: VoxelPhantom, tables: PhysicsTables, source: np.ndarray,
                              energy_kev: float, points: np.ndarray) -> np.ndarray:
    """Primary dose per emitted photon (Gy/history) at ``points`` (n, 3) cm."""
    names = [m.name for m in phantom.materials]
    mu = np.array([float(tables.interpolate("total", n, energy_kev)) for n in names])
    muen = np.array([float(tables.interpolate("muen", n, energy_kev)) for n in names])
    points = np.atleast_2d(np.asarray(points, float))
    tau = optical_depth(phantom, mu, np.asarray(source, float), points)
    iv = phantom.geometry.voxel_of(points)
    m = phantom.material_index[iv[:, 2], iv[:, 1], iv[:, 0]]
    r2 = np.sum((points - np.asarray(source, float)[None, :]) ** 2, axis=1)
    return energy_kev * muen[m] * np.exp(-tau) / (4 * np.pi * r2) * KEV_PER_G_TO_GY


def voxel_averaged_primary_dose(phantom: VoxelPhantom, tables: PhysicsTables, source: np.ndarray,
                                energy_kev: float, voxels: np.ndarray, order: int = 3) -> np.ndarray:
    """Primary dose averaged over whole voxels ``voxels`` (k, 3) = (ix, iy, iz), Gy/history.

    Gauss-Legendre quadrature of ``order`` points per axis; exact in the voxel's medium as long
    as the source is outside the voxel.
    """
    g = phantom.geometry
    x, w = np.polynomial.legendre.leggauss(order)
    x, w = 0.5 * (x + 1.0), 0.5 * w
    off = np.stack(np.meshgrid(x, x, x, indexing="ij"), axis=-1).reshape(-1, 3)
    wt = np.prod(np.stack(np.meshgrid(w, w, w, indexing="ij"), axis=-1).reshape(-1, 3), axis=1)
    voxels = np.atleast_2d(voxels)
    corners = np.array(g.origin)[None, :] + voxels * np.array(g.spacing)[None, :]
    pts = corners[:, None, :] + off[None, :, :] * np.array(g.spacing)[None, None, :]
    d = primary_dose_point_source(phantom, tables, source, energy_kev, pts.reshape(-1, 3))
    return (d.reshape(len(voxels), -1) * wt[None, :]).sum(axis=1)
