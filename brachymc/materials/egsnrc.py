"""EGSnrc media definitions read as they are: egs++ / pegsless media files and density-correction headers.

An egs_brachy (or any EGSnrc) user's media files work unchanged (``[materials] egsnrc = [...]``):

* **media files** (``material.dat``, PIRS-701 section 7, "pegsless mode"): a medium starts at a line
  ``medium = NAME`` and runs to the next one; or, in an ``.egsinp`` media definition, a medium is a
  ``:start NAME:`` ... ``:stop NAME:`` block inside ``:start media definition:`` ... ``:stop media
  definition:``, which may also name a ``material data file = PATH`` to take the remaining media and
  keys from (the input's keys take precedence, as in EGSnrc). Keys (case and spacing ignored):
  ``elements`` (symbols, comma-separated), ``mass fractions`` or ``number of atoms`` (one value per
  element; omitted for a pure element), ``rho`` (g/cm3) and ``density correction file``; every
  other key (``bremsstrahlung correction``, ``gas pressure``, ``AE``, ...) concerns electrons and
  is ignored. ``#`` starts a comment. Medium names are case-sensitive, as in EGSnrc.
* **density-correction files** (``NAME.density``): line 1 a title, line 2 the number of tabulated
  energies, the mean excitation energy (eV), the density (g/cm3) and the number of elements, then
  ``Z, mass fraction`` pairs. Their header composition and density override ``elements``,
  ``mass fractions`` / ``number of atoms`` and ``rho`` (PIRS-701: "These values override any user
  inputs"). A ``density correction file`` value is a path (absolute, or relative to the media file;
  ``.density`` may be left out) or a name looked up in the media file's folder and its
  ``density_corrections[/elements|/compounds]`` subfolders, ``$EGS_HOME/pegs4/density_corrections``
  (and ``/elements``, ``/compounds``), ``$EGS_HOME/pegs4/density``,
  ``$HEN_HOUSE/pegs4/density_corrections/elements`` and ``/compounds``, and finally in the headers
  brachymc ships (``configs/egsnrc/density_headers.toml``, transcribed from EGSnrc).

Semantics follow EGSnrc: mass fractions are normalised (PEGS4 works with PZ = w / A and the
molecular weight sum PZ A, so only ratios matter); numbers of atoms are converted with xraylib's
atomic weights; when a name is defined twice the first definition is used (EGSnrc's
``get_media_inputs`` reads the first), and a later definition that differs is logged. Every
material notes where it came from (file and line) in ``Material.reference``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import xraylib

from brachymc._paths import config_dir
from brachymc.errors import MaterialError
from brachymc.files import load_toml
from brachymc.materials import Material, element_symbol, element_z

log = logging.getLogger(__name__)

#: keys that define the photon-relevant medium; all others are electron settings and are ignored
COMPOSITION_KEYS = ("elements", "mass fractions", "number of atoms", "rho", "density correction file")
#: mass fractions that sum outside [1 - SUM_NOTE, 1 + SUM_NOTE] (and are not percentages) are noted
SUM_NOTE = 1e-3


@dataclass(frozen=True)
class DensityHeader:
    """The composition header of an EGSnrc density-correction file."""

    name: str
    title: str
    density: float                       # g/cm3
    mean_excitation_energy_ev: float
    mass_fractions: tuple[tuple[int, float], ...]
    source: str

    def material(self, name: str | None = None, **info) -> Material:
        return Material.from_composition(name or self.name, self.density, dict(self.mass_fractions), **info)


def read_density_file(path: str | Path) -> DensityHeader:
    """The composition header of an EGSnrc ``.density`` file (the tables after it are not read)."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise MaterialError(f"{path}: cannot read the density-correction file ({exc.strerror})") from None
    if len(lines) < 3:
        raise MaterialError(f"{path}: not an EGSnrc density-correction file (needs a title, a counts line "
                            "and Z, mass-fraction pairs)")
    head = lines[1].replace(",", " ").split()
    try:
        n_points, i_ev, rho, n_el = int(head[0]), float(head[1]), float(head[2]), int(head[3])
    except (IndexError, ValueError):
        raise MaterialError(f"{path}: line 2 must hold the number of energies, the mean excitation energy (eV), "
                            f"the density (g/cm3) and the number of elements; got {lines[1].strip()!r}") from None
    if not (rho > 0 and n_el >= 1 and n_points >= 0):
        raise MaterialError(f"{path}: line 2: density {rho} g/cm3 and {n_el} elements are not a medium")
    tokens: list[str] = []
    k = 2
    while len(tokens) < 2 * n_el and k < len(lines):
        tokens += lines[k].replace(",", " ").split()
        k += 1
    try:
        pairs = [(int(float(tokens[2 * j])), float(tokens[2 * j + 1])) for j in range(n_el)]
    except (IndexError, ValueError):
        raise MaterialError(f"{path}: expected {n_el} (Z, mass fraction) pairs after line 2") from None
    for z, w in pairs:
        if not 1 <= z <= 98 or w < 0:
            raise MaterialError(f"{path}: element Z = {z} with mass fraction {w} is not valid")
    return DensityHeader(name=_stem(path), title=lines[0].strip(), density=float(f"{rho:.6g}"),
                         mean_excitation_energy_ev=i_ev, mass_fractions=tuple(pairs), source=str(path))


def _stem(path: Path) -> str:
    return path.name[:-len(".density")] if path.name.lower().endswith(".density") else path.name


@lru_cache(maxsize=4)
def _shipped_headers(path: str) -> dict[str, DensityHeader]:
    data = load_toml(path)
    out = {}
    for e in data.get("density_file", []):
        pairs = tuple((element_z(s), float(w)) for s, w in zip(e["elements"], e["mass_fractions"]))
        out[e["name"].lower()] = DensityHeader(
            name=e["name"], title=e.get("title", ""), density=float(e["density"]),
            mean_excitation_energy_ev=float(e.get("mean_excitation_energy_eV", 0.0)), mass_fractions=pairs,
            source=f"EGSnrc density_corrections/{e['path']} (header as shipped in configs/egsnrc/density_headers.toml)")
    return out


def shipped_density_headers() -> dict[str, DensityHeader]:
    """The density-correction headers shipped with brachymc, by lower-case file name."""
    return dict(_shipped_headers(str(config_dir() / "egsnrc" / "density_headers.toml")))


def density_search_dirs(media_file: Path | None = None) -> list[Path]:
    """Folders searched for a density-correction file given by name, in order."""
    dirs: list[Path] = []
    if media_file is not None:
        base = media_file.parent
        dirs += [base, base / "density_corrections", base / "density_corrections" / "elements",
                 base / "density_corrections" / "compounds"]
    egs_home, hen_house = os.environ.get("EGS_HOME"), os.environ.get("HEN_HOUSE")
    if egs_home:
        d = Path(egs_home) / "pegs4"
        dirs += [d / "density_corrections", d / "density_corrections" / "elements",
                 d / "density_corrections" / "compounds", d / "density"]
    if hen_house:
        d = Path(hen_house) / "pegs4" / "density_corrections"
        dirs += [d / "elements", d / "compounds"]
    return dirs


def find_density_header(value: str, media_file: Path | None = None, where: str = "") -> DensityHeader:
    """The header named by a ``density correction file = value`` entry (see the module doc)."""
    raw = os.path.expandvars(os.path.expanduser(value.strip()))
    p = Path(raw)
    cands: list[Path] = []
    if p.is_absolute():
        cands += [p, Path(raw + ".density")]
    else:
        if media_file is not None:
            cands += [media_file.parent / p, media_file.parent / (raw + ".density")]
        if len(p.parts) == 1:
            for d in density_search_dirs(media_file):
                cands += [d / raw, d / (raw + ".density")]
    for c in cands:
        if c.is_file():
            return read_density_file(c)
    shipped = shipped_density_headers().get(_stem(p).lower())
    if shipped is not None:
        return shipped
    searched = sorted({str(c.parent) for c in cands})
    raise MaterialError(f"{where}density correction file {value!r} not found (searched {', '.join(searched) or '-'}; "
                        "not among the headers brachymc ships, configs/egsnrc/density_headers.toml). Give its path, "
                        "or set HEN_HOUSE / EGS_HOME")


# ------------------------------------------------------------------------------------------------
# media files
# ------------------------------------------------------------------------------------------------

@dataclass
class _Raw:
    name: str
    source: str                        # "file:line"
    keys: dict                         # normalised key -> (value, "file:line")


_START = re.compile(r"^:\s*start\s+(.+?)\s*:$", re.IGNORECASE)
_STOP = re.compile(r"^:\s*stop\s+(.+?)\s*:$", re.IGNORECASE)


def _norm_key(k: str) -> str:
    return " ".join(k.strip().lower().split())


def _parse(path: Path, seen: tuple[Path, ...] = ()) -> list[_Raw]:
    """Raw media of a media file, in file order (repeats included)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise MaterialError(f"{path}: cannot read the EGSnrc media file ({exc.strerror})") from None
    # an .egsinp holds other sections too ("medium = ..." appears in geometry inputs): when it has a
    # media definition, only that is read
    egsinp = any(_norm_key(m.group(1)) == "media definition"
                 for m in (_START.match(ln.split("#", 1)[0].strip()) for ln in lines) if m)
    media: list[_Raw] = []
    from_data_file: list[_Raw] = []
    cur: _Raw | None = None
    block: _Raw | None = None          # inside :start NAME: ... :stop NAME:
    in_media_def = False
    for i, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{i}"
        m_start, m_stop = _START.match(line), _STOP.match(line)
        if m_start:
            label = m_start.group(1)
            if _norm_key(label) == "media definition":
                in_media_def, cur = True, None
            elif in_media_def:
                block = _Raw(label, where, {})
            continue
        if m_stop:
            label = m_stop.group(1)
            if _norm_key(label) == "media definition":
                in_media_def = False
            elif block is not None and label == block.name:
                media.append(block)
                block = None
            continue
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        key, value = _norm_key(key), value.strip()
        if block is not None:
            block.keys.setdefault(key, (value, where))
        elif in_media_def and key == "material data file":
            target = Path(os.path.expandvars(os.path.expanduser(value)))
            target = target if target.is_absolute() else path.parent / target
            if target.resolve() in seen:
                raise MaterialError(f"{where}: material data file {value!r} includes itself")
            if not target.is_file():
                raise MaterialError(f"{where}: material data file {value!r} not found ({target})")
            from_data_file += _parse(target, seen + (path.resolve(),))
        elif egsinp and not in_media_def:
            continue
        elif key == "medium":
            if not value:
                raise MaterialError(f"{where}: 'medium =' without a name")
            cur = _Raw(value, where, {})
            media.append(cur)
        elif cur is not None and not in_media_def:
            cur.keys.setdefault(key, (value, where))
    if block is not None:
        raise MaterialError(f"{block.source}: ':start {block.name}:' has no ':stop {block.name}:'")
    if from_data_file:           # EGSnrc: the input's keys first, the material data file for the rest
        first = {}
        for r in from_data_file:
            first.setdefault(r.name, r)
        merged = []
        for r in media:
            base = first.pop(r.name, None)
            if base is not None:
                keys = dict(base.keys)
                keys.update(r.keys)
                r = _Raw(r.name, r.source, keys)
            merged.append(r)
        media = merged + list(first.values())
    return media


def _values(value: str, where: str, what: str) -> list[float]:
    out = []
    for tok in value.replace(";", ",").split(","):
        tok = tok.strip()
        if not tok:
            continue              # trailing commas are common
        try:
            out.append(float(tok))
        except ValueError:
            raise MaterialError(f"{where}: {what}: {tok!r} is not a number") from None
    return out


def _material(raw: _Raw, media_file: Path) -> Material:
    keys = raw.keys
    name = raw.name
    head = f"{raw.source}: medium {name!r}: "
    notes: list[str] = []
    if "density correction file" in keys:
        value, where = keys["density correction file"]
        hdr = find_density_header(value, media_file, f"{where}: medium {name!r}: ")
        ref = f"EGSnrc medium {name} ({raw.source}): density correction file {value} -> {hdr.source}"
        return hdr.material(name, reference=ref, category="egsnrc",
                            description=f"EGSnrc medium {name}: composition and density from the header of "
                                        f"{hdr.name}.density ({hdr.title})")
    if "elements" not in keys:
        raise MaterialError(f"{head}no 'elements' and no 'density correction file'")
    el_value, el_where = keys["elements"]
    symbols = [s.strip() for s in el_value.split(",") if s.strip()]
    try:
        zs = [element_z(s[0].upper() + s[1:].lower()) for s in symbols]
    except MaterialError as exc:
        raise MaterialError(f"{el_where}: medium {name!r}: elements: {exc}") from None
    if not zs:
        raise MaterialError(f"{el_where}: medium {name!r}: 'elements' is empty")
    if "rho" not in keys:
        raise MaterialError(f"{head}no 'rho' (g/cm3)")
    rho_value, rho_where = keys["rho"]
    try:
        rho = float(rho_value)
    except ValueError:
        raise MaterialError(f"{rho_where}: medium {name!r}: rho {rho_value!r} is not a number") from None
    if not rho > 0:
        raise MaterialError(f"{rho_where}: medium {name!r}: rho must be > 0 g/cm3, got {rho_value}")
    if "mass fractions" in keys and "number of atoms" in keys:
        raise MaterialError(f"{head}give 'mass fractions' or 'number of atoms', not both")
    if "mass fractions" in keys:
        v, where = keys["mass fractions"]
        w = _values(v, where, f"medium {name!r}: mass fractions")
        how = "mass fractions"
    elif "number of atoms" in keys:
        v, where = keys["number of atoms"]
        n = _values(v, where, f"medium {name!r}: number of atoms")
        if len(n) != len(zs):
            raise MaterialError(f"{where}: medium {name!r}: {len(n)} numbers of atoms for {len(zs)} elements")
        w = [k * xraylib.AtomicWeight(z) for k, z in zip(n, zs)]
        how = "number of atoms"
    elif len(zs) == 1:
        w, where, how = [1.0], el_where, "pure element"
    else:
        raise MaterialError(f"{head}{len(zs)} elements need 'mass fractions' or 'number of atoms'")
    if len(w) != len(zs):
        raise MaterialError(f"{where}: medium {name!r}: {len(w)} {how} for {len(zs)} elements "
                            f"({', '.join(symbols)})")
    if any(x < 0 for x in w) or not sum(w) > 0:
        raise MaterialError(f"{where}: medium {name!r}: {how} must be >= 0 with a positive sum")
    total = sum(w)
    if how == "mass fractions" and abs(total - 1) > SUM_NOTE and abs(total - 100) > 100 * SUM_NOTE:
        notes.append(f"mass fractions sum to {total:g}; normalised as EGSnrc does")
    comp: dict[int, float] = {}
    for z, x in zip(zs, w):
        comp[z] = comp.get(z, 0.0) + x / total
    ref = f"EGSnrc medium {name} ({raw.source}): {how}"
    desc = f"EGSnrc medium {name}, {rho:g} g/cm3" + (f" ({'; '.join(notes)})" if notes else "")
    return Material.from_composition(name, rho, comp, reference=ref, category="egsnrc", description=desc)


def read_egsnrc_media(path: str | Path) -> tuple[Material, ...]:
    """The media of an EGSnrc media file or ``.density`` file, as :class:`Material` objects (file order).

    Raises :class:`MaterialError` naming the file, line, medium and field for anything that does not
    describe a medium.
    """
    path = Path(path)
    if not path.is_file():
        raise MaterialError(f"{path}: EGSnrc media file not found")
    if path.name.lower().endswith(".density"):
        hdr = read_density_file(path)
        return (hdr.material(reference=f"EGSnrc density-correction file {path} (header)", category="egsnrc",
                             description=f"{hdr.title} (EGSnrc density-correction header), {hdr.density:g} g/cm3"),)
    out: dict[str, Material] = {}
    for raw in _parse(path):
        mat = _material(raw, path)
        first = out.get(raw.name)
        if first is None:
            out[raw.name] = mat
        elif (abs(first.density - mat.density) > 1e-9 * first.density
              or dict(first.mass_fractions).keys() != dict(mat.mass_fractions).keys()
              or any(abs(dict(first.mass_fractions)[z] - w) > 1e-9 for z, w in mat.mass_fractions)):
            log.warning("%s: medium %s is defined again with a different composition or density; the first "
                        "definition (%s) is used, as in EGSnrc", raw.source, raw.name, first.reference)
    if not out:
        raise MaterialError(f"{path}: no media found (expected 'medium = NAME' lines or :start NAME: blocks in "
                            "a :start media definition: section)")
    return tuple(out.values())


def composition_string(material: Material) -> str:
    return ", ".join(f"{element_symbol(z)} {w:.6g}" for z, w in material.mass_fractions)


__all__ = ["DensityHeader", "read_density_file", "read_egsnrc_media", "find_density_header",
           "shipped_density_headers", "density_search_dirs"]
