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
from brachymc.geometry.seed import load_builtin_seed
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.physics import PhysicsSettings
from brachymc.sources.seed_source import SeedSource
from brachymc.validation.primary import coefficients_from_tables, primary_kerma
from brachymc.validation.primary_check import PrimaryCheckSettings, run_primary_check

@pytest.mark.parametrize("key", ["oncoseed_6711", "best_2301"])
def test_primary_kerma_mc_equals_ray_integration(key):
    lib = default_library()
    model = load_builtin_seed(key, lib)
    # scoring bins: r 0.6-1.4 cm; theta 35-45 deg (folded with 135-145) and 85-95 deg
    settings = PrimaryCheckSettings(histories=3_200_000, batches=10, seed=77, radii_cm=(1.0,), thetas_deg=(40.0, 90.0),
                                    r_half_width_cm=0.4, theta_half_width_deg=5.0, n_decays=2000, n_steps=300)
    res = run_primary_check(model, settings, lib, log=lambda *a: None)
    assert res.n_bins == 2
    for row in res.rows:
        assert row["mc_rel_unc"] < 0.008 and row["ray_rel_unc"] < 0.006, row
        assert abs(row["z"]) < 3.0, (f"{key} theta={row['theta_deg']}: MC {row['mc_keV_per_g']:.5g} vs ray integration "
                                     f"{row['ray_keV_per_g']:.5g} (sigma {row['sigma_pct']:.2f} %)")


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
