"""Dask runs: two workers give the single-process dose bit for bit; a killed worker changes nothing."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from brachymc.backend import get_backend
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.mc.tally import DoseTally
from brachymc.mc.transport import TransportSettings
from brachymc.pipeline.distributed import BatchProblem, DaskExecutor, make_client
from brachymc.pipeline.runner import StopRule, run_batches
from brachymc.sources.simple import PointSource
from brachymc.sources.spectrum import load_spectrum

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def problem(library):
    g = GridGeometry.centered((4, 4, 4), (0.4, 0.4, 0.4))
    ph = VoxelPhantom.homogeneous(g, library["water"]).with_box(library["cortical_bone"], (0.8, -2, -2), (2, 2, 2))
    # threads fixed: a dose is bit-identical for the same kernel threads per batch (the sum order)
    return BatchProblem(key="test-water-bone", phantom=ph, transport=TransportSettings(bank_size=4096, threads=2),
                        backend="numpy", source=PointSource((0.0, 0.0, 0.0), load_spectrum("i125_ncrp58")))


@pytest.fixture(scope="module")
def client():
    c = make_client(workers=2)
    yield c
    from brachymc.pipeline.distributed import close_client

    close_client(c)


def _tally(ph):
    return DoseTally(get_backend("numpy"), ph.geometry.shape, ph.geometry.voxel_volume, ("dose",))


RULE = StopRule(max_histories=8 * 3000, batch_histories=3000, min_batches=2)


def test_two_workers_equal_single_process(problem, client):
    transport, source = problem.build()
    single = run_batches(transport, source, _tally(problem.phantom), RULE, seed=21)
    ex = DaskExecutor(client, problem, RULE.batch_histories, seed=21)
    dist = run_batches(None, None, _tally(problem.phantom), RULE, seed=21, executor=ex)
    a, b = single.tally.estimate("dose"), dist.tally.estimate("dose")
    assert dist.batches == single.batches == 8
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.uncertainty, b.uncertainty)
    assert single.energy["deposited"] == dist.energy["deposited"]


def test_killed_worker_is_recomputed(problem, client):
    """Kill a worker while it holds running tasks: they are recomputed elsewhere with the same streams."""
    rule = StopRule(max_histories=6 * 30_000, batch_histories=30_000, min_batches=2)
    transport, source = problem.build()
    single = run_batches(transport, source, _tally(problem.phantom), rule, seed=33)
    killed = []

    def kill_one_worker(b, res):
        if b == 0 and not killed:
            pid = sorted(client.run(os.getpid).values())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    ex = DaskExecutor(client, problem, rule.batch_histories, seed=33, in_flight=6)
    dist = run_batches(None, None, _tally(problem.phantom), rule, seed=33, executor=ex, on_batch=kill_one_worker)
    assert killed and dist.batches == 6
    assert np.array_equal(single.tally.estimate("dose").mean, dist.tally.estimate("dose").mean)


def test_patient_run_on_dask_equals_in_process(client, tmp_path):
    from test_patient_pipeline import _bone_case

    from brachymc.pipeline.config import load_run_config
    from brachymc.pipeline.patient import run_patient

    # the same kernel threads per batch on both sides: then the doses are bit-identical
    cfg = load_run_config(_bone_case(tmp_path / "case", sim="histories = 40_000\nbatch_histories = 10_000\n"
                                                             "min_batches = 2\nthreads = 1"))
    a = run_patient(cfg, tmp_path / "local", progress=False, echo=lambda m: None)
    b = run_patient(cfg, tmp_path / "dask", progress=False, echo=lambda m: None, client=client)
    assert np.array_equal(a.dose_gy, b.dose_gy) and np.array_equal(a.dose_unc_gy, b.dose_unc_gy)


def test_distributed_run_interrupted_and_resumed(problem, client, tmp_path):
    """Checkpoint/resume through the Dask executor gives the uninterrupted single-process result."""
    from brachymc.pipeline.runner import RunInterrupted

    rule = StopRule(max_histories=6 * 3000, batch_histories=3000, min_batches=2, checkpoint_every_s=0)
    transport, source = problem.build()
    whole = run_batches(transport, source, _tally(problem.phantom), rule, seed=44)

    def stop(b, res):
        if b == 2:
            raise KeyboardInterrupt

    ck = tmp_path / "ck.h5"
    with pytest.raises(RunInterrupted):
        run_batches(None, None, _tally(problem.phantom), rule, seed=44, checkpoint=ck, fingerprint="p",
                    executor=DaskExecutor(client, problem, rule.batch_histories, seed=44), on_batch=stop)
    res = run_batches(None, None, _tally(problem.phantom), rule, seed=44, checkpoint=ck, fingerprint="p",
                      resume=True, executor=DaskExecutor(client, problem, rule.batch_histories, seed=44))
    assert res.resumed_from == 3 and res.batches == 6
    assert np.array_equal(whole.tally.estimate("dose").mean, res.tally.estimate("dose").mean)


def test_local_workers_share_the_cores_between_them(client):
    """workers x kernel threads = cores: each of the 2 local workers runs cores / 2 OpenMP threads."""
    from brachymc.mc.kernel_engine import default_threads

    expect = max(1, default_threads() // 2)
    assert set(client.run(default_threads).values()) == {expect}
