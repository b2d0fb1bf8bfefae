"""Materials: mass density and elemental mass fractions, and the material library.

The built-in library is ``configs/materials.toml`` (water, dry air, ICRU-46 / ICRP-110 tissues
for a spine CT and the materials of common I-125 seeds) and ``configs/materials_egs_brachy.toml``
(the other media of egs_brachy's ``lib/media/material.dat``). Users add their own in a TOML file
of the same form::

    [[material]]
    name = "my_bone"
    density = 1.85                                  # g/cm3
    composition = { H = 0.04, C = 0.15, O = 0.44, P = 0.11, Ca = 0.26 }   # mass fractions
    # or: formula = "Ca5(PO4)3OH"
    aliases = ["MY_BONE_1.85"]                      # optional other names of exactly this medium
    reference = "where the numbers come from"

or as EGSnrc media definitions, read as they are (:mod:`brachymc.materials.egsnrc`): egs++ /
pegsless media files (``material.dat``, ``:start media definition:`` blocks) and the composition
headers of density-correction files (``*.density``).

Names: a library lookup (``library[name]``) takes a material name exactly, else an alias
(case-insensitive): the aliases of the materials themselves (e.g. ``RED_MARROW_WW86`` ->
``red_marrow``) and those given with :meth:`MaterialLibrary.with_aliases` (a run file's
``[ct] media_aliases``). A name always wins over an alias, so a user's own medium called
``RED_MARROW_WW86`` is that medium.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

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
        aliases: other names of exactly this medium (same composition and density), e.g. the
            EGSnrc / egs_brachy names of a library medium.
    """

    name: str
    density: float
    mass_fractions: tuple[tuple[int, float], ...]
    description: str = ""
    reference: str = ""
    category: str = ""
    aliases: tuple[str, ...] = ()

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
        cls, name: str, density: float, composition: Mapping[str | int, float], **info
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
    def from_formula(cls, name: str, density: float, formula: str, **info) -> "Material":
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
        """The same composition at another nominal density (without the aliases: they name this density)."""
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
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise MaterialError(f"{source}: material {name!r}: 'aliases' must be a list of names, got {aliases!r}")
    info["aliases"] = tuple(a.strip() for a in aliases)
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


def _alias_key(name: str) -> str:
    return str(name).strip().upper()


@dataclass(frozen=True)
class MaterialLibrary:
    """An immutable name -> :class:`Material` mapping, with aliases.

    ``aliases``: extra alias -> material name (or alias) entries on top of the materials' own
    aliases, e.g. a run file's ``[ct] media_aliases`` (see :meth:`with_aliases`).
    """

    materials: Mapping[str, Material] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        index: dict[str, str] = {}
        for m in self.materials.values():
            for a in m.aliases:
                key = _alias_key(a)
                other = index.get(key)
                if other is not None and other != m.name:
                    raise MaterialError(f"alias {a!r} is claimed by both {other!r} and {m.name!r}")
                index[key] = m.name
        for a, target in self.aliases.items():
            real = target if target in self.materials else index.get(_alias_key(target))
            if real is None:
                raise MaterialError(self._unknown(target, f"alias {a!r} names {target!r}, which is not a library "
                                                          "material or alias"))
            index[_alias_key(a)] = real
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> "MaterialLibrary":
        """Load material files in order; a later file may not redefine an earlier name.

        ``.toml`` files are brachymc's format (``[[material]]`` tables); anything else is read as
        EGSnrc media definitions (:func:`brachymc.materials.egsnrc.read_egsnrc_media`: an egs++ /
        pegsless media file, or a ``.density`` correction file's header).
        """
        lib: dict[str, Material] = {}
        for path in paths:
            for mat in _read_material_file(Path(path)):
                if mat.name in lib:
                    raise MaterialError(f"{path}: material {mat.name!r} is defined twice")
                lib[mat.name] = mat
        return cls(lib)

    def extended(self, paths: Iterable[str | Path]) -> "MaterialLibrary":
        """This library plus the materials of the given files (TOML or EGSnrc, see :meth:`from_files`)."""
        extra = MaterialLibrary.from_files(paths)
        clash = set(extra.materials) & set(self.materials)
        if clash:
            raise MaterialError(f"user materials redefine built-in names: {', '.join(sorted(clash))}")
        return MaterialLibrary({**self.materials, **extra.materials}, dict(self.aliases))

    def with_aliases(self, aliases: Mapping[str, str], source: str = "") -> "MaterialLibrary":
        """This library with extra ``{alias: material name or alias}`` entries (they take precedence
        over the materials' own aliases; material names still win over both)."""
        try:
            return MaterialLibrary(self.materials, {**self.aliases, **{str(k): str(v) for k, v in aliases.items()}})
        except MaterialError as exc:
            raise MaterialError(f"{source}: {exc}" if source else str(exc)) from None

    def resolve(self, name: str) -> Material | None:
        """The material called ``name`` (exactly), else the one with that alias, else None."""
        m = self.materials.get(name)
        if m is not None:
            return m
        real = self._index.get(_alias_key(name))
        return self.materials[real] if real is not None else None

    def _unknown(self, name: str, message: str) -> str:
        pool = list(self.materials) + sorted({a for m in self.materials.values() for a in m.aliases})
        close = difflib.get_close_matches(name, pool, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"{message}{hint} (see 'brachymc materials')"

    def __getitem__(self, name: str) -> Material:
        m = self.resolve(name)
        if m is None:
            raise MaterialError(self._unknown(name, f"unknown material {name!r}"))
        return m

    def get(self, name: str) -> Material:
        return self[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.materials)

    def __len__(self) -> int:
        return len(self.materials)

    def names(self) -> list[str]:
        return list(self.materials)

    def alias_table(self) -> dict[str, str]:
        """Every alias (upper case) -> material name."""
        return dict(self._index)


def _read_toml_materials(path: Path) -> list[Material]:
    data = load_toml(path)
    entries = data.get("material", [])
    if not isinstance(entries, list):
        raise MaterialError(f"{path}: expected an array of [[material]] tables")
    return [_material_from_entry(entry, str(path)) for entry in entries]


def _read_material_file(path: Path) -> Sequence[Material]:
    if path.suffix.lower() == ".toml":
        return _read_toml_materials(path)
    from brachymc.materials.egsnrc import read_egsnrc_media

    return read_egsnrc_media(path)


def default_library_path() -> Path:
    return config_dir() / "materials.toml"


def same_medium(a: Material, b: Material, tol: float = 1e-6) -> bool:
    """Same composition (every mass fraction within ``tol``) and density (relative ``tol``)."""
    wa, wb = dict(a.mass_fractions), dict(b.mass_fractions)
    return (abs(a.density - b.density) <= tol * max(a.density, b.density)
            and all(abs(wa.get(z, 0.0) - wb.get(z, 0.0)) <= tol for z in set(wa) | set(wb)))


#: the built-in library files, in load order
BUILTIN_FILES = ("materials.toml", "materials_egs_brachy.toml")


def default_library(extra_files: Iterable[str | Path] = (), egsnrc_files: Iterable[str | Path] = (),
                    aliases: Mapping[str, str] | None = None) -> MaterialLibrary:
    """The built-in library, optionally extended by user files and aliases.

    ``extra_files``: brachymc TOML files (or EGSnrc files, recognised by not ending in ``.toml``);
    ``egsnrc_files``: EGSnrc media definitions read as they are (egs++ media files, ``.density``
    headers), whatever their suffix; ``aliases``: ``{alias: material}`` (e.g. ``[ct] media_aliases``).
    """
    lib = MaterialLibrary.from_files([config_dir() / f for f in BUILTIN_FILES])
    extra_files = list(extra_files)
    if extra_files:
        lib = lib.extended(extra_files)
    egsnrc_files = list(egsnrc_files)
    if egsnrc_files:
        from brachymc.materials.egsnrc import read_egsnrc_media

        mats = dict(lib.materials)
        for p in egsnrc_files:
            for m in read_egsnrc_media(Path(p)):
                old = mats.get(m.name)
                if old is not None and not same_medium(old, m):
                    raise MaterialError(f"{p}: medium {m.name!r} is already defined differently "
                                        f"({old.reference or 'built-in library'})")
                if old is None:
                    mats[m.name] = m
        lib = MaterialLibrary(mats, dict(lib.aliases))
    return lib.with_aliases(aliases) if aliases else lib
