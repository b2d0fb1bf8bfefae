"""CT numbers (HU) to tissues: mass density and material per voxel (TG-186 style).

A *calibration* (``configs/calibrations/*.toml``, format in ``configs/calibrations/README.md``)
holds two independent parts:

* :class:`DensityCurve`: a piecewise-linear HU -> mass density (g/cm3) curve through measured
  points, constant outside the first and last point. It belongs to one CT scanner and protocol:
  the built-in curves are published examples and must be replaced by the user's own.
* :class:`TissueBin`\\ s: contiguous HU intervals ``hu_min <= HU < hu_max`` covering the whole
  axis (``-inf`` .. ``inf``), each naming a material (from the material library, or defined in
  the calibration file itself).

:func:`ct_to_phantom` applies a calibration to a :class:`~brachymc.geometry.ct.CTVolume` and
returns a :class:`~brachymc.geometry.phantom.VoxelPhantom` and a :class:`ConversionReport`.
Order of the steps, each seeing the result of the previous one:

1. every voxel gets the bin of its HU and the curve's density (or the bin's fixed density);
2. ``artefact``: bright/dark streak voxels near the seeds get the surrounding tissue;
3. ``seed_mask``: voxels inside modelled seeds get the surrounding tissue (their HU is ignored);
4. ``overrides`` (e.g. contours: GTV -> soft tissue), in the given order; a later one wins.

Arrays are indexed ``[iz, iy, ix]`` and coordinates are cm, as in :mod:`brachymc.geometry.phantom`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import ndimage

from brachymc._paths import config_dir
from brachymc.errors import ConfigError, GeometryError, MaterialError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import VoxelPhantom
from brachymc.files import load_toml
from brachymc.materials import Material, MaterialLibrary, _material_from_entry, default_library

__all__ = [
    "DensityCurve", "TissueBin", "HUCalibration", "Override", "ArtefactCorrection", "ConversionReport",
    "OverrideCount", "available_calibrations", "calibration_dir", "load_calibration", "hu_to_density",
    "hu_to_bin", "ct_to_phantom", "DEFAULT_CALIBRATION", "FALLBACK_MATERIAL",
]

#: The calibration used when none is named.
DEFAULT_CALIBRATION = "spine_default"
#: Surrounding tissue assumed for seed/streak voxels that have no usable neighbour.
FALLBACK_MATERIAL = "soft_tissue"

_TOP_KEYS = {"name", "description", "reference", "notes", "density", "tissue"}
_DENSITY_KEYS = {"hu", "g_cm3", "allow_decreasing", "reference", "notes"}
_BIN_KEYS = {"hu_min", "hu_max", "material", "voxel_density", "label", "notes"}


# ----------------------------------------------------------------------------------------------
# data model
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DensityCurve:
    """Piecewise-linear HU -> mass density (g/cm3), constant outside ``[hu[0], hu[-1]]``.

    ``hu`` strictly increasing, every density > 0. The density must not decrease with HU unless
    ``allow_decreasing`` (published curves such as Schneider 2000 have a step down at 100/101 HU).
    """

    hu: tuple[float, ...]
    g_cm3: tuple[float, ...]
    allow_decreasing: bool = False
    reference: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        where = f"{self.source}: [density]" if self.source else "density curve"
        object.__setattr__(self, "hu", tuple(float(h) for h in self.hu))
        object.__setattr__(self, "g_cm3", tuple(float(d) for d in self.g_cm3))
        if len(self.hu) < 1 or len(self.hu) != len(self.g_cm3):
            raise ConfigError(
                f"{where} 'hu' and 'g_cm3' must be non-empty lists of equal length "
                f"(got {len(self.hu)} and {len(self.g_cm3)})"
            )
        for i, (h, d) in enumerate(zip(self.hu, self.g_cm3)):
            if not math.isfinite(h):
                raise ConfigError(f"{where} hu[{i}] = {h} is not a finite number")
            if not (math.isfinite(d) and d > 0):
                raise ConfigError(f"{where} g_cm3[{i}] = {d} must be a finite density > 0 g/cm3")
        for i in range(1, len(self.hu)):
            if not self.hu[i] > self.hu[i - 1]:
                raise ConfigError(
                    f"{where} 'hu' must be strictly increasing: hu[{i}] = {self.hu[i]:g} follows "
                    f"hu[{i - 1}] = {self.hu[i - 1]:g}"
                )
            if self.g_cm3[i] < self.g_cm3[i - 1] and not self.allow_decreasing:
                raise ConfigError(
                    f"{where} 'g_cm3' decreases from {self.g_cm3[i - 1]:g} (hu {self.hu[i - 1]:g}) to "
                    f"{self.g_cm3[i]:g} (hu {self.hu[i]:g}); density must not decrease with HU "
                    "(set allow_decreasing = true only to reproduce a published curve that does)"
                )

    @property
    def is_monotone(self) -> bool:
        return all(b >= a for a, b in zip(self.g_cm3, self.g_cm3[1:]))

    @property
    def min_density(self) -> float:
        return min(self.g_cm3)

    @property
    def max_density(self) -> float:
        return max(self.g_cm3)

    def __call__(self, hu):
        return hu_to_density(hu, self)


@dataclass(frozen=True)
class TissueBin:
    """Voxels with ``hu_min <= HU < hu_max`` get ``material``.

    ``voxel_density``: None -> density from the calibration curve (the usual case); a number ->
    this density for every voxel of the bin (e.g. metal that saturates the CT scale).
    """

    hu_min: float
    hu_max: float
    material: Material
    voxel_density: float | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if math.isnan(self.hu_min) or math.isnan(self.hu_max) or not self.hu_min < self.hu_max:
            raise ConfigError(f"tissue bin {self.label or self.material.name!r}: need hu_min < hu_max, "
                              f"got {self.hu_min} .. {self.hu_max}")
        if self.voxel_density is not None and not (math.isfinite(self.voxel_density) and self.voxel_density > 0):
            raise ConfigError(f"tissue bin {self.label or self.material.name!r}: voxel_density must be > 0 g/cm3")

    def contains(self, hu: float) -> bool:
        return self.hu_min <= hu < self.hu_max

    def describe(self) -> str:
        return f"[{self.hu_min:g}, {self.hu_max:g}) -> {self.material.name}"


@dataclass(frozen=True)
class HUCalibration:
    """A named HU -> (density, material) scheme: one density curve and contiguous tissue bins."""

    name: str
    reference: str
    density: DensityCurve
    bins: tuple[TissueBin, ...]
    description: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or f"calibration {self.name!r}"
        bins = tuple(self.bins)
        object.__setattr__(self, "bins", bins)
        if not bins:
            raise ConfigError(f"{where}: no [[tissue]] bins")
        if bins[0].hu_min != -math.inf:
            raise ConfigError(f"{where}: [[tissue]] 1 must start at hu_min = -inf (got {bins[0].hu_min:g}); "
                              "the bins must cover the whole HU axis")
        if bins[-1].hu_max != math.inf:
            raise ConfigError(f"{where}: [[tissue]] {len(bins)} (last) must end at hu_max = inf "
                              f"(got {bins[-1].hu_max:g}); the bins must cover the whole HU axis")
        for i in range(1, len(bins)):
            prev, cur = bins[i - 1], bins[i]
            if cur.hu_min > prev.hu_max:
                raise ConfigError(
                    f"{where}: gap between [[tissue]] {i} ({prev.describe()}) and [[tissue]] {i + 1} "
                    f"({cur.describe()}): HU {prev.hu_max:g} .. {cur.hu_min:g} belongs to no bin"
                )
            if cur.hu_min < prev.hu_max:
                raise ConfigError(
                    f"{where}: [[tissue]] {i} ({prev.describe()}) and [[tissue]] {i + 1} ({cur.describe()}) "
                    f"overlap on HU {cur.hu_min:g} .. {prev.hu_max:g} (bins must be listed in increasing HU, "
                    "each hu_min equal to the previous hu_max)"
                )
        seen: dict[str, Material] = {}
        for b in bins:
            other = seen.setdefault(b.material.name, b.material)
            if other != b.material:
                raise MaterialError(f"{where}: two different materials are named {b.material.name!r}")

    @property
    def edges(self) -> np.ndarray:
        """The interior bin boundaries (``bins[i].hu_max`` for all but the last bin)."""
        return np.array([b.hu_max for b in self.bins[:-1]], dtype=float)

    def materials(self) -> tuple[Material, ...]:
        """Distinct materials of the bins, in bin (HU) order."""
        out: dict[str, Material] = {}
        for b in self.bins:
            out.setdefault(b.material.name, b.material)
        return tuple(out.values())

    def material(self, name: str) -> Material | None:
        for m in self.materials():
            if m.name == name:
                return m
        return None

    def bin_of(self, hu: float) -> TissueBin:
        return self.bins[int(hu_to_bin(hu, self))]

    def table(self) -> str:
        """Human-readable listing of the bins."""
        lines = [f"calibration {self.name}: {len(self.bins)} bins"]
        for b in self.bins:
            rho = "curve" if b.voxel_density is None else f"{b.voxel_density:g} g/cm3"
            lines.append(f"  {b.hu_min:>8g} <= HU < {b.hu_max:<8g} {b.material.name:<28s} density: {rho}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------

def calibration_dir() -> Path:
    """Folder of the built-in calibrations (``<config_dir>/calibrations``)."""
    return config_dir() / "calibrations"


def available_calibrations() -> list[str]:
    """Names of the built-in calibrations (file stems)."""
    d = calibration_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def _resolve_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if isinstance(name_or_path, Path) or p.suffix == ".toml" or len(p.parts) > 1:
        return p
    cand = calibration_dir() / f"{name_or_path}.toml"
    if not cand.is_file():
        names = ", ".join(available_calibrations()) or "none"
        raise ConfigError(f"unknown calibration {str(name_or_path)!r}: not a built-in name (available: {names}) "
                          "and not a .toml path")
    return cand


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return float(value)


def _check_keys(table: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(allowed))})")


def _parse_density(data: Any, src: str) -> DensityCurve:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{src}: missing [density] table with 'hu' and 'g_cm3' lists")
    _check_keys(data, _DENSITY_KEYS, f"{src}: [density]")
    for key in ("hu", "g_cm3"):
        if not isinstance(data.get(key), list):
            raise ConfigError(f"{src}: [density] '{key}' must be a list of numbers")
    hu = [_number(v, f"{src}: [density] hu[{i}]") for i, v in enumerate(data["hu"])]
    rho = [_number(v, f"{src}: [density] g_cm3[{i}]") for i, v in enumerate(data["g_cm3"])]
    allow = data.get("allow_decreasing", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"{src}: [density] allow_decreasing must be true or false")
    return DensityCurve(tuple(hu), tuple(rho), allow, str(data.get("reference", "")), src)


def load_calibration(name_or_path: str | Path = DEFAULT_CALIBRATION,
                     library: MaterialLibrary | None = None) -> HUCalibration:
    """Load a calibration: a built-in name (``available_calibrations()``) or a TOML path.

    Materials named by string come from ``library`` (default: the built-in library) or from a
    material defined inline in another bin of the same file. Errors name the file and the field.
    """
    path = _resolve_path(name_or_path)
    src = str(path)
    data = load_toml(path)
    _check_keys(data, _TOP_KEYS, src)
    lib = default_library() if library is None else library
    curve = _parse_density(data.get("density"), src)

    entries = data.get("tissue")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{src}: no [[tissue]] bins (each with hu_min, hu_max, material)")

    # first pass: inline materials (tables), so that string references may use them
    inline: dict[str, Material] = {}
    for i, e in enumerate(entries, 1):
        where = f"{src}: [[tissue]] {i}"
        if not isinstance(e, Mapping):
            raise ConfigError(f"{where} must be a table")
        _check_keys(e, _BIN_KEYS, where)
        m = e.get("material")
        if isinstance(m, Mapping):
            mat = _material_from_entry(m, f"{where} material")
            if mat.name in lib:
                raise MaterialError(f"{where}: inline material {mat.name!r} has the name of a library material; "
                                    "give it a new name or refer to the library one by name")
            if mat.name in inline and inline[mat.name] != mat:
                raise MaterialError(f"{where}: inline material {mat.name!r} is defined twice, differently")
            inline[mat.name] = mat

    bins: list[TissueBin] = []
    for i, e in enumerate(entries, 1):
        where = f"{src}: [[tissue]] {i}"
        for key in ("hu_min", "hu_max", "material"):
            if key not in e:
                raise ConfigError(f"{where}: missing '{key}'")
        lo = _number(e["hu_min"], f"{where} hu_min")
        hi = _number(e["hu_max"], f"{where} hu_max")
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise ConfigError(f"{where}: need hu_min < hu_max, got hu_min = {lo:g}, hu_max = {hi:g}")
        m = e["material"]
        if isinstance(m, Mapping):
            mat = inline[str(m["name"])]
        elif isinstance(m, str):
            if m in inline:
                mat = inline[m]
            else:
                try:
                    mat = lib[m]
                except MaterialError as exc:
                    raise MaterialError(f"{where} material: {exc}") from None
        else:
            raise ConfigError(f"{where} material must be a library name or an inline material table, got {m!r}")
        vd = e.get("voxel_density")
        if vd is None or vd == "curve":
            voxel_density = None
        elif vd == "nominal":
            voxel_density = mat.density
        else:
            voxel_density = _number(vd, f"{where} voxel_density (\"curve\", \"nominal\" or g/cm3)")
            if not (math.isfinite(voxel_density) and voxel_density > 0):
                raise ConfigError(f"{where} voxel_density = {voxel_density:g} must be > 0 g/cm3")
        bins.append(TissueBin(lo, hi, mat, voxel_density, str(e.get("label", ""))))

    return HUCalibration(
        name=str(data.get("name", path.stem)),
        reference=str(data.get("reference", "")),
        density=curve,
        bins=tuple(bins),
        description=str(data.get("description", "")),
        source=src,
    )


# ----------------------------------------------------------------------------------------------
# pure conversions
# ----------------------------------------------------------------------------------------------

def hu_to_density(hu, curve: DensityCurve):
    """Mass density (g/cm3) of HU values: linear between the curve's points, constant outside.

    Scalars give a float, arrays a float64 array of the same shape.
    """
    h = np.asarray(hu, dtype=float)
    if np.isnan(h).any():
        raise ValueError("hu_to_density: HU contains NaN")
    rho = np.interp(h, np.asarray(curve.hu), np.asarray(curve.g_cm3))
    return float(rho) if rho.ndim == 0 else rho


def hu_to_bin(hu, calibration: HUCalibration):
    """Index of the tissue bin of each HU value (``hu_min <= HU < hu_max``).

    A value exactly on a boundary belongs to the bin that starts there. Scalars give an int,
    arrays an int16 array of the same shape (an intp array for more than 32767 bins).
    """
    h = np.asarray(hu, dtype=float)
    if np.isnan(h).any():
        raise ValueError("hu_to_bin: HU contains NaN")
    idx = np.searchsorted(calibration.edges, h, side="right")
    if idx.ndim == 0:
        return int(idx)
    return idx.astype(np.int16) if len(calibration.bins) < 32768 else idx


# ----------------------------------------------------------------------------------------------
# conversion of a CT volume
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Override:
    """Give every voxel of ``mask`` (nz, ny, nx) the material ``material``.

    ``density``: None keeps the voxel's CT-derived density; a number sets it (g/cm3);
    ``"nominal"`` uses the material's nominal density.
    """

    mask: np.ndarray
    material: str | Material
    density: float | str | None = None
    label: str = ""


@dataclass(frozen=True)
class ArtefactCorrection:
    """Reassign seed streak artefacts.

    Voxels within ``radius_cm`` of a seed centre whose HU is above ``hu_threshold_high`` (bright
    streaks) or below ``hu_threshold_low`` (dark streaks) get the surrounding tissue: the most
    common tissue bin, within the radius of that seed, among voxels that are neither streak nor
    seed voxels (with the median CT density of those voxels), or ``material`` (at its nominal
    density) when given. The defaults keep vertebral spongiosa and most cortical bone (< 2000 HU)
    and soft tissue/fat (> -300 HU) untouched; tune them to the images (thoracic seeds near lung
    need a lower ``hu_threshold_low``).
    """

    radius_cm: float
    hu_threshold_high: float = 2000.0
    hu_threshold_low: float = -300.0
    material: str | Material | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.radius_cm) and self.radius_cm > 0):
            raise ConfigError(f"artefact correction: radius_cm must be > 0, got {self.radius_cm}")
        if not self.hu_threshold_low < self.hu_threshold_high:
            raise ConfigError(f"artefact correction: need hu_threshold_low < hu_threshold_high, got "
                              f"{self.hu_threshold_low} and {self.hu_threshold_high}")


@dataclass(frozen=True)
class OverrideCount:
    label: str
    material: str
    voxels: int            # voxels in the mask (all set to the material)
    changed: int           # of which had another material before this override


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`ct_to_phantom` did."""

    calibration: str
    n_voxels: int
    material_counts: tuple[tuple[str, int], ...]       # final, in phantom material order
    bin_counts: tuple[tuple[str, int], ...]            # per tissue bin from the raw HU ("[lo, hi) name")
    overrides: tuple[OverrideCount, ...] = ()
    seed_voxels: int = 0                                # voxels inside seeds whose HU was ignored
    seed_components: int = 0
    seed_fallback_components: int = 0                   # seeds with no usable neighbour -> fallback material
    artefact_voxels: int = 0                            # streak voxels reassigned
    artefact_bright: int = 0
    artefact_dark: int = 0
    hu_min: float = float("nan")
    hu_max: float = float("nan")
    extrapolated_voxels: int = 0                        # HU outside the density curve's points (constant)
    notes: tuple[str, ...] = ()

    def count(self, material: str) -> int:
        return dict(self.material_counts).get(material, 0)

    def summary(self) -> str:
        lines = [f"CT -> phantom with calibration '{self.calibration}': {self.n_voxels} voxels, "
                 f"HU {self.hu_min:g} .. {self.hu_max:g}"]
        if self.extrapolated_voxels:
            lines.append(f"  {self.extrapolated_voxels} voxels outside the density curve's HU range (constant density)")
        lines.append("  materials:")
        for name, n in self.material_counts:
            lines.append(f"    {name:<28s} {n:>10d}  ({100.0 * n / max(self.n_voxels, 1):5.1f} %)")
        if self.artefact_voxels or self.artefact_bright or self.artefact_dark:
            lines.append(f"  artefact voxels reassigned: {self.artefact_voxels} "
                         f"(bright {self.artefact_bright}, dark {self.artefact_dark})")
        if self.seed_voxels:
            lines.append(f"  seed voxels ignored: {self.seed_voxels} in {self.seed_components} seed region(s)"
                         + (f", {self.seed_fallback_components} without neighbours" if self.seed_fallback_components else ""))
        for o in self.overrides:
            lines.append(f"  override {o.label}: {o.voxels} voxels -> {o.material} ({o.changed} changed material)")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


class _Pool:
    """Materials referenced during a conversion, unique by name, in first-use order."""

    def __init__(self) -> None:
        self.items: list[Material] = []
        self.index: dict[str, int] = {}

    def add(self, m: Material) -> int:
        k = self.index.get(m.name)
        if k is None:
            self.items.append(m)
            k = self.index[m.name] = len(self.items) - 1
        elif self.items[k] != m:
            raise MaterialError(f"two different materials named {m.name!r} in one conversion")
        return k


def _lookup(name: str | Material, calibration: HUCalibration, library: MaterialLibrary | None) -> Material:
    if isinstance(name, Material):
        return name
    m = calibration.material(name)
    if m is not None:
        return m
    return (default_library() if library is None else library)[name]


def _ball_box(geom, center: np.ndarray, radius: float):
    """Slices of the voxels possibly within ``radius`` of ``center`` and their squared distances."""
    o, d = np.asarray(geom.origin, float), np.asarray(geom.spacing, float)
    n = np.array([geom.nx, geom.ny, geom.nz])
    lo = np.clip(np.floor((center - radius - o) / d).astype(int), 0, n)
    hi = np.clip(np.ceil((center + radius - o) / d).astype(int) + 1, 0, n)
    if np.any(hi <= lo):
        return None, None
    cx = o[0] + (np.arange(lo[0], hi[0]) + 0.5) * d[0] - center[0]
    cy = o[1] + (np.arange(lo[1], hi[1]) + 0.5) * d[1] - center[1]
    cz = o[2] + (np.arange(lo[2], hi[2]) + 0.5) * d[2] - center[2]
    r2 = cz[:, None, None] ** 2 + cy[None, :, None] ** 2 + cx[None, None, :] ** 2
    sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    return sl, r2


def _mode(values: np.ndarray, n: int) -> int:
    """Most common value (lowest on ties)."""
    return int(np.argmax(np.bincount(values, minlength=n)))


def _fill_density(calibration: HUCalibration, b: int, rho_candidates: np.ndarray) -> float:
    fixed = calibration.bins[b].voxel_density
    if fixed is not None:
        return float(fixed)
    return float(np.median(rho_candidates))


def _normalise_overrides(overrides) -> list[Override]:
    out = []
    for i, o in enumerate(overrides, 1):
        if isinstance(o, Override):
            out.append(o if o.label else Override(o.mask, o.material, o.density, f"{i}"))
            continue
        if not isinstance(o, (tuple, list)) or len(o) not in (2, 3):
            raise ConfigError(f"override {i}: expected (mask, material[, density]) or an Override, got {type(o).__name__}")
        out.append(Override(o[0], o[1], o[2] if len(o) == 3 else None, f"{i}"))
    return out


def ct_to_phantom(
    ct: CTVolume,
    calibration: HUCalibration,
    library: MaterialLibrary | None = None,
    overrides: Sequence[Override | tuple] = (),
    seed_mask: np.ndarray | None = None,
    artefact: ArtefactCorrection | None = None,
    *,
    seed_centers_cm: np.ndarray | None = None,
    seed_margin_voxels: int = 2,
    fallback_material: str = FALLBACK_MATERIAL,
) -> tuple[VoxelPhantom, ConversionReport]:
    """Convert a CT volume to a voxel phantom (see the module docstring for the order of steps).

    Args:
        ct: HU on a grid.
        calibration: from :func:`load_calibration`.
        library: resolves material names of overrides, ``artefact.material`` and the fallback
            (default: the built-in library). Calibration materials (incl. inline ones) come first.
        overrides: ``(mask, material[, density])`` tuples or :class:`Override`, applied in order.
        seed_mask: boolean (nz, ny, nx), voxels inside modelled seeds. Each connected seed region
            gets the most common tissue bin among the non-seed, non-streak voxels within
            ``seed_margin_voxels`` of it (density: their median CT density), or
            ``fallback_material`` at nominal density when there are none.
        artefact: streak correction around ``seed_centers_cm`` ((n, 3) x, y, z in cm; default:
            the centroids of the connected regions of ``seed_mask``).
    """
    g = ct.geometry
    shape = tuple(g.shape)
    hu = np.asarray(ct.hu, dtype=np.float64)
    if hu.shape != shape:
        raise GeometryError(f"CT array shape {hu.shape} does not match its grid {shape}")
    nb = len(calibration.bins)
    notes: list[str] = []

    # 1. bins and densities from the HU
    bins = hu_to_bin(hu, calibration)
    rho = hu_to_density(hu, calibration.density)
    rho = np.atleast_1d(rho).reshape(shape)
    bins = np.asarray(bins).reshape(shape)
    for b, tb in enumerate(calibration.bins):
        if tb.voxel_density is not None:
            rho[bins == b] = tb.voxel_density
    bin_hist = np.bincount(bins.ravel(), minlength=nb)

    pool = _Pool()
    bin_to_pool = np.array([pool.add(tb.material) for tb in calibration.bins], dtype=np.int32)
    lab = bin_to_pool[bins]

    seeds = None
    if seed_mask is not None:
        seeds = np.asarray(seed_mask)
        if seeds.shape != shape or seeds.dtype != bool:
            raise GeometryError(f"seed_mask must be a boolean array of the grid shape {shape}, "
                                f"got {seeds.dtype} {seeds.shape}")
        if not seeds.any():
            seeds = None

    seed_labels, n_seed_comp = (None, 0)
    if seeds is not None:
        seed_labels, n_seed_comp = ndimage.label(seeds, structure=np.ones((3, 3, 3), bool))

    # 2. streak artefacts around the seeds
    streak = np.zeros(shape, bool)
    n_bright = n_dark = 0
    if artefact is not None:
        if seed_centers_cm is None:
            if seeds is None:
                raise ConfigError("artefact correction needs seed centres: pass seed_centers_cm or a non-empty seed_mask")
            com = ndimage.center_of_mass(seeds, seed_labels, range(1, n_seed_comp + 1))
            o, d = np.asarray(g.origin), np.asarray(g.spacing)
            centers = np.array([[o[0] + (c[2] + 0.5) * d[0], o[1] + (c[1] + 0.5) * d[1], o[2] + (c[0] + 0.5) * d[2]]
                                for c in com], float).reshape(-1, 3)
            notes.append(f"artefact correction around the centroids of {len(centers)} seed region(s)")
        else:
            centers = np.asarray(seed_centers_cm, float).reshape(-1, 3)
            if not np.all(np.isfinite(centers)):
                raise GeometryError("seed_centers_cm contains NaN or infinity")
        art_pool = None
        if artefact.material is not None:
            art_mat = _lookup(artefact.material, calibration, library)
            art_pool = pool.add(art_mat)
        fb_pool = None
        not_seed = ~seeds if seeds is not None else np.ones(shape, bool)
        r2max = artefact.radius_cm ** 2
        boxes = [_ball_box(g, c, artefact.radius_cm) for c in centers]
        live = [b for b in boxes if b[0] is not None]
        if live:
            # work inside the bounding box U of all balls; slices below are relative to U
            u0 = [min(b[0][a].start for b in live) for a in range(3)]
            u1 = [max(b[0][a].stop for b in live) for a in range(3)]
            U = tuple(slice(a, b) for a, b in zip(u0, u1))
            near = np.full(tuple(b - a for a, b in zip(u0, u1)), np.inf)   # squared distance to nearest centre
            owner = np.full(near.shape, -1, np.int32)
            rel = []
            for k, (sl, r2) in enumerate(boxes):
                if sl is None:
                    rel.append(None)
                    continue
                rs = tuple(slice(s_.start - a, s_.stop - a) for s_, a in zip(sl, u0))
                inside = r2 <= r2max
                closer = inside & (r2 < near[rs])
                near[rs][closer] = r2[closer]
                owner[rs][closer] = k
                rel.append((rs, inside))
            within = owner >= 0
            huU = hu[U]
            bright = within & not_seed[U] & (huU > artefact.hu_threshold_high)
            dark = within & not_seed[U] & (huU < artefact.hu_threshold_low)
            streak[U] = bright | dark
            n_bright, n_dark = int(bright.sum()), int(dark.sum())
            boxes = [None if r is None else (tuple(slice(a.start + o, a.stop + o) for a, o in zip(r[0], u0)), r[1], r[0])
                     for r in rel]
        for k, box in enumerate(boxes if live else ()):
            if box is None:
                continue
            sl, inside, rs = box
            target = streak[sl] & (owner[rs] == k)
            if not target.any():
                continue
            if art_pool is not None:
                lab[sl][target] = art_pool
                rho[sl][target] = pool.items[art_pool].density
                continue
            cand = inside & ~streak[sl] & not_seed[sl]
            if cand.any():
                bsub = bins[sl][cand]
                b = _mode(bsub, nb)
                lab[sl][target] = bin_to_pool[b]
                rho[sl][target] = _fill_density(calibration, b, rho[sl][cand][bsub == b])
            else:
                if fb_pool is None:
                    fb_pool = pool.add(_lookup(fallback_material, calibration, library))
                lab[sl][target] = fb_pool
                rho[sl][target] = pool.items[fb_pool].density
                notes.append(f"seed {k + 1}: no tissue within {artefact.radius_cm:g} cm to replace streaks; "
                             f"used {fallback_material}")

    # 3. voxels inside seeds: surrounding tissue
    n_seed_vox = 0
    n_fallback = 0
    if seeds is not None:
        n_seed_vox = int(seeds.sum())
        m = max(int(seed_margin_voxels), 1)
        usable = ~seeds & ~streak
        struct = ndimage.generate_binary_structure(3, 3)
        fb_pool = None
        for k, obj in enumerate(ndimage.find_objects(seed_labels), 1):
            if obj is None:
                continue
            sl = tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, n in zip(obj, shape))
            comp = seed_labels[sl] == k
            shell = ndimage.binary_dilation(comp, structure=struct, iterations=m) & usable[sl]
            if shell.any():
                bsub = bins[sl][shell]
                b = _mode(bsub, nb)
                lab[sl][comp] = bin_to_pool[b]
                rho[sl][comp] = _fill_density(calibration, b, rho[sl][shell][bsub == b])
            else:
                if fb_pool is None:
                    fb_pool = pool.add(_lookup(fallback_material, calibration, library))
                lab[sl][comp] = fb_pool
                rho[sl][comp] = pool.items[fb_pool].density
                n_fallback += 1

    # 4. overrides, in order
    counts: list[OverrideCount] = []
    for i, o in enumerate(_normalise_overrides(overrides), 1):
        mask = np.asarray(o.mask)
        if mask.shape != shape or mask.dtype != bool:
            raise GeometryError(f"override {o.label}: mask must be a boolean array of the grid shape {shape}, "
                                f"got {mask.dtype} {mask.shape}")
        mat = _lookup(o.material, calibration, library)
        k = pool.add(mat)
        changed = int(np.count_nonzero(lab[mask] != k))
        lab[mask] = k
        if isinstance(o.density, str):
            if o.density != "nominal":
                raise ConfigError(f"override {o.label}: density must be a number, None or 'nominal', got {o.density!r}")
            rho[mask] = mat.density
        elif o.density is not None:
            dv = float(o.density)
            if not (math.isfinite(dv) and dv > 0):
                raise ConfigError(f"override {o.label}: density must be > 0 g/cm3, got {o.density}")
            rho[mask] = dv
        counts.append(OverrideCount(o.label, mat.name, int(mask.sum()), changed))

    # materials actually used, in pool order
    used_counts = np.bincount(lab.ravel(), minlength=len(pool.items))
    used = [k for k in range(len(pool.items)) if used_counts[k] > 0]
    remap = np.zeros(len(pool.items), dtype=np.int64)
    remap[used] = np.arange(len(used))
    dtype = np.uint8 if len(used) <= 256 else np.uint16
    idx = remap[lab].astype(dtype)
    materials = tuple(pool.items[k] for k in used)
    phantom = VoxelPhantom(g, materials, idx, rho.astype(np.float32))

    curve = calibration.density
    extrap = int(np.count_nonzero((hu < curve.hu[0]) | (hu > curve.hu[-1])))
    report = ConversionReport(
        calibration=calibration.name,
        n_voxels=int(hu.size),
        material_counts=tuple((pool.items[k].name, int(used_counts[k])) for k in used),
        bin_counts=tuple((f"[{tb.hu_min:g}, {tb.hu_max:g}) {tb.material.name}", int(bin_hist[b]))
                         for b, tb in enumerate(calibration.bins)),
        overrides=tuple(counts),
        seed_voxels=n_seed_vox,
        seed_components=int(n_seed_comp),
        seed_fallback_components=n_fallback,
        artefact_voxels=int(streak.sum()),
        artefact_bright=n_bright,
        artefact_dark=n_dark,
        hu_min=float(hu.min()) if hu.size else float("nan"),
        hu_max=float(hu.max()) if hu.size else float("nan"),
        extrapolated_voxels=extrap,
        notes=tuple(notes),
    )
    return phantom, report
