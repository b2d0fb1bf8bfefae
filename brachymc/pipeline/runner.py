"""Batch loop of a long run: stopping rules, checkpoints and resume.

A run is a sequence of independent batches. Batch ``i`` draws its random numbers from
``SeedSequence(seed, spawn_key=(i,))`` (the i-th child of ``SeedSequence(seed)``), so a run is
reproducible from its seed whatever the number of batches it ends up needing, and a resumed run
continues with exactly the streams the uninterrupted run would have used. Batch tallies are added
to the running sums in batch order, so an interrupted and resumed run gives the same numbers as an
uninterrupted one (bit for bit on the same backend).

Stopping (checked after each batch, never before ``min_batches``):

* ``max_histories`` reached;
* ``target_rel_unc``: the mean relative statistical uncertainty of the dose over the voxels of
  ``target_region`` (e.g. the GTV) is at or below the target;
* ``time_budget_s``: transport time (summed over resumed sessions) is spent.

Checkpoints are HDF5 files replaced atomically (written to a temporary file, then renamed): the
running sums, batch count, energy bookkeeping, elapsed time, the stop decision (once taken) and a
*fingerprint* of the problem. ``resume=True`` refuses a checkpoint whose fingerprint differs
(another CT, plan or setting).

Resume equals the uninterrupted run, bit for bit, in every stop mode:

* ``histories`` and ``target``: the stop test after batch i sees exactly the sums it saw in the
  uninterrupted run, so it stops after the same batch;
* a run interrupted *after* its stop decision (e.g. while its outputs were being written) repeats
  the stop test on the loaded sums before transporting anything, finds the same decision (also
  recorded in the checkpoint) and transports nothing more; a changed rule (more histories, a
  longer budget, a tighter target) is obeyed instead;
* ``time``: the budget is a wall-clock quantity, so two uninterrupted runs already differ in the
  batch they stop at. What is exact: the dose is a function of the number of batches alone; the
  transport time of earlier sessions is carried in the checkpoint, and a resume after the stop
  decision reproduces the stopped run. ``clock`` lets tests replace the wall clock by a
  deterministic one, under which the resumed run stops after the same batch as the uninterrupted one.

:class:`BatchGroups` keeps the dose summed over groups of batches (batch b in group b mod G) for
chosen voxels: the delete-a-group jackknife of DVH metrics uses it for their statistical
uncertainty. It is part of the checkpoint.
Ctrl-C: the first SIGINT lets the batch in flight finish, writes a final checkpoint and raises
:class:`RunInterrupted` (a KeyboardInterrupt); a second one aborts the batch at once (the checkpoint
then holds the batches completed before it).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from brachymc.constants import KEV_PER_G_TO_GY
from brachymc.errors import ConfigError
from brachymc.files import atomic_path
from brachymc.mc.tally import DoseTally

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2


class RunInterrupted(KeyboardInterrupt):
    """Raised (as a KeyboardInterrupt) after a final checkpoint was written on Ctrl-C."""

    def __init__(self, checkpoint: Path | None, batches: int):
        super().__init__(f"run interrupted after {batches} batches; checkpoint {checkpoint}")
        self.checkpoint = checkpoint
        self.batches = batches


@dataclass(frozen=True)
class StopRule:
    """When a run ends.

    Attributes:
        max_histories: upper bound on source photons (rounded up to whole batches).
        batch_histories: source photons per batch.
        min_batches: batches before any early stop (>= 2; 10 or more for a reliable uncertainty).
        target_rel_unc: stop when the mean relative uncertainty over the target region reaches this
            (fraction, e.g. 0.02); ``None``: no target.
        time_budget_s: stop when this much transport time (s) is spent; ``None``: no budget.
        checkpoint_every_s: write a checkpoint at most this often (s); 0: after every batch.
    """

    max_histories: int
    batch_histories: int
    min_batches: int = 10
    target_rel_unc: float | None = None
    time_budget_s: float | None = None
    checkpoint_every_s: float = 60.0

    def __post_init__(self) -> None:
        if int(self.batch_histories) < 1:
            raise ConfigError(f"histories per batch must be >= 1, got {self.batch_histories}")
        if int(self.min_batches) < 2:
            raise ConfigError(f"min_batches must be >= 2 to estimate an uncertainty, got {self.min_batches}")
        if int(self.max_histories) < int(self.min_batches) * int(self.batch_histories):
            raise ConfigError(
                f"max_histories ({self.max_histories}) is less than min_batches x batch_histories "
                f"({self.min_batches} x {self.batch_histories})")
        if self.target_rel_unc is not None and not (0 < float(self.target_rel_unc) < 1):
            raise ConfigError(f"target uncertainty must be a fraction in (0, 1), got {self.target_rel_unc}")
        if self.time_budget_s is not None and not (float(self.time_budget_s) > 0):
            raise ConfigError(f"time budget must be > 0 s, got {self.time_budget_s}")
        if not (float(self.checkpoint_every_s) >= 0):
            raise ConfigError(f"checkpoint_every_s must be >= 0, got {self.checkpoint_every_s}")

    @property
    def max_batches(self) -> int:
        return -(-int(self.max_histories) // int(self.batch_histories))


@dataclass
class BatchRunResult:
    """What :func:`run_batches` leaves: the tally and the run's bookkeeping."""

    tally: DoseTally
    batches: int
    histories: int
    wall_time_s: float           # transport time over all sessions of the run
    voxel_steps: int
    stopped_by: str              # "histories", "target" or "time"
    target_rel_unc_reached: float | None
    energy: dict = field(default_factory=dict)   # per-batch keV/history lists
    resumed_from: int = 0        # batches read from a checkpoint
    resumed_after_stop: bool = False   # the checkpoint already held the stop decision: nothing transported


class BatchGroups:
    """The dose of chosen voxels summed over G groups of batches (batch b in group b mod G).

    ``index``: flat voxel indices (e.g. every voxel of an evaluated ROI); ``voxel_volume`` as in
    :class:`~brachymc.mc.tally.DoseTally` (the same per-voxel conversion, value for value). The
    delete-a-group jackknife of a statistic θ (a DVH metric) uses the G leave-one-group-out means:
    var(θ) = (G - 1) / G Σ_g (θ_(g) - mean θ_(g))² (Efron & Stein; Quenouille).
    """

    def __init__(self, backend, shape, voxel_volume, index, n_groups: int = 10, raw_quantity: str = "dose"):
        if int(n_groups) < 2:
            raise ConfigError(f"batch groups: need at least 2 groups, got {n_groups}")
        xp = backend.xp
        self.backend, self.n_groups, self.raw_quantity = backend, int(n_groups), raw_quantity
        self.index_host = np.asarray(index, dtype=np.int64).ravel()
        self.index = xp.asarray(self.index_host)
        inv = 1.0 / np.broadcast_to(np.asarray(voxel_volume, float), tuple(shape)).reshape(-1)
        self._inv = xp.asarray(inv[self.index_host])
        self.sums = xp.zeros((self.n_groups, self.index_host.size), dtype=xp.float64)
        self.batches = np.zeros(self.n_groups, dtype=np.int64)

    def add(self, batch: int, raw: dict, n_histories: int) -> None:
        g = int(batch) % self.n_groups
        x = self.backend.xp.asarray(raw[self.raw_quantity])
        self.sums[g] += x[self.index] * self._inv * (KEV_PER_G_TO_GY / n_histories)
        self.batches[g] += 1

    def leave_one_out(self) -> list[np.ndarray]:
        """Mean dose per history (Gy/history) over all batches but those of group g, for each filled g."""
        s = self.backend.asnumpy(self.sums)
        total, nb = s.sum(axis=0), int(self.batches.sum())
        return [(total - s[g]) / (nb - int(self.batches[g])) for g in range(self.n_groups)
                if 0 < self.batches[g] < nb]

    def state(self) -> dict:
        return {"groups/sums": self.backend.asnumpy(self.sums), "groups/batches": self.batches.copy(),
                "groups/index": self.index_host}

    def load(self, f, path: Path) -> None:
        if "groups/sums" not in f:
            raise ConfigError(f"{path}: checkpoint lacks the batch-group sums")
        sums, idx = f["groups/sums"][...], f["groups/index"][...]
        if sums.shape != tuple(self.sums.shape) or not np.array_equal(idx, self.index_host):
            raise ConfigError(f"{path}: the checkpoint's batch groups cover other voxels (ROIs changed?); "
                              "remove it or run without --resume")
        self.sums = self.backend.xp.asarray(sums)
        self.batches = np.asarray(f["groups/batches"][...], dtype=np.int64)


def batch_seed_sequence(seed: int, batch: int) -> np.random.SeedSequence:
    """The random stream of batch ``batch`` of a run with root ``seed``."""
    return np.random.SeedSequence(int(seed), spawn_key=(int(batch),))


def mean_rel_uncertainty(tally: DoseTally, region_index, quantity: str = "dose") -> float:
    """Mean relative standard error of ``quantity`` over the flat voxel indices ``region_index``."""
    xp = tally.backend.xp
    nb = tally.n_batches
    if nb < 2:
        return math.inf
    s = tally._sum[quantity][region_index]
    s2 = tally._sum2[quantity][region_index]
    mean = s / nb
    var = xp.maximum(s2 / nb - mean * mean, 0.0) / (nb - 1)
    ok = mean > 0
    if not bool(ok.any()):
        return math.inf
    rel = xp.sqrt(var[ok]) / mean[ok]
    # voxels with no dose at all count as 100 % uncertain
    return float((xp.sum(rel) + float(xp.sum(~ok))) / region_index.shape[0])


def save_checkpoint(path: Path, tally: DoseTally, fingerprint: str, seed: int, elapsed_s: float, steps: int,
                    energy: dict, stopped_by: str | None = None, groups: BatchGroups | None = None) -> None:
    """Write the run state to ``path`` atomically (``stopped_by``: the stop decision, once taken)."""
    st = tally.state()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = CHECKPOINT_FORMAT
            f.attrs["fingerprint"] = fingerprint
            f.attrs["seed"] = int(seed)
            f.attrs["elapsed_s"] = float(elapsed_s)
            f.attrs["voxel_steps"] = int(steps)
            f.attrs["n_batches"] = int(st["n_batches"])
            f.attrs["n_histories"] = int(st["n_histories"])
            f.attrs["stopped_by"] = stopped_by or ""
            for k, v in st.items():
                if k.startswith("sum"):
                    f.create_dataset(k, data=v)
            for k, v in energy.items():
                f.create_dataset(f"energy/{k}", data=np.asarray(v, dtype=np.float64))
            if groups is not None:
                for k, v in groups.state().items():
                    f.create_dataset(k, data=v)


def checkpoint_summary(path: Path) -> dict:
    """Batches, histories and the stop decision recorded in a checkpoint (for messages)."""
    try:
        with h5py.File(path, "r") as f:
            return {"batches": int(f.attrs.get("n_batches", 0)), "histories": int(f.attrs.get("n_histories", 0)),
                    "stopped_by": str(f.attrs.get("stopped_by", "")) or None}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint ({exc})") from None


def load_checkpoint(path: Path, tally: DoseTally, fingerprint: str, seed: int,
                    groups: BatchGroups | None = None) -> tuple[float, int, dict, str | None]:
    """Fill ``tally`` (and ``groups``) from a checkpoint; returns (elapsed_s, voxel_steps, energy
    lists, stop decision or None)."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint ({exc})") from None
    with f:
        if int(f.attrs.get("format", -1)) != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path}: checkpoint format {f.attrs.get('format')} is not {CHECKPOINT_FORMAT}")
        if str(f.attrs.get("fingerprint")) != fingerprint:
            raise ConfigError(f"{path}: the checkpoint belongs to another problem (CT, plan or settings differ); "
                              "remove it or run without --resume")
        if int(f.attrs["seed"]) != int(seed):
            raise ConfigError(f"{path}: checkpoint seed {int(f.attrs['seed'])} differs from the run's seed {seed}")
        xp = tally.backend.xp
        for q in tally.quantities:
            for kind, target in (("sum", tally._sum), ("sum2", tally._sum2)):
                key = f"{kind}/{q}"
                if key not in f:
                    raise ConfigError(f"{path}: checkpoint lacks the tally {key}")
                data = f[key][...]
                if data.shape != tuple(target[q].shape):
                    raise ConfigError(f"{path}: checkpoint tally {key} has shape {data.shape}, "
                                      f"the run needs {tuple(target[q].shape)}")
                target[q] = xp.asarray(data)
        tally.n_batches = int(f.attrs["n_batches"])
        tally.n_histories = int(f.attrs["n_histories"])
        if groups is not None:
            groups.load(f, path)
        energy = {k: list(f["energy"][k][...]) for k in f["energy"]} if "energy" in f else {}
        return (float(f.attrs["elapsed_s"]), int(f.attrs["voxel_steps"]), energy,
                str(f.attrs.get("stopped_by", "")) or None)


def compute_batch(transport, source, quantities: dict[str, str], histories: int, seed: int, batch: int,
                  on_progress=None, to_host: bool = False) -> dict:
    """Transport batch ``batch`` of a run and return its raw tallies and energy bookkeeping.

    ``quantities`` maps tally names to :class:`~brachymc.mc.transport.BatchScores` fields. The
    result depends only on (problem, seed, batch, histories): the unit of work of both the
    in-process loop and the Dask workers. ``to_host`` copies the tallies to NumPy arrays.
    """
    be = transport.backend
    sc = transport.run_batch(source, histories, batch_seed_sequence(seed, batch), on_progress=on_progress)
    out = {"tallies": {q: getattr(sc, f) for q, f in quantities.items()}}
    if to_host:
        out["tallies"] = {q: be.asnumpy(v) for q, v in out["tallies"].items()}
    out["emitted"] = float(sc.emitted_energy) / histories
    out["escaped"] = float(sc.escaped_energy) / histories
    out["deposited"] = float(be.xp.dot(sc.kerma, transport.world.score_density)) / histories
    out["steps"] = int(sc.steps)
    be.synchronize()
    return out


class InlineExecutor:
    """Runs batches one after the other in this process."""

    def __init__(self, transport, source, quantities: dict[str, str], histories: int, seed: int):
        self.transport, self.source, self.quantities = transport, source, quantities
        self.histories, self.seed = int(histories), int(seed)
        self.on_progress = None

    def batches(self, start: int, stop: int):
        for b in range(start, stop):
            yield b, compute_batch(self.transport, self.source, self.quantities, self.histories, self.seed, b,
                                   self.on_progress)

    def close(self) -> None:
        pass


def default_quantities(tally: DoseTally) -> dict[str, str]:
    return {q: {"dose": "kerma", "dose_water": "water", "primary": "primary", "collision": "collision"}[q]
            for q in tally.quantities}


def _stop_decision(rule: StopRule, b: int, unc: float | None, elapsed: float) -> str | None:
    """Why a run stops after ``b`` batches (mean target uncertainty ``unc``, ``elapsed`` s), or None."""
    if b >= rule.min_batches:
        if rule.target_rel_unc is not None and unc is not None and unc <= float(rule.target_rel_unc):
            return "target"
        if rule.time_budget_s is not None and elapsed >= float(rule.time_budget_s):
            return "time"
    if b >= rule.max_batches:
        return "histories"
    return None


def _aim(rule: StopRule, b: int, unc: float | None, elapsed: float) -> int:
    """Batches the run is expected to need, judged after ``b`` batches (for the progress bar)."""
    est = rule.max_batches
    if unc is not None and math.isfinite(unc) and unc > 0 and rule.target_rel_unc is not None:
        est = min(est, math.ceil(b * (unc / float(rule.target_rel_unc)) ** 2))   # unc ~ 1/sqrt(histories)
    if rule.time_budget_s is not None and elapsed > 0:
        est = min(est, math.ceil(b * float(rule.time_budget_s) / elapsed))
    return int(min(rule.max_batches, max(est, b + 1, rule.min_batches)))


def run_batches(transport, source, tally: DoseTally, rule: StopRule, seed: int, *,
                raw_quantities: dict[str, str] | None = None, target_region: np.ndarray | None = None,
                checkpoint: str | Path | None = None, resume: bool = False, fingerprint: str = "",
                progress: bool = False, on_batch: Callable[[int, BatchRunResult], None] | None = None,
                executor=None, groups: BatchGroups | None = None,
                clock: Callable[[], float] = time.perf_counter) -> BatchRunResult:
    """Run batches of ``rule.batch_histories`` photons from ``source`` until ``rule`` says stop.

    Args:
        transport: a :class:`~brachymc.mc.transport.Transport` (unused when ``executor`` is given).
        tally: an empty :class:`DoseTally` whose quantities name the fields of
            :class:`~brachymc.mc.transport.BatchScores` through ``raw_quantities``
            (default ``{"dose": "kerma"}``, plus ``"dose_water": "water"`` when present).
        target_region: boolean mask (grid shape) over which ``rule.target_rel_unc`` is judged.
        checkpoint: HDF5 path for checkpoints (None: no checkpoints).
        resume: continue from ``checkpoint`` if it exists. A checkpoint written after the stop
            decision is returned as it is (no batch is transported).
        fingerprint: identifies the problem; a checkpoint with another one is refused.
        on_batch: called after every batch with the batch index and the running result (tests use
            it to simulate an interruption).
        executor: where batches run (default: :class:`InlineExecutor`, this process); e.g.
            :class:`brachymc.pipeline.distributed.DaskExecutor`. Batches are added to the tally in
            batch order whatever order they finish in, so the result does not depend on it.
        groups: batch-group sums to keep (and checkpoint) beside the tally, or None.
        clock: seconds counter for the time budget (default :func:`time.perf_counter`).

    The progress bar counts histories; its total is the history limit, re-aimed after each batch at
    the batches the target uncertainty or the time budget will need, and set to the histories
    done when the run stops, so it ends at 100 %.
    """
    raw_quantities = raw_quantities or default_quantities(tally)
    xp = tally.backend.xp
    ckpt = Path(checkpoint) if checkpoint is not None else None
    region = None
    if rule.target_rel_unc is not None:
        if target_region is None or not np.any(target_region):
            raise ConfigError("a target uncertainty needs a non-empty target region (e.g. the GTV)")
    if target_region is not None and np.any(target_region):
        region = xp.asarray(np.flatnonzero(np.asarray(target_region).reshape(-1)))
    energy: dict[str, list] = {"emitted": [], "escaped": [], "deposited": []}
    elapsed, steps, start, stopped = 0.0, 0, 0, None
    if resume and ckpt is not None and ckpt.exists():
        elapsed, steps, energy_loaded, stopped = load_checkpoint(ckpt, tally, fingerprint, seed, groups)
        energy.update(energy_loaded)
        start = tally.n_batches
        log.info("resuming from %s: %d batches, %d histories%s", ckpt, start, tally.n_histories,
                 f" (stopped by {stopped})" if stopped else "")
    per = int(rule.batch_histories)
    result = BatchRunResult(tally, start, tally.n_histories, elapsed, steps, "histories", None, energy, start)
    if start > 0:
        # the stop test of batch `start`, on the loaded sums: a checkpoint written at the stop (e.g.
        # interrupted while the outputs were written) stops here, exactly as the run did; one
        # written before it continues. A changed rule (more histories, a longer budget) is obeyed.
        u = mean_rel_uncertainty(tally, region) if region is not None and start >= 2 else None
        now = _stop_decision(rule, start, u, elapsed)
        if stopped is not None and now is None:
            log.warning("%s: the run had stopped (%s); the changed stopping rule continues it", ckpt, stopped)
        if now is not None:
            result.stopped_by, result.resumed_after_stop, result.target_rel_unc_reached = now, True, u
            if executor is not None:
                executor.close()
            return result
    if executor is None:
        executor = InlineExecutor(transport, source, raw_quantities, per, seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=rule.max_batches * per, initial=start * per, unit="hist", unit_scale=True,
                   desc="transport", dynamic_ncols=True)
        if isinstance(executor, InlineExecutor):
            executor.on_progress = bar.update
    last_ckpt = clock()
    b = start
    decided = None
    requested: list[int] = []
    updating = [False]

    def _on_sigint(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        log.warning("Ctrl-C: finishing the batch in flight, then writing a checkpoint (Ctrl-C again to abort)")

    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGINT, _on_sigint)
    t0 = clock()
    try:
        for bi, raw in executor.batches(start, rule.max_batches):
            if bi != b:
                raise RuntimeError(f"executor returned batch {bi}, expected {b}")
            updating[0] = True
            tally.add_batch(raw["tallies"], per)
            if groups is not None:
                groups.add(b, raw["tallies"], per)
            updating[0] = False
            for k in ("emitted", "escaped", "deposited"):
                energy[k].append(raw[k])
            t1 = clock()
            elapsed += t1 - t0
            t0 = t1
            steps += raw["steps"]
            b += 1
            result.batches, result.histories = b, tally.n_histories
            result.wall_time_s, result.voxel_steps = elapsed, steps
            u = None
            if region is not None and b >= 2:
                u = mean_rel_uncertainty(tally, region)
                result.target_rel_unc_reached = u
            stop = _stop_decision(rule, b, u, elapsed)
            if stop is not None:
                result.stopped_by = decided = stop
            if bar is not None:
                if not isinstance(executor, InlineExecutor):
                    bar.update(per)
                if u is not None:
                    bar.set_postfix_str(f"target unc {100 * u:.2f}%")
                bar.total = b * per if stop is not None else _aim(rule, b, u, elapsed) * per
                if stop is not None:
                    bar.n = b * per
                bar.refresh()
            if ckpt is not None and (stop is not None or clock() - last_ckpt >= float(rule.checkpoint_every_s)):
                save_checkpoint(ckpt, tally, fingerprint, seed, elapsed, steps, energy, stop, groups)
                last_ckpt = clock()
            if on_batch is not None:
                on_batch(b - 1, result)
            if requested:
                raise KeyboardInterrupt
            if stop is not None:
                break
    except KeyboardInterrupt:
        # the batch in flight is discarded: the tally holds only whole batches
        if ckpt is not None and tally.n_batches > 0 and not updating[0]:
            save_checkpoint(ckpt, tally, fingerprint, seed, elapsed, steps, energy, decided, groups)
            log.warning("interrupted: checkpoint of %d batches written to %s", tally.n_batches, ckpt)
        raise RunInterrupted(ckpt, tally.n_batches) from None
    finally:
        executor.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
        if bar is not None:
            bar.close()
    if region is not None and result.target_rel_unc_reached is None:
        result.target_rel_unc_reached = mean_rel_uncertainty(tally, region)
    return result
