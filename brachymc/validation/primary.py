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
    out = np.empty((len(points_cm), origin.shape[0]))
    for k, pt in enumerate(np.asarray(points_cm, float)):
        d = pt[None, :] - origin
        dist = np.linalg.norm(d, axis=1)
        u = d / dist[:, None]
        t_exit = np.minimum(_exit_distance(x0, y0, z0, u, rs, zlo, zhi), dist)
        s = t_exit[:, None] * frac[None, :]                                     # (n_decays, n_steps)
        q = origin[:, None, :] + u[:, None, :] * s[..., None]
        idx = np.asarray(model.locate(np, q[..., 2], q[..., 0] ** 2 + q[..., 1] ** 2))
        idx = np.where(idx < 0, len(mats), idx)
        ds = (t_exit / n_steps)[:, None]
        tau = np.zeros((origin.shape[0], e.size))
        inside_len = np.zeros(origin.shape[0])
        for i in np.unique(idx):
            length = np.sum(idx == i, axis=1) * ds[:, 0]
            tau += length[:, None] * mu_by_solid[i][None, :]
            if i < len(mats):
                inside_len += length
        tau += (dist - inside_len)[:, None] * mu_medium[None, :]
        w = np.exp(-tau) / (4.0 * np.pi * dist[:, None] ** 2)
        out[k] = np.sum((p * e * muen_medium)[None, :] * w, axis=1)
    return out if per_decay else out.mean(axis=1)


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
