"""The MC transport through a seed capsule against an independent deterministic ray integration.

Primary (unscattered) collision kerma per emitted photon in water at 1 cm, on the TG-43 scoring
bins, for the shipped seed models: MC (track-length estimator, photons that have not interacted)
vs brachymc.validation.primary (decays from the active-region sampler, straight lines to points
covering the bin, path lengths by ray marching with the point classification). The two share the
cross-section tables and nothing else of the transport. Tolerance: 3 combined standard errors
(MC batch spread and the decay-sampling spread of the ray integration).
"""

import numpy as np
import pytest

from brachymc import default_library
from brachymc.backend import get_backend
from brachymc.geometry.seed import load_builtin_seed
from brachymc.geometry.seed_world import SeedWorld
from brachymc.io.tables_cache import load_or_build_tables
from brachymc.mc.physics import PhysicsSettings
from brachymc.mc.transport import Transport, TransportSettings
from brachymc.sources.seed_source import SeedSource
from brachymc.validation.primary import bin_points, coefficients_from_tables, primary_kerma


def _half_width(t):
    return 0.5 if t < 5 else (1.0 if t < 15 else 2.5)


@pytest.mark.parametrize("key", ["oncoseed_6711", "best_2301"])
def test_primary_kerma_mc_equals_ray_integration(key):
    lib = default_library()
    bk = get_backend("numpy")
    model = load_builtin_seed(key, lib)
    src = SeedSource(model)
    # scoring bins: r 0.6-1.4 cm; theta 35-45 deg (folded with 135-145) and 85-95 deg
    r_edges = np.array([0.0, 0.6, 1.4])
    th = np.array([180.0, 145.0, 135.0, 95.0, 85.0, 45.0, 35.0, 0.0])
    cos_edges = np.cos(np.radians(th))
    cos_edges[0], cos_edges[-1] = -1.0, 1.0
    bins = {40: ([1, 5], (35.0, 45.0)), 90: ([3], (85.0, 90.0))}
    world = SeedWorld(model, lib, lib["water"], 1.5, r_edges, cos_edges, bk)
    tables = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=1.0))
    coeffs = coefficients_from_tables(model, tables, lib, src.spectrum)

    det = {}
    for t, (_, (lo, hi)) in bins.items():
        pts, w = bin_points(0.6, 1.4, lo, hi, n_r=4, n_t=2)
        k = primary_kerma(model, pts, src.spectrum, *coeffs, n_decays=2000, n_steps=300, per_decay=True, seed=5)
        kb = (w[:, None] * k).sum(axis=0) / w.sum()
        det[t] = (kb.mean(), kb.std(ddof=1) / np.sqrt(kb.size))

    tr = Transport(world, tables, bk, TransportSettings(score_primary=True, bank_size=1 << 16))
    batches, per = 10, 160_000
    vol = world.score_volume
    prim = []
    for seq in np.random.SeedSequence(77).spawn(batches):
        sc = tr.run_batch(src, per, bk.rng(seq))
        prim.append(np.asarray(sc.primary).reshape(world.score_shape) / vol / per)     # keV/g per photon
    prim = np.array(prim)

    for t, (ks, _) in bins.items():
        v = vol[1, ks]
        mc = np.sum(prim[:, 1, ks] * v, axis=-1) / v.sum()
        m, u = mc.mean(), mc.std(ddof=1) / np.sqrt(batches)
        dm, du = det[t]
        sigma = np.hypot(u, du)
        assert u / m < 0.008 and du / dm < 0.006, (u / m, du / dm)
        assert abs(m - dm) < 3 * sigma, f"{key} theta={t}: MC {m:.5g} vs ray integration {dm:.5g} (sigma {sigma / dm:.2%})"


def test_ray_integration_with_water_equivalent_seed_is_analytic():
    """Seed media given water's mu: the integral must reduce to sum p E mu_en exp(-mu d) / (4 pi d^2)."""
    lib = default_library()
    model = load_builtin_seed("oncoseed_6711", lib)
    src = SeedSource(model)
    tables = load_or_build_tables([lib["water"]] + list(dict.fromkeys(lib[s.material] for s in model.solids)),
                                  PhysicsSettings(cutoff_kev=1.0))
    mu_seed, mu_w, muen_w = coefficients_from_tables(model, tables, lib, src.spectrum)
    as_water = {k: mu_w for k in mu_seed}
    pts = np.array([[0.0, 0.0, 3.0], [0.7, 0.2, 0.1], [0.3, 0.0, -0.6]])
    k = primary_kerma(model, pts, src.spectrum, as_water, mu_w, muen_w, n_decays=500, per_decay=True, seed=3)
    z0, x0, y0 = (np.asarray(a) for a in model.sample_active(np, np.random.default_rng(3), 500))
    e = np.asarray(src.spectrum.energies_kev)
    p = np.asarray(src.spectrum.yields) / np.sum(src.spectrum.yields)
    for j, pt in enumerate(pts):
        d = np.sqrt((pt[0] - x0) ** 2 + (pt[1] - y0) ** 2 + (pt[2] - z0) ** 2)
        expected = np.sum(p * e * muen_w * np.exp(-np.outer(d, mu_w)), axis=1) / (4 * np.pi * d * d)
        np.testing.assert_allclose(k[j], expected, rtol=1e-10)
