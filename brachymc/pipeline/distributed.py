"""Batches on a Dask cluster: several processes, GPUs or cluster nodes.

A run's batches are independent tasks: task ``b`` transports batch ``b`` with the random stream
``SeedSequence(seed, spawn_key=(b,))`` and returns its raw tallies. The problem (phantom, seeds,
settings) is broadcast once to every worker (``client.scatter(..., broadcast=True)``) and each
worker builds its transport (world + physics tables on its device) once and keeps it resident.
The client adds the batch tallies to the running sums **in batch order** whatever order the tasks
finish in, so the dose equals a single-process run with the same seed (bit for bit on the same
backend) for any number of workers. A task whose worker dies is recomputed by Dask on another
worker with the same stream: the result is unchanged. Stopping rules, checkpoints and resume are
those of :func:`brachymc.pipeline.runner.run_batches` (the executor only changes where batches run).

Clusters: :func:`make_client` starts a ``LocalCluster`` (one single-threaded worker process per
core, or with dask-cuda one worker per GPU) or connects to a running scheduler (``--scheduler
tls://host:8786`` with TLS files). ``configs/cluster/slurm.py`` shows dask-jobqueue on SLURM.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from brachymc.errors import ConfigError
from brachymc.pipeline.runner import compute_batch


@dataclass(frozen=True, eq=False)
class BatchProblem:
    """What a worker needs to run batches (picklable).

    Either seeds (``model``, ``placements``, ``weights``: a :class:`SeededVoxelWorld` and a
    :class:`SeedSetSource`) or any ``source`` in a plain voxel phantom.
    """

    key: str
    phantom: object
    transport: object                     # TransportSettings
    backend: str = "numpy"
    model: object | None = None
    placements: tuple = ()
    weights: tuple | None = None
    mode: str = "full"
    volume_samples: int = 100_000
    source: object | None = None
    library_files: tuple = ()
    quantities: dict = field(default_factory=lambda: {"dose": "kerma"})

    def build(self):
        """(transport, source) for this process: tables from the on-disk cache or built."""
        from brachymc.backend import get_backend
        from brachymc.mc.tables_cache import load_or_build_tables
        from brachymc.mc.physics import PhysicsSettings
        from brachymc.mc.transport import make_transport

        be = get_backend(self.backend)
        if self.model is not None:
            from brachymc.geometry.seeded_phantom import SeededVoxelWorld
            from brachymc.materials import default_library
            from brachymc.sources.seed_source import SeedSetSource

            lib = default_library()
            world = SeededVoxelWorld(self.phantom, self.model, self.placements, lib, be, mode=self.mode,
                                     volume_samples=self.volume_samples)
            source = SeedSetSource(self.model, self.placements, weights=self.weights)
        else:
            from brachymc.geometry.world import VoxelWorld

            world = VoxelWorld(self.phantom, be)
            source = self.source
        tables = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=self.transport.cutoff_kev))
        return make_transport(world, tables, be, self.transport), source


def _resident(problem: BatchProblem):
    """The worker's transport for ``problem``, built on first use and kept on the worker."""
    try:
        from distributed import get_worker

        holder = get_worker()
    except (ImportError, ValueError):      # not on a worker (e.g. a synchronous scheduler)
        holder = _resident
    cache = holder.__dict__.setdefault("_brachymc_problems", {})
    if problem.key not in cache:
        cache.clear()                      # one problem at a time per worker
        cache[problem.key] = problem.build()
    return cache[problem.key]


def run_batch_task(problem: BatchProblem, histories: int, seed: int, batch: int) -> dict:
    """Dask task: one batch of ``problem``, tallies as host arrays."""
    transport, source = _resident(problem)
    return compute_batch(transport, source, problem.quantities, histories, seed, batch, to_host=True)


class DaskExecutor:
    """Runs batches as Dask tasks and hands them back in batch order.

    Args:
        client: a ``distributed.Client``.
        problem: the :class:`BatchProblem` (broadcast to all workers once).
        histories: photons per batch.
        seed: the run's root seed.
        in_flight: tasks kept submitted ahead of the next batch to add (default 2 per worker).
    """

    def __init__(self, client, problem: BatchProblem, histories: int, seed: int, in_flight: int | None = None):
        self.client, self.problem = client, problem
        self.histories, self.seed = int(histories), int(seed)
        n = max(1, len(client.scheduler_info().get("workers", {})))
        self.in_flight = int(in_flight or 2 * n)
        self._pending: dict[int, object] = {}
        self._token = uuid.uuid4().hex[:8]
        self._problem_future = client.scatter(problem, broadcast=True, hash=False)

    def _submit(self, b: int) -> None:
        self._pending[b] = self.client.submit(run_batch_task, self._problem_future, self.histories, self.seed, b,
                                              key=f"brachymc-batch-{self._token}-{b}", retries=2)

    def batches(self, start: int, stop: int):
        nxt = start
        for b in range(start, stop):
            while nxt < stop and nxt < b + self.in_flight:
                self._submit(nxt)
                nxt += 1
            fut = self._pending.pop(b)
            yield b, fut.result()

    def close(self) -> None:
        if self._pending:
            self.client.cancel(list(self._pending.values()))
            self._pending.clear()


def make_client(workers: int | None = None, scheduler: str | None = None, backend: str = "numpy",
                tls_ca_file: str | None = None, tls_cert: str | None = None, tls_key: str | None = None):
    """A Dask client: connect to ``scheduler`` (with optional TLS) or start a local cluster.

    Local clusters use one worker process per requested worker, each running one batch at a time;
    the kernel engine's CPU build there uses cores / workers OpenMP threads (``BRACHYMC_THREADS``,
    unless ``TransportSettings.threads`` fixes them), so workers x threads = cores. With
    ``backend="cupy"`` and dask-cuda installed: one worker per GPU (``LocalCUDACluster``).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - dask is a dependency
        raise ConfigError("distributed runs need dask[distributed]: pip install 'dask[distributed]'") from None
    if scheduler:
        security = None
        if tls_ca_file or tls_cert or tls_key:
            from distributed.security import Security

            security = Security(tls_ca_file=tls_ca_file, tls_client_cert=tls_cert, tls_client_key=tls_key,
                                require_encryption=True)
        try:
            return Client(scheduler, security=security, timeout="30s")
        except OSError as exc:
            raise ConfigError(f"cannot connect to the Dask scheduler {scheduler}: {exc}") from None
    if workers is None or workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if backend == "cupy":
        try:
            from dask_cuda import LocalCUDACluster

            return Client(LocalCUDACluster(n_workers=workers, threads_per_worker=1, dashboard_address=None))
        except ImportError:
            pass
    # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc map and unmap every
    # photon-bank array on every step: the NumPy transport ran 2.2x slower per worker (measured,
    # docs/benchmarks.md). Start local workers without it.
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    # the kernel engine's OpenMP threads: workers x threads = the cores of this machine
    from brachymc.mc.kernel_engine import default_threads

    env.setdefault("BRACHYMC_THREADS", str(max(1, default_threads() // workers)))
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster)


def close_client(client) -> None:
    """Close a client and, if :func:`make_client` started it, its local cluster."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
