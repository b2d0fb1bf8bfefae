"""Photon budget of a seed in vacuo, and independent checks of the S_K scorer.

* the budget closes: photons emitted + fluorescence created = photons ended + photons escaped,
  and the energy likewise (to rounding); its primary part agrees with the ray integration;
* an isotropic point source gives the analytic S_K for every detector;
* the crossing scorer agrees with a next-event (point-detector) estimator for the Best 2301;
* with the decay sampling of the egs++ shapes (CLRP's model), brachymc reproduces the S_K per
  history of the CLRP header of the Best 2301; with uniform decays it is ~3.7 % lower.
Tolerances: 3 combined standard errors (batches / decay sampling), plus the stated allowances.
"""

import numpy as np
import pytest

from brachymc.constants import KEV_PER_G_TO_GY
from brachymc.geometry.seed import ActiveRegion, SeedModel, Solid, load_builtin_seed
from brachymc.mc.air_kerma import DETECTORS, air_kerma_strength, get_detector
from brachymc.mc.physics import PhysicsSettings
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.sources.spectrum import load_spectrum

K = 3.0


@pytest.fixture(scope="module")
def budget_6711(library):
    from brachymc.validation.photon_budget import BudgetSettings, run_photon_budget

    return run_photon_budget(load_builtin_seed("oncoseed_6711", library),
                             BudgetSettings.quick(histories=300_000, n_decays=150, seed=7), library)


def test_budget_closes(budget_6711):
    c = budget_6711.closure
    assert c["emitted"] == 300_000
    assert c["photon_balance"] == 0.0                            # exact bookkeeping of photons
    assert abs(c["energy_balance_rel"]) < 1e-9                   # and of energy, to rounding
    assert c["interactions_outside_solids"] == 0.0               # in vacuo every interaction is in a solid
    per_solid = sum(r["ended"] for r in budget_6711.solids)
    created = sum(f["created"] for f in budget_6711.fluorescence)
    assert per_solid + budget_6711.escaped["photons"] == pytest.approx(1.0 + created, rel=1e-12)
    for f in budget_6711.fluorescence:
        assert 0 <= f["escaped"] <= f["created"]
    ag = next(f for f in budget_6711.fluorescence if f["element"] == "Ag")
    assert 21.5 < ag["mean_energy_kev"] < 25.6                   # Ag K x-rays


def test_budget_primary_part_matches_ray_integration(budget_6711):
    e = budget_6711.escaped
    ray = budget_6711.ray_integration
    assert abs(e["primary"] - ray["escape"]) < K * np.hypot(e["primary_se"], ray["escape_se"])
    for r in budget_6711.solids:
        tol = K * np.hypot(r["primary_first_mc_se"], r["primary_first_ray_se"]) + 1e-4
        assert abs(r["primary_first_mc"] - r["primary_first_ray"]) < tol, r["solid"]
    a = budget_6711.air_kerma
    assert abs(a["primary"] / a["primary_ray"] - 1) < K * a["primary_ray_cmp_unc"]


def test_detector_elevation_densities():
    for det in DETECTORS.values():
        b = np.linspace(-det.beta_max, det.beta_max, 200_001)
        assert np.trapezoid(det.elevation_density(np, b), b) == pytest.approx(1.0, abs=2e-5)
        assert det.elevation_density(np, np.array([1.01 * det.beta_max]))[0] == 0.0
    w = get_detector("wafac")
    assert np.degrees(w.beta_max) == pytest.approx(7.59, abs=0.01)      # 4 cm at 30 cm, as the NIST WAFAC
    band = get_detector("band")                                          # uniform in z on the cylinder
    b = np.array([0.0, band.beta_max * 0.9])
    g = band.elevation_density(np, b)
    assert g[1] / g[0] == pytest.approx(1.0 / np.cos(b[1]) ** 2, rel=1e-12)


def test_isotropic_point_source_gives_the_analytic_sk(library):
    """S_K = sum_i p_i E_i (mu_en/rho)_air(E_i) / (4 pi) for an isotropic point emitter, whatever the detector."""
    dot = SeedModel(key="dot", name="dot", solids=(Solid("dot", "air", role="active", r_max=1e-5, z_min=-1e-5,
                                                         z_max=1e-5),), active=(ActiveRegion("dot"),))
    res = air_kerma_strength(dot, 1_000_000, batches=10, seed=3, backend="numpy", library=library)
    sp = load_spectrum("i125_ncrp58")
    e = np.asarray(sp.energies_kev)
    t = load_or_build_tables([library["air"]], PhysicsSettings())
    expected = float(np.sum(sp.probabilities * e * t.interpolate("muen", "air", e))) / (4 * np.pi) * KEV_PER_G_TO_GY
    for name, v in res.by_detector.items():
        assert abs(v["value"] / expected - 1) < K * v["rel_unc"], (name, v["value"] / expected)
    assert res.settings["detector"] == "wafac"


def test_sk_scorer_agrees_with_next_event_estimator(library):
    from brachymc.validation.sk_check import run_sk_check

    r = run_sk_check(load_builtin_seed("best_2301", library), "wafac", histories=800_000, batches=8, seed=11,
                     fraction=0.1, library=library)
    assert r.scorer_rel_unc < 0.012 and r.nee_rel_unc < 0.006
    assert abs(r.z) < K, r
    # the emission (primary) part carries ~98 % of S_K for this seed
    assert 0.95 < r.nee_emission / r.nee < 0.995


def test_egsnrc_sampling_reproduces_the_clrp_header_sk(library):
    """Root cause of issue 15: CLRP's Best 2301 places its decays as egs_circle / egs_spherical_shell
    do (pushed outwards, away from the W marker). With that sampling brachymc's S_K per history
    equals the egs_brachy header value (allowance 0.5 % for the cross-section data, xraylib vs XCOM,
    and CLRP's statistics); the shipped model, uniform decays, is ~3 % lower (stored commissioning
    result, same detector)."""
    import json

    from brachymc.tg43.shipped import tg43_dir
    from brachymc.validation.clrp import CLRP_SK_DETECTOR, CLRP_SK_PER_HISTORY, with_egsnrc_sampling

    ref = CLRP_SK_PER_HISTORY["best_2301"]
    r = air_kerma_strength(with_egsnrc_sampling(load_builtin_seed("best_2301", library)), 700_000, batches=7, seed=21,
                           backend="numpy", detector=CLRP_SK_DETECTOR, library=library)
    ratio = r.sk_per_history_Gy_cm2 / ref
    assert abs(ratio - 1) < K * r.rel_unc + 0.005, (ratio, r.rel_unc)
    stored = json.loads((tg43_dir() / "best_2301.brachymc.json").read_text())["extra"]["sk_by_detector"]
    uniform = stored[CLRP_SK_DETECTOR]["value"] / ref
    assert uniform < ratio - 0.02 and 0.95 < uniform < 0.98, (uniform, ratio)


def test_egsnrc_circle_law_is_the_egs_circle_distribution(library):
    """egs_circle draws r = r_i + (r_o - r_i) sqrt(u): (r - r_i)^2 / (r_o - r_i)^2 is uniform."""
    from scipy.stats import kstest

    from brachymc.validation.clrp import with_egsnrc_sampling

    m = with_egsnrc_sampling(load_builtin_seed("isoseed_i25s06", library))
    z, x, y = m.sample_active(np, np.random.default_rng(5), 40_000)
    r = np.hypot(x, y)
    assert kstest(((r - 0.011) / 0.019) ** 2, "uniform").pvalue > 1e-3
    u = load_builtin_seed("isoseed_i25s06", library).sample_active(np, np.random.default_rng(5), 40_000)
    ru2 = u[1] ** 2 + u[2] ** 2                                            # uniform in volume: r^2 uniform
    assert kstest((ru2 - 0.011 ** 2) / (0.03 ** 2 - 0.011 ** 2), "uniform").pvalue > 1e-3
