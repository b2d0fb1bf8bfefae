"""benchmarks/run.py in --ci mode on NumPy: every problem runs and writes a complete, sane record."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "run.py"

KEYS = {"problem", "device", "backend", "histories", "batches", "histories_per_s", "voxel_steps_per_s",
        "time_to_target_s", "extrapolated", "target_rel_unc", "rel_unc_reached", "date", "version", "workers",
        "wall_s", "transport_s", "voxel_steps", "stopped_by", "n_voxels", "n_seeds", "target_voxels"}
POSITIVE = ("histories", "batches", "histories_per_s", "voxel_steps_per_s", "time_to_target_s", "rel_unc_reached",
            "wall_s", "transport_s", "voxel_steps", "n_voxels", "n_seeds", "target_voxels")


def _spine_available() -> bool:
    try:
        return importlib.util.find_spec("brachymc.examples.spine") is not None
    except ImportError:
        return False


def _bench(tmp_path: Path, problem: str, *extra: str) -> list[dict]:
    out = tmp_path / f"{problem}.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--problem", problem, "--backend", "numpy", "--ci",
                           "--json", str(out), *extra], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "histories/s" in proc.stdout and problem in proc.stdout
    return json.loads(out.read_text())


def _check_record(r: dict, problem: str, workers: int = 1) -> None:
    assert KEYS <= set(r), KEYS - set(r)
    assert r["problem"] == problem and r["backend"] == "numpy" and r["ci"] is True
    assert r["workers"] == workers
    assert r["device"] and r["version"] and len(r["date"]) == 10
    for k in POSITIVE:
        assert isinstance(r[k], (int, float)) and math.isfinite(r[k]) and r[k] > 0, (k, r[k])
    # CI sizes: 20,000 histories in 10 batches, the run stops at the history cap before the 2 % target
    assert r["histories"] == 20_000 and r["batches"] == 10 and r["stopped_by"] == "histories"
    assert r["target_rel_unc"] == 0.02 and r["rel_unc_reached"] > 0.02
    assert r["extrapolated"] is True
    assert r["time_to_target_s"] == pytest.approx(r["transport_s"] * (r["rel_unc_reached"] / 0.02) ** 2, rel=1e-12)
    assert r["histories_per_s"] == pytest.approx(r["histories"] / r["wall_s"], rel=1e-12)
    assert r["voxel_steps_per_s"] == pytest.approx(r["voxel_steps"] / r["wall_s"], rel=1e-12)
    # an I-125 photon crosses several voxels before it is absorbed or escapes
    assert 2 < r["voxel_steps"] / r["histories"] < 1000
    assert r["wall_s"] >= r["transport_s"] * 0.99


@pytest.fixture(scope="module")
def seed_water(tmp_path_factory):
    return _bench(tmp_path_factory.mktemp("bench"), "seed-water")


def test_seed_water(seed_water):
    (r,) = seed_water
    _check_record(r, "seed-water")
    assert r["n_seeds"] == 1 and r["n_voxels"] == 40 ** 3 and r["voxel_mm"] == [2.5, 2.5, 2.5]
    # the 0.5-5 cm shell: (4/3) pi (5^3 - 0.5^3) cm3 clipped to the 10 cm cube, in 2.5 mm voxels
    assert 0.45 * 64_000 < r["target_voxels"] < 0.6 * 64_000


def test_seed_water_on_two_dask_workers_matches_in_process(seed_water, tmp_path):
    """Batches on Dask give the in-process tallies: same steps and the same uncertainty."""
    pytest.importorskip("distributed")
    (r,) = _bench(tmp_path, "seed-water", "--workers", "2")
    _check_record(r, "seed-water", workers=2)
    (single,) = seed_water
    assert r["voxel_steps"] == single["voxel_steps"]
    assert r["rel_unc_reached"] == single["rel_unc_reached"]


def test_grid100(tmp_path):
    (r,) = _bench(tmp_path, "grid100")
    _check_record(r, "grid100")
    assert r["n_seeds"] == 4 and r["n_voxels"] == 30 ** 3 and r["voxel_mm"] == [2.0, 2.0, 2.0]
    # >= 25 % of the maximum: a few voxels around each of the 4 seeds, far fewer than the grid
    assert 4 <= r["target_voxels"] < 0.05 * r["n_voxels"]


@pytest.mark.skipif(not _spine_available(), reason="brachymc.examples.spine (the spine case generator) is not "
                                                    "in this checkout yet")
def test_spine(tmp_path):
    (r,) = _bench(tmp_path, "spine")
    _check_record(r, "spine")
    assert r["n_seeds"] >= 20 and r["target_voxels"] > 0


def _load_script():
    spec = importlib.util.spec_from_file_location("brachymc_bench_run", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod            # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


def test_grid100_placements():
    mod = _load_script()
    pl = mod.grid_placements(5, 5, 4)
    c = np.array([p.center for p in pl])
    assert len(pl) == 100 and np.allclose(c.mean(0), 0.0)
    assert sorted(set(c[:, 0])) == [-2.0, -1.0, 0.0, 1.0, 2.0] and sorted(set(c[:, 2])) == [-1.5, -0.5, 0.5, 1.5]
    assert all(p.axis == (0.0, 0.0, 1.0) for p in pl)
    d = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(100) * 9
    assert d.min() == pytest.approx(1.0)
