"""Batch runner: reproducible batches, checkpoint/resume, stopping rules, dose to water in medium."""

import numpy as np
import pytest

from brachymc.backend import get_backend
from brachymc.errors import ConfigError
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.physics import PhysicsSettings
from brachymc.mc.tally import DoseTally
from brachymc.mc.transport import TransportSettings, make_transport
from brachymc.pipeline.runner import RunInterrupted, StopRule, batch_seed_sequence, run_batches
from brachymc.sources.simple import PointSource
from brachymc.sources.spectrum import load_spectrum


@pytest.fixture(scope="module")
def problem(library):
    be = get_backend("numpy")
    g = GridGeometry.centered((4, 4, 4), (0.5, 0.5, 0.5))
    ph = VoxelPhantom.homogeneous(g, library["water"]).with_box(library["cortical_bone"], (0.5, -2, -2), (2, 2, 2))
    ts = TransportSettings(bank_size=4096, score_water=True)
    tables = load_or_build_tables(list(ph.materials), PhysicsSettings())
    tr = make_transport(ph, tables, be, ts)
    src = PointSource((0.0, 0.0, 0.0), load_spectrum("i125_ncrp58"))
    return be, ph, tr, src


def _tally(be, ph):
    return DoseTally(be, ph.geometry.shape, ph.geometry.voxel_volume, ("dose", "dose_water"))


def test_batch_streams_are_spawned_children():
    kids = np.random.SeedSequence(99).spawn(5)
    for i, k in enumerate(kids):
        assert np.array_equal(batch_seed_sequence(99, i).generate_state(4), k.generate_state(4))


def test_interrupted_then_resumed_equals_uninterrupted(problem, tmp_path):
    be, ph, tr, src = problem
    rule = StopRule(max_histories=6 * 2000, batch_histories=2000, min_batches=2, checkpoint_every_s=0)
    full = run_batches(tr, src, _tally(be, ph), rule, seed=7)

    def stop_after_three(b, res):
        if b == 2:
            raise KeyboardInterrupt

    ck = tmp_path / "checkpoint.h5"
    with pytest.raises(RunInterrupted) as ei:
        run_batches(tr, src, _tally(be, ph), rule, seed=7, checkpoint=ck, fingerprint="abc", on_batch=stop_after_three)
    assert ei.value.batches == 3 and ck.exists()
    resumed = run_batches(tr, src, _tally(be, ph), rule, seed=7, checkpoint=ck, resume=True, fingerprint="abc")
    assert resumed.resumed_from == 3 and resumed.batches == 6
    for q in ("dose", "dose_water"):
        a, b = full.tally.estimate(q), resumed.tally.estimate(q)
        assert np.array_equal(a.mean, b.mean) and np.array_equal(a.uncertainty, b.uncertainty)
    assert full.energy["deposited"] == resumed.energy["deposited"]


def test_checkpoint_of_another_problem_is_refused(problem, tmp_path):
    be, ph, tr, src = problem
    rule = StopRule(max_histories=2 * 1000, batch_histories=1000, min_batches=2, checkpoint_every_s=0)
    ck = tmp_path / "c.h5"
    run_batches(tr, src, _tally(be, ph), rule, seed=1, checkpoint=ck, fingerprint="one")
    with pytest.raises(ConfigError, match="another problem"):
        run_batches(tr, src, _tally(be, ph), rule, seed=1, checkpoint=ck, resume=True, fingerprint="two")
    with pytest.raises(ConfigError, match="seed"):
        run_batches(tr, src, _tally(be, ph), rule, seed=2, checkpoint=ck, resume=True, fingerprint="one")


def test_target_uncertainty_stops_early(problem):
    be, ph, tr, src = problem
    g = ph.geometry
    region = np.zeros(g.shape, bool)
    region[3:5, 3:5, 3:5] = True          # the 8 voxels around the source
    rule = StopRule(max_histories=200 * 1000, batch_histories=1000, min_batches=4, target_rel_unc=0.05)
    res = run_batches(tr, src, _tally(be, ph), rule, seed=3, target_region=region)
    assert res.stopped_by == "target"
    assert res.batches < 200 and res.target_rel_unc_reached <= 0.05
    rel = res.tally.estimate("dose").rel_uncertainty[region]
    assert abs(np.mean(rel) - res.target_rel_unc_reached) < 1e-9


def test_time_budget_stops(problem):
    be, ph, tr, src = problem
    rule = StopRule(max_histories=10_000 * 1000, batch_histories=1000, min_batches=2, time_budget_s=1e-6)
    res = run_batches(tr, src, _tally(be, ph), rule, seed=3)
    assert res.stopped_by == "time" and res.batches == 2


def test_dose_to_water_in_medium(problem):
    """Dw,m / Dm,m = (mu_en/rho)_w / (mu_en/rho)_m averaged over the local spectrum: 1 in water; in
    cortical bone between the ratios at the lowest and highest energies present (here 5-36 keV)."""
    be, ph, tr, src = problem
    rule = StopRule(max_histories=10 * 4000, batch_histories=4000, min_batches=10)
    res = run_batches(tr, src, _tally(be, ph), rule, seed=11)
    dm = res.tally.estimate("dose").mean
    dw = res.tally.estimate("dose_water").mean
    water = ph.material_index == 0
    assert np.allclose(dw[water], dm[water], rtol=1e-12)
    bone = (ph.material_index == 1) & (dm > 0)
    ratio = dw[bone].sum() / dm[bone].sum()
    t = load_or_build_tables(list(ph.materials), PhysicsSettings())
    mw, mb = (np.interp([20.0, 35.5], t.energy, t.muen[i]) for i in (0, 1))
    lo, hi = sorted(mw / mb)
    assert lo * 0.9 < ratio < hi * 1.1
    assert 0.15 < ratio < 0.5    # water absorbs 2-6x less than cortical bone at 20-35 keV
