"""`brachymc validate primary`: the MC primary kerma vs ray-integration check as a command."""

import json

import pytest

from brachymc.cli import main
from brachymc.errors import ConfigError
from brachymc.validation.primary_check import PrimaryCheckSettings, _theta_bins, _theta_edges


def test_quick_primary_check_writes_json_and_agrees(tmp_path, capsys):
    assert main(["validate", "primary", "--seed", "oncoseed_6711", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "primary_oncoseed_6711.json").read_text())
    assert res["seed"] == "oncoseed_6711" and res["n_bins"] == 3 and res["settings"]["quick"] is True
    rows = {r["theta_deg"]: r for r in res["rows"]}
    assert set(rows) == {30.0, 60.0, 90.0}
    assert rows[90.0]["F_primary_mc"] == pytest.approx(1.0) and rows[90.0]["F_primary_ray"] == pytest.approx(1.0)
    for r in rows.values():
        # statistical agreement (fixed seeds): 3 combined standard errors, each of which is small
        assert r["sigma_pct"] < 3.0
        assert abs(r["z"]) < 3.0, r
    # primary F of the 6711 at 1 cm (capsule + marker, no scatter): ~0.80 at 30 deg, ~0.99 at 60 deg
    assert 0.76 < rows[30.0]["F_primary_ray"] < 0.84 and 0.96 < rows[60.0]["F_primary_ray"] < 1.03
    assert "MC / ray - 1" in capsys.readouterr().out


def test_theta_bins_cover_bin_and_mirror():
    s = PrimaryCheckSettings(thetas_deg=(10.0, 90.0))
    th = _theta_edges(s)
    assert th[0] == 180.0 and th[-1] == 0.0 and all(a > b for a, b in zip(th, th[1:]))
    ks = _theta_bins(th, 7.5, 12.5)
    assert sorted((th[k + 1], th[k]) for k in ks) == [(7.5, 12.5), (167.5, 172.5)]
    ks = _theta_bins(th, 87.5, 90.0)
    assert sorted((th[k + 1], th[k]) for k in ks) == [(87.5, 90.0), (90.0, 92.5)]


@pytest.mark.parametrize("kw", [dict(batches=1), dict(histories=3, batches=2), dict(radii_cm=(0.15,)),
                                dict(radii_cm=(1.0, 1.1)), dict(thetas_deg=(10.0, 80.0)),
                                dict(thetas_deg=(1.0, 90.0)), dict(thetas_deg=(30.0, 32.0, 90.0)), dict(n_steps=5)])
def test_impossible_settings_are_refused(kw):
    with pytest.raises(ConfigError, match="primary check"):
        PrimaryCheckSettings(**kw)


def test_results_round_trip_and_report_rebuilds_with_the_check(tmp_path, capsys):
    from pathlib import Path
    import shutil

    from brachymc.validation.primary_check import PrimaryCheckResult
    from brachymc.validation.tg43_mc import TG43Result

    src = Path(__file__).resolve().parents[1] / "docs" / "validation" / "best_2301"
    for name in ("tg43_best_2301.json", "primary_best_2301.json"):
        shutil.copy(src / name, tmp_path / name)
    res = TG43Result.from_json(tmp_path / "tg43_best_2301.json")
    assert res.seed == "best_2301" and res.lambda_cGy_per_h_per_U == pytest.approx(1.0005, abs=1e-4)
    pr = PrimaryCheckResult.from_json(tmp_path / "primary_best_2301.json")
    assert pr.n_bins == 18 and 0.001 < pr.p_value < 1.0
    res.to_json(tmp_path / "again.json")
    assert TG43Result.from_json(tmp_path / "again.json") == res

    assert main(["validate", "report", str(tmp_path / "tg43_best_2301.json")]) == 0
    assert "with the primary-kerma check" in capsys.readouterr().out
    pdf = (tmp_path / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 13 and not list(tmp_path.glob(".*.tmp"))


def test_report_refuses_a_check_of_another_seed_and_a_bad_json(tmp_path, capsys):
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "docs" / "validation"
    rc = main(["validate", "report", str(src / "best_2301" / "tg43_best_2301.json"),
               "--primary", str(src / "oncoseed_6711" / "primary_oncoseed_6711.json"), "--out", str(tmp_path / "r.pdf")])
    assert rc == 2 and "oncoseed_6711" in capsys.readouterr().err and not (tmp_path / "r.pdf").exists()
    bad = tmp_path / "tg43_x.json"
    bad.write_text('{"seed": "x"}')
    assert main(["validate", "report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "missing" in err and not (tmp_path / "report.pdf").exists()
