"""Discrete photon line spectra (keV, photons per decay)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brachymc._paths import config_dir
from brachymc.errors import ConfigError
from brachymc.files import load_toml


@dataclass(frozen=True)
class Spectrum:
    """A line spectrum.

    Attributes:
        energies_kev: line energies (keV).
        yields: photons per decay of each line (any positive scale for synthetic spectra).
        name, reference: for reports.
        half_life_days: of the emitting nuclide, if any.
    """

    energies_kev: tuple[float, ...]
    yields: tuple[float, ...]
    name: str = ""
    reference: str = ""
    half_life_days: float | None = None

    def __post_init__(self) -> None:
        if len(self.energies_kev) == 0 or len(self.energies_kev) != len(self.yields):
            raise ConfigError(f"spectrum {self.name!r}: needs as many yields as energies (at least one line)")
        if any(not (e > 0) for e in self.energies_kev) or any(not (y > 0) for y in self.yields):
            raise ConfigError(f"spectrum {self.name!r}: energies and yields must be > 0")

    @classmethod
    def monoenergetic(cls, energy_kev: float) -> "Spectrum":
        return cls((float(energy_kev),), (1.0,), name=f"{energy_kev:g} keV")

    @classmethod
    def from_toml(cls, path: str | Path) -> "Spectrum":
        data = load_toml(path)
        lines = data.get("lines")
        if not isinstance(lines, list) or not all(isinstance(r, list) and len(r) == 2 for r in lines):
            raise ConfigError(f"{path}: 'lines' must be a list of [energy_keV, yield] pairs")
        return cls(
            tuple(float(r[0]) for r in lines), tuple(float(r[1]) for r in lines),
            name=str(data.get("name", Path(path).stem)), reference=str(data.get("reference", "")),
            half_life_days=data.get("half_life_days"),
        )

    @property
    def photons_per_decay(self) -> float:
        return float(sum(self.yields))

    @property
    def probabilities(self) -> np.ndarray:
        y = np.asarray(self.yields, float)
        return y / y.sum()

    @property
    def mean_energy_kev(self) -> float:
        """Number-weighted mean photon energy (keV)."""
        return float(np.dot(self.probabilities, self.energies_kev))

    @property
    def max_energy_kev(self) -> float:
        return float(max(self.energies_kev))

    @property
    def min_energy_kev(self) -> float:
        return float(min(self.energies_kev))

    def sample(self, xp, rng, n: int):
        """``n`` energies (keV) drawn from the line probabilities."""
        e = xp.asarray(self.energies_kev, dtype=xp.float64)
        cum = xp.asarray(np.cumsum(self.probabilities)[:-1], dtype=xp.float64)
        k = xp.searchsorted(cum, rng.random(n), side="right")
        return e[k]


def builtin_spectra() -> dict[str, Path]:
    """Names of the built-in spectra (``configs/spectra/*.toml``) and their files."""
    return {p.stem: p for p in sorted((config_dir() / "spectra").glob("*.toml"))}


def load_spectrum(name_or_path: str | Path) -> Spectrum:
    """A built-in spectrum by name (e.g. ``"i125_ncrp58"``) or a spectrum TOML file."""
    known = builtin_spectra()
    if str(name_or_path) in known:
        return Spectrum.from_toml(known[str(name_or_path)])
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return Spectrum.from_toml(path)
    raise ConfigError(f"unknown spectrum {str(name_or_path)!r}; built-in: {', '.join(known)} (or a .toml file)")
