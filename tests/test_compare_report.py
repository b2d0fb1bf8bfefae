"""MC vs TG-43 comparison (gamma via pymedphys, ratios, DVH metrics) and the patient figures / PDF."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from brachymc.dvh import cumulative_dvh
from brachymc.errors import ConfigError
from brachymc.geometry.phantom import GridGeometry
from brachymc.compare import (
    dose_difference_map,
    dose_ratio_map,
    dvh_comparison,
    gamma_pass_rates,
    ratio_by_tissue,
    weighted_quantile,
)
from brachymc.report.patient import plot_difference, plot_dvh, plot_slices, write_summary_pdf

GEOM = GridGeometry.centered((6.0, 6.0, 6.0), (0.2, 0.2, 0.2))     # 30^3 voxels of 2 mm


def _gauss(shift_cm=(0.0, 0.0, 0.0), peak=10.0, sigma=1.2):
    """Smooth dose (Gy) on GEOM: a Gaussian of ``sigma`` cm centred at ``shift_cm``."""
    z = GEOM.centers(2)[:, None, None] - shift_cm[2]
    y = GEOM.centers(1)[None, :, None] - shift_cm[1]
    x = GEOM.centers(0)[None, None, :] - shift_cm[0]
    return peak * np.exp(-(x * x + y * y + z * z) / (2 * sigma * sigma))


def _rates(results):
    return {(r["criterion"], r["mode"]): r for r in results}


# ------------------------------------------------------------------------------------------ gamma

def test_gamma_identical_doses_pass_everywhere():
    d = _gauss()
    res = _rates(gamma_pass_rates(d, d.copy(), GEOM))
    assert set(res) == {("3%/2mm", "global"), ("3%/2mm", "local"), ("2%/2mm", "global"), ("2%/2mm", "local")}
    n_above = int(np.count_nonzero(d >= 0.1 * d.max()))
    for r in res.values():
        assert r["pass_rate_percent"] == 100.0
        assert r["n_points"] == n_above
        assert r["threshold"] == pytest.approx(0.1 * d.max())
        assert r["reference"] == "MC" and r["evaluated"] == "TG-43"


def test_gamma_scaling_and_shift():
    # a broad field (sigma 2.5 cm): near its flat top a 5 % scaling cannot be met within 2 mm
    # (in a steep field, or with linear interpolation over a sharply curved peak, it can)
    ref = _gauss(sigma=2.5)
    sub = dict(random_subset=2000, seed=0)          # the same 2000 reference points in every call
    scaled = _rates(gamma_pass_rates(ref, 1.05 * ref, GEOM, criteria=((3, 2),), modes=("global",), **sub))
    rate_scaled = scaled[("3%/2mm", "global")]["pass_rate_percent"]
    assert 0.0 < rate_scaled < 100.0            # the flat high-dose region differs by 5 % of the max
    shifted = _rates(gamma_pass_rates(ref, 1.05 * _gauss(shift_cm=(0.5, 0.0, 0.0), sigma=2.5), GEOM,
                                      criteria=((3, 2),), modes=("global",), **sub))
    assert shifted[("3%/2mm", "global")]["pass_rate_percent"] < rate_scaled - 5.0
    one = _rates(gamma_pass_rates(ref, 1.01 * ref, GEOM, criteria=((2, 2),), **sub))
    assert one[("2%/2mm", "global")]["pass_rate_percent"] == 100.0
    assert one[("2%/2mm", "local")]["pass_rate_percent"] == 100.0
    # local gamma is stricter than global for a uniform 5 % scaling: every point fails 3 % locally
    loc = _rates(gamma_pass_rates(ref, 1.05 * ref, GEOM, criteria=((3, 2),), modes=("local",), **sub))
    assert loc[("3%/2mm", "local")]["pass_rate_percent"] < rate_scaled


def test_gamma_excludes_nan_and_masked_voxels():
    ref = _gauss()
    full = gamma_pass_rates(ref, ref, GEOM, criteria=((3, 2),), modes=("global",))[0]["n_points"]
    block = np.zeros(GEOM.shape, bool)
    block[14:17, 14:17, 14:17] = True                 # 27 voxels at the dose maximum ("a seed")
    nan_ref = ref.copy()
    nan_ref[block] = np.nan
    kw = dict(criteria=((3, 2),), modes=("global",), normalisation_gy=float(ref.max()))
    r1 = gamma_pass_rates(nan_ref, ref, GEOM, **kw)[0]
    assert r1["n_points"] == full - 27 and r1["pass_rate_percent"] == 100.0
    r2 = gamma_pass_rates(ref, ref, GEOM, mask=block, **kw)[0]
    assert r2["n_points"] == full - 27 and r2["pass_rate_percent"] == 100.0
    nan_ev = ref.copy()
    nan_ev[block] = np.nan                             # evaluated NaN: excluded, and does not poison neighbours
    r3 = gamma_pass_rates(nan_ref, nan_ev, GEOM, criteria=((3, 2),), modes=("global", "local"))
    # default normalisation: the maximum over the compared voxels (not NaN, lower than the true peak)
    norm = float(np.nanmax(nan_ref))
    assert r3[0]["normalisation_gy"] == norm < ref.max()
    expected = int(np.count_nonzero(nan_ref >= 0.1 * norm))
    assert [r["n_points"] for r in r3] == [expected] * 2
    assert all(r["pass_rate_percent"] == 100.0 for r in r3)
    # a 5 % MC hot spot beside the masked block fails global 3 %/2 mm there and nowhere else
    hot = nan_ref.copy()
    hot[13, 15, 15] *= 1.05
    r4 = gamma_pass_rates(hot, nan_ev, GEOM, **kw)[0]
    assert r4["n_points"] == full - 27 and r4["n_points"] - r4["n_pass"] == 1


def test_gamma_random_subset_is_reproducible_and_bounded():
    ref = _gauss()
    ev = 1.05 * _gauss(shift_cm=(0.2, 0.0, 0.0))
    a = gamma_pass_rates(ref, ev, GEOM, criteria=((3, 2),), modes=("global",), random_subset=500, seed=3)[0]
    b = gamma_pass_rates(ref, ev, GEOM, criteria=((3, 2),), modes=("global",), random_subset=500, seed=3)[0]
    assert a["n_points"] == 500 and a["pass_rate_percent"] == b["pass_rate_percent"]
    state = np.random.get_state()[1].copy()
    gamma_pass_rates(ref, ev, GEOM, criteria=((3, 2),), modes=("global",), random_subset=100, seed=1)
    assert np.array_equal(np.random.get_state()[1], state)    # the global RNG is restored


def test_gamma_rejects_bad_input():
    ref = _gauss()
    with pytest.raises(ConfigError, match="evaluated dose"):
        gamma_pass_rates(ref, ref[:-1], GEOM)
    with pytest.raises(ConfigError, match="mode"):
        gamma_pass_rates(ref, ref, GEOM, modes=("relative",))
    with pytest.raises(ConfigError, match="max_gamma"):
        gamma_pass_rates(ref, ref, GEOM, max_gamma=0.5)


# ------------------------------------------------------------------------------- maps and ratios

def test_ratio_and_difference_maps():
    tg = _gauss()
    mc = 0.9 * tg
    mc[0, 0, 0] = np.nan
    r = dose_ratio_map(mc, tg, floor_fraction=0.05)
    shown = tg >= 0.05 * tg.max()
    assert np.all(np.isnan(r[~shown]))
    np.testing.assert_allclose(r[shown & np.isfinite(mc)], 0.9, rtol=1e-12)
    d = dose_difference_map(mc, tg, percent_of=10.0)
    np.testing.assert_allclose(d[5, 6, 7], -10.0 * tg[5, 6, 7] / 10.0, rtol=1e-12)
    assert np.isnan(d[0, 0, 0])


def test_ratio_by_tissue_known_ratios():
    rng = np.random.default_rng(0)
    tg = rng.uniform(1.0, 20.0, (10, 10, 10))
    classes = {"bone": np.zeros(tg.shape, bool), "soft tissue": np.zeros(tg.shape, bool),
               "marrow": np.zeros(tg.shape)}
    classes["bone"][:3] = True
    classes["soft tissue"][3:7] = True
    classes["marrow"][7:] = 0.5                       # partial volumes
    mc = tg.copy()
    mc[:3] *= 0.9
    mc[7:] *= 1.1
    unc = np.full(tg.shape, 0.02)
    out = ratio_by_tissue(mc, tg, classes, mc_rel_unc=unc, voxel_cc=0.008)
    for name, k, n in (("bone", 0.9, 300), ("soft tissue", 1.0, 400), ("marrow", 1.1, 300)):
        e = out[name]
        for key in ("mean_ratio", "median_ratio", "p5", "p95"):
            assert e[key] == pytest.approx(k, rel=1e-12)
        assert e["n_voxels"] == n
        assert e["mean_mc_rel_unc"] == pytest.approx(0.02)
    assert out["marrow"]["volume_cc"] == pytest.approx(300 * 0.5 * 0.008)
    t = tg[:3]
    assert out["bone"]["mean_ratio_unc"] == pytest.approx(0.9 * 0.02 * np.sqrt(np.sum(t ** 2)) / t.sum())
    # dose-weighted mean differs from the voxelwise median when ratios vary
    tg2 = np.ones((1, 1, 4)) * np.array([1.0, 3.0, 5.0, 5.0])
    mc2 = tg2 * np.array([1.0, 0.5, 1.0, 1.0])
    w2 = np.zeros(tg2.shape, bool)
    w2[..., :2] = True
    e = ratio_by_tissue(mc2, tg2, {"x": w2, "empty": np.zeros(tg2.shape, bool)})
    assert e["x"]["mean_ratio"] == pytest.approx(2.5 / 4.0)
    assert e["x"]["median_ratio"] == pytest.approx(0.75)
    assert e["empty"]["n_voxels"] == 0 and np.isnan(e["empty"]["mean_ratio"])
    # min_dose_gy selects on the (noise-free) TG-43 dose
    e = ratio_by_tissue(mc2, tg2, {"x": w2}, min_dose_gy=2.0)
    assert e["x"]["n_voxels"] == 1 and e["x"]["mean_ratio"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="'x'"):
        ratio_by_tissue(mc2, tg2, {"x": w2[..., :2]})


@given(k=st.floats(0.5, 1.5),
       tg=hnp.arrays(float, (3, 4, 5), elements=st.floats(0.1, 100.0)),
       w=hnp.arrays(float, (3, 4, 5), elements=st.floats(0.0, 1.0)))
def test_ratio_by_tissue_uniform_ratio_property(k, tg, w):
    out = ratio_by_tissue(k * tg, tg, {"c": w})["c"]
    if out["n_voxels"]:
        for key in ("mean_ratio", "median_ratio", "p5", "p95"):
            assert out[key] == pytest.approx(k, rel=1e-9)


@given(v=hnp.arrays(float, st.integers(1, 40), elements=st.floats(-100, 100)),
       q=st.floats(0.0, 1.0))
def test_weighted_quantile_equal_weights_is_hazen(v, q):
    assert weighted_quantile(v, np.ones_like(v), q) == pytest.approx(np.quantile(v, q, method="hazen"), abs=1e-9)


def test_dvh_comparison_uniform_doses():
    tg = np.full((10, 10, 10), 10.0)
    mc = np.full_like(tg, 9.0)
    mc[0, 0, 0] = np.nan                              # a seed voxel: dropped from both
    target = np.zeros(tg.shape)
    target[:5] = 1.0
    oar = np.zeros(tg.shape)
    oar[5:] = 1.0
    mc[5:] = 12.0
    out = dvh_comparison(mc, tg, {"GTV": target, "cord": oar}, voxel_cc=0.01, prescription_gy=10.0)
    assert set(out) == {"GTV", "cord"}
    g = out["GTV"]
    assert set(g) == {"mc", "tg43", "diff", "excluded_cc"}
    assert g["excluded_cc"] == pytest.approx(0.01)
    assert g["mc"]["volume_cc"] == pytest.approx(g["tg43"]["volume_cc"]) == pytest.approx(4.99)
    assert g["mc"]["D90_Gy"] == 9.0 and g["tg43"]["D90_Gy"] == 10.0
    assert g["diff"]["D90_Gy"] == pytest.approx(-10.0)
    assert g["tg43"]["V100_percent"] == pytest.approx(100.0) and g["mc"]["V100_percent"] == 0.0
    assert g["diff"]["V100_percent"] == pytest.approx(-100.0)
    c = out["cord"]
    assert c["diff"]["Dmax_Gy"] == pytest.approx(20.0) and c["diff"]["D2cc_Gy"] == pytest.approx(20.0)
    assert c["excluded_cc"] == 0.0
    with pytest.raises(ConfigError, match="'none'"):
        dvh_comparison(mc, tg, {"none": np.zeros(tg.shape)}, 0.01, 10.0)


# ------------------------------------------------------------------------------ figures and PDF

def _page_count(pdf_bytes: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf_bytes))


@pytest.fixture(scope="module")
def patient_case():
    hu = np.zeros(GEOM.shape)
    hu[:, :, 20:24] = 1000.0                           # a "bone" slab
    tg = _gauss(peak=300.0)
    mc = tg * np.where(hu > 500, 0.85, 1.0)
    seeds = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, -0.5, 0.1], [0.0, 0.0, 2.0]])
    for s in seeds[:1]:
        i = GEOM.voxel_of(s)
        mc[i[2], i[1], i[0]] = tg[i[2], i[1], i[0]] = np.nan
    zc, yc, xc = np.meshgrid(GEOM.centers(2), GEOM.centers(1), GEOM.centers(0), indexing="ij")
    gtv = ((xc ** 2 + yc ** 2 + zc ** 2) <= 1.0).astype(float)
    bone = (hu > 500).astype(float)
    return {"hu": hu, "tg": tg, "mc": mc, "seeds": seeds, "structures": {"GTV": gtv, "bone": bone}}


def test_figures_and_summary_pdf(tmp_path, patient_case):
    c = patient_case
    rx = 145.0
    p1 = plot_slices(tmp_path / "slices.png", c["hu"], GEOM, c["mc"], rx, c["structures"], c["seeds"], (0.0, 0.0, 0.0))
    ok = np.isfinite(c["mc"])
    dvhs = {n: (cumulative_dvh(n, np.where(ok, c["mc"], 0), w * ok, GEOM.voxel_volume),
                cumulative_dvh(n, np.where(ok, c["tg"], 0), w * ok, GEOM.voxel_volume))
            for n, w in c["structures"].items()}
    p2 = plot_dvh(tmp_path / "dvh.png", dvhs, rx)
    p3 = plot_difference(tmp_path / "ratio.png", c["hu"], GEOM, c["mc"], c["tg"], (0.0, 0.0, 0.0), prescription_gy=rx)
    for p in (p1, p2, p3):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 10_000
    comparison = dvh_comparison(c["mc"], c["tg"], c["structures"], GEOM.voxel_volume, rx)
    gamma = gamma_pass_rates(c["mc"], c["tg"], GEOM, criteria=((3, 2),), random_subset=2000)
    tissue = ratio_by_tissue(c["mc"], c["tg"], {"bone": c["structures"]["bone"]}, voxel_cc=GEOM.voxel_volume)
    assert tissue["bone"]["mean_ratio"] == pytest.approx(0.85)
    settings = {"histories": 10_000_000, "batches": 20, "seed": 1, "backend": "numpy", "device": "cpu",
                "wall time (s)": 12.5, "mean GTV uncertainty (%)": 0.8, "calibration": "HU->density 2-point",
                "seed model": "OncoSeed 6711", "dose kind": "Dm,m"}
    out = write_summary_pdf(tmp_path / "report" / "summary.pdf", title="Patient X: MC vs TG-43",
                            metrics_table={"GTV": {"mean rel. unc. (%)": 0.8}}, comparison=comparison,
                            gamma=gamma, tissue_ratios=tissue, settings=settings, figures=[p1, p2, p3])
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    assert _page_count(data) == 4                      # summary + three figures
    assert [f.name for f in out.parent.iterdir()] == ["summary.pdf"]   # no temporary left


def test_failed_pdf_leaves_nothing(tmp_path, patient_case):
    target = tmp_path / "summary.pdf"
    with pytest.raises(ConfigError, match="missing.png"):
        write_summary_pdf(target, title="t", settings={"seed": 1}, figures=[tmp_path / "missing.png"])
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(Exception):
        write_summary_pdf(target, title="t", settings={"seed": 1}, figures=[bad])
    assert not target.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["corrupt.png"]
    # an existing report is left untouched by a failed rewrite
    write_summary_pdf(target, title="t", settings={"seed": 1})
    before = target.read_bytes()
    assert _page_count(before) == 1
    with pytest.raises(Exception):
        write_summary_pdf(target, title="t2", settings={"seed": 2}, figures=[bad])
    assert target.read_bytes() == before
    with pytest.raises(ConfigError, match="shape"):
        plot_slices(tmp_path / "s.png", None, GEOM, patient_case["mc"][:-1], 145.0, {}, None, (0, 0, 0))
    assert not (tmp_path / "s.png").exists()
