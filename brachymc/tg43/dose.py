"""TG-43 dose-rate calculation: geometry functions, seeds -> points and seeds -> voxel grids.

AAPM TG-43U1 (Rivard et al., Med Phys 31 (2004) 633), Eqs. (1), (4), (10), (11). Units: cm, degrees,
air-kerma strength S_K in U (1 U = 1 uGy m^2 h^-1 = 1 cGy cm^2 h^-1), Lambda in cGy h^-1 U^-1; dose rates
leave in **cGy/h** (dose rate to water, at the reference time of S_K; no decay).

Formalisms (``formalism=``):

``"2D"`` (TG-43U1 Eq. 1)
    Ddot(r, theta) = S_K Lambda [G_L(r, theta) / G_L(r0, theta0)] g_L(r) F(r, theta).
``"1D-point"`` (TG-43U1 Eq. 10 with X = P)
    Ddot(r) = S_K Lambda [G_P(r) / G_P(r0)] g_P(r) phi_an(r), G_P = 1/r^2. Needs g_P and phi_an.
``"1D-line"`` (TG-43U1 Eq. 11, the 1D variant TG-43U1 recommends)
    Ddot(r) = S_K Lambda [G_L(r, theta0) / G_L(r0, theta0)] g_L(r) phi_an(r). Needs phi_an.

r0 = 1 cm, theta0 = 90 deg. theta is the angle between the seed's direction vector and the vector from the
seed centre to the point. Reversing a seed's direction (theta -> 180 - theta) changes nothing when F is
symmetric, as it is for a table that stops at 90 deg.

Near the source (all formalisms): a point closer than ``min_distance_cm`` to the active line segment (the
segment of length L centred on the seed, along its direction; for L = 0 the seed centre) gets dose rate
**NaN** -- not clipped, not infinite: on the segment G_L is infinite and inside the capsule the water-only
formalism has no meaning. The default :data:`DEFAULT_MIN_DISTANCE_CM` = 0.05 cm is just outside the
0.04 cm outer radius of I-125 seed capsules (6711, 2301). Everywhere else G_L is finite (also for
r < L/2 off the axis, e.g. the tabulated r = 0.1 cm, theta = 90 deg point of a 0.3 cm source), and
g and F follow the dataset's interpolation/extrapolation rules (see :mod:`brachymc.tg43.dataset`).
A NaN contribution makes the summed dose at that point NaN.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from brachymc.tg43.dataset import R0_CM, THETA0_DEG, TG43Dataset, TG43DataError, TG43InputError

__all__ = [
    "FORMALISMS",
    "DEFAULT_MIN_DISTANCE_CM",
    "geometry_factor_line",
    "geometry_factor_point",
    "dose_rate_polar",
    "dose_rate_at_points",
    "dose_rate_on_grid",
    "voxel_centers",
]

FORMALISMS = ("2D", "1D-point", "1D-line")

#: Points closer than this to a seed's active line segment get NaN (cm). See the module docstring.
DEFAULT_MIN_DISTANCE_CM = 0.05

# Number of (seed, point) pairs evaluated per block: bounds the temporaries (~40 arrays of this size).
_BLOCK_PAIRS = 1 << 14
# Seeds per block. Fixed (independent of the number of points), so that a point's dose is summed over the
# seeds in the same order whatever the point chunking: grid and point results agree bit for bit.
_SEEDS_PER_BLOCK = 16


# ---------------------------------------------------------------------------------------------------------
# geometry functions
# ---------------------------------------------------------------------------------------------------------

_RHO_FLOOR = 1e-150  # cm; rho below this is treated as on the axis (see _g_line)


def _g_line(rho: np.ndarray, r2: np.ndarray, length: float) -> np.ndarray:
    """G_L (cm^-2) from the distance rho to the source axis and r^2 (the dose engine's inner loop).

    beta, the angle the segment of length L subtends at the point, is atan2(L rho, r^2 - L^2/4): the vectors
    from the point to the two segment ends have cross product L rho and dot product r^2 - L^2/4. So
    G_L = beta / (L r sin theta) = atan2(L rho, r^2 - L^2/4) / (L rho). For rho -> 0 this tends to the axis
    value 1 / (r^2 - L^2/4) (atan(t)/t -> 1); evaluating it at rho = max(rho, 1e-150) gives that value to
    full precision on the axis (r > L/2) without a branch. L = 0 gives 1/r^2. Points on the segment itself
    (rho = 0, r <= L/2) give meaningless finite numbers here: the callers mask them (NaN).
    """
    if length == 0.0:
        return 1.0 / r2
    lrho = length * np.maximum(rho, _RHO_FLOOR)
    return np.arctan2(lrho, r2 - 0.25 * length * length) / lrho


def geometry_factor_line(r, theta_rad, L) -> np.ndarray:
    """Line-source geometry function G_L(r, theta) of TG-43U1 Eq. (4), in cm^-2.

    G_L = beta / (L r sin theta) off the axis (beta: angle subtended by the segment of length L at the
    point), (r^2 - L^2/4)^-1 on the axis (theta = 0 or pi). ``r`` in cm (> 0), ``theta_rad`` in radians,
    ``L`` in cm (>= 0; L = 0 gives the point-source 1/r^2). Vectorised (r and theta broadcast). Undefined
    points (on the source segment, r <= L/2 on the axis) give NaN, never inf.
    """
    L = float(L)
    if not (math.isfinite(L) and L >= 0):
        raise TG43InputError(f"source length L must be finite and >= 0 (cm), got {L}")
    r = np.asarray(r, dtype=float)
    th = np.asarray(theta_rad, dtype=float)
    s = np.abs(np.sin(th))
    axis = s <= 1e-12                 # theta = 0 or pi up to rounding (sin(pi) = 1.2e-16 in floating point)
    rho = np.where(axis, 0.0, r * s)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g = _g_line(rho, r * r, L)
    on_source = (r <= 0) | (axis & (r <= 0.5 * L))
    return np.where(on_source, np.nan, g)


def geometry_factor_point(r) -> np.ndarray:
    """Point-source geometry function G_P(r) = 1 / r^2 (cm^-2); NaN at r <= 0."""
    r = np.asarray(r, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(r > 0, 1.0 / (r * r), np.nan)


# ---------------------------------------------------------------------------------------------------------
# core evaluation in the seed frame
# ---------------------------------------------------------------------------------------------------------

def _check_formalism(dataset: TG43Dataset, formalism: str) -> str:
    if not isinstance(dataset, TG43Dataset):
        raise TG43InputError(f"dataset must be a TG43Dataset, got {type(dataset).__name__}")
    if formalism not in FORMALISMS:
        raise TG43InputError(f"unknown formalism {formalism!r}; use one of {', '.join(FORMALISMS)}")
    if formalism == "1D-point" and not dataset.has_gP:
        raise TG43DataError(f"formalism '1D-point' needs g_P, which dataset {dataset.name!r} does not have")
    if formalism in ("1D-point", "1D-line") and not dataset.has_phi_an:
        raise TG43DataError(f"formalism {formalism!r} needs phi_an, which dataset {dataset.name!r} does not have")
    return formalism


def _check_min_distance(min_distance_cm) -> float:
    try:
        d = float(min_distance_cm)
    except (TypeError, ValueError):
        d = float("nan")
    if not (math.isfinite(d) and d > 0):
        raise TG43InputError(f"min_distance_cm must be a finite distance > 0 (cm), got {min_distance_cm}")
    return d


def _reference_g(dataset: TG43Dataset, formalism: str) -> float:
    """G_X(r0, theta0), computed by the same code path as the points' G (so the ratio is exactly 1 there)."""
    if formalism == "1D-point":
        return 1.0 / (R0_CM * R0_CM)
    one = np.array([R0_CM])  # rho = r0 sin(theta0) = r0
    return float(_g_line(one, one * one, dataset.length_cm)[0])


def _core(dataset: TG43Dataset, formalism: str, r: np.ndarray, r2: np.ndarray, rho: np.ndarray | None,
          theta_rad: np.ndarray | None, g0: float, scale) -> np.ndarray:
    """``scale * [G_X(r, theta) / G_X(r0, theta0)] * g_X(r) * (F or phi_an)``.

    ``scale`` is S_K * Lambda (per seed), so the result is the dose rate in cGy/h; ``theta_rad`` is the
    polar angle already folded into the F table's range; ``rho`` the distance to the seed axis (2D only).
    The factor order makes Ddot(r0, theta0) = S_K * Lambda exact (G/G0 = g = F = 1 there).
    """
    if formalism == "2D":
        geo = _g_line(rho, r2, dataset.length_cm) / g0
        radial = dataset.g_L(r)
        aniso = dataset._F_rad(r, theta_rad)
    elif formalism == "1D-line":
        geo = _g_line(r, r2, dataset.length_cm) / g0
        radial = dataset.g_L(r)
        aniso = dataset.phi_an_at(r)
    else:  # 1D-point: G_P(r) / G_P(r0) = r0^2 / r^2
        geo = (R0_CM * R0_CM) / r2
        radial = dataset.g_P(r)
        aniso = dataset.phi_an_at(r)
    return geo * radial * aniso * scale


def dose_rate_polar(dataset: TG43Dataset, r_cm, theta_deg=THETA0_DEG, sk_U=1.0, formalism: str = "2D", *,
                    min_distance_cm: float = DEFAULT_MIN_DISTANCE_CM) -> np.ndarray:
    """Dose rate (cGy/h) of one seed at polar coordinates (r, theta) of its own frame.

    ``r_cm`` (cm) and ``theta_deg`` (deg, 0..180, from the seed direction) broadcast together; ``sk_U`` is
    the air-kerma strength (U). The 1D formalisms ignore theta (except for the near-source test: points
    closer than ``min_distance_cm`` to the active segment give NaN). Computes
    S_K * Lambda * (G_X(r, theta) / G_X(r0, theta0)) * g_X(r) * F(r, theta) (or phi_an(r)), so that
    Ddot(1 cm, 90 deg) = S_K * Lambda exactly; at tabulated (r, theta) F is the table value exactly.
    """
    _check_formalism(dataset, formalism)
    md = _check_min_distance(min_distance_cm)
    r = np.asarray(r_cm, dtype=float)
    th = np.asarray(theta_deg, dtype=float)
    if not (np.all(r >= 0) and np.all((th >= 0) & (th <= 180))):
        raise TG43InputError("dose_rate_polar: r must be >= 0 cm and theta within [0, 180] deg (no NaN)")
    sk = float(sk_U)
    if not (math.isfinite(sk) and sk >= 0):
        raise TG43InputError(f"air-kerma strength must be finite and >= 0 (U), got {sk_U}")
    r, th = np.broadcast_arrays(r, th)
    t = np.radians(th)
    # exact values at 0, 90 and 180 deg, so that (1 cm, 90 deg) reproduces S_K Lambda bit for bit
    rho = np.where(th == 90.0, r, np.where((th == 0.0) | (th == 180.0), 0.0, r * np.sin(t)))
    z = np.where(th == 90.0, 0.0, np.where(th == 0.0, r, np.where(th == 180.0, -r, r * np.cos(t))))
    over = np.maximum(np.abs(z) - 0.5 * dataset.length_cm, 0.0)
    near = (rho * rho + over * over) < md * md
    theta_tab = np.radians(np.minimum(th, 180.0 - th)) if dataset.F_mirrored else t
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = _core(dataset, formalism, r, r * r, rho, theta_tab, _reference_g(dataset, formalism),
                    sk * dataset.dose_rate_constant)
    return np.where(near, np.nan, out)


# ---------------------------------------------------------------------------------------------------------
# seeds -> points
# ---------------------------------------------------------------------------------------------------------

def _seed_arrays(seeds_positions_cm, seeds_directions, sk_U) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.asarray(seeds_positions_cm, dtype=float)
    if pos.ndim == 1:
        pos = pos[None, :]
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise TG43InputError(f"seeds_positions_cm must have shape (n, 3), got {np.shape(seeds_positions_cm)}")
    n = pos.shape[0]
    if not np.all(np.isfinite(pos)):
        raise TG43InputError("seeds_positions_cm contains non-finite values")
    if seeds_directions is None:
        raise TG43InputError("seeds_directions is required: one 3-vector per seed (the seed's long axis)")
    u = np.asarray(seeds_directions, dtype=float)
    if u.ndim == 1:
        u = np.broadcast_to(u, (n, 3)) if u.shape == (3,) else u
    if u.shape != (n, 3):
        raise TG43InputError(
            f"seeds_directions must have shape ({n}, 3) (one per seed), got {np.shape(seeds_directions)}")
    if not np.all(np.isfinite(u)):
        raise TG43InputError("seeds_directions contains non-finite values")
    norm = np.sqrt(np.sum(u * u, axis=1))
    bad = np.flatnonzero(~(norm > 0))
    if bad.size:
        raise TG43InputError(f"seed direction vector(s) of zero length at index {bad[:10].tolist()}: "
                             "a seed needs a direction (its long axis)")
    u = u / norm[:, None]
    sk = np.asarray(sk_U, dtype=float)
    if sk.ndim == 0:
        sk = np.full(n, float(sk))
    if sk.shape != (n,):
        raise TG43InputError(f"sk_U must be a scalar or have shape ({n},) (one per seed), got {np.shape(sk_U)}")
    if not np.all(np.isfinite(sk)) or np.any(sk < 0):
        raise TG43InputError("sk_U (air-kerma strength, U) must be finite and >= 0")
    return np.ascontiguousarray(pos), np.ascontiguousarray(u), sk


def _accumulate(dataset: TG43Dataset, formalism: str, pos: np.ndarray, u: np.ndarray, sk: np.ndarray,
                pts: np.ndarray, md: float, out: np.ndarray) -> None:
    """out[j] = sum over seeds i of the dose rate of seed i at pts[j] (cGy/h); NaN near any seed.

    Works on blocks of at most ``_SEEDS_PER_BLOCK`` seeds x ``chunk`` points (about ``_BLOCK_PAIRS``
    pairs, so the ~40 temporaries stay in cache); seeds are summed block by block in a fixed order.
    """
    m = pts.shape[0]
    n = pos.shape[0]
    if m == 0 or n == 0:
        return
    g0 = _reference_g(dataset, formalism)
    h = 0.5 * dataset.length_cm
    md2 = md * md
    reach2 = (h + md) ** 2          # no point with r^2 >= reach2 can be within md of the segment
    mirrored = dataset.F_mirrored
    scale = (sk * dataset.dose_rate_constant)[:, None]   # S_K * Lambda per seed (cGy/h at r0, theta0)
    chunk = max(256, _BLOCK_PAIRS // min(n, _SEEDS_PER_BLOCK))
    px_all, py_all, pz_all = pts[:, 0], pts[:, 1], pts[:, 2]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for a in range(0, m, chunk):
            b = min(m, a + chunk)
            px, py, pz = px_all[a:b], py_all[a:b], pz_all[a:b]
            acc = np.zeros(b - a)
            bad = None
            for s in range(0, n, _SEEDS_PER_BLOCK):
                e = min(n, s + _SEEDS_PER_BLOCK)
                dx = px[None, :] - pos[s:e, 0:1]
                dy = py[None, :] - pos[s:e, 1:2]
                dz = pz[None, :] - pos[s:e, 2:3]
                z = dx * u[s:e, 0:1] + dy * u[s:e, 1:2] + dz * u[s:e, 2:3]
                r2 = dx * dx + dy * dy + dz * dz
                rho2 = np.maximum(r2 - z * z, 0.0)
                if r2.min() < reach2:      # some pair may be within md of a segment: test them
                    over = np.maximum(np.abs(z) - h, 0.0)
                    near = ((rho2 + over * over) < md2).any(axis=0)
                    bad = near if bad is None else (bad | near)
                r = np.sqrt(r2)
                rho = theta = None
                if formalism == "2D":
                    rho = np.sqrt(rho2)
                    theta = np.arctan2(rho, np.abs(z) if mirrored else z)
                acc += np.sum(_core(dataset, formalism, r, r2, rho, theta, g0, scale[s:e]), axis=0)
            if bad is not None:
                acc[bad] = np.nan
            out[a:b] = acc


def dose_rate_at_points(dataset: TG43Dataset, seeds_positions_cm, seeds_directions, sk_U, points_cm,
                        formalism: str = "2D", *, min_distance_cm: float = DEFAULT_MIN_DISTANCE_CM) -> np.ndarray:
    """Total TG-43 dose rate (cGy/h) of n seeds at m points.

    Parameters
    ----------
    dataset : TG43Dataset
    seeds_positions_cm : (n, 3)
        Seed centres (x, y, z), cm.
    seeds_directions : (n, 3)
        Seed long-axis directions; normalised here (a zero vector raises :class:`TG43InputError`).
        A single (3,) vector is used for all seeds.
    sk_U : scalar or (n,)
        Air-kerma strengths, U (cGy cm^2 h^-1).
    points_cm : (m, 3), or any (..., 3)
        Calculation points, cm. The result has shape (m,) (or (...)).
    formalism : "2D" | "1D-point" | "1D-line"
        See the module docstring.
    min_distance_cm : float
        Points closer than this to a seed's active segment get NaN (default 0.05 cm).

    Seeds are summed in a fixed order in blocks of (seed, point) pairs, so memory stays bounded
    (about 40 temporaries of 2^14 doubles) whatever n and m.
    """
    _check_formalism(dataset, formalism)
    md = _check_min_distance(min_distance_cm)
    pos, u, sk = _seed_arrays(seeds_positions_cm, seeds_directions, sk_U)
    pts = np.asarray(points_cm, dtype=float)
    if pts.ndim < 1 or pts.shape[-1] != 3:
        raise TG43InputError(f"points_cm must have shape (m, 3), got {np.shape(points_cm)}")
    if not np.all(np.isfinite(pts)):
        raise TG43InputError("points_cm contains non-finite values")
    shape = pts.shape[:-1]
    flat = np.ascontiguousarray(pts.reshape(-1, 3))
    out = np.zeros(flat.shape[0])
    _accumulate(dataset, formalism, pos, u, sk, flat, md, out)
    return out.reshape(shape)


# ---------------------------------------------------------------------------------------------------------
# seeds -> voxel grid
# ---------------------------------------------------------------------------------------------------------

def _triple(name: str, v, positive: bool) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    if a.ndim == 0:
        a = np.full(3, float(a))
    if a.shape != (3,) or not np.all(np.isfinite(a)) or (positive and np.any(a <= 0)):
        raise TG43InputError(f"{name} must be {'a positive length or ' if positive else ''}three finite "
                             f"{'positive ' if positive else ''}numbers (x, y, z order, cm), got {v!r}")
    return a


def voxel_centers(grid_origin_cm, spacing_cm, shape_zyx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates (cm) along x, y and z: ``origin[k] + (i + 0.5) * spacing[k]``.

    ``grid_origin_cm`` is the (x, y, z) low corner of voxel (0, 0, 0), ``spacing_cm`` (dx, dy, dz) or one
    number, ``shape_zyx`` = (nz, ny, nx) -- the convention of :mod:`brachymc.geometry.phantom`.
    """
    o = _triple("grid_origin_cm", grid_origin_cm, positive=False)
    d = _triple("spacing_cm", spacing_cm, positive=True)
    try:
        nz, ny, nx = (int(n) for n in shape_zyx)
    except (TypeError, ValueError):
        raise TG43InputError(f"shape_zyx must be three integers (nz, ny, nx), got {shape_zyx!r}") from None
    if min(nz, ny, nx) < 1:
        raise TG43InputError(f"shape_zyx must be three positive integers (nz, ny, nx), got {shape_zyx!r}")
    x = o[0] + (np.arange(nx) + 0.5) * d[0]
    y = o[1] + (np.arange(ny) + 0.5) * d[1]
    z = o[2] + (np.arange(nz) + 0.5) * d[2]
    return x, y, z


def dose_rate_on_grid(dataset: TG43Dataset, seeds_positions_cm, seeds_directions, sk_U, grid_origin_cm,
                      spacing_cm, shape_zyx: Sequence[int], formalism: str = "2D", *,
                      min_distance_cm: float = DEFAULT_MIN_DISTANCE_CM) -> np.ndarray:
    """TG-43 dose rate (cGy/h) at the voxel centres of a regular grid, array (nz, ny, nx) indexed [iz, iy, ix].

    Voxel (ix, iy, iz) has its centre at ``origin + ((ix, iy, iz) + 0.5) * spacing`` (see
    :func:`voxel_centers`); ``grid_origin_cm`` = (x, y, z) of the low corner of voxel 0, ``spacing_cm`` =
    (dx, dy, dz) or one number. Point doses, not voxel averages: a voxel holding a seed gets NaN when its
    centre is within ``min_distance_cm`` of the active segment, and near a seed the centre value differs
    from the voxel mean. Other arguments as in :func:`dose_rate_at_points`. Equal, value for value, to
    :func:`dose_rate_at_points` at the voxel centres. The grid is processed a few z-slices at a time.
    """
    _check_formalism(dataset, formalism)
    md = _check_min_distance(min_distance_cm)
    pos, u, sk = _seed_arrays(seeds_positions_cm, seeds_directions, sk_U)
    x, y, z = voxel_centers(grid_origin_cm, spacing_cm, shape_zyx)
    nz, ny, nx = z.size, y.size, x.size
    out = np.zeros((nz, ny, nx))
    yy, xx = np.meshgrid(y, x, indexing="ij")
    per_slice = ny * nx
    slab = max(1, (1 << 20) // per_slice)
    flat_out = out.reshape(nz, per_slice)
    for k0 in range(0, nz, slab):
        k1 = min(nz, k0 + slab)
        pts = np.empty((k1 - k0, ny, nx, 3))
        pts[..., 0] = xx
        pts[..., 1] = yy
        pts[..., 2] = z[k0:k1, None, None]
        buf = np.zeros((k1 - k0) * per_slice)
        _accumulate(dataset, formalism, pos, u, sk, pts.reshape(-1, 3), md, buf)
        flat_out[k0:k1] = buf.reshape(k1 - k0, per_slice)
    return out
