"""A seed as a photon source: decays uniform in the active solids, isotropic emission.

Photons start inside the seed's active region with the seed's spectrum; the transport then
carries them through the seed's own solids (capsule, marker, coating) before they reach the
surrounding medium, so self-absorption, capsule filtration and fluorescence are modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brachymc.geometry.seed import SeedModel
from brachymc.mc.interactions import isotropic
from brachymc.sources.simple import SourcePhotons
from brachymc.sources.spectrum import Spectrum, load_spectrum


def orthonormal_frame(axis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (e1, e2, a) with a along ``axis``."""
    a = np.asarray(axis, float)
    n = np.linalg.norm(a)
    if not n > 0:
        raise ValueError("seed axis must be a non-zero vector")
    a = a / n
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(a, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(a, e1), a


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
