"""DICOM RT Plan (brachytherapy) input and output for permanent I-125 seed implants.

Reading (:func:`read_rtplan`) turns an RT Plan Storage object (SOP class
1.2.840.10008.5.1.4.1.1.481.5) with an RT Brachy Application Setups module into a
:class:`~brachymc.sources.plan.SeedPlan`:

* **Sources** (SourceSequence, 300A,0210): SourceIsotopeName must name I-125;
  ReferenceAirKermaRate (300A,022A, µGy h-1 at 1 m, numerically equal to the air-kerma strength
  in U = µGy m2 h-1) is each seed's strength at SourceStrengthReferenceDate/Time. If the sources
  of a plan refer to different dates, all strengths are decayed (I-125, 59.40 d) to the earliest
  one. Manufacturer, type, model ID, description, active length (mm) and half-life (d) go to
  ``notes["sources"]``.
* **Seeds** come from ApplicationSetupSequence -> ChannelSequence -> BrachyControlPointSequence;
  each channel is one needle (strand) and ReferencedSourceNumber links it to its source.
  ControlPoint3DPosition (mm, patient LPS) is required on every control point. Dwell rule:
  control points are taken in ControlPointIndex order and consecutive points at the same
  position (within 1e-3 mm) form one *stop*. If any stop of the channel has two or more control
  points (the usual "pair per seed" encoding), a seed lies at every stop whose dwell weight
  ``CumulativeTimeWeight(last) - CumulativeTimeWeight(first)`` is > 0; single points and
  zero-weight stops are transit points and are skipped. If every stop is a single control point
  (one point per seed), every stop is a seed, unless the channel's FinalCumulativeTimeWeight is 0
  (an unloaded needle: no seeds). Seeds are returned channel by channel, in control-point order.
* **Orientation** ``"auto"``: each seed lies along its needle: the principal axis of the distinct
  control-point positions of its channel, signed along increasing control-point index, when the
  channel has >= 2 distinct positions; otherwise ``axis`` (the counts are in
  ``notes["orientation_from_channel"]`` / ``notes["orientation_from_axis"]``). ``"axis"`` and
  ``"random"`` work as in :mod:`brachymc.sources.plan`. The DICOM RT Plan has no per-seed
  orientation attribute.
* **Model**: the ``model`` argument, else SourceModelID / SourceDescription / SourceManufacturer
  matched against 6711 -> ``oncoseed_6711``, 2301 -> ``best_2301``, I25.S06 -> ``isoseed_i25s06``;
  unknown seeds default to ``oncoseed_6711`` (with a warning in ``notes["warnings"]``).
* **Implant date**: the ``implant_date`` argument, else the reference date (the RT Plan has no
  standard implant-date attribute).

Anything unreadable or outside this model raises :class:`~brachymc.io.dicom_ct.DicomError` naming
the file and the field (and the channel / control point where there is one).

Writing (:func:`write_rtplan`) produces a brachy RT Plan (BrachyTreatmentTechnique PERMANENT,
BrachyTreatmentType LDR, source movement FIXED; earlier brachymc files wrote the type PERMANENT,
which DICOM does not define, and are read the same) with one SourceSequence item per distinct seed
strength, one application setup, one channel per needle and a pair of control points per seed
(CumulativeTimeWeight k, k + 1 for seed k of the channel), explicit VR little endian with file
meta, written atomically.

Reference: DICOM PS3.3, C.8.8.15 (RT Brachy Application Setups module); AAPM TG-43U1 (Rivard et
al., Med Phys 31 (2004) 633) for S_K and the I-125 half-life.
"""

from __future__ import annotations

import logging
import re
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from brachymc import __version__
from brachymc.constants import I125_HALF_LIFE_DAYS
from brachymc.errors import ConfigError
from brachymc.files import atomic_path
from brachymc.io.dicom_ct import DicomError, apply_shared_attributes
from brachymc.sources.plan import SeedPlan, _directions
from brachymc.sources.strength import decay_factor, hours_between, mean_life_hours

log = logging.getLogger(__name__)

RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"

#: Consecutive control points closer than this (mm) are one stop of the source.
SAME_POSITION_TOL_MM = 1e-3

#: brachymc seed model -> (SourceModelID, SourceManufacturer, ActiveSourceLength mm), from
#: configs/seeds/*.toml (TG-43U1 effective lengths).
SEED_MODELS: dict[str, tuple[str, str, float]] = {
    "oncoseed_6711": ("6711", "GE Healthcare (Oncura)", 3.0),
    "best_2301": ("2301", "Best Medical International", 4.0),
    "isoseed_i25s06": ("I25.S06", "Eckert & Ziegler BEBIG", 3.5),
}
DEFAULT_MODEL = "oncoseed_6711"

_MODEL_PATTERNS = (            # searched in upper-cased SourceModelID + SourceDescription + SourceManufacturer
    (re.compile(r"I25\.?S06"), "isoseed_i25s06"),
    (re.compile(r"(?<!\d)6711(?!\d)"), "oncoseed_6711"),
    (re.compile(r"(?<!\d)2301(?!\d)"), "best_2301"),
)
_ORIENTATIONS = ("auto", "axis", "random")


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------

def _ds(value: float) -> str:
    """A DICOM DS string (<= 16 characters), as precise as the format allows."""
    value = float(value)
    for digits in range(16, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise DicomError(f"cannot write {value!r} as a DICOM decimal string")  # pragma: no cover


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, bytes)) and not str(value).strip())


def _get(path: Path, ds: Dataset, name: str, where: str = "") -> Any:
    """``ds.name`` or None; a value pydicom cannot decode is a DicomError naming the field."""
    try:
        value = ds.get(name)
    except Exception as exc:
        raise DicomError(f"{path}: {where}{name} cannot be decoded ({type(exc).__name__}: {exc})") from None
    return None if _is_empty(value) else value


def _number(path: Path, ds: Dataset, name: str, where: str = "", required: bool = True) -> float | None:
    value = _get(path, ds, name, where)
    if value is None:
        if required:
            raise DicomError(f"{path}: {where}missing {name}")
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DicomError(f"{path}: {where}{name} is not a number: {value!r}") from None
    if not np.isfinite(x):
        raise DicomError(f"{path}: {where}{name} must be finite, got {value!r}")
    return x


def _text(path: Path, ds: Dataset, name: str, where: str = "") -> str:
    value = _get(path, ds, name, where)
    return "" if value is None else str(value).strip()


def _sequence(path: Path, ds: Dataset, name: str, where: str = "", required: bool = True) -> list[Dataset]:
    value = _get(path, ds, name, where)
    if value is None or len(value) == 0:
        if required:
            raise DicomError(f"{path}: {where}missing {name} (or it is empty)")
        return []
    return list(value)


def _parse_da_tm(path: Path, date: str, time: str, where: str) -> datetime:
    """DICOM DA (YYYYMMDD) + TM (HHMMSS.FFFFFF, shorter forms and legacy colons accepted)."""
    d = date.replace(".", "").replace("-", "").strip()
    if not re.fullmatch(r"\d{8}", d):
        raise DicomError(f"{path}: {where}SourceStrengthReferenceDate is not a DICOM date (YYYYMMDD): {date!r}")
    t = time.replace(":", "").strip()
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", t) if t else None
    if t and m is None:
        raise DicomError(f"{path}: {where}SourceStrengthReferenceTime is not a DICOM time (HHMMSS.FFFFFF): {time!r}")
    hh, mm, ss, frac = (m.groups() if m else (None, None, None, None))
    try:
        return datetime(int(d[:4]), int(d[4:6]), int(d[6:8]), int(hh or 0), int(mm or 0), int(ss or 0),
                        int((frac or "0").ljust(6, "0")))
    except ValueError as exc:
        raise DicomError(f"{path}: {where}SourceStrengthReferenceDate/Time {date!r} {time!r} is not a valid "
                         f"date and time ({exc})") from None


def _model_from_text(text: str) -> str | None:
    up = text.upper()
    for pattern, model in _MODEL_PATTERNS:
        if pattern.search(up):
            return model
    return None


def _isotope_is_i125(name: str) -> bool:
    key = re.sub(r"[^A-Z0-9]", "", name.upper())
    return key in ("I125", "125I", "IODINE125", "125IODINE")


def _as_datetime(value, what: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{what} must be a datetime or an ISO date/time, got {value!r}") from None


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------

def _read_dataset(path: Path) -> Dataset:
    if not path.exists():
        raise DicomError(f"{path}: RT Plan file does not exist")
    if not path.is_file():
        raise DicomError(f"{path}: not a file (give the RT Plan file)")
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise DicomError(f"{path}: cannot be read ({exc})") from None
    if not head:
        raise DicomError(f"{path}: empty file (a DICOM file cut short?)")
    has_magic = head[128:132] == b"DICM"
    if not has_magic and not (len(head) >= 8 and struct.unpack("<H", head[:2])[0] in (0x0002, 0x0008)):
        raise DicomError(f"{path}: not a DICOM file (no DICM preamble and no DICOM data elements at the start)")
    try:
        ds = pydicom.dcmread(str(path), force=not has_magic)
    except InvalidDicomError as exc:
        raise DicomError(f"{path}: not a valid DICOM file ({exc})") from None
    except Exception as exc:  # pydicom raises many types (EOFError, struct.error, ...) on corrupt input
        raise DicomError(f"{path}: corrupt or truncated DICOM file ({type(exc).__name__}: {exc})") from None
    if not any(tag.group >= 0x0008 for tag in ds.keys()):
        raise DicomError(f"{path}: corrupt or truncated DICOM file (no data elements could be read)")
    return ds


def _check_rt_plan(path: Path, ds: Dataset) -> None:
    sop = _text(path, ds, "SOPClassUID")
    modality = _text(path, ds, "Modality").upper()
    if not sop and not modality:
        raise DicomError(f"{path}: missing SOPClassUID and Modality: not an RT Plan (a corrupt or truncated file, "
                         "or not a DICOM object)")
    if sop != RT_PLAN_STORAGE and not (not sop and modality == "RTPLAN"):
        name = pydicom.uid.UID(sop).name if sop else "no SOP class"
        raise DicomError(f"{path}: SOPClassUID {sop or '(missing)'} ({name}), Modality {modality or '(missing)'}: "
                         f"not an RT Plan (need RT Plan Storage {RT_PLAN_STORAGE}, Modality RTPLAN)")
    if _get(path, ds, "ApplicationSetupSequence") is None:
        kind = (" (it has a BeamSequence: an external-beam plan)" if _get(path, ds, "BeamSequence") is not None
                else " (or the file is truncated)")
        raise DicomError(f"{path}: missing ApplicationSetupSequence: not a brachytherapy RT Plan{kind}")


def _read_sources(path: Path, ds: Dataset) -> dict[int, dict]:
    """SourceSequence items by SourceNumber: isotope, strength (U), reference date and descriptors."""
    sources: dict[int, dict] = {}
    for k, item in enumerate(_sequence(path, ds, "SourceSequence")):
        number = _number(path, item, "SourceNumber", f"SourceSequence item {k + 1}: ", required=False)
        number = k + 1 if number is None else int(number)
        where = f"source {number}: "
        if number in sources:
            raise DicomError(f"{path}: {where}SourceNumber {number} appears twice in SourceSequence")
        isotope = _text(path, item, "SourceIsotopeName", where)
        if not isotope:
            raise DicomError(f"{path}: {where}missing SourceIsotopeName (brachymc needs I-125 seeds)")
        rakr = _number(path, item, "ReferenceAirKermaRate", where, required=False)
        if rakr is None and _text(path, item, "SourceStrengthUnits", where).upper() == "AIR_KERMA_RATE":
            rakr = _number(path, item, "SourceStrength", where, required=False)
        date = _text(path, item, "SourceStrengthReferenceDate", where)
        time = _text(path, item, "SourceStrengthReferenceTime", where)
        sources[number] = {
            "number": number,
            "isotope": isotope,
            "rakr_U": rakr,
            "reference_date": _parse_da_tm(path, date, time, where) if date else None,
            "manufacturer": _text(path, item, "SourceManufacturer", where),
            "type": _text(path, item, "SourceType", where),
            "model_id": _text(path, item, "SourceModelID", where),
            "description": _text(path, item, "SourceDescription", where),
            "active_length_mm": _number(path, item, "ActiveSourceLength", where, required=False),
            "half_life_days": _number(path, item, "SourceIsotopeHalfLife", where, required=False),
        }
    return sources


def _check_source(path: Path, src: dict) -> None:
    """The checks that matter only for sources a channel uses."""
    where = f"source {src['number']}: "
    if not _isotope_is_i125(src["isotope"]):
        raise DicomError(f"{path}: {where}SourceIsotopeName is {src['isotope']!r}; brachymc models I-125 seeds only")
    if src["rakr_U"] is None:
        raise DicomError(f"{path}: {where}missing ReferenceAirKermaRate (the seed strength, µGy h-1 at 1 m)")
    if src["rakr_U"] < 0:
        raise DicomError(f"{path}: {where}ReferenceAirKermaRate must be >= 0 µGy h-1 at 1 m, got {src['rakr_U']}")


def _channel_stops(path: Path, channel: Dataset,
                   where: str) -> tuple[list[np.ndarray], list[tuple[int, float]], float | None]:
    """Control points of one channel grouped into stops.

    Returns (distinct positions in order (mm), per stop (number of control points, dwell weight),
    FinalCumulativeTimeWeight or None).
    """
    cps = _sequence(path, channel, "BrachyControlPointSequence", where)
    declared = _number(path, channel, "NumberOfControlPoints", where, required=False)
    if declared is not None and int(declared) != len(cps):
        raise DicomError(f"{path}: {where}NumberOfControlPoints is {int(declared)} but BrachyControlPointSequence "
                         f"has {len(cps)} items (the file may be truncated)")
    indexed = []
    for k, cp in enumerate(cps):
        idx = _number(path, cp, "ControlPointIndex", f"{where}control point {k + 1}: ", required=False)
        indexed.append((k if idx is None else idx, k, cp))
    if all(_get(path, cp, "ControlPointIndex") is not None for cp in cps):
        indexed.sort(key=lambda t: t[0])
    positions, weights = [], []
    for idx, k, cp in indexed:
        cpw = f"{where}control point {int(idx)}: "
        value = _get(path, cp, "ControlPoint3DPosition", cpw)
        if value is None:
            raise DicomError(f"{path}: {cpw}missing ControlPoint3DPosition (seed positions must be given in "
                             "patient coordinates; applicator-relative positions are not supported)")
        try:
            values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
            p = np.array([float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError):
            raise DicomError(f"{path}: {cpw}ControlPoint3DPosition is not numeric: {value!r}") from None
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise DicomError(f"{path}: {cpw}ControlPoint3DPosition must be 3 finite numbers (mm), got {value!r}")
        positions.append(p)
        weights.append(_number(path, cp, "CumulativeTimeWeight", cpw, required=False))
    have_w = [w is not None for w in weights]
    if any(have_w) and not all(have_w):
        k = have_w.index(False)
        raise DicomError(f"{path}: {where}control point {int(indexed[k][0])}: missing CumulativeTimeWeight "
                         "(other control points of the channel have one)")
    if all(have_w):
        for k in range(1, len(weights)):
            if weights[k] < weights[k - 1] - 1e-9 * max(1.0, abs(weights[k - 1])):
                raise DicomError(f"{path}: {where}control point {int(indexed[k][0])}: CumulativeTimeWeight "
                                 f"{weights[k]} decreases (previous {weights[k - 1]})")
    final = _number(path, channel, "FinalCumulativeTimeWeight", where, required=False)

    stops: list[np.ndarray] = []
    info: list[tuple[int, float]] = []
    first_w = last_w = 0.0
    count = 0
    for p, w in zip(positions, weights):
        if stops and np.linalg.norm(p - stops[-1]) <= SAME_POSITION_TOL_MM:
            count += 1
            last_w = w if w is not None else last_w
            continue
        if stops:
            info.append((count, last_w - first_w))
        stops.append(p)
        count = 1
        first_w = last_w = w if w is not None else 0.0
    info.append((count, last_w - first_w))
    if not all(have_w):           # no weights at all: every stop is a dwell
        info = [(c, np.inf) for c, _ in info]
    return stops, info, final


def read_rtplan(path: str | Path, model: str | None = None, orientation: str = "auto", axis=(0.0, 0.0, 1.0),
                random_seed: int | None = None, implant_date=None) -> SeedPlan:
    """Read a brachytherapy RT Plan as a :class:`SeedPlan` (positions cm, strengths U; see module doc).

    Parameters
    ----------
    path : the RT Plan file.
    model : brachymc seed model; default: from SourceModelID etc. (``oncoseed_6711`` if unknown).
    orientation : ``"auto"`` (needle axis, ``axis`` for single-position needles), ``"axis"`` or ``"random"``.
    axis : seed axis for ``"axis"`` and the ``"auto"`` fallback (normalised).
    random_seed : seed of the ``"random"`` orientations.
    implant_date : datetime or ISO string; default the strengths' reference date.

    ``notes`` holds: ``sop_instance_uid``, ``frame_of_reference_uid``, ``patient_id``,
    ``patient_name``, ``study_instance_uid``, ``plan_label``, ``brachy_treatment_type``,
    ``brachy_treatment_technique``, ``sources`` (list of dicts), ``model_from``, ``implant_date_from``, ``seed_channels`` (channel
    number of each seed), ``channels`` (per channel: number, seeds, skipped stops),
    ``orientation_from_channel`` / ``orientation_from_axis`` (counts, ``"auto"`` only) and
    ``warnings``.
    """
    path = Path(path)
    src = str(path)
    if orientation not in _ORIENTATIONS:
        raise ConfigError(f"{src}: orientation must be one of {', '.join(_ORIENTATIONS)} for a DICOM RT Plan "
                          f"(it has no per-seed directions), got {orientation!r}")
    implant = _as_datetime(implant_date, f"{src}: implant_date")
    ds = _read_dataset(path)
    _check_rt_plan(path, ds)
    warnings: list[str] = []

    btype = _text(path, ds, "BrachyTreatmentType").upper()
    technique = _text(path, ds, "BrachyTreatmentTechnique").upper()
    if technique != "PERMANENT" and btype != "PERMANENT":
        msg = (f"BrachyTreatmentTechnique is {technique or '(missing)'} and BrachyTreatmentType "
               f"{btype or '(missing)'}, not a permanent implant: the seeds are read as a permanent implant")
        log.warning("%s: %s", src, msg)
        warnings.append(msg)

    sources = _read_sources(path, ds)
    positions: list[np.ndarray] = []
    seed_sources: list[int] = []
    seed_channels: list[int] = []
    channel_dirs: list[np.ndarray | None] = []
    channels_notes: list[dict] = []
    n_channel = 0
    for a, setup in enumerate(_sequence(path, ds, "ApplicationSetupSequence")):
        setup_no = _number(path, setup, "ApplicationSetupNumber", f"application setup {a + 1}: ", required=False)
        setup_where = f"application setup {int(setup_no) if setup_no is not None else a + 1}: "
        for c, channel in enumerate(_sequence(path, setup, "ChannelSequence", setup_where)):
            n_channel += 1
            number = _number(path, channel, "ChannelNumber", f"{setup_where}channel {c + 1}: ", required=False)
            number = c + 1 if number is None else int(number)
            where = f"{setup_where}channel {number}: "
            ref = _number(path, channel, "ReferencedSourceNumber", where, required=False)
            if ref is None:
                if len(sources) != 1:
                    raise DicomError(f"{path}: {where}missing ReferencedSourceNumber ({len(sources)} sources in "
                                     "SourceSequence; the file may be truncated)")
                ref = next(iter(sources))
            ref = int(ref)
            if ref not in sources:
                raise DicomError(f"{path}: {where}ReferencedSourceNumber {ref} is not in SourceSequence "
                                 f"(sources {sorted(sources)})")
            stops, info, final = _channel_stops(path, channel, where)
            paired = any(count >= 2 for count, _ in info)
            if paired:
                keep = [count >= 2 and w > 0 for count, w in info]
            else:
                keep = [not (final is not None and final == 0)] * len(stops)
            n_keep = int(sum(keep))
            channels_notes.append({"number": number, "seeds": n_keep, "skipped_stops": len(stops) - n_keep})
            if n_keep == 0:
                warnings.append(f"channel {number}: no dwell positions with weight > 0, no seeds")
                continue
            _check_source(path, sources[ref])
            direction = None
            if len(stops) >= 2:
                pts = np.array(stops)
                _, _, vt = np.linalg.svd(pts - pts.mean(axis=0), full_matrices=False)
                direction = vt[0] / np.linalg.norm(vt[0])
                if float(direction @ (pts[-1] - pts[0])) < 0:
                    direction = -direction
            for p, k in zip(stops, keep):
                if k:
                    positions.append(p)
                    seed_sources.append(ref)
                    seed_channels.append(number)
                    channel_dirs.append(direction)
    if n_channel == 0:
        raise DicomError(f"{path}: no ChannelSequence in any ApplicationSetupSequence item: no seeds")
    if not positions:
        raise DicomError(f"{path}: no seeds: no channel has a control point with CumulativeTimeWeight dwell > 0")

    # Strengths and their common reference date.
    used = sorted(set(seed_sources))
    dates = {n: sources[n]["reference_date"] for n in used}
    if any(d is None for d in dates.values()):
        if any(d is not None for d in dates.values()):
            n = next(n for n, d in dates.items() if d is None)
            raise DicomError(f"{path}: source {n}: missing SourceStrengthReferenceDate (other sources have one)")
        reference = None
        warnings.append("no SourceStrengthReferenceDate: the strengths have no reference date")
    else:
        reference = min(dates.values())
    sk = np.array([sources[n]["rakr_U"] for n in seed_sources], dtype=np.float64)
    if reference is not None and len(set(dates.values())) > 1:
        factors = np.array([float(decay_factor(hours_between(reference, dates[n]), I125_HALF_LIFE_DAYS))
                            for n in seed_sources])
        sk = sk / factors           # back-decay each strength to the earliest reference date
        warnings.append(f"sources refer to different dates; strengths decayed to {reference.isoformat()}")

    # Seed model.
    if model is not None:
        model_name, model_from = str(model), "argument"
    else:
        found: dict[int, tuple[str, str] | None] = {}
        for n in used:                      # SourceModelID first, then description, then manufacturer
            s = sources[n]
            found[n] = next(((m, f"{field} {s[key]}") for field, key in (
                ("SourceModelID", "model_id"), ("SourceDescription", "description"),
                ("SourceManufacturer", "manufacturer")) if (m := _model_from_text(s[key]))), None)
        names = {f[0] for f in found.values() if f is not None}
        if len(names) > 1:
            listing = ", ".join(f"source {n}: {f[1] if f else '?'} -> {f[0] if f else '?'}" for n, f in found.items())
            raise DicomError(f"{path}: SourceModelID: the seeds are of different models ({listing}); brachymc "
                             "plans hold one model: pass model=... to choose")
        if names:
            model_name = names.pop()
            model_from = "; ".join(sorted({f[1] for f in found.values() if f is not None}))
            if None in found.values():
                warnings.append("some sources have no recognisable model; all taken as " + model_name)
        else:
            model_name, model_from = DEFAULT_MODEL, "default"
            ids = sorted({sources[n]["model_id"] for n in used})
            msg = (f"seed model not recognised from SourceModelID {ids} / SourceManufacturer; "
                   f"using {DEFAULT_MODEL}")
            log.warning("%s: %s", src, msg)
            warnings.append(msg)

    # Orientations.
    n = len(positions)
    notes_orient: dict = {}
    if orientation == "auto":
        fallback = _directions(1, None, "axis", axis, None, src)[0]
        dirs = np.array([d if d is not None else fallback for d in channel_dirs])
        n_ch = sum(d is not None for d in channel_dirs)
        notes_orient = {"orientation_from_channel": n_ch, "orientation_from_axis": n - n_ch}
        plan_orientation = "axis" if n_ch == 0 else "given"
        if n - n_ch:
            warnings.append(f"{n - n_ch} seed(s) in channels with a single position: axis {list(fallback)}")
    else:
        dirs = _directions(n, None, orientation, axis, random_seed, src)
        plan_orientation = orientation

    if implant is None:
        implant, implant_from = reference, "reference date (the RT Plan has no implant date)"
    else:
        implant_from = "argument"

    notes = {
        "format": "DICOM RT Plan",
        "sop_instance_uid": _text(path, ds, "SOPInstanceUID"),
        "frame_of_reference_uid": _text(path, ds, "FrameOfReferenceUID"),
        "patient_id": _text(path, ds, "PatientID"),
        "patient_name": _text(path, ds, "PatientName"),
        "study_instance_uid": _text(path, ds, "StudyInstanceUID"),
        "plan_label": _text(path, ds, "RTPlanLabel"),
        "brachy_treatment_type": btype,
        "brachy_treatment_technique": technique,
        "sources": [{**s, "reference_date": s["reference_date"].isoformat() if s["reference_date"] else None}
                    for s in (sources[k] for k in used)],
        "model_from": model_from,
        "implant_date_from": implant_from,
        "seed_channels": seed_channels,
        "channels": channels_notes,
        **notes_orient,
        "warnings": warnings,
    }
    return SeedPlan(np.array(positions) / 10.0, dirs, sk, model=model_name, reference_date=reference,
                    implant_date=implant, orientation=plan_orientation, source=src, notes=notes)


def rtplan_uid(path: str | Path) -> str:
    """SOPInstanceUID of an RT Plan file (to reference it from an RTDOSE)."""
    path = Path(path)
    ds = _read_dataset(path)
    uid = _text(path, ds, "SOPInstanceUID")
    if not uid:
        raise DicomError(f"{path}: missing SOPInstanceUID")
    return uid


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------

def _check_needles(path: Path, plan: SeedPlan, needles) -> list[list[int]]:
    n = plan.n_seeds
    if needles is None:
        return [[i] for i in range(n)]
    out, seen = [], set()
    for k, needle in enumerate(needles):
        idx = [int(i) for i in needle]
        if not idx:
            raise DicomError(f"{path}: needles[{k}] is empty")
        for i in idx:
            if not 0 <= i < n:
                raise DicomError(f"{path}: needles[{k}] names seed {i}; the plan has seeds 0..{n - 1}")
            if i in seen:
                raise DicomError(f"{path}: needles[{k}]: seed {i} is in more than one needle")
            seen.add(i)
        out.append(idx)
    if len(seen) != n:
        missing = sorted(set(range(n)) - seen)
        raise DicomError(f"{path}: needles leave seed(s) {missing[:10]} out; every seed must be in one needle")
    return out


def write_rtplan(path: str | Path, plan: SeedPlan, *, needles: list[list[int]] | None = None,
                 frame_of_reference_uid: str, patient_id: str, patient_name: str, study_instance_uid: str,
                 referenced_structure_set_uid: str | None = None, plan_label: str = "brachymc",
                 source_model_id: str | None = None, manufacturer: str | None = None,
                 sop_instance_uid: str | None = None, series_instance_uid: str | None = None,
                 seed_axes: bool = False, attributes: dict | None = None) -> Path:
    """Write ``plan`` as a permanent-implant brachy RT Plan (see module doc); return the path.

    ``needles`` lists the seed indices of each needle (channel) in insertion order (the reader's
    seed order and needle direction follow it); default one channel per seed. All seeds of a
    needle must have the same strength (DICOM links a channel to one source). Strengths are
    written at ``plan.reference_date`` (else ``plan.implant_date``), positions in mm.
    ``source_model_id`` / ``manufacturer`` default to the values of ``plan.model`` (6711, 2301,
    I25.S06), else ``plan.model``. The SOPInstanceUID is ``sop_instance_uid`` or a new UID (read
    it back with :func:`rtplan_uid`). DICOM has no seed-direction attribute: with ``seed_axes``
    (one channel per seed, ``needles`` None) each channel also holds two transit control points
    (no dwell) 1 mm either side of its seed along ``plan.directions``, so that a reader taking
    the needle direction from the channel's positions (``read_rtplan(orientation="auto")``)
    recovers each seed's axis; otherwise directions are not stored.
    ``attributes``: the CT's Patient / General Study / Frame of Reference attributes
    (``CTVolume.dicom_attributes`` or :func:`brachymc.io.dicom_ct.shared_attributes`), copied; the
    named identifiers take precedence.
    """
    path = Path(path)
    if not isinstance(plan, SeedPlan):
        raise DicomError(f"{path}: write_rtplan needs a SeedPlan, got {type(plan).__name__}")
    for name, value in (("frame_of_reference_uid", frame_of_reference_uid),
                        ("study_instance_uid", study_instance_uid)):
        if not value:
            raise DicomError(f"{path}: {name} is required")
    if seed_axes and needles is not None:
        raise DicomError(f"{path}: seed_axes needs one channel per seed (needles=None)")
    groups = _check_needles(path, plan, needles)
    reference = plan.reference_date or plan.implant_date
    if reference is None:
        raise DicomError(f"{path}: SourceStrengthReferenceDate: the plan has no reference_date (or implant_date)")
    sk = np.asarray(plan.sk_U, dtype=np.float64)
    pos_mm = np.asarray(plan.positions_cm, dtype=np.float64) * 10.0

    strengths = sorted({float(s) for s in sk})
    source_of = {s: k + 1 for k, s in enumerate(strengths)}
    for k, g in enumerate(groups):
        values = {float(sk[i]) for i in g}
        if len(values) > 1:
            raise DicomError(f"{path}: needles[{k}] holds seeds of different strengths {sorted(values)} U; a DICOM "
                             "channel references one source (ReferencedSourceNumber): split the needle")

    known = SEED_MODELS.get(plan.model)
    model_id = source_model_id or (known[0] if known else plan.model[:16])
    maker = manufacturer or (known[1] if known else "unknown")
    active_mm = known[2] if known else None
    tau_h = mean_life_hours(I125_HALF_LIFE_DAYS)

    sop_uid = sop_instance_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_PLAN_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.now()
    shared = dict(attributes) if attributes else {"StudyDate": now.strftime("%Y%m%d"),
                                                  "StudyTime": now.strftime("%H%M%S"), "StudyID": "1"}
    shared.setdefault("SpecificCharacterSet", "ISO_IR 192")
    apply_shared_attributes(ds, shared)           # Patient, General Study, Frame of Reference (as the CT)
    ds.SOPClassUID = RT_PLAN_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.Modality = "RTPLAN"
    ds.Manufacturer = "brachymc"
    ds.SoftwareVersions = __version__
    ds.PatientName = patient_name or ds.PatientName
    ds.PatientID = patient_id or ds.PatientID
    ds.StudyInstanceUID = study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.OperatorsName = ""
    ds.RTPlanLabel = plan_label[:16]
    ds.RTPlanDate = now.strftime("%Y%m%d")
    ds.RTPlanTime = now.strftime("%H%M%S")
    if referenced_structure_set_uid:
        ds.RTPlanGeometry = "PATIENT"
        ref = Dataset()
        ref.ReferencedSOPClassUID = RT_STRUCTURE_SET_STORAGE
        ref.ReferencedSOPInstanceUID = referenced_structure_set_uid
        ds.ReferencedStructureSetSequence = Sequence([ref])
    else:
        ds.RTPlanGeometry = "TREATMENT_DEVICE"

    # RT Fraction Scheme: one fraction, one application setup.
    fg = Dataset()
    fg.FractionGroupNumber = 1
    fg.NumberOfFractionsPlanned = 1
    fg.NumberOfBeams = 0
    fg.NumberOfBrachyApplicationSetups = 1
    rbas = Dataset()
    rbas.ReferencedBrachyApplicationSetupNumber = 1
    fg.ReferencedBrachyApplicationSetupSequence = Sequence([rbas])
    ds.FractionGroupSequence = Sequence([fg])

    # RT Brachy Application Setups.
    ds.BrachyTreatmentTechnique = "PERMANENT"          # enumerated value for permanent implants
    ds.BrachyTreatmentType = "LDR"
    machine = Dataset()
    machine.TreatmentMachineName = "MANUAL SEEDS"
    machine.Manufacturer = maker[:64]
    ds.TreatmentMachineSequence = Sequence([machine])
    date_str = reference.strftime("%Y%m%d")
    time_str = reference.strftime("%H%M%S") + (f".{reference.microsecond:06d}" if reference.microsecond else "")
    source_items = []
    for s in strengths:
        item = Dataset()
        item.SourceNumber = source_of[s]
        item.SourceType = "CYLINDER"
        item.SourceManufacturer = maker[:64]
        item.SourceModelID = model_id[:16]
        item.SourceDescription = f"brachymc model {plan.model}"[:64]
        if active_mm is not None:
            item.ActiveSourceLength = _ds(active_mm)
        item.SourceIsotopeName = "I-125"
        item.SourceIsotopeHalfLife = _ds(I125_HALF_LIFE_DAYS)
        item.SourceStrengthUnits = "AIR_KERMA_RATE"
        item.ReferenceAirKermaRate = _ds(s)
        item.SourceStrength = _ds(s)                  # in SourceStrengthUnits: uGy h-1 at 1 m (= U)
        item.SourceStrengthReferenceDate = date_str
        item.SourceStrengthReferenceTime = time_str
        source_items.append(item)
    ds.SourceSequence = Sequence(source_items)

    setup = Dataset()
    setup.ApplicationSetupType = "PERINEAL"
    setup.ApplicationSetupNumber = 1
    setup.ApplicationSetupName = plan_label[:64]
    setup.TotalReferenceAirKerma = _ds(float(sk.sum()) * tau_h)   # µGy at 1 m over the full decay
    channels = []
    for k, g in enumerate(groups):
        pts = pos_mm[g]
        ch = Dataset()
        ch.ChannelNumber = k + 1
        ch.ChannelLength = ""                                       # Type 2: no afterloader channel
        ch.TransferTubeNumber = ""                                  # Type 2: manual (no transfer tube)
        ch.ChannelTotalTime = _ds(tau_h * 3600.0)                   # s: the mean life (permanent implant)
        ch.SourceMovementType = "FIXED"
        ch.ReferencedSourceNumber = source_of[float(sk[g[0]])]
        ch.FinalCumulativeTimeWeight = _ds(len(g))
        # (position, cumulative weight) per control point: a pair per seed; with seed_axes a
        # transit point (no dwell) 1 mm before and after the seed along its axis
        points = []
        for j, p in enumerate(pts):
            if seed_axes:
                u = np.asarray(plan.directions[g[j]], float)
                points += [(p - 1.0 * u, j), (p, j), (p, j + 1), (p + 1.0 * u, j + 1)]
            else:
                points += [(p, j), (p, j + 1)]
        ch.NumberOfControlPoints = len(points)
        cps = []
        for idx, (p, weight) in enumerate(points):
            cp = Dataset()
            cp.ControlPointIndex = idx
            cp.ControlPointRelativePosition = _ds(float(np.linalg.norm(p - points[0][0])))
            cp.ControlPoint3DPosition = [_ds(v) for v in p]
            cp.CumulativeTimeWeight = _ds(weight)
            cps.append(cp)
        ch.BrachyControlPointSequence = Sequence(cps)
        channels.append(ch)
    setup.ChannelSequence = Sequence(channels)
    ds.ApplicationSetupSequence = Sequence([setup])
    ds.ApprovalStatus = "UNAPPROVED"

    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


__all__ = ["RT_PLAN_STORAGE", "SEED_MODELS", "read_rtplan", "write_rtplan", "rtplan_uid", "DicomError"]
