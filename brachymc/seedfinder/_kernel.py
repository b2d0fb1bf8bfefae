"""Compiled (numba) evaluation of the blurred-segment image model and its derivatives.

The same closed form as :func:`brachymc.seedfinder.appearance.seeds_image` (the NumPy reference,
kept for tests and small calls), evaluated point by point so that a seed's terms are computed
only where they matter: points more than ``RHO2_MAX`` whitened units from its axis, or beyond
``TAU_MAX`` past its ends, get exactly zero (there the Gaussian factor is below 1e-7 of its
peak, < 0.01 HU for any seed). A fit of k seeds to n voxels thus costs ~ n x (seeds near each
voxel) rather than n x k, and no (k, m, n, 3) temporaries are built.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

RHO2_MAX = 36.0
TAU_MAX = 6.0
_K2 = math.sqrt(2.0 / math.pi)
_ISQ2 = 1.0 / math.sqrt(2.0)


@njit(cache=True, nogil=True)
def seed_terms(points, centers, axes, amps, lengths, sigma, z_offsets, grad):
    """Per seed i and point p, averaged over the slice-profile offsets: f (k, n) and, when
    ``grad``, df/dcentre (k, n, 3), df/dw (k, n, 3) for the whitened axis w = axis / sigma, and
    df/dlength (k, n). Axes need not be unit vectors."""
    k = centers.shape[0]
    n = points.shape[0]
    m = z_offsets.shape[0]
    sx, sy, sz = sigma[0], sigma[1], sigma[2]
    f = np.zeros((k, n))
    if grad:
        dc = np.zeros((k, n, 3))
        dw = np.zeros((k, n, 3))
        dl = np.zeros((k, n))
    else:
        dc = np.zeros((0, 0, 3))
        dw = np.zeros((0, 0, 3))
        dl = np.zeros((0, 0))
    inv_m = 1.0 / m
    for i in range(k):
        w0 = axes[i, 0] / sx
        w1 = axes[i, 1] / sy
        w2 = axes[i, 2] / sz
        a = math.sqrt(w0 * w0 + w1 * w1 + w2 * w2)
        v0, v1, v2 = w0 / a, w1 / a, w2 / a
        half = 0.5 * a * lengths[i]
        g0 = amps[i] / (4.0 * math.pi * sx * sy * sz * a)
        for p in range(n):
            d0 = (points[p, 0] - centers[i, 0]) / sx
            d1 = (points[p, 1] - centers[i, 1]) / sy
            # quick rejection on the in-plane distance (no slice offset changes it)
            for j in range(m):
                d2 = (points[p, 2] + z_offsets[j] - centers[i, 2]) / sz
                tau = d0 * v0 + d1 * v1 + d2 * v2
                if tau > half + TAU_MAX or tau < -half - TAU_MAX:
                    continue
                p0 = d0 - tau * v0
                p1 = d1 - tau * v1
                p2 = d2 - tau * v2
                rho2 = p0 * p0 + p1 * p1 + p2 * p2
                if rho2 > RHO2_MAX:
                    continue
                g = g0 * math.exp(-0.5 * rho2)
                tp = tau + half
                tm = tau - half
                D = math.erf(tp * _ISQ2) - math.erf(tm * _ISQ2)
                fv = g * D
                f[i, p] += fv * inv_m
                if grad:
                    ep = math.exp(-0.5 * tp * tp)
                    em = math.exp(-0.5 * tm * tm)
                    gdt = g * _K2 * (ep - em)
                    gdh = g * _K2 * (ep + em)
                    # d f / d d (whitened offset), then d / d centre = - that / sigma
                    dc[i, p, 0] += (fv * p0 - gdt * v0) / sx * inv_m
                    dc[i, p, 1] += (fv * p1 - gdt * v1) / sy * inv_m
                    dc[i, p, 2] += (fv * p2 - gdt * v2) / sz * inv_m
                    ft = fv * tau / a
                    ga = gdt / a
                    hl = gdh * 0.5 * lengths[i]
                    fa = fv / a
                    dw[i, p, 0] += (ft * p0 - fa * v0 + ga * p0 + hl * v0) * inv_m
                    dw[i, p, 1] += (ft * p1 - fa * v1 + ga * p1 + hl * v1) * inv_m
                    dw[i, p, 2] += (ft * p2 - fa * v2 + ga * p2 + hl * v2) * inv_m
                    dl[i, p] += gdh * 0.5 * a * inv_m
    return f, dc, dw, dl


def model_terms(points, centers, axes, amps, lengths, sigma, z_offsets, grad: bool):
    """Typed wrapper of :func:`seed_terms` (arrays made contiguous float64)."""
    c = np.ascontiguousarray(np.atleast_2d(centers), dtype=np.float64)
    u = np.ascontiguousarray(np.atleast_2d(axes), dtype=np.float64)
    k = c.shape[0]
    a = np.ascontiguousarray(np.broadcast_to(np.asarray(amps, np.float64), (k,)))
    L = np.ascontiguousarray(np.broadcast_to(np.asarray(lengths, np.float64), (k,)))
    return seed_terms(np.ascontiguousarray(points, dtype=np.float64), c, u, a, L,
                      np.ascontiguousarray(sigma, dtype=np.float64),
                      np.ascontiguousarray(np.atleast_1d(z_offsets), dtype=np.float64), grad)


def fill_directions(through_slices: bool) -> np.ndarray:
    """Line directions (in voxel steps, z y x) for :func:`directional_fill`: 8 in-plane directions
    22.5 deg apart, and with ``through_slices`` the 9 of the 26-neighbourhood that leave the plane."""
    dirs = [(0.0, np.sin(np.pi * d / 8), np.cos(np.pi * d / 8)) for d in range(8)]
    if through_slices:
        dirs += [(1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (1.0, -1.0, 0.0), (1.0, 0.0, 1.0), (1.0, 0.0, -1.0),
                 (1.0, 1.0, 1.0), (1.0, 1.0, -1.0), (1.0, -1.0, 1.0), (1.0, -1.0, -1.0)]
    d = np.array(dirs, float)
    d /= np.abs(d).max(axis=1, keepdims=True)
    return np.ascontiguousarray(d)


@njit(cache=True, nogil=True)
def directional_fill(img, hole, dirs, noise):
    """Fill the ``hole`` voxels of a box (nz, ny, nx) from the voxels around them, along the line
    through each voxel whose two ends agree (see
    :func:`brachymc.seedfinder.segment.inpainted_background`).

    For each hole voxel and direction (``dirs``, voxel steps z y x) the line is followed both ways
    (half-voxel steps) to the first voxels outside the hole; the mean of the first two there is
    that end's value, and the direction's estimate the linear interpolation between the ends. Of
    the directions whose ends differ by no more than 6 noise more than the best-agreeing one's,
    the highest estimate is taken: along a bone edge or a cortical shell the ends agree, across it
    they do not; where lines both along and across a thin bright plate agree (a seed in an
    endplate), the plate is what the lines across cannot see. Voxels with no line that leaves the
    hole inside the box at both ends are NaN. Returns the filled box and, per hole voxel, the
    spread of that estimate: how far the ends of the best-agreeing line differ (HU; 0 outside the
    hole, NaN where no line leaves it): ~ the noise in smooth anatomy, hundreds of HU in bone whose
    texture no line follows.
    """
    nz, ny, nx = img.shape
    out = img.copy()
    spread = np.zeros_like(img)
    nd = dirs.shape[0]
    vals = np.empty(nd)
    dels = np.empty(nd)
    ok = np.zeros(nd, np.bool_)
    s = 3.0 * max(noise, 1.0)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if not hole[z, y, x]:
                    continue
                for d in range(nd):
                    good = True
                    e0 = 0.0
                    e1 = 0.0
                    t0 = 0.0
                    t1 = 0.0
                    for side in range(2):
                        sg = 1.0 if side == 0 else -1.0
                        t = 0.5
                        found = 0
                        acc = 0.0
                        first_t = 0.0
                        lz, ly, lx = -1, -1, -1
                        while True:
                            iz = int(math.floor(z + 0.5 + sg * t * dirs[d, 0]))
                            iy = int(math.floor(y + 0.5 + sg * t * dirs[d, 1]))
                            ix = int(math.floor(x + 0.5 + sg * t * dirs[d, 2]))
                            if iz < 0 or iz >= nz or iy < 0 or iy >= ny or ix < 0 or ix >= nx:
                                break
                            if iz != lz or iy != ly or ix != lx:
                                if not hole[iz, iy, ix]:
                                    if found == 0:
                                        first_t = t
                                    acc += img[iz, iy, ix]
                                    found += 1
                                    if found == 2:
                                        break
                                elif found > 0:
                                    break
                            lz, ly, lx = iz, iy, ix
                            t += 0.5
                        if found == 0:
                            good = False
                            break
                        if side == 0:
                            e0, t0 = acc / found, first_t
                        else:
                            e1, t1 = acc / found, first_t
                    ok[d] = good
                    if good:
                        vals[d] = (e0 * t1 + e1 * t0) / (t0 + t1)
                        dels[d] = abs(e0 - e1)
                dmin = 1e300
                for d in range(nd):
                    if ok[d] and dels[d] < dmin:
                        dmin = dels[d]
                if dmin == 1e300:
                    out[z, y, x] = np.nan
                    spread[z, y, x] = np.nan
                    continue
                # of the lines whose ends agree (within 2 x 3 noise of the best), the brightest: where
                # several do, the voxel lies in a thin bright plate (a cortex or an endplate seen
                # edge-on) that the lines across it cannot see
                vmax = -1e300
                for d in range(nd):
                    if ok[d] and dels[d] <= dmin + 2.0 * s and vals[d] > vmax:
                        vmax = vals[d]
                out[z, y, x] = vmax
                spread[z, y, x] = dmin
    return out, spread
