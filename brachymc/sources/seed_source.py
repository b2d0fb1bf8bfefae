"""A seed as a photon source: decays uniform in the active solids, isotropic emission.

Photons start inside the seed's active region with the seed's spectrum; the transport then
carries them through the seed's own solids (capsule, marker, coating) before they reach the
surrounding medium, so self-absorption, capsule filtration and fluorescence are modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brachymc.geometry.seed import SeedModel, orthonormal_frame
from brachymc.sources.simple import SourcePhotons, isotropic
from brachymc.sources.spectrum import Spectrum, load_spectrum


@dataclass(frozen=True)
class SeedSource:
    """Photons from the active region of ``model`` placed at ``center`` (cm) along ``axis``."""

    model: SeedModel
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    spectrum: Spectrum | None = None

    def __post_init__(self) -> None:
        if self.spectrum is None:
            object.__setattr__(self, "spectrum", load_spectrum(self.model.spectrum))

    def sample(self, xp, rng, n: int) -> SourcePhotons:
        z, x, y = self.model.sample_active(xp, rng, n)
        e1, e2, a = (xp.asarray(v)[:, None] for v in orthonormal_frame(self.axis))
        pos = xp.asarray(self.center, dtype=xp.float64)[:, None] + e1 * x + e2 * y + a * z
        return SourcePhotons(pos, isotropic(xp, rng, n), self.spectrum.sample(xp, rng, n), xp.ones(n))

    def describe(self) -> dict:
        return {"type": "seed", "model": self.model.key, "name": self.model.name, "center_cm": list(self.center),
                "axis": list(self.axis), "spectrum": self.spectrum.name}

    def bounding_points(self) -> np.ndarray:
        lo, hi, _ = self.model.bounds()
        _, _, a = orthonormal_frame(self.axis)
        c = np.asarray(self.center, float)
        return np.array([c + lo * a, c + hi * a])


@dataclass(frozen=True)
class SeedSetSource:
    """Several seeds of one model; each history starts in seed k with probability weights[k].

    Weights are proportional to the seeds' air-kerma strengths (all equal by default). Photons
    carry the index of their seed as ``tag`` (used by superposition mode).
    """

    model: SeedModel
    placements: tuple
    weights: tuple[float, ...] | None = None
    spectrum: Spectrum | None = None

    def __post_init__(self) -> None:
        if self.spectrum is None:
            object.__setattr__(self, "spectrum", load_spectrum(self.model.spectrum))
        w = np.ones(len(self.placements)) if self.weights is None else np.asarray(self.weights, float)
        if w.shape != (len(self.placements),) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError("seed weights must be non-negative, one per seed, not all zero")
        object.__setattr__(self, "_prob", w / w.sum())
        frames = [orthonormal_frame(p.axis) for p in self.placements]
        object.__setattr__(self, "_frames", np.array(frames))              # (S, 3, 3): e1, e2, a
        object.__setattr__(self, "_centers", np.array([p.center for p in self.placements], float))

    def sample(self, xp, rng, n: int) -> SourcePhotons:
        cum = xp.asarray(np.cumsum(self._prob)[:-1])
        k = xp.searchsorted(cum, rng.random(n), side="right")
        z, x, y = self.model.sample_active(xp, rng, n)
        fr = xp.asarray(self._frames)[k]                                    # (n, 3, 3)
        c = xp.asarray(self._centers)[k]                                    # (n, 3)
        pos = (c + fr[:, 0, :] * x[:, None] + fr[:, 1, :] * y[:, None] + fr[:, 2, :] * z[:, None]).T.copy()
        return SourcePhotons(pos, isotropic(xp, rng, n), self.spectrum.sample(xp, rng, n), xp.ones(n), k)

    def describe(self) -> dict:
        return {"type": "seeds", "model": self.model.key, "n_seeds": len(self.placements),
                "spectrum": self.spectrum.name}

    def bounding_points(self) -> np.ndarray:
        return self._centers
