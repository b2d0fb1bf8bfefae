"""Analytic photon sources: isotropic point, uniform isotropic line, and a pencil beam.

A source is anything with ``sample(xp, rng, n) -> SourcePhotons`` and ``describe() -> dict``
(see :class:`Source`); seed sources with their capsules plug in through the same interface.
Positions in cm, energies in keV; every history is one emitted photon of weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from brachymc.errors import GeometryError
from brachymc.sources.spectrum import Spectrum


def isotropic(xp, rng, n: int):
    """(3, n) isotropic unit vectors."""
    cos_t = 2.0 * rng.random(n) - 1.0
    phi = 2.0 * np.pi * rng.random(n)
    sin_t = xp.sqrt(xp.maximum(0.0, 1.0 - cos_t * cos_t))
    return xp.stack([sin_t * xp.cos(phi), sin_t * xp.sin(phi), cos_t])


class SourcePhotons(NamedTuple):
    """A batch of source photons as backend arrays."""

    position: Any   # (3, n) cm
    direction: Any  # (3, n) unit vectors
    energy: Any     # (n,) keV
    weight: Any     # (n,)
    tag: Any = None  # (n,) int, e.g. the index of the emitting seed (None: untagged)


class Source(Protocol):
    """Interface of every photon source."""

    spectrum: Spectrum

    def sample(self, xp, rng, n: int) -> SourcePhotons: ...

    def describe(self) -> dict: ...

    def bounding_points(self) -> np.ndarray:
        """(k, 3) points (cm) that must lie inside the phantom."""
        ...


@dataclass(frozen=True)
class PointSource:
    """Isotropic point source at ``position`` (cm)."""

    position: tuple[float, float, float]
    spectrum: Spectrum

    def sample(self, xp, rng, n: int) -> SourcePhotons:
        pos = xp.broadcast_to(xp.asarray(self.position, dtype=xp.float64)[:, None], (3, n)).copy()
        return SourcePhotons(pos, isotropic(xp, rng, n), self.spectrum.sample(xp, rng, n), xp.ones(n))

    def describe(self) -> dict:
        return {"type": "point", "position_cm": list(self.position), "spectrum": self.spectrum.name}

    def bounding_points(self) -> np.ndarray:
        return np.array([self.position], float)


@dataclass(frozen=True)
class LineSource:
    """Isotropic emission uniformly distributed along the segment ``start`` -> ``end`` (cm)."""

    start: tuple[float, float, float]
    end: tuple[float, float, float]
    spectrum: Spectrum

    def __post_init__(self) -> None:
        if np.allclose(self.start, self.end):
            raise GeometryError("line source: start and end coincide; use a point source")

    def sample(self, xp, rng, n: int) -> SourcePhotons:
        a = xp.asarray(self.start, dtype=xp.float64)[:, None]
        b = xp.asarray(self.end, dtype=xp.float64)[:, None]
        pos = a + (b - a) * rng.random(n)[None, :]
        return SourcePhotons(pos, isotropic(xp, rng, n), self.spectrum.sample(xp, rng, n), xp.ones(n))

    def describe(self) -> dict:
        return {"type": "line", "start_cm": list(self.start), "end_cm": list(self.end), "spectrum": self.spectrum.name}

    def bounding_points(self) -> np.ndarray:
        return np.array([self.start, self.end], float)


@dataclass(frozen=True)
class PencilBeam:
    """A monodirectional beam entering at ``position`` along ``direction`` (narrow-beam tests)."""

    position: tuple[float, float, float]
    direction: tuple[float, float, float]
    spectrum: Spectrum

    def sample(self, xp, rng, n: int) -> SourcePhotons:
        d = np.asarray(self.direction, float)
        d = d / np.linalg.norm(d)
        pos = xp.broadcast_to(xp.asarray(self.position, dtype=xp.float64)[:, None], (3, n)).copy()
        dirs = xp.broadcast_to(xp.asarray(d)[:, None], (3, n)).copy()
        return SourcePhotons(pos, dirs, self.spectrum.sample(xp, rng, n), xp.ones(n))

    def describe(self) -> dict:
        return {"type": "pencil", "position_cm": list(self.position), "direction": list(self.direction),
                "spectrum": self.spectrum.name}

    def bounding_points(self) -> np.ndarray:
        return np.array([self.position], float)
