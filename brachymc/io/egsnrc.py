"""EGSnrc text formats: ``.egsphant`` voxel phantoms and ``.3ddose`` dose grids.

Both are whitespace-separated text files, optionally gzip-compressed (detected from the gzip
magic bytes, so ``phantom.egsphant.gz`` and a compressed file without the suffix both work).
Writers compress when the target name ends in ``.gz``. Lengths are in cm.

``.egsphant`` (DOSXYZnrc / egs++ ``EGS_XYZGeometry`` / egs_brachy), in order:

1. the number of media ``nmed``;
2. ``nmed`` lines, one medium name each;
3. ``nmed`` ESTEPE values (historical, ignored here; written as 1.0);
4. ``nx ny nz``;
5. the voxel boundaries: ``nx+1`` x planes, ``ny+1`` y planes, ``nz+1`` z planes (cm);
6. the media matrix: ``nz`` blocks of ``ny`` lines of ``nx`` characters, the character giving the
   1-based medium number (``'1'..'9'``, then ``'A'..'Z'`` for 10..35, then ``'a'..'z'``
   for 36..61; see :data:`MEDIA_CHARS`), x fastest;
7. the mass densities (g/cm3): ``nz`` blocks of ``ny`` rows of ``nx`` numbers, x fastest.

The reader follows the EGSnrc reader in treating everything after the names as a stream of
whitespace-separated tokens (line breaks inside a number block do not matter), with one
leniency: an ESTEPE line holding fewer than ``nmed`` values is accepted when the next line is
the ``nx ny nz`` line.

``.3ddose`` (DOSXYZnrc, egs_brachy): ``nx ny nz``; the ``nx+1``, ``ny+1``, ``nz+1`` boundaries
(cm); ``nx*ny*nz`` doses with x fastest; then the same number of *relative* uncertainties
(fractions of the dose). The uncertainty block is optional on reading and omitted on writing
when no uncertainties are given.

brachymc grids are regular (:class:`~brachymc.geometry.phantom.GridGeometry`): files whose
boundaries are not evenly spaced are refused with a :class:`GeometryError`.

EGSnrc medium names are mapped onto the material library (``configs/materials*.toml``) by
:func:`resolve_medium`: the caller's ``aliases`` first, then the library names (case-insensitive)
and aliases (every egs_brachy ``material.dat`` medium is a library alias of exactly that medium),
then :data:`DEFAULT_ALIASES`, the closest library media for the PEGS4 521/700 ICRU names. The
voxel densities of the file always win over the nominal densities of the library materials.
"""

from __future__ import annotations

import difflib
import gzip
import io
from pathlib import Path
from typing import Mapping

import numpy as np

from brachymc.errors import ConfigError, GeometryError, MaterialError
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.files import atomic_path
from brachymc.materials import Material, MaterialLibrary, default_library

#: Characters of the egsphant media matrix; position k holds medium number k+1.
MEDIA_CHARS = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

#: Boundaries count as evenly spaced when every plane lies within
#: max(UNIFORM_ABS_TOL_CM, UNIFORM_REL_TOL * spacing) of the regular grid through the first and
#: last planes (text files carry a few decimals only).
UNIFORM_REL_TOL = 1e-3
UNIFORM_ABS_TOL_CM = 1e-5

#: Common EGSnrc medium names that are not library names or aliases -> the closest library medium
#: (keys compared case-insensitively): the PEGS4 data sets (``*521ICRU``, ``*700ICRU``, the
#: DOSXYZnrc/ctcreate defaults) and a few generic names. The media of egs_brachy's
#: ``lib/media/material.dat`` are not here: the library holds each of them exactly, under its
#: egs_brachy name as an alias (``configs/materials*.toml``). The voxel densities of the file are
#: kept in every case.
DEFAULT_ALIASES: dict[str, str] = {
    # water
    "H2O521ICRU": "water",
    "H2O700ICRU": "water",
    "H2O": "water",
    "WATER": "water",
    # air
    "AIR521ICRU": "air",
    "AIR700ICRU": "air",
    "AIR": "air",
    # lung
    "LUNG521ICRU": "lung",
    "LUNG700ICRU": "lung",
    # soft tissues
    "ICRUTISSUE521ICRU": "soft_tissue_icru4",   # ICRU four-component soft tissue
    "ICRUTISSUE700ICRU": "soft_tissue_icru4",
    "TISSUE521ICRU": "soft_tissue",
    "SOFT_TISSUE": "soft_tissue",
    "MUSCLE521ICRU": "muscle",
    "MUSCLE700ICRU": "muscle",
    "MUSCLE_WW86": "muscle",
    "ADIPOSE_WW86": "adipose",
    "MEAN_ADIPOSE_WW86": "adipose",
    "SKIN_WW86": "skin",
    "BLOOD_WW86": "blood",
    "LIVER_WW86": "liver",
    # bone
    "ICRPBONE521ICRU": "cortical_bone",         # ICRP compact bone; closest library bone
    "ICRPBONE700ICRU": "cortical_bone",
    # seed and applicator metals / compounds
    "TI521ICRU": "titanium",
    "TI700ICRU": "titanium",
    "PB521ICRU": "lead",
    "PB700ICRU": "lead",
    "AGBR": "agbr",
}

#: Library name -> egs_brachy medium name, for :func:`write_egsphant` ``names=`` when the file is
#: meant for egs_brachy (whose ``material.dat`` defines these media).
EGS_BRACHY_NAMES: dict[str, str] = {
    "water_0998": "WATER_0.998",
    "air_tg43": "AIR_TG43",
    "titanium": "Ti",
    "silver": "Ag",
    "gold": "Au",
    "tungsten": "W",
    "platinum": "Pt",
    "pt90ir10": "Pt90Ir10",
    "palladium": "Pd",
    "iodine": "I",
    "lead": "Pb",
    "silver_halide": "AgBrAgI_6.20",
    "alumina": "Al2O3",
    "resin": "SdVBC24H24",
    "polystyrene": "PolySty",
    "stainless_steel": "SS_AISI316L",
    "soft_tissue_male_tg186": "M_SOFT_TISSUE_ICRU46",
    "soft_tissue_female_tg186": "F_SOFT_TISSUE_ICRU46",
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _read_text(path: Path, what: str) -> str:
    """The file's text; gzip-compressed files are recognised by their magic bytes."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ConfigError(f"{path}: corrupt gzip data in {what} file ({exc})") from None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        try:
            return raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise ConfigError(f"{path}: {what} file is not text") from None


def _write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically; gzip-compress when the name ends in ``.gz``."""
    with atomic_path(path) as tmp:
        data = text.encode("ascii")
        if path.name.lower().endswith(".gz"):
            data = gzip.compress(data, compresslevel=6)
        tmp.write_bytes(data)
    return path


class _Tokens:
    """Sequential reader of whitespace-separated tokens with file-naming errors."""

    def __init__(self, path: Path, tokens: list[str]) -> None:
        self.path, self.tokens, self.pos = path, tokens, 0

    @property
    def left(self) -> int:
        return len(self.tokens) - self.pos

    def ints(self, n: int, what: str) -> list[int]:
        vals = self._take(n, what)
        try:
            return [int(v) for v in vals]
        except ValueError:
            raise ConfigError(f"{self.path}: {what}: expected {n} integers, got {' '.join(vals)!r}") from None

    def floats(self, n: int, what: str) -> np.ndarray:
        vals = self._take(n, what)
        try:
            return np.array(vals, dtype=np.float64)
        except ValueError:
            pass
        vals = [v.replace("D", "E").replace("d", "e") for v in vals]   # Fortran 1.0D+00
        try:
            return np.array(vals, dtype=np.float64)
        except ValueError:
            bad = next(v for v in vals if not _is_float(v))
            raise ConfigError(f"{self.path}: {what}: {bad!r} is not a number") from None

    def _take(self, n: int, what: str) -> list[str]:
        if self.left < n:
            raise ConfigError(
                f"{self.path}: file ends early (truncated?): expected {what}, found only {self.left} values"
            )
        vals = self.tokens[self.pos:self.pos + n]
        self.pos += n
        return vals


def _is_float(s: str) -> bool:
    try:
        float(s.replace("D", "E").replace("d", "e"))
        return True
    except ValueError:
        return False


_AXES = "xyz"


def _axis_from_boundaries(path: Path, b: np.ndarray, axis: int) -> tuple[float, float]:
    """(origin, spacing) of evenly spaced boundaries, else :class:`GeometryError`."""
    name = _AXES[axis]
    if not np.all(np.isfinite(b)):
        raise GeometryError(f"{path}: {name} boundaries contain NaN or infinity")
    d = np.diff(b)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0))
        raise GeometryError(f"{path}: {name} boundaries must increase; plane {i + 1} ({b[i + 1]:g} cm) "
                            f"does not exceed plane {i} ({b[i]:g} cm)")
    n = len(b) - 1
    spacing = (b[-1] - b[0]) / n
    dev = np.abs(b - (b[0] + np.arange(n + 1) * spacing))
    tol = max(UNIFORM_ABS_TOL_CM, UNIFORM_REL_TOL * spacing)
    if dev.max() > tol:
        raise GeometryError(
            f"{path}: {name} voxel boundaries are not evenly spaced (widths {d.min():.6g} to {d.max():.6g} cm); "
            f"brachymc needs a regular grid along {name}"
        )
    return float(b[0]), float(spacing)


def _geometry_from_boundaries(path: Path, bx: np.ndarray, by: np.ndarray, bz: np.ndarray) -> GridGeometry:
    ox, dx = _axis_from_boundaries(path, bx, 0)
    oy, dy = _axis_from_boundaries(path, by, 1)
    oz, dz = _axis_from_boundaries(path, bz, 2)
    return GridGeometry(shape=(len(bz) - 1, len(by) - 1, len(bx) - 1), spacing=(dx, dy, dz), origin=(ox, oy, oz))


def _format_boundaries(geometry: GridGeometry) -> str:
    lines = []
    for axis in range(3):
        lines.append(" ".join(f"{v:.10g}" for v in geometry.edges(axis)))
    return "\n".join(lines) + "\n"


def _format_block(values: np.ndarray, fmt: str) -> str:
    """Rows of a (nz, ny, nx) array, one line per (iz, iy), a blank line after each z block."""
    nz, ny, nx = values.shape
    row_fmt = " ".join([fmt] * nx)
    out = io.StringIO()
    for iz in range(nz):
        for iy in range(ny):
            out.write(row_fmt % tuple(values[iz, iy].tolist()))
            out.write("\n")
        out.write("\n")
    return out.getvalue()


def _dims(path: Path, vals: list[int]) -> tuple[int, int, int]:
    if any(v < 1 for v in vals):
        raise ConfigError(f"{path}: voxel counts nx ny nz must be positive, got {vals}")
    return vals[0], vals[1], vals[2]


# --------------------------------------------------------------------------------------------
# media names
# --------------------------------------------------------------------------------------------
def resolve_medium(name: str, library: MaterialLibrary, aliases: Mapping[str, str] | None = None,
                   source: str = "") -> Material:
    """The library material for an EGSnrc medium name.

    Order: ``aliases`` (keys case-insensitive), the library names (case-insensitive), the
    library's aliases (e.g. egs_brachy names), :data:`DEFAULT_ALIASES`. Raises :class:`MaterialError` naming ``source`` and the medium, with
    the ways to make the name known.
    """
    prefix = f"{source}: " if source else ""
    by_lower = {n.lower(): n for n in library}
    user = {str(k).strip().upper(): str(v) for k, v in (aliases or {}).items()}
    key = name.strip()

    def lookup(target: str, via: str) -> Material:
        real = by_lower.get(target.strip().lower())
        if real is None and target.strip() in library:
            return library[target.strip()]
        if real is None:
            close = difflib.get_close_matches(target.lower(), list(by_lower), n=3)
            hint = f" (did you mean {', '.join(by_lower[c] for c in close)}?)" if close else ""
            raise MaterialError(f"{prefix}medium {name!r}: {via} maps it to {target!r}, which is not in the "
                                f"material library{hint}")
        return library[real]

    if key.upper() in user:
        return lookup(user[key.upper()], "the given aliases")
    if key.lower() in by_lower:
        return library[by_lower[key.lower()]]
    if key in library:                       # an alias of a library material (exactly that medium)
        return library[key]
    if key.upper() in DEFAULT_ALIASES:
        return lookup(DEFAULT_ALIASES[key.upper()], "the default EGSnrc alias table")
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=3, cutoff=0.5)
    hint = f" Close library names: {', '.join(by_lower[c] for c in close)}." if close else ""
    raise MaterialError(
        f"{prefix}unknown medium {name!r}: it is neither a material library name nor a known EGSnrc "
        f"alias. Map it to a library material with aliases={{{name!r}: '<library name>'}}, or define a "
        f"[[material]] named {name!r} in a user materials TOML file (same form as configs/materials.toml) "
        f"and pass the extended library.{hint}"
    )


# --------------------------------------------------------------------------------------------
# .egsphant
# --------------------------------------------------------------------------------------------
def _is_dims_line(line: str) -> bool:
    parts = line.split()
    return len(parts) == 3 and all(p.lstrip("+-").isdigit() for p in parts)


def read_egsphant(path: str | Path, library: MaterialLibrary | None = None,
                  aliases: Mapping[str, str] | None = None) -> VoxelPhantom:
    """Read an EGSnrc ``.egsphant`` (or ``.egsphant.gz``) file as a :class:`VoxelPhantom`.

    Args:
        path: the phantom file (plain or gzip-compressed text).
        library: where medium names are looked up (default: the built-in library).
        aliases: extra ``{EGSnrc name: library name}`` entries, consulted before the library and
            :data:`DEFAULT_ALIASES`.

    Media that resolve to the same library material are merged into one entry. Material indices
    are uint8 (uint16 beyond 256 media); densities float32 g/cm3 taken from the file.

    Raises:
        ConfigError: missing/truncated/malformed file (names the file and what was expected).
        GeometryError: unevenly spaced or non-increasing boundaries (names file and axis).
        MaterialError: a medium unknown to the library and the aliases.
    """
    path = Path(path)
    lib = library if library is not None else default_library()
    text = _read_text(path, "egsphant")
    lines = text.splitlines()
    k = 0
    while k < len(lines) and not lines[k].strip():
        k += 1
    if k >= len(lines):
        raise ConfigError(f"{path}: empty egsphant file")
    first = lines[k].split()
    try:
        nmed = int(first[0])
    except ValueError:
        raise ConfigError(f"{path}: first line must be the number of media, got {lines[k].strip()!r}") from None
    if not 1 <= nmed <= len(MEDIA_CHARS):
        raise ConfigError(f"{path}: number of media must be 1..{len(MEDIA_CHARS)}, got {nmed}")
    k += 1
    names: list[str] = []
    for i in range(nmed):
        if k + i >= len(lines):
            raise ConfigError(f"{path}: file ends early (truncated?): expected {nmed} medium names, found {i}")
        nm = lines[k + i].strip()
        if not nm:
            raise ConfigError(f"{path}: medium name {i + 1} of {nmed} (line {k + i + 1}) is empty")
        names.append(nm)
    k += nmed
    # ESTEPE values: nmed numbers, normally on one line (ignored).
    n_estepe = 0
    while k < len(lines) and n_estepe < nmed:
        if n_estepe > 0 and _is_dims_line(lines[k]):
            break
        toks = lines[k].split()
        if any(not _is_float(t) for t in toks):
            raise ConfigError(f"{path}: line {k + 1}: expected ESTEPE values (numbers), got {lines[k].strip()!r}")
        n_estepe += len(toks)
        k += 1
    if n_estepe == 0:
        raise ConfigError(f"{path}: file ends early (truncated?): expected the ESTEPE line after the media names")
    if n_estepe > nmed:
        raise ConfigError(f"{path}: expected {nmed} ESTEPE values after the media names, found {n_estepe}")
    tok = _Tokens(path, "\n".join(lines[k:]).split())
    nx, ny, nz = _dims(path, tok.ints(3, "the voxel counts nx ny nz"))
    bx = tok.floats(nx + 1, f"nx+1 = {nx + 1} x boundaries (cm)")
    by = tok.floats(ny + 1, f"ny+1 = {ny + 1} y boundaries (cm)")
    bz = tok.floats(nz + 1, f"nz+1 = {nz + 1} z boundaries (cm)")
    geometry = _geometry_from_boundaries(path, bx, by, bz)
    # media matrix: nz*ny rows of nx characters
    n_rows = ny * nz
    if tok.left < n_rows:
        raise ConfigError(
            f"{path}: file ends early (truncated?): expected the media matrix of nz*ny = {n_rows} rows of "
            f"nx = {nx} characters, found {tok.left} rows"
        )
    rows = tok.tokens[tok.pos:tok.pos + n_rows]
    for r, row in enumerate(rows):
        if len(row) != nx:
            iz, iy = divmod(r, ny)
            raise ConfigError(
                f"{path}: media matrix row iz={iz}, iy={iy} has {len(row)} characters ({row[:20]!r}), "
                f"expected nx = {nx}"
            )
    tok.pos += n_rows
    chars = np.frombuffer("".join(rows).encode("latin-1"), dtype=np.uint8)
    lut = np.full(256, -1, dtype=np.int64)
    for i, c in enumerate(MEDIA_CHARS[:nmed]):
        lut[ord(c)] = i
    file_index = lut[chars]
    if np.any(file_index < 0):
        bad = int(np.argmax(file_index < 0))
        iz, rest = divmod(bad, ny * nx)
        iy, ix = divmod(rest, nx)
        raise ConfigError(
            f"{path}: media matrix voxel (ix={ix}, iy={iy}, iz={iz}) has character {chr(chars[bad])!r}, which is not "
            f"one of the {nmed} media ({MEDIA_CHARS[:nmed]!r})"
        )
    n_vox = nx * ny * nz
    dens = tok.floats(n_vox, f"the density matrix of nx*ny*nz = {n_vox} voxel densities (g/cm3)")
    if tok.left:
        raise ConfigError(
            f"{path}: {tok.left} unexpected values after the {n_vox} voxel densities (wrong nx ny nz?)"
        )
    bad = ~np.isfinite(dens) | (dens <= 0)
    if np.any(bad):
        j = int(np.argmax(bad))
        iz, rest = divmod(j, ny * nx)
        iy, ix = divmod(rest, nx)
        raise ConfigError(
            f"{path}: voxel (ix={ix}, iy={iy}, iz={iz}) has density {float(dens[j])!r} g/cm3; "
            f"densities must be finite and > 0 "
            f"({int(bad.sum())} such voxels)"
        )
    # media -> library materials (merging media that resolve to the same material)
    materials: list[Material] = []
    remap = np.empty(nmed, dtype=np.int64)
    for i, nm in enumerate(names):
        mat = resolve_medium(nm, lib, aliases, source=str(path))
        names_so_far = [m.name for m in materials]
        if mat.name in names_so_far:
            remap[i] = names_so_far.index(mat.name)
        else:
            materials.append(mat)
            remap[i] = len(materials) - 1
    dtype = np.uint8 if len(materials) <= 256 else np.uint16
    index = remap[file_index].astype(dtype).reshape(nz, ny, nx)
    density = dens.astype(np.float32).reshape(nz, ny, nx)
    return VoxelPhantom(geometry, tuple(materials), index, density)


def write_egsphant(path: str | Path, phantom: VoxelPhantom, names: Mapping[str, str] | None = None) -> Path:
    """Write ``phantom`` as an EGSnrc ``.egsphant`` file (gzip-compressed if ``path`` ends in ``.gz``).

    Args:
        path: target; written atomically.
        phantom: the phantom (at most ``len(MEDIA_CHARS)`` = 61 materials).
        names: ``{library name: EGSnrc medium name}`` for the medium lines (e.g.
            :data:`EGS_BRACHY_NAMES`); materials not in it keep their library name.

    Densities are written with 9 significant digits (exact for float32), boundaries in cm.
    """
    path = Path(path)
    mats = phantom.materials
    if len(mats) > len(MEDIA_CHARS):
        raise MaterialError(f"{path}: an egsphant file holds at most {len(MEDIA_CHARS)} media, "
                            f"the phantom has {len(mats)}")
    names = dict(names or {})
    med_names = []
    for m in mats:
        nm = str(names.get(m.name, m.name)).strip()
        if not nm or "\n" in nm or "\r" in nm:
            raise MaterialError(f"{path}: medium name for material {m.name!r} must be one non-empty line, got {nm!r}")
        med_names.append(nm)
    if len({n.upper() for n in med_names}) != len(med_names):
        raise MaterialError(f"{path}: medium names must be distinct (case-insensitively), got {med_names}")
    g = phantom.geometry
    out = io.StringIO()
    out.write(f"{len(mats)}\n")
    for nm in med_names:
        out.write(nm + "\n")
    out.write(" ".join(["1.0"] * len(mats)) + "\n")
    out.write(f"{g.nx} {g.ny} {g.nz}\n")
    out.write(_format_boundaries(g))
    lut = np.frombuffer(MEDIA_CHARS.encode("ascii"), dtype=np.uint8)
    chars = lut[phantom.material_index.astype(np.int64)]
    for iz in range(g.nz):
        for iy in range(g.ny):
            out.write(chars[iz, iy].tobytes().decode("ascii"))
            out.write("\n")
        out.write("\n")
    out.write(_format_block(phantom.density.astype(np.float32).astype(np.float64), "%.9g"))
    return _write_text(path, out.getvalue())


# --------------------------------------------------------------------------------------------
# .3ddose
# --------------------------------------------------------------------------------------------
def write_3ddose(path: str | Path, dose: np.ndarray, rel_unc: np.ndarray | None, geometry: GridGeometry) -> Path:
    """Write a dose grid as an EGSnrc ``.3ddose`` file (atomic; gzip if ``path`` ends in ``.gz``).

    Args:
        dose: (nz, ny, nx) dose (Gy, or Gy per history: the file carries no unit).
        rel_unc: (nz, ny, nx) relative standard uncertainties (fractions) or ``None`` (the
            uncertainty block is then omitted). Non-finite values (zero-dose voxels) are written
            as 1.0, i.e. 100 %.
        geometry: the grid; boundaries are written in cm.

    Values are written as ``%.6e``; one line per (iz, iy) row, x fastest.
    """
    path = Path(path)
    shape = tuple(geometry.shape)
    dose = np.asarray(dose, dtype=np.float64)
    if dose.shape != shape:
        raise GeometryError(f"{path}: dose array shape {dose.shape} does not match the grid {shape}")
    if not np.all(np.isfinite(dose)):
        raise ConfigError(f"{path}: dose contains NaN or infinity ({int((~np.isfinite(dose)).sum())} voxels)")
    out = io.StringIO()
    out.write(f"{geometry.nx} {geometry.ny} {geometry.nz}\n")
    out.write(_format_boundaries(geometry))
    out.write(_format_block(dose, "%.6e"))
    if rel_unc is not None:
        unc = np.asarray(rel_unc, dtype=np.float64)
        if unc.shape != shape:
            raise GeometryError(f"{path}: rel_unc array shape {unc.shape} does not match the grid {shape}")
        unc = np.where(np.isfinite(unc), unc, 1.0)
        if np.any(unc < 0):
            raise ConfigError(f"{path}: relative uncertainties must be >= 0")
        out.write(_format_block(unc, "%.6e"))
    return _write_text(path, out.getvalue())


def read_3ddose(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, GridGeometry]:
    """Read an EGSnrc ``.3ddose`` file (plain or gzip).

    Returns:
        ``(dose, rel_unc, geometry)``: float64 arrays (nz, ny, nx); ``rel_unc`` (fractions) is
        ``None`` when the file has no uncertainty block.
    """
    path = Path(path)
    tok = _Tokens(path, _read_text(path, "3ddose").split())
    if tok.left == 0:
        raise ConfigError(f"{path}: empty 3ddose file")
    nx, ny, nz = _dims(path, tok.ints(3, "the voxel counts nx ny nz"))
    bx = tok.floats(nx + 1, f"nx+1 = {nx + 1} x boundaries (cm)")
    by = tok.floats(ny + 1, f"ny+1 = {ny + 1} y boundaries (cm)")
    bz = tok.floats(nz + 1, f"nz+1 = {nz + 1} z boundaries (cm)")
    geometry = _geometry_from_boundaries(path, bx, by, bz)
    n = nx * ny * nz
    dose = tok.floats(n, f"nx*ny*nz = {n} doses").reshape(nz, ny, nx)
    rel_unc = None
    if tok.left:
        rel_unc = tok.floats(n, f"nx*ny*nz = {n} relative uncertainties").reshape(nz, ny, nx)
        if tok.left:
            raise ConfigError(f"{path}: {tok.left} unexpected values after the uncertainties (wrong nx ny nz?)")
    return dose, rel_unc, geometry
