"""The command line: simulate -> dose.h5, physics --json, and clear errors on bad input (demo: test_demo.py)."""

import json

import h5py
import numpy as np
import pytest

from brachymc.cli import main
from brachymc.io.dose_h5 import read_dose_h5

RUN = """
title = "cli test"
[run]
histories = 20000
batches = 4
seed = 9
backend = "numpy"
score_primary = true
[phantom]
material = "water"
size_cm = [3, 3, 3]
voxel_cm = [0.3, 0.3, 0.3]
[[phantom.box]]
material = "cortical_bone"
min_cm = [-1.5, -1.5, 0.5]
max_cm = [1.5, 1.5, 1.0]
[source]
type = "point"
position_cm = [0, 0, 0]
spectrum = "i125_ncrp58"
"""


def test_simulate_writes_dose_file(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(RUN)
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    d = read_dose_h5(tmp_path / "out" / "dose.h5")
    assert d["dose"].shape == (10, 10, 10)
    assert d["attrs"]["histories"] == 20000 and d["attrs"]["batches"] == 4 and d["attrs"]["seed"] == 9
    assert d["attrs"]["backend"] == "numpy" and d["attrs"]["version"]
    assert d["attrs"]["wall_time_s"] > 0 and "cortical_bone" in d["materials"]
    assert set(d) >= {"dose", "dose_uncertainty", "dose_rel_uncertainty", "primary", "primary_uncertainty"}
    assert d["geometry"].spacing == pytest.approx((0.3, 0.3, 0.3))
    assert d["geometry"].origin == pytest.approx((-1.5, -1.5, -1.5))
    assert np.all(d["primary"] <= d["dose"] * (1 + 1e-12))
    assert "cli test" in d["attrs"]["config"]
    # the emitted energy per history is the NCRP-58 mean energy
    assert d["attrs"]["emitted_energy_kev_per_history"] == pytest.approx(28.37, abs=0.3)
    # CLI overrides: same seed -> identical dose
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "again"), "--no-progress"]) == 0
    np.testing.assert_array_equal(read_dose_h5(tmp_path / "again" / "dose.h5")["dose"], d["dose"])


def test_physics_json(capsys, reference_dir):
    assert main(["physics", "--material", "water", "--energies-kev", "20,30,40", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["energy_kev"] for r in rows] == [20, 30, 40]
    for r in rows:
        assert set(r) == {"material", "energy_kev", "mu_rho", "muen_rho", "photo", "incoh", "coh"}
        # components and total are each interpolated log-log: equal to interpolation accuracy
        assert r["mu_rho"] == pytest.approx(r["photo"] + r["incoh"] + r["coh"], rel=1e-5)
    nist = {20: (0.8096, 0.5503), 30: (0.3756, 0.1557), 40: (0.2683, 0.06947)}
    for r in rows:
        mu, muen = nist[r["energy_kev"]]
        assert r["mu_rho"] == pytest.approx(mu, rel=0.01) and r["muen_rho"] == pytest.approx(muen, rel=0.02)


@pytest.mark.parametrize("patch,message", [
    (('material = "water"', 'material = "watr"'), "[phantom] unknown material 'watr'; did you mean water"),
    (("position_cm = [0, 0, 0]", "position_cm = [9, 0, 0]"), "[source] source lies outside the phantom"),
    (("histories = 20000", "histories = -5"), "[run] 'histories' must be > 0"),
    (("batches = 4", "batches = 1"), "batches must be >= 2"),
    (('backend = "numpy"', 'backend = "gpu"'), "[run] 'backend' must be numpy, cupy or auto"),
    (("seed = 9", "seed = 9\nhistorys = 3"), "[run] unknown key(s) historys"),
    (('spectrum = "i125_ncrp58"', 'spectrum = "i126"'), "unknown spectrum 'i126'"),
    (("voxel_cm = [0.3, 0.3, 0.3]", "voxel_cm = [0.7, 0.3, 0.3]"), "not a whole number of voxels"),
    (("[source]", "[source\n"), "not valid TOML"),
])
def test_bad_input_gives_clear_error_and_no_output(tmp_path, capsys, patch, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(RUN.replace(*patch, 1))
    out = tmp_path / "out"
    assert main(["simulate", str(cfg), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.toml" in err
    assert not (out / "dose.h5").exists()


def test_missing_file_and_bad_energies(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "nope.toml"), "--out", str(tmp_path)]) == 2
    assert "nope.toml: file not found" in capsys.readouterr().err
    assert main(["physics", "--material", "water", "--energies-kev", "0.5,30"]) == 2
    assert "energies must lie in" in capsys.readouterr().err
    assert main(["physics", "--material", "unobtainium", "--energies-kev", "30"]) == 2
    assert "unknown material 'unobtainium'" in capsys.readouterr().err


def test_materials_listing(capsys):
    assert main(["materials"]) == 0
    out = capsys.readouterr().out
    assert "cortical_bone" in out and "silver_halide" in out


def test_validate_budget_quick(tmp_path, capsys):
    """`brachymc validate budget --quick`: the budget JSON and its tables; an unknown detector is a clear error."""
    rc = main(["validate", "budget", "--seed", "isoseed_i25s06", "--quick", "--no-nee", "--histories", "50000",
               "--decays", "40", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| gold_marker | gold | marker |" in out and "Closure: emitted 50000" in out and "= 0 photons" in out
    data = json.loads((tmp_path / "budget_isoseed_i25s06.json").read_text())
    assert data["closure"]["photon_balance"] == 0 and data["settings"]["quick"] is True
    assert data["air_kerma"]["clrp_header"]["value"] == 4.8312e-14
    rc = main(["validate", "budget", "--seed", "isoseed_i25s06", "--quick", "--detector", "wafak", "--out",
               str(tmp_path / "x")])
    assert rc == 2
    assert "unknown S_K detector 'wafak'" in capsys.readouterr().err
    assert not (tmp_path / "x" / "budget_isoseed_i25s06.json").exists()
