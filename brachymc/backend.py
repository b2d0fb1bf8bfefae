"""Array backends: the transport is written once against an array namespace ``xp``.

``Backend`` bundles the namespace (``numpy`` or ``cupy``) with the few operations whose
spelling differs between them: moving arrays to the host, unbuffered scatter-add for
tallies, and random-number generators seeded from a :class:`numpy.random.SeedSequence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from brachymc.errors import BackendError

BACKENDS = ("numpy", "cupy", "auto")


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, CUDARuntimeError, missing driver
        return False


@dataclass(frozen=True)
class Backend:
    """An array namespace plus the backend-specific helpers the transport needs."""

    name: str
    xp: ModuleType

    def asarray(self, a: Any, dtype: Any = None):
        """Copy/convert a host array to this backend."""
        return self.xp.asarray(a, dtype=dtype)

    def asnumpy(self, a: Any) -> np.ndarray:
        """Return a NumPy array (copies device arrays to the host)."""
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def scatter_add(self, target, index, values) -> None:
        """``target[index] += values`` with repeated indices accumulated (unbuffered)."""
        if self.name == "cupy":
            import cupyx

            cupyx.scatter_add(target, index, values)
        else:
            np.add.at(target, index, values)

    def rng(self, seed_sequence: np.random.SeedSequence):
        """A random generator on this backend with a ``random(n)`` method (floats in [0, 1)).

        NumPy uses PCG64 seeded by the SeedSequence; CuPy uses its XORWOW generator seeded
        from 64 bits drawn from the same SeedSequence, so runs are reproducible per backend.
        """
        if self.name == "cupy":
            import cupy

            state = int(seed_sequence.generate_state(1, dtype=np.uint64)[0])
            return cupy.random.default_rng(state)
        return np.random.Generator(np.random.PCG64(seed_sequence))

    def free_memory_bytes(self) -> int | None:
        """Free device memory (CuPy: the device's free bytes plus CuPy's cached free blocks); None on NumPy."""
        if self.name != "cupy":
            return None
        free, _total = self.xp.cuda.runtime.memGetInfo()
        return int(free) + int(self.xp.get_default_memory_pool().free_bytes())

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on NumPy); used for timing only."""
        if self.name == "cupy":
            self.xp.cuda.Stream.null.synchronize()


def get_backend(name: str = "auto") -> Backend:
    """Resolve ``"numpy"``, ``"cupy"`` or ``"auto"`` (CuPy when a GPU is usable, else NumPy)."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        name = "cupy" if cupy_available() else "numpy"
    if name == "cupy":
        if not cupy_available():
            raise BackendError(
                "backend 'cupy' requested but CuPy or a CUDA device is not available "
                "(install the 'gpu' extra: pip install 'brachymc[gpu]', or use backend='numpy')"
            )
        import cupy

        return Backend("cupy", cupy)
    return Backend("numpy", np)
