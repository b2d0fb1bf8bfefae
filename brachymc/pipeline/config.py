"""The patient-run file (``brachymc run PLAN.toml``): what to read, how to simulate, what to write.

Relative paths are relative to the TOML file's folder. Every table and key is optional except
``[ct]`` (one of ``dicom``, ``volume``, ``egsphant``) and ``[plan] file``. Full reference with
defaults: README.md, section "Patient runs". Example::

    [ct]
    dicom = "ct"                        # folder of a DICOM CT series (or: volume = "ct.h5" | "ct.npz",
                                        #  egsphant = "phantom.egsphant" for EGSnrc media + densities)
    calculation_voxel_mm = [2, 2, 2]    # optional coarser calculation grid (mean HU per voxel)
    crop_margin_mm = 30                 # optional: calculate only in the seeds' box + this margin
    media_aliases = { "MY_BONE" = "cortical_bone" }   # optional: names (egsphant media, calibration and
                                        #  override materials) -> library materials

    [materials]                         # optional: more media
    files = ["my_media.toml"]           # brachymc TOML (same form as configs/materials.toml)
    egsnrc = ["material.dat"]           # EGSnrc media files read as they are (egs++ material.dat,
                                        #  .egsinp media definitions, *.density headers)

    [calibration]
    name = "spine_default"              # built-in name or a TOML path
    artefact_radius_mm = 6              # reassign streak voxels within this distance of seeds (0: off)
    artefact_hu_high = 2000
    artefact_hu_low = -300

    [[override]]                        # contour overrides, applied in order
    roi = "GTV"
    material = "soft_tissue"
    density = 1.03                      # optional (default: keep CT density)

    [plan]
    file = "rtplan.dcm"                 # DICOM RT Plan, CSV or TOML seed plan; "ct": find the seeds in the CT
    # expected = 48                     # with file = "ct": seeds implanted (prior; extras are flagged)
    model = "oncoseed_6711"             # overrides the plan's model
    orientation = "auto"                # auto (needle direction), axis, random
    activity_mCi = 0.7                  # for CSV plans without strengths (or sk_U = 0.889)

    [structures]
    rtstruct = "rtstruct.dcm"
    target = "GTV"                      # optional: DVH target and target-uncertainty region
    cord = "SpinalCord"                 # optional: reported as the organ at risk
    rois = ["GTV", "SpinalCord"]        # optional: evaluate only these (default: every ROI)
    exclude = ["Couch"]                 # optional: never evaluate these
    subsamples = 3

    [dose]
    prescription_gy = 110
    kind = "permanent"                  # permanent | rate (Gy/h at rate_at_h) | window (start_h..end_h)
    dose_to_water = false               # also Dw,m

    [simulation]
    histories = 20_000_000              # upper bound
    batch_histories = 200_000
    min_batches = 10
    target_uncertainty = 0.02           # mean relative uncertainty in the target
    time_budget_s = 600
    seed = 1
    backend = "auto"
    mode = "full"                       # full (inter-seed effects) | superposition
    checkpoint_every_s = 60

    [tg43]
    dataset = "tg43u1"                  # tg43u1 (consensus) | brachymc (own MC) | JSON path
    formalism = "2D"
    gamma = true
    gamma_max_points = 20000

    [output]
    rtdose = true
    threeddose = true
    figures = true
    report = true
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from brachymc.errors import ConfigError
from brachymc.files import load_toml


def _check_keys(where: str, table: dict, cls) -> None:
    allowed = {f.name for f in fields(cls)}
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")


@dataclass(frozen=True)
class CTInput:
    dicom: Path | None = None
    volume: Path | None = None
    egsphant: Path | None = None
    series_uid: str | None = None
    calculation_voxel_mm: tuple[float, float, float] | None = None
    crop_margin_mm: float | None = None
    media_aliases: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MaterialsInput:
    files: tuple[Path, ...] = ()
    egsnrc: tuple[Path, ...] = ()


@dataclass(frozen=True)
class CalibrationInput:
    name: str = "spine_default"
    artefact_radius_mm: float = 6.0
    artefact_hu_high: float = 2000.0
    artefact_hu_low: float = -300.0


@dataclass(frozen=True)
class OverrideInput:
    roi: str
    material: str
    density: float | None = None


#: ``[plan] file = "ct"``: the seeds are found in the run's own CT (brachymc.seedfinder)
PLAN_FROM_CT = "ct"


@dataclass(frozen=True)
class PlanInput:
    file: Path | str
    model: str | None = None
    orientation: str = "auto"
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    random_seed: int | None = None
    activity_mCi: float | None = None
    sk_U: float | None = None
    expected: int | None = None

    @property
    def from_ct(self) -> bool:
        """Whether the seeds are to be found in the run's CT (``file = "ct"``)."""
        return self.file == PLAN_FROM_CT


@dataclass(frozen=True)
class StructuresInput:
    """``[structures]``: which ROIs of the RTSTRUCT are evaluated, and which is the target.

    ``rois``: evaluate only these (case-insensitive; default every ROI of the file); ``exclude``:
    never these. ``target`` (DVH target, target-uncertainty region) and ``cord`` (organ at risk
    named in the report) are optional and always evaluated.
    """

    rtstruct: Path | None = None
    target: str | None = None
    cord: str | None = None
    rois: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    subsamples: int = 3


@dataclass(frozen=True)
class DoseInput:
    prescription_gy: float | None = None
    kind: str = "permanent"
    rate_at_h: float = 0.0
    start_h: float = 0.0
    end_h: float | None = None
    dose_to_water: bool = False


@dataclass(frozen=True)
class SimulationInput:
    histories: int = 20_000_000
    batch_histories: int = 200_000
    min_batches: int = 10
    target_uncertainty: float | None = 0.02
    time_budget_s: float | None = None
    seed: int = 1
    backend: str = "auto"
    mode: str = "full"
    checkpoint_every_s: float = 60.0
    bank_size: int = 1 << 16
    sk_source: str = "library"
    engine: str = "auto"
    threads: int = 0


@dataclass(frozen=True)
class TG43Input:
    dataset: str = "tg43u1"
    formalism: str = "2D"
    subsamples: int = 2
    gamma: bool = True
    gamma_max_points: int = 20_000


@dataclass(frozen=True)
class OutputInput:
    rtdose: bool = True
    threeddose: bool = True
    figures: bool = True
    report: bool = True


@dataclass(frozen=True)
class PatientRunConfig:
    """A parsed, validated patient-run file."""

    ct: CTInput
    plan: PlanInput
    calibration: CalibrationInput = field(default_factory=CalibrationInput)
    overrides: tuple[OverrideInput, ...] = ()
    structures: StructuresInput = field(default_factory=StructuresInput)
    dose: DoseInput = field(default_factory=DoseInput)
    simulation: SimulationInput = field(default_factory=SimulationInput)
    tg43: TG43Input = field(default_factory=TG43Input)
    output: OutputInput = field(default_factory=OutputInput)
    materials: MaterialsInput = field(default_factory=MaterialsInput)
    source: str = ""

    def with_simulation(self, **changes) -> "PatientRunConfig":
        from dataclasses import replace

        return replace(self, simulation=replace(self.simulation, **changes))


def _path(base: Path, v: Any, where: str) -> Path:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where}: expected a path string, got {v!r}")
    p = Path(v).expanduser()
    return p if p.is_absolute() else (base / p)


def _triple(v: Any, where: str) -> tuple[float, float, float]:
    if isinstance(v, (int, float)):
        v = [v, v, v]
    if not isinstance(v, list) or len(v) != 3 or not all(isinstance(x, (int, float)) for x in v):
        raise ConfigError(f"{where}: expected three numbers, got {v!r}")
    return tuple(float(x) for x in v)


def _positive(v, where: str, allow_none: bool = True):
    """A finite positive number (or None when allowed)."""
    return _positive_finite(v, where, allow_none)


def _number(v, where: str) -> float:
    """A finite number (TOML ``nan``/``inf`` and non-numbers are refused)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{where}: must be a finite number, got {_plain(v)}")
    return v


def _plain(v) -> str:
    """A value as a user wrote it: numbers plainly (no numpy reprs), strings quoted."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return f"{v:g}" if isinstance(v, float) else str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_plain(x) for x in v) + "]"
    return repr(v)


def _positive_finite(v, where: str, allow_none: bool = True):
    if v is None and allow_none:
        return None
    if _number(v, where) <= 0:
        raise ConfigError(f"{where}: must be a positive number, got {_plain(v)}")
    return v


def _at_least(v, where: str, lo: float, allow_none: bool = False):
    if v is None and allow_none:
        return None
    if _number(v, where) < lo:
        raise ConfigError(f"{where}: must be a number >= {lo:g}, got {_plain(v)}")
    return v


def _whole(v, where: str, lo: int):
    """An integer >= lo (TOML 1_000_000 or 1e6 written as a whole number)."""
    if isinstance(v, float) and math.isfinite(v) and v == int(v):
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{where}: must be a whole number >= {lo}, got {_plain(v)}")
    return v


def _flag(v, where: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{where}: must be true or false, got {_plain(v)}")
    return v


def _name(v, where: str, allow_none: bool = True):
    if v is None and allow_none:
        return None
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {_plain(v)}")
    return v


def _names(v, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ConfigError(f"{where}: must be a list of ROI names, e.g. [\"GTV\", \"SpinalCord\"], got {_plain(v)}")
    return tuple(v)


#: the largest calculation voxel side (mm): a coarser voxel cannot resolve the dose around a
#: seed (the TG-43 dose falls by about 4x from 5 to 10 mm) nor a vertebral target
MAX_CALC_VOXEL_MM = 10.0


def _calc_voxel(v, where: str) -> tuple[float, float, float]:
    t = _triple(v, where)
    for x in t:
        _positive_finite(x, where, False)
    if max(t) > MAX_CALC_VOXEL_MM:
        raise ConfigError(f"{where}: a {max(t):g} mm calculation voxel cannot resolve the seeds' dose or the target "
                          f"(largest allowed side: {MAX_CALC_VOXEL_MM:g} mm), got {_plain(v)}")
    return t


def _build(cls, table: Any, where: str, **conv):
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {type(table).__name__}")
    _check_keys(where, table, cls)
    kw = {}
    for k, v in table.items():
        kw[k] = conv[k](v, f"{where}.{k}") if k in conv else v
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _aliases(v: Any, where: str) -> dict:
    if not isinstance(v, dict) or not all(isinstance(k, str) and k.strip() and isinstance(x, str) and x.strip()
                                          for k, x in v.items()):
        raise ConfigError(f"{where}: expected a table of names, e.g. {{ MY_BONE = \"cortical_bone\" }}, got {v!r}")
    return {k.strip(): x.strip() for k, x in v.items()}


def _paths(base: Path, v: Any, where: str) -> tuple[Path, ...]:
    if not isinstance(v, list):
        raise ConfigError(f"{where}: expected a list of paths, got {v!r}")
    out = tuple(_path(base, x, f"{where}[{i + 1}]") for i, x in enumerate(v))
    for i, pth in enumerate(out):
        if not pth.is_file():
            raise ConfigError(f"{where}[{i + 1}]: {pth} does not exist")
    return out


def material_library(cfg: PatientRunConfig):
    """The material library of a run: built-in media, ``[materials] files / egsnrc``, ``[ct] media_aliases``."""
    from brachymc.errors import BrachyMCError
    from brachymc.materials import default_library

    try:
        lib = default_library(cfg.materials.files, cfg.materials.egsnrc)
    except BrachyMCError as exc:
        raise ConfigError(f"{cfg.source}: [materials]: {exc}") from None
    try:
        return lib.with_aliases(cfg.ct.media_aliases) if cfg.ct.media_aliases else lib
    except BrachyMCError as exc:
        raise ConfigError(f"{cfg.source}: [ct].media_aliases: {exc}") from None


def parse_run_config(data: dict, base: Path, source: str) -> PatientRunConfig:
    """Validate a run-file dictionary (``base``: folder that relative paths refer to).

    Every number is checked where it is read: finite (TOML ``nan``/``inf`` are refused), positive
    where a size, strength or time is meant, whole where a count is meant; each message names the
    file, the table and the key.
    """
    top = {"ct", "calibration", "override", "plan", "structures", "dose", "simulation", "tg43", "output",
           "materials"}
    unknown = set(data) - top
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(top))}")
    if "ct" not in data:
        raise ConfigError(f"{source}: missing [ct] table (dicom = FOLDER, volume = FILE or egsphant = FILE)")
    if "plan" not in data or not isinstance(data["plan"], dict) or "file" not in data["plan"]:
        raise ConfigError(f"{source}: missing [plan] file = ... (DICOM RT Plan, CSV or TOML, or \"ct\" to find the "
                          "seeds in the CT)")
    p = lambda v, w: _path(base, v, w)  # noqa: E731
    ct = _build(CTInput, data["ct"], f"{source}: [ct]", dicom=p, volume=p, egsphant=p, series_uid=_name,
                media_aliases=_aliases, calculation_voxel_mm=_calc_voxel,
                crop_margin_mm=lambda v, w: float(_at_least(v, w, 0.0)))
    given = [k for k in ("dicom", "volume", "egsphant") if getattr(ct, k) is not None]
    if len(given) != 1:
        raise ConfigError(f"{source}: [ct] needs exactly one of dicom, volume, egsphant (got {given or 'none'})")
    calib = _build(CalibrationInput, data.get("calibration"), f"{source}: [calibration]", name=_name,
                   artefact_radius_mm=lambda v, w: _at_least(v, w, 0.0), artefact_hu_high=_number,
                   artefact_hu_low=_number)
    ov = data.get("override", [])
    if not isinstance(ov, list):
        raise ConfigError(f"{source}: [[override]] must be an array of tables")
    overrides = tuple(_build(OverrideInput, t, f"{source}: [[override]] #{i + 1}", roi=_name, material=_name,
                             density=lambda v, w: _positive_finite(v, w)) for i, t in enumerate(ov))
    plan = _build(PlanInput, data["plan"], f"{source}: [plan]",
                  file=lambda v, w: PLAN_FROM_CT if v == PLAN_FROM_CT else p(v, w), model=_name, axis=_axis,
                  random_seed=lambda v, w: _whole(v, w, 0),
                  activity_mCi=_positive_finite, sk_U=_positive_finite)
    if plan.from_ct:
        if ct.egsphant is not None:
            raise ConfigError(f"{source}: [plan] file = \"ct\" finds the seeds in a CT: it needs [ct] dicom or volume, "
                              "not an egsphant phantom")
        if plan.sk_U is None and plan.activity_mCi is None:
            raise ConfigError(f"{source}: [plan] file = \"ct\": give the seeds' strength (sk_U = ... U or "
                              "activity_mCi = ...)")
    if plan.expected is not None and (isinstance(plan.expected, bool) or not isinstance(plan.expected, int)
                                      or plan.expected < 1 or not plan.from_ct):
        raise ConfigError(f"{source}: [plan].expected must be a whole number >= 1 and needs file = \"ct\", "
                          f"got {plan.expected!r}")
    if plan.orientation not in ("auto", "given", "axis", "random"):
        raise ConfigError(f"{source}: [plan].orientation must be auto, given, axis or random, got {plan.orientation!r}")
    st = _build(StructuresInput, data.get("structures"), f"{source}: [structures]", rtstruct=p, target=_name,
                cord=_name, rois=_names, exclude=_names, subsamples=lambda v, w: _whole(v, w, 1))
    if st.subsamples > 10:
        raise ConfigError(f"{source}: [structures].subsamples must be an integer 1..10, got {st.subsamples}")
    if st.rtstruct is None and (st.target or st.cord or st.rois):
        raise ConfigError(f"{source}: [structures] target, cord and rois need an RTSTRUCT: [structures] rtstruct = ...")
    for what in ("target", "cord"):
        name = getattr(st, what)
        if name and name.lower() in {x.lower() for x in st.exclude}:
            raise ConfigError(f"{source}: [structures].exclude lists the {what} {name!r}")
    dose = _build(DoseInput, data.get("dose"), f"{source}: [dose]", prescription_gy=_positive_finite,
                  rate_at_h=lambda v, w: _at_least(v, w, 0.0), start_h=lambda v, w: _at_least(v, w, 0.0),
                  end_h=lambda v, w: _positive_finite(v, w), dose_to_water=_flag)
    if dose.kind not in ("permanent", "rate", "window"):
        raise ConfigError(f"{source}: [dose].kind must be permanent, rate or window, got {dose.kind!r}")
    if dose.kind == "window" and (dose.end_h is None or not dose.end_h > dose.start_h >= 0):
        raise ConfigError(f"{source}: [dose] kind = 'window' needs 0 <= start_h < end_h (hours after implant)")
    sim = _build(SimulationInput, data.get("simulation"), f"{source}: [simulation]", **SIMULATION_FIELDS)
    check_simulation(sim, f"{source}: [simulation]")
    tg = _build(TG43Input, data.get("tg43"), f"{source}: [tg43]", dataset=_name, gamma=_flag,
                subsamples=lambda v, w: _whole(v, w, 1), gamma_max_points=lambda v, w: _whole(v, w, 1))
    if tg.subsamples > 8:
        raise ConfigError(f"{source}: [tg43].subsamples must be an integer 1..8, got {tg.subsamples}")
    if tg.formalism not in ("2D", "1D"):
        raise ConfigError(f"{source}: [tg43].formalism must be '2D' or '1D', got {tg.formalism!r}")
    out = _build(OutputInput, data.get("output"), f"{source}: [output]",
                 **{f.name: _flag for f in fields(OutputInput)})
    mats = _build(MaterialsInput, data.get("materials"), f"{source}: [materials]",
                  files=lambda v, w: _paths(base, v, w), egsnrc=lambda v, w: _paths(base, v, w))
    cfg = PatientRunConfig(ct=ct, plan=plan, calibration=calib, overrides=overrides, structures=st, dose=dose,
                           simulation=sim, tg43=tg, output=out, materials=mats, source=source)
    if mats.files or mats.egsnrc or ct.media_aliases:
        material_library(cfg)            # read and check the media now, before anything runs
    return cfg


def _axis(v, where: str) -> tuple[float, float, float]:
    t = _triple(v, where)
    for x in t:
        _number(x, where)
    if not any(t):
        raise ConfigError(f"{where}: must be a non-zero direction, got {list(t)}")
    return t


def _target_uncertainty(v, where: str):
    if v is None or (not isinstance(v, bool) and v == 0):
        return None
    if _number(v, where) <= 0 or v >= 1:
        raise ConfigError(f"{where}: must be a fraction in (0, 1) (e.g. 0.02) or 0 (off), got {_plain(v)}")
    return float(v)


#: converters of the [simulation] keys (shared by the run file and the command-line overrides)
SIMULATION_FIELDS = dict(
    histories=lambda v, w: _whole(v, w, 1),
    batch_histories=lambda v, w: _whole(v, w, 1),
    min_batches=lambda v, w: _whole(v, w, 2),
    target_uncertainty=_target_uncertainty,
    time_budget_s=_positive_finite,
    seed=lambda v, w: _whole(v, w, 0),
    checkpoint_every_s=lambda v, w: _at_least(v, w, 0.0),
    bank_size=lambda v, w: _whole(v, w, 0),
    threads=lambda v, w: _whole(v, w, 0),
)


def check_simulation(sim: SimulationInput, where: str) -> None:
    """Checks of ``[simulation]`` that involve choices (not numbers alone)."""
    if sim.mode not in ("full", "superposition"):
        raise ConfigError(f"{where}.mode must be 'full' or 'superposition', got {sim.mode!r}")
    if sim.engine not in ("auto", "array", "kernel"):
        raise ConfigError(f"{where}.engine must be auto, array or kernel, got {sim.engine!r}")
    if sim.backend not in ("auto", "numpy", "cupy"):
        raise ConfigError(f"{where}.backend must be auto, numpy or cupy, got {sim.backend!r}")
    if sim.sk_source not in ("library", "compute"):
        raise ConfigError(f"{where}.sk_source must be 'library' or 'compute', got {sim.sk_source!r}")


def with_overrides(cfg: PatientRunConfig, **options) -> PatientRunConfig:
    """``cfg`` with ``[simulation]`` values replaced by command-line options, checked as the run file's.

    ``options`` maps ``[simulation]`` keys to values (None: not given); a message names the option
    (``--histories``), e.g. for ``--histories 0``.
    """
    changes = {}
    for key, value in options.items():
        if value is None:
            continue
        flag = "--" + {"time_budget_s": "time-budget"}.get(key, key.replace("_", "-"))
        conv = SIMULATION_FIELDS.get(key)
        changes[key] = conv(value, flag) if conv is not None else value
    if not changes:
        return cfg
    out = replace(cfg, simulation=replace(cfg.simulation, **changes))
    check_simulation(out.simulation, "command line: [simulation]")
    return out


def load_run_config(path: str | Path) -> PatientRunConfig:
    """Read and validate a patient-run TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: run file not found")
    data = load_toml(path)
    return parse_run_config(data, path.resolve().parent, str(path))
