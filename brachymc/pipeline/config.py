"""The patient-run file (``brachymc run PLAN.toml``): what to read, how to simulate, what to write.

Relative paths are relative to the TOML file's folder. Every table and key is optional except
``[ct]`` (one of ``dicom``, ``volume``, ``egsphant``) and ``[plan] file``. Full reference with
defaults: README.md, section "Patient runs". Example::

    [ct]
    dicom = "ct"                        # folder of a DICOM CT series (or: volume = "ct.h5" | "ct.npz",
                                        #  egsphant = "phantom.egsphant" for EGSnrc media + densities)
    calculation_voxel_mm = [2, 2, 2]    # optional coarser calculation grid (mean HU per voxel)
    crop_margin_mm = 30                 # optional: calculate only in the seeds' box + this margin

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
    target = "GTV"
    cord = "SpinalCord"
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

from dataclasses import dataclass, field, fields
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
    rtstruct: Path | None = None
    target: str = "GTV"
    cord: str | None = "SpinalCord"
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
    if v is None and allow_none:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
        raise ConfigError(f"{where}: must be a positive number, got {v!r}")
    return v


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


def parse_run_config(data: dict, base: Path, source: str) -> PatientRunConfig:
    """Validate a run-file dictionary (``base``: folder that relative paths refer to)."""
    top = {"ct", "calibration", "override", "plan", "structures", "dose", "simulation", "tg43", "output"}
    unknown = set(data) - top
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(top))}")
    if "ct" not in data:
        raise ConfigError(f"{source}: missing [ct] table (dicom = FOLDER, volume = FILE or egsphant = FILE)")
    if "plan" not in data or "file" not in data.get("plan", {}):
        raise ConfigError(f"{source}: missing [plan] file = ... (DICOM RT Plan, CSV or TOML, or \"ct\" to find the "
                          "seeds in the CT)")
    p = lambda v, w: _path(base, v, w)  # noqa: E731
    ct = _build(CTInput, data["ct"], f"{source}: [ct]", dicom=p, volume=p, egsphant=p,
                calculation_voxel_mm=lambda v, w: tuple(_positive(x, w, False) for x in _triple(v, w)),
                crop_margin_mm=lambda v, w: float(v) if isinstance(v, (int, float)) and v >= 0 else
                (_ for _ in ()).throw(ConfigError(f"{w}: must be a number >= 0, got {v!r}")))
    given = [k for k in ("dicom", "volume", "egsphant") if getattr(ct, k) is not None]
    if len(given) != 1:
        raise ConfigError(f"{source}: [ct] needs exactly one of dicom, volume, egsphant (got {given or 'none'})")
    calib = _build(CalibrationInput, data.get("calibration"), f"{source}: [calibration]")
    if calib.artefact_radius_mm < 0:
        raise ConfigError(f"{source}: [calibration].artefact_radius_mm must be >= 0, got {calib.artefact_radius_mm}")
    ov = data.get("override", [])
    if not isinstance(ov, list):
        raise ConfigError(f"{source}: [[override]] must be an array of tables")
    overrides = tuple(_build(OverrideInput, t, f"{source}: [[override]] #{i + 1}",
                             density=lambda v, w: _positive(v, w)) for i, t in enumerate(ov))
    plan = _build(PlanInput, data["plan"], f"{source}: [plan]",
                  file=lambda v, w: PLAN_FROM_CT if v == PLAN_FROM_CT else p(v, w), axis=_triple,
                  activity_mCi=_positive, sk_U=lambda v, w: v if isinstance(v, (int, float)) and v >= 0 else
                  (_ for _ in ()).throw(ConfigError(f"{w}: air-kerma strength must be >= 0, got {v!r}")))
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
    st = _build(StructuresInput, data.get("structures"), f"{source}: [structures]", rtstruct=p)
    if not (isinstance(st.subsamples, int) and 1 <= st.subsamples <= 10):
        raise ConfigError(f"{source}: [structures].subsamples must be an integer 1..10, got {st.subsamples!r}")
    dose = _build(DoseInput, data.get("dose"), f"{source}: [dose]", prescription_gy=_positive)
    if dose.kind not in ("permanent", "rate", "window"):
        raise ConfigError(f"{source}: [dose].kind must be permanent, rate or window, got {dose.kind!r}")
    if dose.kind == "window" and (dose.end_h is None or not dose.end_h > dose.start_h >= 0):
        raise ConfigError(f"{source}: [dose] kind = 'window' needs 0 <= start_h < end_h (hours after implant)")
    sim = _build(SimulationInput, data.get("simulation"), f"{source}: [simulation]",
                 histories=lambda v, w: int(_positive(v, w, False)),
                 batch_histories=lambda v, w: int(_positive(v, w, False)),
                 target_uncertainty=lambda v, w: None if v in (None, 0) else (
                     float(v) if isinstance(v, (int, float)) and 0 < v < 1 else
                     (_ for _ in ()).throw(ConfigError(f"{w}: must be a fraction in (0, 1) (e.g. 0.02), got {v!r}"))),
                 time_budget_s=_positive)
    if sim.mode not in ("full", "superposition"):
        raise ConfigError(f"{source}: [simulation].mode must be 'full' or 'superposition', got {sim.mode!r}")
    if sim.engine not in ("auto", "array", "kernel"):
        raise ConfigError(f"{source}: [simulation].engine must be auto, array or kernel, got {sim.engine!r}")
    if isinstance(sim.threads, bool) or not isinstance(sim.threads, int) or sim.threads < 0:
        raise ConfigError(f"{source}: [simulation].threads must be a whole number >= 0 (0: one per core), "
                          f"got {sim.threads!r}")
    if sim.backend not in ("auto", "numpy", "cupy"):
        raise ConfigError(f"{source}: [simulation].backend must be auto, numpy or cupy, got {sim.backend!r}")
    if not (isinstance(sim.seed, int) and sim.seed >= 0):
        raise ConfigError(f"{source}: [simulation].seed must be an integer >= 0, got {sim.seed!r}")
    if not (isinstance(sim.min_batches, int) and sim.min_batches >= 2):
        raise ConfigError(f"{source}: [simulation].min_batches must be an integer >= 2, got {sim.min_batches!r}")
    tg = _build(TG43Input, data.get("tg43"), f"{source}: [tg43]")
    if not (isinstance(tg.subsamples, int) and 1 <= tg.subsamples <= 8):
        raise ConfigError(f"{source}: [tg43].subsamples must be an integer 1..8, got {tg.subsamples!r}")
    if tg.formalism not in ("2D", "1D"):
        raise ConfigError(f"{source}: [tg43].formalism must be '2D' or '1D', got {tg.formalism!r}")
    out = _build(OutputInput, data.get("output"), f"{source}: [output]")
    return PatientRunConfig(ct=ct, plan=plan, calibration=calib, overrides=overrides, structures=st, dose=dose,
                            simulation=sim, tg43=tg, output=out, source=source)


def load_run_config(path: str | Path) -> PatientRunConfig:
    """Read and validate a patient-run TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: run file not found")
    data = load_toml(path)
    return parse_run_config(data, path.resolve().parent, str(path))
