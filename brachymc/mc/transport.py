"""Transport settings, the raw tallies of a batch, and the choice of engine.

Two engines transport photons with the same physics and the same tables:

* the **array engine** (:class:`~brachymc.mc.array_engine.ArrayTransport`): a lockstep bank of
  photons advanced by array operations on NumPy or CuPy; the reference and the test twin;
* the **kernel engine** (``mc/kernel_engine.py``): one C++/CUDA source in which one thread
  takes a photon from birth to death.

:func:`make_transport` builds the one that ``TransportSettings.engine`` names. Both answer
``run_batch(source, n_histories, stream) -> BatchScores``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brachymc.errors import ConfigError

ENGINES = ("auto", "array", "kernel")


@dataclass(frozen=True)
class TransportSettings:
    """Transport options.

    Attributes:
        cutoff_kev: photons below this energy deposit locally (keV).
        bank_size: photons advanced together; the bank is refilled when half empty. 0: chosen
            from the free device memory on CuPy (:func:`auto_bank_size`), 65,536 on NumPy.
        score_primary: also tally the dose of photons that have not interacted.
        score_collision: also tally the interaction (collision) estimator of deposited energy
            (validation only: it is noisier than the track-length estimator).
        score_water: also tally dose to water in medium (Dw,m): the same track lengths scored with
            (mu_en/rho) of water instead of the voxel's medium (large-cavity conversion, photon
            fluence of the medium; Carlsson Tedgren & Ahnesjo, Med Phys 35 (2008) 1487; TG-186).
            The world's materials must include ``water``.
        engine: ``"kernel"`` (one thread per photon history, ``mc/kernel_engine.py``), ``"array"``
            (``mc/array_engine.py``) or ``"auto"``: the kernel where it builds (a C++ compiler on
            the CPU, CUDA through CuPy on a GPU), else the array engine with a warning.
        threads: OpenMP threads of the kernel's CPU build (0: one per core). The GPU build and
            the array engine ignore it.
    """

    cutoff_kev: float = 1.0
    bank_size: int = 1 << 16
    score_primary: bool = False
    score_collision: bool = False
    score_water: bool = False
    engine: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"threads must be a whole number >= 0 (0: one per core), got {self.threads!r}")
        if not (1.0 <= self.cutoff_kev < 50.0):
            raise ConfigError(f"cutoff_kev must be in [1, 50) keV, got {self.cutoff_kev}")
        if not (0 <= int(self.bank_size) <= 1 << 28):
            raise ConfigError(f"bank_size must be between 1 and 2^28 (or 0: automatic), got {self.bank_size}")


#: device bytes per photon in flight: the bank (~100 B) and the temporaries of one step
#: (~25 float64/int64 arrays of the bank's length, peak), measured from the array transport
BYTES_PER_BANK_PHOTON = 320


def auto_bank_size(backend, fraction: float = 0.5, minimum: int = 1 << 16, maximum: int = 1 << 24) -> int:
    """Bank size from the free device memory: ``fraction`` of it over the bytes one photon needs
    in flight, rounded down to a power of two in [minimum, maximum]; 65,536 on NumPy (the
    per-step Python overhead is amortised there and larger banks only cost cache)."""
    free = backend.free_memory_bytes()
    if free is None:
        return minimum
    n = int(free * fraction / BYTES_PER_BANK_PHOTON)
    n = max(minimum, min(maximum, n))
    return 1 << (n.bit_length() - 1)


@dataclass
class BatchScores:
    """Raw tallies of one batch on the backend (see module docstring for units)."""

    kerma: object
    primary: object | None = None
    collision: object | None = None
    water: object | None = None
    emitted_energy: object = 0.0     # keV, sum of w E of source photons
    escaped_energy: object = 0.0     # keV leaving the grid
    escaped_primary: object = 0.0    # keV leaving the grid without having interacted
    absorbed_local: object = 0.0     # keV deposited below the cutoff
    unscored_energy: object = 0.0    # keV deposited where nothing is scored (inside seeds)
    steps: int = 0                   # voxel steps (photon-steps)
    histories: int = 0
    extra: dict = field(default_factory=dict)


def make_transport(world, tables, backend, settings: TransportSettings):
    """The engine ``settings.engine`` names, for ``world`` (a world or a voxel phantom) and its
    physics ``tables`` on ``backend``.

    ``"auto"`` takes the kernel engine where it builds (a C++ compiler for the NumPy backend, CuPy's
    NVRTC for the CuPy backend) and otherwise the array engine, with a warning naming what is missing.
    """
    from brachymc.mc.array_engine import ArrayTransport

    if settings.engine == "array":
        return ArrayTransport(world, tables, backend, settings)
    from brachymc.errors import KernelBuildError
    from brachymc.mc.kernel_engine import KernelTransport

    try:
        return KernelTransport(world, tables, backend, settings)
    except KernelBuildError as exc:
        if settings.engine == "kernel":
            raise
        import logging

        logging.getLogger(__name__).warning("using the array engine: %s", exc)
        return ArrayTransport(world, tables, backend, settings)
