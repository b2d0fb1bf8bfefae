"""The ``simulate`` run file (TOML): phantom, source and run settings.

Example (every key is documented in README.md, section "Run files")::

    [run]
    histories = 1_000_000
    batches = 10
    seed = 2026
    backend = "auto"          # numpy | cupy | auto
    engine = "auto"           # kernel | array | auto (the kernel where it builds)
    score_primary = true

    [phantom]
    material = "water"
    size_cm = [10, 10, 10]
    voxel_cm = [0.1, 0.1, 0.1]

    [[phantom.box]]           # painted in order; a voxel takes the box if its centre is inside
    material = "cortical_bone"
    min_cm = [-5, -5, 1]
    max_cm = [5, 5, 2]

    [source]
    type = "point"            # point | line
    position_cm = [0, 0, 0]
    spectrum = "i125_ncrp58"  # built-in name or a .toml file; or energy_kev = 30

Unknown keys are errors (they are usually typos), reported with the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brachymc.errors import BrachyMCError, ConfigError
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.files import load_toml
from brachymc.materials import MaterialLibrary, default_library
from brachymc.mc.simulation import RunSettings
from brachymc.mc.transport import TransportSettings
from brachymc.sources.simple import LineSource, PointSource
from brachymc.sources.spectrum import Spectrum, load_spectrum

_RUN_KEYS = {"histories", "batches", "seed", "backend", "engine", "threads", "bank_size", "cutoff_kev", "score_primary",
             "score_collision"}
_PHANTOM_KEYS = {"material", "size_cm", "voxel_cm", "center_cm", "density", "box"}
_BOX_KEYS = {"material", "min_cm", "max_cm", "density"}
_SOURCE_KEYS = {"type", "position_cm", "start_cm", "end_cm", "spectrum", "energy_kev"}
_TOP_KEYS = {"run", "phantom", "source", "materials", "title"}


@dataclass(frozen=True)
class SimulationConfig:
    """A parsed run file."""

    path: Path
    title: str
    run: RunSettings
    phantom: VoxelPhantom
    source: Any
    text: str


class _Reader:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, field: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.path}: [{field}] {msg}")

    def table(self, data: dict, name: str, allowed: set[str], required: bool = True) -> dict:
        t = data.get(name)
        if t is None:
            if required:
                raise ConfigError(f"{self.path}: missing section [{name}]")
            return {}
        if not isinstance(t, dict):
            raise self.fail(name, "must be a table")
        unknown = set(t) - allowed
        if unknown:
            raise self.fail(name, f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
        return t

    def number(self, t: dict, section: str, key: str, default=None, kind=float, positive=False):
        if key not in t:
            if default is None:
                raise self.fail(section, f"missing '{key}'")
            return default
        v = t[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
            raise self.fail(section, f"'{key}' must be {'an integer' if kind is int else 'a number'}, got {v!r}")
        if positive and not v > 0:
            raise self.fail(section, f"'{key}' must be > 0, got {v!r}")
        return kind(v)

    def vec3(self, t: dict, section: str, key: str, default=None, positive=False) -> tuple[float, float, float]:
        if key not in t:
            if default is None:
                raise self.fail(section, f"missing '{key}' (three numbers, cm)")
            return default
        v = t[key]
        if (not isinstance(v, list) or len(v) != 3
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            raise self.fail(section, f"'{key}' must be a list of three numbers, got {v!r}")
        if positive and not all(x > 0 for x in v):
            raise self.fail(section, f"'{key}' values must be > 0, got {v!r}")
        return tuple(float(x) for x in v)


def load_config(path: str | Path, overrides: dict | None = None) -> SimulationConfig:
    """Parse and validate a run file; ``overrides`` replaces keys of [run] (from the CLI)."""
    path = Path(path)
    data = load_toml(path)
    rd = _Reader(path)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_TOP_KEYS))}")

    # materials
    mat_t = rd.table(data, "materials", {"files", "egsnrc"}, required=False)
    lists = {}
    for key in ("files", "egsnrc"):
        v = mat_t.get(key, [])
        if not isinstance(v, list) or not all(isinstance(f, str) for f in v):
            raise rd.fail("materials", f"'{key}' must be a list of paths")
        lists[key] = [path.parent / f for f in v]
    try:
        library: MaterialLibrary = default_library(lists["files"], lists["egsnrc"])
    except BrachyMCError as exc:
        raise ConfigError(f"{path}: [materials] {exc}") from None

    def material(section: str, name: Any):
        if not isinstance(name, str):
            raise rd.fail(section, f"'material' must be a material name, got {name!r}")
        try:
            return library[name]
        except BrachyMCError as exc:
            raise rd.fail(section, str(exc)) from None

    # run
    run_t = dict(rd.table(data, "run", _RUN_KEYS))
    run_t.update({k: v for k, v in (overrides or {}).items() if v is not None})
    backend = run_t.get("backend", "auto")
    if backend not in ("numpy", "cupy", "auto"):
        raise rd.fail("run", f"'backend' must be numpy, cupy or auto, got {backend!r}")
    engine = run_t.get("engine", "auto")
    if engine not in ("auto", "array", "kernel"):
        raise rd.fail("run", f"'engine' must be auto, array or kernel, got {engine!r}")
    for flag in ("score_primary", "score_collision"):
        if flag in run_t and not isinstance(run_t[flag], bool):
            raise rd.fail("run", f"'{flag}' must be true or false")
    try:
        transport = TransportSettings(
            cutoff_kev=rd.number(run_t, "run", "cutoff_kev", 1.0, positive=True),
            bank_size=rd.number(run_t, "run", "bank_size", 1 << 16, kind=int, positive=True),
            score_primary=bool(run_t.get("score_primary", False)),
            score_collision=bool(run_t.get("score_collision", False)),
            engine=engine,
            threads=rd.number(run_t, "run", "threads", 0, kind=int) if "threads" in run_t else 0,
        )
        run = RunSettings(
            histories=rd.number(run_t, "run", "histories", kind=int, positive=True),
            batches=rd.number(run_t, "run", "batches", 10, kind=int, positive=True),
            seed=rd.number(run_t, "run", "seed", 12345, kind=int),
            backend=backend, transport=transport,
        )
    except ConfigError as exc:
        msg = str(exc)
        raise (exc if msg.startswith(str(path)) else ConfigError(f"{path}: [run] {msg}")) from None

    # phantom
    ph_t = rd.table(data, "phantom", _PHANTOM_KEYS)
    size = rd.vec3(ph_t, "phantom", "size_cm", positive=True)
    voxel = rd.vec3(ph_t, "phantom", "voxel_cm", positive=True)
    center = rd.vec3(ph_t, "phantom", "center_cm", (0.0, 0.0, 0.0))
    try:
        geom = GridGeometry.centered(size, voxel, center)
    except BrachyMCError as exc:
        raise rd.fail("phantom", str(exc)) from None
    base = material("phantom", ph_t.get("material"))
    dens = rd.number(ph_t, "phantom", "density", base.density, positive=True)
    phantom = VoxelPhantom.homogeneous(geom, base, dens)
    boxes = ph_t.get("box", [])
    if not isinstance(boxes, list):
        raise rd.fail("phantom.box", "use [[phantom.box]] tables")
    for k, box in enumerate(boxes):
        sec = f"phantom.box #{k + 1}"
        if not isinstance(box, dict):
            raise rd.fail(sec, "must be a table")
        unknown = set(box) - _BOX_KEYS
        if unknown:
            raise rd.fail(sec, f"unknown key(s) {', '.join(sorted(unknown))}")
        mat = material(sec, box.get("material"))
        try:
            phantom = phantom.with_box(mat, rd.vec3(box, sec, "min_cm"), rd.vec3(box, sec, "max_cm"),
                                       rd.number(box, sec, "density", mat.density, positive=True))
        except ConfigError:
            raise
        except BrachyMCError as exc:
            raise rd.fail(sec, str(exc)) from None

    # source
    src_t = rd.table(data, "source", _SOURCE_KEYS)
    if ("spectrum" in src_t) == ("energy_kev" in src_t):
        raise rd.fail("source", "give exactly one of 'spectrum' (name or file) or 'energy_kev'")
    if "energy_kev" in src_t:
        spectrum = Spectrum.monoenergetic(rd.number(src_t, "source", "energy_kev", positive=True))
    else:
        spec = src_t["spectrum"]
        spec_path = path.parent / str(spec)
        try:
            spectrum = load_spectrum(spec_path if spec_path.suffix == ".toml" and spec_path.exists() else str(spec))
        except BrachyMCError as exc:
            raise rd.fail("source", str(exc)) from None
    kind = src_t.get("type", "point")
    try:
        if kind == "point":
            source = PointSource(rd.vec3(src_t, "source", "position_cm"), spectrum)
        elif kind == "line":
            source = LineSource(rd.vec3(src_t, "source", "start_cm"), rd.vec3(src_t, "source", "end_cm"), spectrum)
        else:
            raise rd.fail("source", f"'type' must be 'point' or 'line', got {kind!r}")
    except ConfigError:
        raise
    except BrachyMCError as exc:
        raise rd.fail("source", str(exc)) from None
    inside = geom.contains(source.bounding_points())
    if not inside.all():
        raise rd.fail("source", f"source lies outside the phantom ({geom.origin} - {geom.upper} cm)")

    title = str(data.get("title", path.stem))
    return SimulationConfig(path=path, title=title, run=run, phantom=phantom, source=source,
                            text=path.read_text(encoding="utf-8"))
