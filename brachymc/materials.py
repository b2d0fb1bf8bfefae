"""Materials: mass density and elemental mass fractions, and the material library.

The built-in library is ``configs/materials.toml`` (water, dry air, ICRU-46 / ICRP-110 tissues
for a spine CT and the materials of common I-125 seeds). Users add their own in a TOML file of
the same form::

    [[material]]
    name = "my_bone"
    density = 1.85                                  # g/cm3
    composition = { H = 0.04, C = 0.15, O = 0.44, P = 0.11, Ca = 0.26 }   # mass fractions
    # or: formula = "Ca5(PO4)3OH"
    reference = "where the numbers come from"
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import xraylib

from brachymc._paths import config_dir
from brachymc.errors import MaterialError
from brachymc.files import load_toml

#: Mass fractions must sum to 1 within this tolerance before renormalisation.
SUM_TOLERANCE = 5e-3


def element_z(symbol: str | int) -> int:
    """Atomic number of an element symbol (``"Ag"`` -> 47); integers pass through."""
    if isinstance(symbol, int):
        z = symbol
    else:
        try:
            z = xraylib.SymbolToAtomicNumber(str(symbol).strip())
        except ValueError:
            z = 0
    if not 1 <= z <= 98:
        raise MaterialError(f"unknown element {symbol!r}")
    return int(z)


def element_symbol(z: int) -> str:
    """Chemical symbol of atomic number ``z``."""
    return xraylib.AtomicNumberToSymbol(int(z))


@dataclass(frozen=True)
class Material:
    """A homogeneous medium.

    Attributes:
        name: unique key in the library.
        density: nominal mass density (g/cm3); voxel phantoms may override it per voxel.
        mass_fractions: ``((Z, w), ...)`` sorted by Z, weights summing to 1.
        description, reference, category: free text for reports.
    """

    name: str
    density: float
    mass_fractions: tuple[tuple[int, float], ...]
    description: str = ""
    reference: str = ""
    category: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise MaterialError("material has an empty name")
        if not (self.density > 0):
            raise MaterialError(f"material {self.name!r}: density must be > 0 g/cm3, got {self.density}")
        if not self.mass_fractions:
            raise MaterialError(f"material {self.name!r}: empty composition")
        total = sum(w for _, w in self.mass_fractions)
        if any(w < 0 for _, w in self.mass_fractions) or abs(total - 1.0) > 1e-9:
            raise MaterialError(f"material {self.name!r}: mass fractions must be >= 0 and sum to 1 (got {total})")

    @classmethod
    def from_composition(
        cls, name: str, density: float, composition: Mapping[str | int, float], **info: str
    ) -> "Material":
        """Build from ``{element: mass fraction}``; fractions summing to 1 +- 0.5% are renormalised."""
        acc: dict[int, float] = {}
        for el, w in composition.items():
            try:
                z = element_z(el)
            except MaterialError as exc:
                raise MaterialError(f"material {name!r}: {exc}") from None
            w = float(w)
            if w < 0:
                raise MaterialError(f"material {name!r}: negative mass fraction for {el}")
            if w > 0:
                acc[z] = acc.get(z, 0.0) + w
        total = sum(acc.values())
        if abs(total - 1.0) > SUM_TOLERANCE:
            raise MaterialError(
                f"material {name!r}: mass fractions sum to {total:.5f}, not 1 (tolerance {SUM_TOLERANCE})"
            )
        fr = tuple(sorted((z, w / total) for z, w in acc.items()))
        return cls(name=name, density=float(density), mass_fractions=fr, **info)

    @classmethod
    def from_formula(cls, name: str, density: float, formula: str, **info: str) -> "Material":
        """Build from a chemical formula such as ``"AgBr"`` or ``"Al2O3"`` (parsed by xraylib)."""
        try:
            parsed = xraylib.CompoundParser(formula)
        except ValueError:
            raise MaterialError(f"material {name!r}: cannot parse formula {formula!r}") from None
        comp = dict(zip(parsed["Elements"], parsed["massFractions"]))
        return cls.from_composition(name, density, comp, **info)

    @property
    def elements(self) -> tuple[int, ...]:
        """Atomic numbers present, ascending."""
        return tuple(z for z, _ in self.mass_fractions)

    def with_density(self, density: float) -> "Material":
        """The same composition at another nominal density."""
        return Material(self.name, float(density), self.mass_fractions, self.description, self.reference, self.category)

    def composition_string(self) -> str:
        """Human-readable composition, e.g. ``"H 0.1119, O 0.8881"``."""
        return ", ".join(f"{element_symbol(z)} {w:.4g}" for z, w in self.mass_fractions)


def _material_from_entry(entry: Mapping, source: str) -> Material:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise MaterialError(f"{source}: a [[material]] entry has no 'name'")
    if "density" not in entry:
        raise MaterialError(f"{source}: material {name!r} has no 'density' (g/cm3)")
    info = {k: str(entry.get(k, "")) for k in ("description", "reference", "category")}
    has_comp, has_formula = "composition" in entry, "formula" in entry
    if has_comp == has_formula:
        raise MaterialError(f"{source}: material {name!r} needs exactly one of 'composition' or 'formula'")
    try:
        density = float(entry["density"])
    except (TypeError, ValueError):
        raise MaterialError(f"{source}: material {name!r}: 'density' must be a number") from None
    try:
        if has_comp:
            return Material.from_composition(name, density, entry["composition"], **info)
        return Material.from_formula(name, density, entry["formula"], **info)
    except MaterialError as exc:
        raise MaterialError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class MaterialLibrary:
    """An immutable name -> :class:`Material` mapping."""

    materials: Mapping[str, Material] = field(default_factory=dict)

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> "MaterialLibrary":
        """Load TOML files in order; a later file may not redefine an earlier name."""
        lib: dict[str, Material] = {}
        for path in paths:
            data = load_toml(path)
            entries = data.get("material", [])
            if not isinstance(entries, list):
                raise MaterialError(f"{path}: expected an array of [[material]] tables")
            for entry in entries:
                mat = _material_from_entry(entry, str(path))
                if mat.name in lib:
                    raise MaterialError(f"{path}: material {mat.name!r} is defined twice")
                lib[mat.name] = mat
        return cls(lib)

    def extended(self, paths: Iterable[str | Path]) -> "MaterialLibrary":
        """This library plus the materials of the given files."""
        extra = MaterialLibrary.from_files(paths)
        clash = set(extra.materials) & set(self.materials)
        if clash:
            raise MaterialError(f"user materials redefine built-in names: {', '.join(sorted(clash))}")
        return MaterialLibrary({**self.materials, **extra.materials})

    def __getitem__(self, name: str) -> Material:
        try:
            return self.materials[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.materials), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise MaterialError(f"unknown material {name!r}{hint} (see 'brachymc materials')") from None

    def get(self, name: str) -> Material:
        return self[name]

    def __contains__(self, name: object) -> bool:
        return name in self.materials

    def __iter__(self) -> Iterator[str]:
        return iter(self.materials)

    def __len__(self) -> int:
        return len(self.materials)

    def names(self) -> list[str]:
        return list(self.materials)


def default_library_path() -> Path:
    return config_dir() / "materials.toml"


def default_library(extra_files: Iterable[str | Path] = ()) -> MaterialLibrary:
    """The built-in library (``configs/materials.toml``), optionally extended by user files."""
    lib = MaterialLibrary.from_files([default_library_path()])
    extra_files = list(extra_files)
    return lib.extended(extra_files) if extra_files else lib
