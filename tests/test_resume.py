"""Resume equals the uninterrupted run bit for bit in every stop mode (history limit, target
uncertainty, time budget), whether the run was interrupted during transport or after it (while
the outputs were written), and the resumed run says that it resumed and from which batch."""

from __future__ import annotations

import numpy as np
import pytest

import brachymc.pipeline.patient as patient
import brachymc.pipeline.runner as runner
from _cases import box_contours, write_case
from brachymc.io.dicom_rtstruct import Structure
from brachymc.pipeline.config import load_run_config
from brachymc.pipeline.patient import run_patient

PLANES = np.arange(-4.0, 4.1, 2.0)


class BatchClock:
    """A clock that advances 1 s per transported batch: the time budget becomes deterministic."""

    def __init__(self, monkeypatch):
        self.t = 0.0
        real = runner.compute_batch

        def counting(*a, **k):
            out = real(*a, **k)
            self.t += 1.0
            return out

        monkeypatch.setattr(runner, "compute_batch", counting)

    def __call__(self) -> float:
        return self.t


def _case(tmp_path, name: str, **simulation):
    rois = [Structure("GTV", 1, tuple(box_contours((-4, 10), (-4, 4), PLANES)), roi_type="GTV")]
    return load_run_config(write_case(tmp_path / name, seeds_mm=((0.0, 0.0, 0.0), (5.0, 0.0, 0.0)),
                                      dirs=((0, 0, 1),) * 2, rois=rois, structures='target = "GTV"',
                                      simulation={"histories": 40_000, "batch_histories": 1000, **simulation}))


def _run(cfg, out, **kw):
    return run_patient(cfg, out, progress=False, echo=kw.pop("echo", lambda m: None), **kw)


def _interrupt_at(batch: int):
    def on_batch(b, res):
        if b == batch:
            raise KeyboardInterrupt
    return on_batch


def _same(a, b) -> None:
    assert a.run.batches == b.run.batches and a.run.stopped_by == b.run.stopped_by
    assert np.array_equal(a.dose_gy, b.dose_gy) and np.array_equal(a.dose_unc_gy, b.dose_unc_gy)
    for k in ("mc", "mc_unc"):
        assert a.metrics["GTV"][k] == b.metrics["GTV"][k]


def _interrupt_after_transport(monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(patient, "write_outputs", boom)


def _check_both_interruptions(cfg, tmp_path, monkeypatch, whole, stop_batch: int, during: int, clock=None):
    kw = {} if clock is None else {"clock": clock}
    # interrupted during transport, resumed: continues with the next batch, stops where the whole run did
    out = tmp_path / "during"
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, out, on_batch=_interrupt_at(during - 1), **kw)
    said = []
    res = _run(cfg, out, resume=True, echo=said.append, **kw)
    _same(whole, res)
    st = res.summary["statistics"]
    assert st["resumed"] and st["checkpoint_batches"] == during and st["continued_from_batch"] == during + 1
    assert not st["checkpoint_had_stopped"]
    assert any(f"continuing with batch {during + 1}" in m for m in said), said
    # interrupted after transport (outputs being written), resumed: no batch more
    out = tmp_path / "after"
    with monkeypatch.context() as m:
        _interrupt_after_transport(m)
        with pytest.raises(KeyboardInterrupt):
            _run(cfg, out, **kw)
    assert (out / "checkpoint.h5").exists() and not (out / "summary.json").exists()
    transported = []
    with monkeypatch.context() as m:
        real = runner.compute_batch
        m.setattr(runner, "compute_batch", lambda *a, **k: transported.append(a[5]) or real(*a, **k))
        said = []
        res = _run(cfg, out, resume=True, echo=said.append, **kw)
    assert transported == []
    _same(whole, res)
    assert res.run.batches == stop_batch
    st = res.summary["statistics"]
    assert st["checkpoint_had_stopped"] and st["checkpoint_batches"] == stop_batch
    assert any("no more transport" in m for m in said), said
    assert not (out / "checkpoint.h5").exists()


def test_resume_history_limit(tmp_path, monkeypatch):
    cfg = _case(tmp_path, "h", histories=6000)
    whole = _run(cfg, tmp_path / "whole")
    assert whole.run.stopped_by == "histories" and whole.run.batches == 6
    _check_both_interruptions(cfg, tmp_path, monkeypatch, whole, stop_batch=6, during=3)


def test_resume_target_uncertainty(tmp_path, monkeypatch):
    # find a goal the run reaches after a few more batches than min_batches (deterministic: fixed seed)
    trace = {}
    probe = _run(_case(tmp_path, "probe", histories=12_000), tmp_path / "probe",
                 on_batch=lambda b, r: trace.__setitem__(b + 1, r.target_rel_unc_reached))
    assert probe.run.batches == 12
    k = next(b for b in range(7, 13) if trace[b] < min(trace[j] for j in range(4, b)))
    goal = trace[k] * (1 + 1e-9)
    cfg = _case(tmp_path, "t", target_uncertainty=goal)
    whole = _run(cfg, tmp_path / "whole")
    assert whole.run.stopped_by == "target" and whole.run.batches == k
    assert np.array_equal(whole.dose_gy, _run(_case(tmp_path, "t2", histories=1000 * k), tmp_path / "w2").dose_gy)
    _check_both_interruptions(cfg, tmp_path, monkeypatch, whole, stop_batch=k, during=k - 2)


def test_resume_time_budget(tmp_path, monkeypatch):
    """With a clock that counts transported batches (1 s each) a 6.5 s budget stops after 7 batches,
    interrupted or not: the checkpoint carries the transport time of the earlier session."""
    clock = BatchClock(monkeypatch)
    cfg = _case(tmp_path, "b", time_budget_s=6.5)
    whole = _run(cfg, tmp_path / "whole", clock=clock)
    assert whole.run.stopped_by == "time" and whole.run.batches == 7
    _check_both_interruptions(cfg, tmp_path, monkeypatch, whole, stop_batch=7, during=3, clock=clock)


def test_resume_time_budget_wall_clock(tmp_path, monkeypatch):
    """With the real clock, a budget spent by the first batch stops at min_batches: resumed runs too."""
    cfg = _case(tmp_path, "w", time_budget_s=1e-6)
    whole = _run(cfg, tmp_path / "whole")
    assert whole.run.stopped_by == "time" and whole.run.batches == 4
    _check_both_interruptions(cfg, tmp_path, monkeypatch, whole, stop_batch=4, during=2)


def test_resume_with_more_histories_continues(tmp_path, monkeypatch):
    """A checkpoint written at the history limit, resumed with a higher limit, continues to it and
    equals the run made with the higher limit from the start."""
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _interrupt_after_transport(m)
        with pytest.raises(KeyboardInterrupt):
            _run(_case(tmp_path, "four", histories=4000), out)
    more = _run(_case(tmp_path, "four", histories=6000), out, resume=True)
    six = _run(_case(tmp_path, "six", histories=6000), tmp_path / "six")
    _same(six, more)
    assert more.summary["statistics"]["continued_from_batch"] == 5
