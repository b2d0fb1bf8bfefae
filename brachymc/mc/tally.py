"""Dose tallies with batch statistics.

Each batch's raw track-length tally is converted to dose per history (Gy/history) and added to
running sums of x and x^2; the mean over batches and its standard error give the dose and its
statistical uncertainty (the batch method, e.g. Walters, Kawrakow & Rogers, Med Phys 29 (2002)
2745). Sums are kept in float64 on the backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brachymc.constants import KEV_PER_G_TO_GY


@dataclass
class Estimate:
    """Mean over batches and its standard error, as host arrays shaped like the grid."""

    mean: np.ndarray
    uncertainty: np.ndarray     # absolute standard error of the mean (same unit as mean)

    @property
    def rel_uncertainty(self) -> np.ndarray:
        """uncertainty / mean; NaN where the mean is 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.mean != 0, self.uncertainty / np.abs(self.mean), np.nan)


@dataclass
class DoseTally:
    """Running batch sums of one or more per-voxel quantities (Gy/history).

    Args:
        backend: array backend holding the sums.
        shape: grid shape (nz, ny, nx).
        voxel_volume: cm3 of each bin (a scalar, or an array of the grid's shape), to turn raw
            (keV cm3/g) tallies into keV/g.
        quantities: names of the tallied quantities, e.g. ``("dose", "primary")``.
    """

    backend: object
    shape: tuple[int, int, int]
    voxel_volume: float | np.ndarray
    quantities: tuple[str, ...] = ("dose",)
    n_batches: int = 0
    n_histories: int = 0
    _sum: dict = field(default_factory=dict)
    _sum2: dict = field(default_factory=dict)
    _inv_volume: object = None
    _tmp: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        xp = self.backend.xp
        n = int(np.prod(self.shape))
        self._inv_volume = xp.asarray(1.0 / np.broadcast_to(np.asarray(self.voxel_volume, float), self.shape).reshape(-1))
        for q in self.quantities:
            self._sum.setdefault(q, xp.zeros(n, dtype=xp.float64))
            self._sum2.setdefault(q, xp.zeros(n, dtype=xp.float64))

    def add_batch(self, raw: dict, n_histories: int) -> None:
        """Add one batch: ``raw[q]`` is the batch's raw tally (keV cm3/g) of ``n_histories``."""
        if n_histories <= 0:
            raise ValueError("a batch needs at least one history")
        scale = KEV_PER_G_TO_GY / n_histories
        xp = self.backend.xp
        if self._tmp is None:
            self._tmp = xp.empty_like(self._inv_volume)
        x = self._tmp                   # in place: the same arithmetic, half the memory traffic
        for q in self.quantities:
            xp.multiply(raw[q], self._inv_volume, out=x)
            x *= scale
            self._sum[q] += x
            xp.multiply(x, x, out=x)
            self._sum2[q] += x
        self.n_batches += 1
        self.n_histories += int(n_histories)

    def estimate(self, quantity: str = "dose") -> Estimate:
        """Batch mean and standard error (Gy/history) as host arrays shaped (nz, ny, nx)."""
        nb = self.n_batches
        if nb == 0:
            raise ValueError("no batches tallied yet")
        s = self.backend.asnumpy(self._sum[quantity])
        s2 = self.backend.asnumpy(self._sum2[quantity])
        mean = s / nb
        if nb > 1:
            var = np.maximum(s2 / nb - mean * mean, 0.0) / (nb - 1)
            unc = np.sqrt(var)
        else:
            unc = np.full_like(mean, np.nan)
        return Estimate(mean.reshape(self.shape), unc.reshape(self.shape))

    def state(self) -> dict:
        """Host copies of the sums (for checkpoints)."""
        return {
            "n_batches": self.n_batches, "n_histories": self.n_histories,
            **{f"sum/{q}": self.backend.asnumpy(self._sum[q]) for q in self.quantities},
            **{f"sum2/{q}": self.backend.asnumpy(self._sum2[q]) for q in self.quantities},
        }
