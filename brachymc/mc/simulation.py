"""Running a simulation: batches with independent random streams, statistics, results.

A run of N histories in B batches uses ``SeedSequence(seed).spawn(B)``: batch b always gets the
same child stream, so a run is reproducible from its seed (per backend), and batches are
statistically independent, which the batch uncertainty estimate requires.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from brachymc import __version__
from brachymc.backend import get_backend
from brachymc.constants import KEV_PER_G_TO_GY
from brachymc.errors import ConfigError
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.physics import PhysicsSettings, PhysicsTables
from brachymc.mc.tally import DoseTally, Estimate
from brachymc.mc.transport import TransportSettings, make_transport


@dataclass(frozen=True)
class RunSettings:
    """What to simulate and how.

    Attributes:
        histories: source photons in total (rounded up to a multiple of ``batches``).
        batches: independent batches for the uncertainty (>= 2).
        seed: root of the SeedSequence.
        backend: ``"numpy"``, ``"cupy"`` or ``"auto"``.
        transport: :class:`TransportSettings`.
        physics: :class:`PhysicsSettings` (its cutoff follows ``transport.cutoff_kev``).
    """

    histories: int = 1_000_000
    batches: int = 10
    seed: int = 12345
    backend: str = "auto"
    transport: TransportSettings = field(default_factory=TransportSettings)
    physics: PhysicsSettings | None = None

    def __post_init__(self) -> None:
        if int(self.batches) < 2:
            raise ConfigError(f"batches must be >= 2 to estimate an uncertainty, got {self.batches}")
        if int(self.histories) < int(self.batches):
            raise ConfigError(f"histories ({self.histories}) must be at least the number of batches ({self.batches})")
        if int(self.seed) < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed}")

    @property
    def histories_per_batch(self) -> int:
        return -(-int(self.histories) // int(self.batches))

    def physics_settings(self) -> PhysicsSettings:
        p = self.physics or PhysicsSettings()
        if p.cutoff_kev != self.transport.cutoff_kev:
            p = PhysicsSettings(**{**asdict(p), "cutoff_kev": self.transport.cutoff_kev})
        return p


@dataclass
class SimulationResult:
    """Dose per history (Gy/history) with uncertainties and the run's metadata."""

    geometry: GridGeometry
    material_names: tuple[str, ...]
    dose: Estimate
    primary: Estimate | None
    collision: Estimate | None
    histories: int
    batches: int
    seed: int
    backend: str
    wall_time_s: float
    voxel_steps: int
    emitted_energy_kev: float       # per history
    escaped_energy_kev: float       # per history
    local_energy_kev: float         # per history, deposited below the cutoff
    source: dict
    settings: RunSettings
    batch_energy: dict = field(default_factory=dict)  # per-batch keV/history: emitted, escaped, deposited, collision
    engine: dict = field(default_factory=dict)        # the transport engine (describe())
    version: str = __version__

    @property
    def histories_per_second(self) -> float:
        return self.histories / self.wall_time_s if self.wall_time_s > 0 else float("nan")

    @property
    def steps_per_second(self) -> float:
        return self.voxel_steps / self.wall_time_s if self.wall_time_s > 0 else float("nan")


def deposited_energy_kev(estimate: Estimate, phantom: VoxelPhantom) -> float:
    """Energy per history (keV) implied by a dose estimate (Gy/history): sum of D x rho x V."""
    mass = phantom.density.astype(np.float64) * phantom.geometry.voxel_volume
    return float(np.sum(estimate.mean * mass) / KEV_PER_G_TO_GY)


def run_simulation(phantom: VoxelPhantom, source, settings: RunSettings,
                   tables: PhysicsTables | None = None, progress: bool = False,
                   cache: bool = True, on_batch: Callable[[int, dict], None] | None = None) -> SimulationResult:
    """Simulate ``settings.histories`` photons from ``source`` in ``phantom``.

    Args:
        tables: prebuilt tables for ``phantom.materials`` (built or read from cache if None).
        progress: show a progress bar with an ETA (tqdm) on stderr.
        cache: use the on-disk physics-table cache.
        on_batch: called after each batch as ``on_batch(b, values)`` with host arrays (nz, ny, nx)
            of that batch's dose per history (Gy/history) under the tallied quantity names, plus
            the batch's energy bookkeeping as ``energy_<name>`` (keV/history): for statistics of derived quantities
            (region means, ratios) over batches.
    """
    backend = get_backend(settings.backend)
    if tables is None:
        tables = load_or_build_tables(list(phantom.materials), settings.physics_settings(), cache=cache)
    transport = make_transport(phantom, tables, backend, settings.transport)
    transport.check_source(source)
    quantities = ("dose",) + (("primary",) if settings.transport.score_primary else ()) + (
        ("collision",) if settings.transport.score_collision else ()) + (
        ("dose_water",) if settings.transport.score_water else ())
    tally = DoseTally(backend, phantom.geometry.shape, phantom.geometry.voxel_volume, quantities)
    per_batch = settings.histories_per_batch
    children = np.random.SeedSequence(int(settings.seed)).spawn(int(settings.batches))
    emitted = escaped = local = 0.0
    steps = 0
    batch_energy: dict[str, list[float]] = {"emitted": [], "escaped": [], "escaped_primary": [], "deposited": [],
                                            "collision": []}
    rho = transport.world.score_density
    inv_volume = 1.0 / phantom.geometry.voxel_volume
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=per_batch * settings.batches, unit="hist", unit_scale=True, desc="transport",
                   dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        for child in children:
            sc = transport.run_batch(source, per_batch, child, on_progress=bar.update if bar is not None else None)
            raw = {"dose": sc.kerma, "primary": sc.primary, "collision": sc.collision, "dose_water": sc.water}
            tally.add_batch(raw, per_batch)
            emitted += float(sc.emitted_energy)
            escaped += float(sc.escaped_energy)
            local += float(sc.absorbed_local)
            steps += sc.steps
            batch_energy["emitted"].append(float(sc.emitted_energy) / per_batch)
            batch_energy["escaped"].append(float(sc.escaped_energy) / per_batch)
            batch_energy["escaped_primary"].append(float(sc.escaped_primary) / per_batch)
            batch_energy["deposited"].append(float(backend.xp.dot(sc.kerma, rho)) / per_batch)
            if sc.collision is not None:
                batch_energy["collision"].append(float(backend.xp.dot(sc.collision, rho)) / per_batch)
            if on_batch is not None:
                scale = KEV_PER_G_TO_GY * inv_volume / per_batch
                values = {q: backend.asnumpy(raw[q]).reshape(phantom.geometry.shape) * scale for q in quantities}
                values.update({f"energy_{k}": v[-1] for k, v in batch_energy.items() if v})
                on_batch(len(batch_energy["emitted"]) - 1, values)
        backend.synchronize()
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    n = tally.n_histories
    return SimulationResult(
        geometry=phantom.geometry, material_names=tuple(m.name for m in phantom.materials),
        dose=tally.estimate("dose"),
        primary=tally.estimate("primary") if "primary" in quantities else None,
        collision=tally.estimate("collision") if "collision" in quantities else None,
        histories=n, batches=tally.n_batches, seed=int(settings.seed), backend=backend.name,
        wall_time_s=wall, voxel_steps=steps, emitted_energy_kev=emitted / n, escaped_energy_kev=escaped / n,
        local_energy_kev=local / n, source=source.describe(), settings=settings,
        batch_energy={k: np.asarray(v) for k, v in batch_energy.items() if v},
        engine=transport.describe(),
    )
