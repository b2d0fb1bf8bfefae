"""Primary (unscattered) kerma around a seed by deterministic ray integration.

An independent check of the transport through a seed capsule: for each detector point P, the
primary collision kerma per emitted photon is

    K_p(P) = sum_i  p_i E_i (mu_en/rho)_med(E_i) < exp(-sum_m mu_m(E_i) l_m) / (4 pi d^2) >

averaged over decay positions from the model's active-region sampler (p_i: line probabilities,
d: distance from the decay to P, l_m: path length in medium m along the straight line). The path
lengths inside the seed are found by ray marching with the model's point classification
(:meth:`SeedModel.locate`): midpoints of ``n_steps`` equal steps up to where the ray leaves the
seed's bounding cylinder. This shares no code with the Monte Carlo tracer
(:meth:`SeedModel.distance_to_surface`, the transport's step loop, sampling of interactions), so
agreement of the two is a check of the capsule filtration, self-absorption by the marker, oblique
paths through the wall and the track-length scoring.

Units: cm, keV; K_p in keV/g per emitted photon. Cross sections are the run's interaction tables
(mu/rho interpolated log-log; the tables themselves are checked against NIST elsewhere).
"""

from __future__ import annotations

import numpy as np

from brachymc.geometry.seed import SeedModel
from brachymc.sources.spectrum import Spectrum


def _exit_distance(x0, y0, z0, u, rs, zlo, zhi):
    """Distance along u from points inside the cylinder r <= rs, zlo <= z <= zhi to its surface (cm)."""
    ux, uy, uz = u[:, 0], u[:, 1], u[:, 2]
    a = ux * ux + uy * uy
    b = x0 * ux + y0 * uy
    c = x0 * x0 + y0 * y0 - rs * rs
    with np.errstate(divide="ignore", invalid="ignore"):
        t_r = np.where(a > 0, (-b + np.sqrt(np.maximum(b * b - a * c, 0.0))) / np.where(a > 0, a, 1.0), np.inf)
        t_z = np.where(uz > 0, (zhi - z0) / np.where(uz > 0, uz, 1.0),
                       np.where(uz < 0, (zlo - z0) / np.where(uz < 0, uz, -1.0), np.inf))
    return np.minimum(t_r, t_z)


def primary_kerma(model: SeedModel, points_cm, spectrum: Spectrum, mu_seed: dict[str, np.ndarray],
                  mu_medium: np.ndarray, muen_medium: np.ndarray, n_decays: int = 2000, n_steps: int = 800,
                  seed=0, per_decay: bool = False) -> np.ndarray:
    """Primary collision kerma (keV/g per emitted photon) at ``points_cm`` (k, 3), seed frame.

    Returns shape (k,), or (k, n_decays) with ``per_decay`` (the mean over axis 1 is the kerma; the
    spread gives the sampling error of the decay positions).

    Args:
        model: the seed model (axis along z, centred at the origin).
        points_cm: detector points outside the seed.
        spectrum: the emitted line spectrum.
        mu_seed: material name -> linear attenuation coefficients (1/cm) at the spectrum's lines.
        mu_medium, muen_medium: of the surrounding medium at the lines (1/cm and cm2/g).
        n_decays: decay positions drawn from the active-region sampler.
        seed: an int or a ``numpy.random.SeedSequence`` for the decay positions.
        n_steps: ray-marching midpoints inside the seed's bounding cylinder.
    """
    e = np.asarray(spectrum.energies_kev, float)
    p = np.asarray(spectrum.yields, float)
    p = p / p.sum()
    z0, x0, y0 = (np.asarray(a, float) for a in model.sample_active(np, np.random.default_rng(seed), n_decays))
    zlo, zhi, rs = model.bounds()
    mats = [s.material for s in model.solids]
    mu_by_solid = np.array([mu_seed[m] for m in mats] + [np.zeros_like(e)])      # (n_solids + 1, n_lines)
    origin = np.stack([x0, y0, z0], axis=1)
    frac = (np.arange(n_steps) + 0.5) / n_steps
    points = np.asarray(points_cm, float)
    n_dec = origin.shape[0]
    out = np.empty((len(points), n_dec))
    # decays in chunks of ~64 k march points: the classification's masks then stay in the cache
    chunk = max(1, _MARCH_POINTS_PER_CHUNK // n_steps)
    for a in range(0, n_dec, chunk):
        out[:, a:a + chunk] = _march_chunk(model, points, origin[a:a + chunk], frac, mu_by_solid, mu_medium,
                                           p * e * muen_medium, (zlo, zhi, rs))
    return out if per_decay else out.mean(axis=1)


_MARCH_POINTS_PER_CHUNK = 1 << 16


def _march_chunk(model: SeedModel, points, origin, frac, mu_by_solid, mu_medium, pe_muen, bounds) -> np.ndarray:
    """Primary kerma (points, decays) from the decays at ``origin`` (n, 3) by ray marching (see primary_kerma)."""
    zlo, zhi, rs = bounds
    x0, y0, z0 = origin[:, 0], origin[:, 1], origin[:, 2]
    n_dec, n_cls, n_steps = origin.shape[0], mu_by_solid.shape[0], frac.size
    rows = (np.arange(n_dec) * n_cls)[:, None]
    rho2 = x0 * x0 + y0 * y0
    out = np.empty((len(points), n_dec))
    for k, pt in enumerate(points):
        d = pt[None, :] - origin
        dist = np.linalg.norm(d, axis=1)
        u = d / dist[:, None]
        t_exit = np.minimum(_exit_distance(x0, y0, z0, u, rs, zlo, zhi), dist)
        s = t_exit[:, None] * frac[None, :]                                     # (n_decays, n_steps)
        # the march's points as (z, x^2 + y^2), expanded along the ray: r^2(s) = rho0^2 + 2 s (x0 ux + y0 uy)
        # + s^2 (ux^2 + uy^2)
        qz = z0[:, None] + u[:, 2:3] * s
        r2 = rho2[:, None] + s * (2.0 * (x0 * u[:, 0] + y0 * u[:, 1])[:, None] + s * (1.0 - u[:, 2] ** 2)[:, None])
        idx = np.asarray(model.locate(np, qz, np.maximum(r2, 0.0)))
        idx = np.where(idx < 0, n_cls - 1, idx)
        # steps per decay and solid (the last class: inside the bounding cylinder but in no solid)
        steps = np.bincount((rows + idx).ravel(), minlength=n_dec * n_cls).reshape(n_dec, n_cls)
        length = steps * (t_exit / n_steps)[:, None]                           # (n_decays, n_solids + 1)
        tau = length @ mu_by_solid + (dist - length[:, :-1].sum(axis=1))[:, None] * mu_medium[None, :]
        w = np.exp(-tau) / (4.0 * np.pi * dist[:, None] ** 2)
        out[k] = np.sum(pe_muen[None, :] * w, axis=1)
    return out


def coefficients_from_tables(model: SeedModel, tables, library, spectrum: Spectrum, medium: str = "water"):
    """(mu_seed, mu_medium, muen_medium) at the spectrum's lines from a run's interaction tables."""
    e = np.asarray(spectrum.energies_kev, float)
    mu_seed = {}
    for s in model.solids:
        m = library[s.material]
        mu_seed[s.material] = tables.interpolate("total", m.name, e) * m.density
    med = library[medium]
    return mu_seed, tables.interpolate("total", med.name, e) * med.density, tables.interpolate("muen", med.name, e)


def bin_points(r_lo: float, r_hi: float, th_lo_deg: float, th_hi_deg: float, n_r: int = 1, n_t: int = 3,
               n_phi: int = 8, mirror: bool = True):
    """Points and volume weights covering one (r, theta) scoring bin (midpoint rule in r, cos(theta), phi).

    The azimuths phi are regularly spaced: for an axially symmetric seed, averaging over the
    detector's azimuth equals averaging over the decay's, which removes most of the sampling noise
    of the marker's self-shadowing.
    """
    rr = r_lo + (np.arange(n_r) + 0.5) / n_r * (r_hi - r_lo)
    c_lo, c_hi = np.cos(np.radians(th_hi_deg)), np.cos(np.radians(th_lo_deg))
    cc = c_lo + (np.arange(n_t) + 0.5) / n_t * (c_hi - c_lo)                   # uniform in cos: equal volumes
    ph = 2.0 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
    R, C, P = np.meshgrid(rr, cc, ph, indexing="ij")
    S = np.sqrt(1.0 - C * C)
    pts = np.stack([R * S * np.cos(P), R * S * np.sin(P), R * C], axis=-1).reshape(-1, 3)
    w = (R * R).ravel()
    if mirror:
        pts, w = np.concatenate([pts, pts * np.array([1.0, 1.0, -1.0])]), np.concatenate([w, w])
    return pts, w


def _random_rotations(rng, n: int) -> np.ndarray:
    """``n`` uniformly random rotation matrices (n, 3, 3), from uniform unit quaternions (Shoemake 1992)."""
    u1, u2, u3 = rng.random((3, n))
    q = np.stack([np.sqrt(1 - u1) * np.sin(2 * np.pi * u2), np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
                  np.sqrt(u1) * np.sin(2 * np.pi * u3), np.sqrt(u1) * np.cos(2 * np.pi * u3)])
    x, y, z, w = q
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)


def fibonacci_directions(n: int) -> np.ndarray:
    """``n`` unit vectors (n, 3) evenly spread over the sphere (spherical Fibonacci lattice)."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k
    s = np.sqrt(1.0 - z * z)
    return np.stack([s * np.cos(phi), s * np.sin(phi), z], axis=1)


def primary_fate(model: SeedModel, spectrum: Spectrum, mu_parts: dict[str, np.ndarray], n_decays: int = 2000,
                 n_directions: int = 64, n_steps: int = 600, seed=0) -> dict:
    """Where primary photons go, by deterministic ray integration over all directions.

    For decays from the active-region sampler and, per decay, ``n_directions`` directions (a
    spherical Fibonacci lattice turned by a random rotation: an unbiased, stratified estimate of
    the 4 pi average), the optical depth along the straight line is integrated by ray marching
    with the solids' point classification (:meth:`SeedModel.locate`) on steps that grow as the
    square of the distance (the first micrometre is resolved, e.g. a 1.75 um coating). With
    tau(s) the optical depth up to s, the probability that the first interaction happens on a
    step is exp(-tau_before) - exp(-tau_after), given to the step's solid and split between
    photoabsorption, incoherent and coherent scattering by their shares of mu; the rest escapes.

    Args:
        mu_parts: material name -> array (4, n_lines) of linear coefficients (1/cm) at the
            spectrum's lines: total, photoelectric, incoherent, coherent.

    Returns a dict with, per line (arrays over the lines) and for the spectrum average
    (line probabilities), ``escape`` and ``first`` (n_solids, 3): first-interaction probabilities
    per solid and kind, and their standard errors over decays (``*_se``).
    """
    e = np.asarray(spectrum.energies_kev, float)
    p = np.asarray(spectrum.yields, float)
    p = p / p.sum()
    rng = np.random.default_rng(seed)
    z0, x0, y0 = (np.asarray(a, float) for a in model.sample_active(np, rng, n_decays))
    zlo, zhi, rs = model.bounds()
    mats = [s.material for s in model.solids]
    n_s = len(mats)
    parts = np.array([mu_parts[m] for m in mats] + [np.zeros((4, e.size))])         # (n_s + 1, 4, n_lines)
    base = fibonacci_directions(n_directions)
    rot = _random_rotations(rng, n_decays)
    frac = ((np.arange(n_steps) + 0.5) / n_steps) ** 2                               # step midpoints (fraction)
    dfrac = ((np.arange(n_steps) + 1.0) ** 2 - np.arange(n_steps) ** 2) / n_steps ** 2  # step lengths (fraction)
    esc = np.zeros((n_decays, e.size))
    first = np.zeros((n_decays, n_s, 3, e.size))
    for i in range(n_decays):
        u = base @ rot[i].T                                                            # (n_dir, 3)
        xs = np.full(n_directions, x0[i])
        ys = np.full(n_directions, y0[i])
        zs = np.full(n_directions, z0[i])
        t_exit = _exit_distance(xs, ys, zs, u, rs, zlo, zhi)
        s = t_exit[:, None] * frac[None, :]
        qx, qy, qz = xs[:, None] + u[:, 0:1] * s, ys[:, None] + u[:, 1:2] * s, zs[:, None] + u[:, 2:3] * s
        idx = np.asarray(model.locate(np, qz, qx * qx + qy * qy))
        idx = np.where(idx < 0, n_s, idx)                                             # (n_dir, n_steps)
        ds = t_exit[:, None] * dfrac[None, :]
        tau = np.cumsum(parts[idx, 0, :] * ds[..., None], axis=1)                     # (n_dir, n_steps, n_lines)
        surv = np.exp(-tau)
        before = np.concatenate([np.ones((n_directions, 1, e.size)), surv[:, :-1]], axis=1)
        p_int = before - surv
        esc[i] = surv[:, -1].mean(axis=0)
        mu_t = np.where(parts[:, 0] > 0, parts[:, 0], 1.0)
        share = parts[:, 1:] / mu_t[:, None, :]                                        # (n_s + 1, 3, n_lines)
        for k in range(n_s):
            pk = np.where((idx == k)[..., None], p_int, 0.0).sum(axis=1).mean(axis=0)  # (n_lines,)
            first[i, k] = share[k] * pk[None, :]

    def m_se(a, axis=0):
        return a.mean(axis=axis), a.std(axis=axis, ddof=1) / np.sqrt(a.shape[axis])

    esc_l, esc_l_se = m_se(esc)
    first_l, first_l_se = m_se(first)
    esc_avg, esc_avg_se = m_se(esc @ p)
    first_avg, first_avg_se = m_se(first @ p)
    return {"energies_kev": e, "probabilities": p, "escape_by_line": esc_l, "escape_by_line_se": esc_l_se,
            "first_by_line": first_l, "first_by_line_se": first_l_se, "escape": esc_avg, "escape_se": esc_avg_se,
            "first": first_avg, "first_se": first_avg_se}


def coefficient_parts(model: SeedModel, tables, library, energies) -> dict[str, np.ndarray]:
    """Material name -> (4, n) linear coefficients (1/cm): total, photoelectric, incoherent, coherent."""
    e = np.asarray(energies, float)
    out = {}
    for s in model.solids:
        m = library[s.material]
        out[s.material] = np.stack([tables.interpolate(q, m.name, e) * m.density
                                    for q in ("total", "photo", "incoh", "coh")])
    return out
