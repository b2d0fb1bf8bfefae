#!/usr/bin/env python
"""Speed and scale benchmarks: histories/s, voxel steps/s and time to a target uncertainty.

Problems (``--problem``), each with every seed modelled as an analytic solid in the voxel grid:

``seed-water``
    One OncoSeed 6711 (axis along z) at the centre of a (20 cm)^3 water phantom with (1 mm)^3
    voxels (8,000,000 voxels). Target region: the voxels whose centres lie 0.5 cm to 5 cm from the
    seed centre, excluding voxels masked inside the seed. ``--ci``: (10 cm)^3 with 2.5 mm voxels.
``grid100``
    100 6711 seeds on a regular 5 x 5 x 4 grid with 1 cm spacing (x, y in -2..2 cm, z in
    -1.5..1.5 cm), all along z, centred in a (30 cm)^3 water phantom with (1 mm)^3 voxels
    (27,000,000 voxels; each float64 array of the grid is 216 MB; a NumPy run peaks at ~2.1 GB).
    Target region: the scored voxels (outside the seeds, world ``mask``) whose running dose
    estimate is at least 25 % of the running maximum over the scored voxels; it is re-evaluated
    after every batch (early on the noisy maximum is high, so the region grows as it settles). ``--ci``: (6 cm)^3 with 2 mm
    voxels and 2 x 2 x 1 seeds.
``vertebra``
    20 OncoSeed 6711 seeds (axes along z) in a vertebral body at the centre of a (16 cm)^3 water
    phantom of (1 mm)^3 voxels (4,096,000 voxels): a spongiosa cylinder 4 cm across and 3 cm high
    inside a 2 mm cortical-bone shell (4.4 cm across, 3.4 cm high), and a soft-tissue (spinal cord)
    cylinder of 1 cm diameter along z, 3.2 cm posterior (-y) of the body's axis. Seeds: two hexagons
    of 7 (the centre and 6 at 1.2 cm radius) at z = -0.8 and +0.8 cm, and 6 on a 0.75 cm ring at
    z = 0 (turned by 30 deg). Target region: the scored voxels whose running dose is at least 25 %
    of the running maximum (as grid100). ``--ci``: (8 cm)^3 with 2 mm voxels, the same seeds.
``spine``
    The built-in synthetic spine case (``brachymc.examples.demo``, mode ``full``: the CT's 1 x 1 x 2
    mm grid cropped to the implant + 40 mm, all ~40 seeds modelled, dose to medium and dose to
    water scored as in a patient run). Target region: the GTV (mask >= 0.5) outside the seeds.
    ``--ci``: the demo's ``ci`` mode (4 x 4 x 5 mm voxels).

The target is 2 % mean relative statistical uncertainty (batch method; a voxel without dose counts
as 100 %) over the target region (:func:`brachymc.pipeline.runner.mean_rel_uncertainty`). A run
stops when it reaches the target (not before 10 batches), at ``--histories`` or at
``--time-budget``. ``time_to_target_s`` is the transport time until the target was reached; when the
run stopped before, it is extrapolated as ``t * (u_reached / target)^2`` (uncertainty ~ 1/sqrt(N))
and ``extrapolated`` is true.

Timing: the world, physics tables (on-disk cache) and tally are built, and one small warm-up batch
is run (on every worker with ``--workers``), before the clock starts. ``histories_per_s`` and
``voxel_steps_per_s`` use the wall time of the whole ``run_batches`` call (``cpu_s`` is the process's
CPU time over the same span: below ``threads`` x ``wall_s`` when other jobs shared the cores) (a voxel step is one
photon moved across one voxel chord, to a seed surface or to an interaction). ``--workers N`` runs
the batches on a local Dask cluster of N single-threaded worker processes
(:mod:`brachymc.pipeline.distributed`); without it they run in this process.

Dask workers and glibc: Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``). Setting it turns off glibc's dynamic mmap threshold, so
every array of the photon bank (>= 128 kB) is mmap'ed, page-faulted and unmapped again: the NumPy
transport runs about half as fast (measured in-process on seed-water, 500k histories, 2-core AMD
EPYC: 54k histories/s without the variable, 28k with it). Records of Dask runs name the workers' value
(``worker_malloc_trim_threshold``); ``--no-dask-malloc-trim`` starts the workers without it.

The JSON file (``--json``) holds a list with one record per problem.

    python benchmarks/run.py --problem seed-water --backend numpy --histories 2000000
    python benchmarks/run.py --problem seed-water --backend numpy --histories 2000000 --workers 2
    python benchmarks/run.py --problem all --backend cupy --json results.json
    python benchmarks/run.py --problem all --backend numpy --ci
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

PROBLEMS = ("seed-water", "grid100", "vertebra", "spine")
TARGET_REL_UNC = 0.02
MIN_BATCHES = 10
GRID100_DOSE_FRACTION = 0.25
VOLUME_SAMPLES = 100_000        # points per seed for the voxel volume correction (as patient runs)

#: (histories, histories per batch) by (ci, backend) when --histories / --batch-histories are not given
DEFAULT_SIZES = {
    (True, "numpy"): (20_000, 2_000), (True, "cupy"): (200_000, 20_000),
    (False, "numpy"): (2_000_000, 200_000), (False, "cupy"): (500_000_000, 10_000_000),
}
DEFAULT_BANK = {"numpy": 1 << 16, "cupy": 1 << 22}


class ProblemUnavailable(RuntimeError):
    """A problem that cannot be built here (e.g. a module of the package is missing)."""


@dataclass
class Problem:
    """A benchmark problem, built and ready to transport.

    ``target_region`` is a fixed boolean grid mask; ``dynamic_target`` (grid100) instead returns the
    flat indices of the region from the running tally after every batch.
    """

    name: str
    description: str
    target_description: str
    world: object
    transport: object
    source: object
    quantities: tuple[str, ...]
    raw_quantities: dict
    batch_problem: object                    # brachymc.pipeline.distributed.BatchProblem
    n_seeds: int
    target_region: np.ndarray | None = None
    dynamic_target: Callable | None = None
    notes: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# problems
def _seed_problem(name: str, description: str, target_description: str, phantom, placements, backend, bank: int,
                  target_region_of: Callable | None = None, dynamic: bool = False, engine="auto") -> Problem:
    from brachymc import default_library
    from brachymc.geometry.seed import load_builtin_seed
    from brachymc.geometry.seeded_phantom import SeededVoxelWorld
    from brachymc.mc.tables_cache import load_or_build_tables
    from brachymc.mc.physics import PhysicsSettings
    from brachymc.mc.transport import TransportSettings, make_transport
    from brachymc.pipeline.distributed import BatchProblem
    from brachymc.sources.seed_source import SeedSetSource

    lib = default_library()
    model = load_builtin_seed("oncoseed_6711", lib)
    placements = tuple(placements)
    world = SeededVoxelWorld(phantom, model, placements, lib, backend, volume_samples=VOLUME_SAMPLES)
    ts = TransportSettings(bank_size=bank, engine=engine)
    tables = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=ts.cutoff_kev))
    transport = make_transport(world, tables, backend, ts)
    source = SeedSetSource(model, placements)
    g = phantom.geometry
    bp = BatchProblem(key=f"bench-{name}-{g.shape}-{g.spacing}-{len(placements)}-{bank}", phantom=phantom,
                      transport=ts, backend=backend.name, model=model, placements=placements,
                      volume_samples=VOLUME_SAMPLES, quantities={"dose": "kerma"})
    p = Problem(name, description, target_description, world, transport, source, ("dose",), {"dose": "kerma"}, bp,
                len(placements))
    if dynamic:
        p.dynamic_target = _dose_fraction_region(world, GRID100_DOSE_FRACTION)
    else:
        p.target_region = target_region_of(world)
    return p


def build_seed_water(backend, ci: bool, bank: int, workdir: Path | None = None, engine="auto") -> Problem:
    from brachymc import default_library
    from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
    from brachymc.geometry.seeded_phantom import SeedPlacement

    size, vox = (10.0, 0.25) if ci else (20.0, 0.1)
    g = GridGeometry.centered((size,) * 3, (vox,) * 3)
    phantom = VoxelPhantom.homogeneous(g, default_library()["water"])
    r_lo, r_hi = 0.5, 5.0

    def shell(world):
        z, y, x = np.meshgrid(g.centers(2), g.centers(1), g.centers(0), indexing="ij")
        r = np.sqrt(x * x + y * y + z * z)
        return (r >= r_lo) & (r <= r_hi) & ~world.mask

    return _seed_problem(
        "seed-water", f"one OncoSeed 6711 at the centre of a ({size:g} cm)^3 water phantom, "
                      f"({10 * vox:g} mm)^3 voxels, {g.n_voxels:,} voxels",
        f"voxels {r_lo:g}-{r_hi:g} cm from the seed centre", phantom, [SeedPlacement((0.0, 0.0, 0.0), (0.0, 0.0, 1.0))],
        backend, bank, target_region_of=shell, engine=engine)


def grid_placements(nx: int, ny: int, nz: int, spacing_cm: float = 1.0):
    """Seeds along z on a regular nx x ny x nz grid centred on the origin."""
    from brachymc.geometry.seeded_phantom import SeedPlacement

    axis = [(np.arange(n) - (n - 1) / 2.0) * spacing_cm for n in (nx, ny, nz)]
    return [SeedPlacement((float(x), float(y), float(z)), (0.0, 0.0, 1.0))
            for z in axis[2] for y in axis[1] for x in axis[0]]


def build_grid100(backend, ci: bool, bank: int, workdir: Path | None = None, engine="auto") -> Problem:
    from brachymc import default_library
    from brachymc.geometry.phantom import GridGeometry, VoxelPhantom

    size, vox, n = (6.0, 0.2, (2, 2, 1)) if ci else (30.0, 0.1, (5, 5, 4))
    g = GridGeometry.centered((size,) * 3, (vox,) * 3)
    phantom = VoxelPhantom.homogeneous(g, default_library()["water"])
    pl = grid_placements(*n)
    return _seed_problem(
        "grid100", f"{len(pl)} OncoSeed 6711 on a {n[0]}x{n[1]}x{n[2]} grid (1 cm) in a ({size:g} cm)^3 water "
                   f"phantom, ({10 * vox:g} mm)^3 voxels, {g.n_voxels:,} voxels",
        f"voxels >= {100 * GRID100_DOSE_FRACTION:g} % of the running maximum dose, outside the seeds",
        phantom, pl, backend, bank, dynamic=True, engine=engine)


def vertebra_placements():
    """The vertebra problem's 20 seeds: hexagons of 7 at z = -+0.8 cm, a ring of 6 at z = 0 (cm)."""
    from brachymc.geometry.seeded_phantom import SeedPlacement

    pts = []
    for z in (-0.8, 0.8):
        pts.append((0.0, 0.0, z))
        pts += [(1.2 * np.cos(a), 1.2 * np.sin(a), z) for a in np.radians(np.arange(0, 360, 60))]
    pts += [(0.75 * np.cos(a), 0.75 * np.sin(a), 0.0) for a in np.radians(np.arange(30, 390, 60))]
    return [SeedPlacement(tuple(float(c) for c in q), (0.0, 0.0, 1.0)) for q in pts]


def vertebra_phantom(size_cm: float, voxel_cm: float):
    """Water with a vertebral body (spongiosa in a 2 mm cortical shell) and a soft-tissue cord."""
    from brachymc import default_library
    from brachymc.geometry.phantom import GridGeometry, VoxelPhantom

    lib = default_library()
    g = GridGeometry.centered((size_cm,) * 3, (voxel_cm,) * 3)
    mats = (lib["water"], lib["cortical_bone"], lib["spongiosa"], lib["spinal_cord"])
    z, y, x = np.meshgrid(g.centers(2), g.centers(1), g.centers(0), indexing="ij")
    r = np.hypot(x, y)
    idx = np.zeros(g.shape, np.uint8)
    idx[(r <= 2.2) & (np.abs(z) <= 1.7)] = 1
    idx[(r <= 2.0) & (np.abs(z) <= 1.5)] = 2
    idx[np.hypot(x, y + 3.2) <= 0.5] = 3
    rho = np.array([m.density for m in mats])[idx]
    return VoxelPhantom(g, mats, idx, rho)


def build_vertebra(backend, ci: bool, bank: int, workdir: Path | None = None, engine="auto") -> Problem:
    size, vox = (8.0, 0.2) if ci else (16.0, 0.1)
    phantom = vertebra_phantom(size, vox)
    pl = vertebra_placements()
    g = phantom.geometry
    return _seed_problem(
        "vertebra", f"{len(pl)} OncoSeed 6711 in a vertebral body (spongiosa, 2 mm cortical shell, cord) at the "
                    f"centre of a ({size:g} cm)^3 water phantom, ({10 * vox:g} mm)^3 voxels, {g.n_voxels:,} voxels",
        f"voxels >= {100 * GRID100_DOSE_FRACTION:g} % of the running maximum dose, outside the seeds",
        phantom, pl, backend, bank, dynamic=True, engine=engine)


def _dose_fraction_region(world, fraction: float) -> Callable:
    """Flat indices of the scored voxels whose running mean dose is >= fraction x its maximum."""
    scored = None

    def region(tally):
        nonlocal scored
        xp = tally.backend.xp
        if scored is None:
            scored = xp.asarray(~np.asarray(world.mask).reshape(-1))
        mean = xp.where(scored, tally._sum["dose"], 0.0)   # running sum; the mean is sum / n_batches
        top = float(mean.max())
        if not top > 0:
            return xp.flatnonzero(scored)
        return xp.flatnonzero(mean >= fraction * top)

    return region


def build_spine(backend, ci: bool, bank: int, workdir: Path | None = None, engine="auto") -> Problem:
    try:
        import brachymc.examples.spine  # noqa: F401  (the case generator write_demo_case needs)
    except ImportError as exc:
        raise ProblemUnavailable(f"spine: brachymc.examples.spine is not available ({exc})") from None
    from brachymc import default_library
    from brachymc.examples.demo import demo_config, write_demo_case
    from brachymc.geometry.phantom import VoxelPhantom
    from brachymc.geometry.seeded_phantom import SeededVoxelWorld
    from brachymc.mc.tables_cache import load_or_build_tables
    from brachymc.mc.physics import PhysicsSettings
    from brachymc.mc.tally import DoseTally
    from brachymc.mc.transport import TransportSettings, make_transport
    from brachymc.pipeline.distributed import BatchProblem
    from brachymc.pipeline.patient import build_phantom, load_inputs, placements_of
    from brachymc.pipeline.runner import default_quantities
    from brachymc.sources.seed_source import SeedSetSource

    lib = default_library()
    mode = "ci" if ci else "full"
    run_file = write_demo_case(workdir / f"spine-{mode}", mode=mode)
    cfg = demo_config(run_file)
    inputs = load_inputs(cfg, lib)
    phantom, _ = build_phantom(cfg, inputs, lib)
    if cfg.dose.dose_to_water and "water" not in phantom.material_names():
        phantom = VoxelPhantom(phantom.geometry, phantom.materials + (lib["water"],), phantom.material_index,
                               phantom.density)
    s = cfg.simulation
    placements = placements_of(inputs.plan)
    weights = tuple(float(w) for w in inputs.plan.sk_at_implant())
    world = SeededVoxelWorld(phantom, inputs.model, placements, lib, backend, mode=s.mode,
                             volume_samples=VOLUME_SAMPLES)
    ts = TransportSettings(bank_size=bank, score_water=cfg.dose.dose_to_water, engine=engine)
    tables = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=ts.cutoff_kev))
    transport = make_transport(world, tables, backend, ts)
    source = SeedSetSource(inputs.model, placements, weights=weights)
    quantities = ("dose",) + (("dose_water",) if cfg.dose.dose_to_water else ())
    raw = default_quantities(DoseTally(backend, (1, 1, 1), 1.0, quantities))
    names = {k.lower(): k for k in inputs.structures}
    target = (cfg.structures.target or "").lower()
    gtv = inputs.structures[names[target]] if target in names else None
    if gtv is None:
        raise ProblemUnavailable(f"spine: {run_file} names no target structure")
    region = (gtv >= 0.5) & ~world.mask
    g = phantom.geometry
    bp = BatchProblem(key=f"bench-spine-{mode}-{tuple(map(int, g.shape))}-{bank}", phantom=phantom, transport=ts,
                      backend=backend.name, model=inputs.model, placements=placements, weights=weights, mode=s.mode,
                      volume_samples=VOLUME_SAMPLES, quantities=raw)
    vmm = "x".join(f"{10 * v:g}" for v in g.spacing)
    return Problem("spine", f"synthetic spine case ({mode} mode), {inputs.plan.n_seeds} seeds modelled, "
                            f"{vmm} mm voxels, {int(g.n_voxels):,} voxels", "GTV outside the seeds",
                   world, transport, source, quantities, raw, bp, inputs.plan.n_seeds, target_region=region,
                   notes=list(inputs.notes))


BUILDERS = {"seed-water": build_seed_water, "grid100": build_grid100, "vertebra": build_vertebra,
            "spine": build_spine}


# ---------------------------------------------------------------------------------------------
# execution
class DynamicTargetExecutor:
    """Wraps an executor; stops handing out batches once the (re-evaluated) target is reached.

    ``run_batches`` adds batch b to the tally before it asks for batch b + 1, so the check sees
    every batch; stopping ends the run's loop normally (the wrapped executor is then closed).
    """

    def __init__(self, inner, tally, region_of: Callable, target: float, min_batches: int):
        self.inner, self.tally, self.region_of = inner, tally, region_of
        self.target, self.min_batches = float(target), int(min_batches)
        self.reached = False
        self.last_unc: float | None = None
        self.last_voxels = 0

    def evaluate(self) -> float:
        from brachymc.pipeline.runner import mean_rel_uncertainty

        idx = self.region_of(self.tally)
        self.last_voxels = int(idx.shape[0])
        self.last_unc = mean_rel_uncertainty(self.tally, idx) if self.last_voxels else math.inf
        return self.last_unc

    def batches(self, start: int, stop: int):
        for b, raw in self.inner.batches(start, stop):
            yield b, raw
            if self.tally.n_batches >= self.min_batches and self.evaluate() <= self.target:
                self.reached = True
                return

    def close(self) -> None:
        self.inner.close()


def _warm_up_dask(client, problem, histories: int, seed: int) -> None:
    """Build the problem on every worker and run one small batch there (outside the timing)."""
    from brachymc.pipeline.distributed import run_batch_task

    fut = client.scatter(problem, broadcast=True, hash=False)
    workers = list(client.scheduler_info().get("workers", {}))
    tasks = [client.submit(run_batch_task, fut, histories, seed, i, workers=[w], allow_other_workers=False,
                           pure=False) for i, w in enumerate(workers)]
    client.gather(tasks)
    del tasks, fut


def device_name(backend: str) -> str:
    """GPU name (CuPy) or the CPU model from /proc/cpuinfo with the number of visible cores."""
    if backend == "cupy":
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor() or platform.machine()} ({os.cpu_count()} cores visible)"


def _malloc_trim_env() -> str | None:
    """This process's MALLOC_TRIM_THRESHOLD_ (run on the Dask workers)."""
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def _start_client(workers: int, backend: str, malloc_trim: bool):
    """A local Dask cluster from :func:`make_client`; ``malloc_trim=False`` drops Dask's
    ``MALLOC_TRIM_THRESHOLD_`` from the workers' environment (see the module docstring)."""
    import dask
    import distributed  # noqa: F401  (loads Dask's distributed defaults before they are read or changed)

    from brachymc.pipeline.distributed import make_client

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    if not malloc_trim:
        env.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        return make_client(workers=int(workers), backend=backend)


def run_problem(name: str, backend_name: str, ci: bool = False, workers: int | None = None,
                histories: int | None = None, batch_histories: int | None = None, seed: int = 1,
                time_budget_s: float | None = None, bank_size: int | None = None, workdir: Path | None = None,
                malloc_trim: bool = True, engine: str = "auto") -> dict:
    """Build, warm up and time one problem; returns the JSON record."""
    from brachymc import __version__
    from brachymc.backend import get_backend
    from brachymc.mc.tally import DoseTally
    from brachymc.pipeline.runner import InlineExecutor, StopRule, compute_batch, run_batches

    backend = get_backend(backend_name)
    bank = int(bank_size or DEFAULT_BANK[backend.name])
    n_hist, per = DEFAULT_SIZES[(ci, backend.name)]
    if histories is not None:
        n_hist = int(histories)
        if batch_histories is None:
            per = max(1, min(per, n_hist // MIN_BATCHES))
    if batch_histories is not None:
        per = int(batch_histories)
    t_setup = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="brachymc-bench-") as tmp:
        p = BUILDERS[name](backend, ci, bank, Path(workdir) if workdir else Path(tmp), engine=engine)
    g = p.world.geom
    tally = DoseTally(backend, tuple(int(n) for n in g.shape), p.world.score_volume, p.quantities)
    rule = StopRule(max_histories=max(n_hist, MIN_BATCHES * per), batch_histories=per, min_batches=MIN_BATCHES,
                    target_rel_unc=TARGET_REL_UNC if p.target_region is not None else None,
                    time_budget_s=time_budget_s, checkpoint_every_s=0)
    warm_hist = max(1, min(per, 2_000 if backend.name == "numpy" else 100_000))
    client, trim = None, None
    try:
        if workers:
            from brachymc.pipeline.distributed import DaskExecutor

            client = _start_client(int(workers), backend.name, malloc_trim)
            trim = sorted(set(client.run(_malloc_trim_env).values()), key=str)
            _warm_up_dask(client, p.batch_problem, warm_hist, seed + 1)
            inner = DaskExecutor(client, p.batch_problem, per, seed)
        else:
            compute_batch(p.transport, p.source, p.raw_quantities, warm_hist, seed + 1, 0)
            inner = InlineExecutor(p.transport, p.source, p.raw_quantities, per, seed)
        setup_s = time.perf_counter() - t_setup
        executor = inner
        if p.dynamic_target is not None:
            executor = DynamicTargetExecutor(inner, tally, p.dynamic_target, TARGET_REL_UNC, MIN_BATCHES)
        t0 = time.perf_counter()
        c0 = os.times()
        res = run_batches(p.transport, p.source, tally, rule, seed, raw_quantities=p.raw_quantities,
                          target_region=p.target_region, executor=executor)
        backend.synchronize()
        wall = time.perf_counter() - t0
        c1 = os.times()
        cpu = (c1.user - c0.user) + (c1.system - c0.system)
    finally:
        if client is not None:
            from brachymc.pipeline.distributed import close_client

            close_client(client)
    stopped_by = res.stopped_by
    if p.dynamic_target is not None:
        if executor.reached:
            stopped_by = "target"
        else:
            executor.evaluate()       # the region and uncertainty after the last batch
        u = executor.last_unc
        target_voxels = executor.last_voxels
    else:
        u = res.target_rel_unc_reached
        target_voxels = int(np.count_nonzero(p.target_region))
    t_run = res.wall_time_s
    if stopped_by == "target":
        ttt, extrapolated = t_run, False
    elif u is not None and math.isfinite(u):
        ttt, extrapolated = t_run * (u / TARGET_REL_UNC) ** 2, True
    else:
        ttt, extrapolated = None, True
    rec = {
        "problem": name, "description": p.description, "ci": bool(ci), "device": device_name(backend.name),
        "backend": backend.name, "workers": int(workers or 1),
        "executor": f"dask local cluster, {int(workers)} worker processes" if workers else "in-process",
        "histories": int(res.histories), "batches": int(res.batches), "batch_histories": int(per),
        "worker_malloc_trim_threshold": trim, "bank_size": bank, "seed": int(seed), "n_seeds": p.n_seeds,
        "n_voxels": int(g.n_voxels),
        "grid_shape_zyx": [int(n) for n in g.shape], "voxel_mm": [round(10 * float(v), 6) for v in g.spacing],
        "wall_s": wall, "transport_s": float(t_run), "setup_s": setup_s,
        "cpu_s": cpu, "threads": getattr(p.transport, "threads", 1), "engine": p.transport.describe(),
        "histories_per_s": res.histories / wall, "voxel_steps": int(res.voxel_steps),
        "voxel_steps_per_s": res.voxel_steps / wall, "steps_per_history": res.voxel_steps / max(res.histories, 1),
        "target_region": p.target_description, "target_voxels": target_voxels, "target_rel_unc": TARGET_REL_UNC,
        "rel_unc_reached": float(u) if u is not None and math.isfinite(u) else None,
        "time_to_target_s": ttt, "extrapolated": extrapolated, "stopped_by": stopped_by,
        "date": date.today().isoformat(), "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__, "python": platform.python_version(), "numpy": np.__version__,
        "host": platform.node(), "notes": p.notes,
    }
    if backend.name == "cupy":
        import cupy

        rec["cupy"] = cupy.__version__
    return rec


def print_table(rows: list[dict], out=sys.stdout) -> None:
    head = (f"{'problem':11} {'backend':7} {'wkr':>3} {'histories':>12} {'batches':>7} {'time (s)':>9} "
            f"{'histories/s':>12} {'voxel steps/s':>14} {'unc.':>7} {'to 2 % (s)':>11}  device")
    print(head, file=out)
    for r in rows:
        u = f"{100 * r['rel_unc_reached']:6.2f}%" if r["rel_unc_reached"] is not None else "    n/a"
        t = "n/a" if r["time_to_target_s"] is None else f"{r['time_to_target_s']:.4g}{'*' if r['extrapolated'] else ''}"
        print(f"{r['problem']:11} {r['backend']:7} {r['workers']:3d} {r['histories']:12,d} {r['batches']:7d} "
              f"{r['wall_s']:9.2f} {r['histories_per_s']:12,.0f} {r['voxel_steps_per_s']:14,.0f} {u} {t:>11}  "
              f"{r['device']}", file=out)
    if any(r["extrapolated"] for r in rows):
        print("* extrapolated: t x (uncertainty reached / target)^2", file=out)
    for r in rows:
        print(f"  {r['problem']}: {r['description']}; target region: {r['target_region']} "
              f"({r['target_voxels']:,} voxels); stopped by {r['stopped_by']}", file=out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problem", required=True, choices=PROBLEMS + ("all",))
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    ap.add_argument("--json", metavar="OUT.json", help="write the records (a JSON list) to this file")
    ap.add_argument("--ci", action="store_true", help="tiny problems (seconds on NumPy), for tests")
    ap.add_argument("--workers", type=int, default=None,
                    help="run the batches on a local Dask cluster of N worker processes (default: in-process)")
    ap.add_argument("--histories", type=int, default=None, help="cap on source photons (default depends on backend)")
    ap.add_argument("--batch-histories", type=int, default=None,
                    help="photons per batch (default: histories/10, at most 200k on NumPy, 10M on CuPy); "
                         "a run has at least 10 batches")
    ap.add_argument("--time-budget", type=float, default=None, metavar="S", help="stop after S s of transport")
    ap.add_argument("--bank-size", type=int, default=None, help="photon bank (default 65536 NumPy, 4194304 CuPy)")
    ap.add_argument("--no-dask-malloc-trim", action="store_true",
                    help="start the Dask workers without Dask's MALLOC_TRIM_THRESHOLD_=65536 (see above)")
    ap.add_argument("--seed", type=int, default=1, help="root random seed of the run")
    ap.add_argument("--engine", default="auto", choices=("auto", "array", "kernel"),
                    help="transport engine (default: the kernel where it builds)")
    ap.add_argument("--workdir", default=None, help="folder for the spine case files (default: a temporary one)")
    a = ap.parse_args(argv)
    if a.workers is not None and a.workers < 1:
        ap.error("--workers must be >= 1")
    if a.histories is not None and a.histories < 2:
        ap.error("--histories must be >= 2")
    if a.backend == "cupy":
        from brachymc.backend import cupy_available

        if not cupy_available():
            print("error: --backend cupy needs CuPy and a CUDA device", file=sys.stderr)
            return 1
    names = list(PROBLEMS) if a.problem == "all" else [a.problem]
    rows = []
    for n in names:
        try:
            rows.append(run_problem(n, a.backend, ci=a.ci, workers=a.workers, histories=a.histories,
                                    batch_histories=a.batch_histories, seed=a.seed, time_budget_s=a.time_budget,
                                    bank_size=a.bank_size, workdir=a.workdir,
                                    malloc_trim=not a.no_dask_malloc_trim, engine=a.engine))
        except ProblemUnavailable as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            if a.problem != "all":
                return 2
    print_table(rows)
    if a.json:
        from brachymc.files import atomic_path

        out = Path(a.json)
        with atomic_path(out) as tmp:
            Path(tmp).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
