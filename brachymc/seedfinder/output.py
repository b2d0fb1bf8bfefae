"""Writing found seeds: CSV, a TOML seed plan, or a DICOM RT Plan (brachy) that ``brachymc run`` reads.

* **CSV**: exactly the columns ``x_mm,y_mm,z_mm,dx,dy,dz,confidence`` (DICOM patient
  coordinates, mm; unit axis; confidence 0-1), one row per seed, in the order of the console
  listing. ``brachymc run`` reads it as a plan (``[plan] file = "seeds.csv"`` with
  ``activity_mCi`` or ``sk_U``; the confidence column is ignored there).
* **TOML**: the seed plan format of :mod:`brachymc.sources.plan` (``orientation = "given"``),
  each ``[[seed]]`` with its confidence, cluster number and the number of seeds its cluster was
  judged to hold, and the doubtful ones' reasons.
* **DICOM RT Plan** (``.dcm``): a permanent-implant brachy plan in the CT's frame of reference,
  one channel per seed whose transit points carry the seed axis
  (:func:`brachymc.io.dicom_rtplan.write_rtplan` with ``seed_axes``).

Strengths: TOML and RT Plan outputs need one (``sk_U``, U); CSV rows carry none. Every file is
written atomically.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

from brachymc.errors import ConfigError
from brachymc.files import atomic_path
from brachymc.geometry.ct import CTVolume
from brachymc.seedfinder.finder import SeedFindResult

CSV_COLUMNS = ("x_mm", "y_mm", "z_mm", "dx", "dy", "dz", "confidence")
FORMATS = {".csv": "csv", ".toml": "toml", ".dcm": "rtplan"}


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{path}: --out must end in .csv, .toml or .dcm (DICOM RT Plan), got "
                          f"{suffix or 'no suffix'!r}")
    return FORMATS[suffix]


def write_seeds_csv(path: str | Path, result: SeedFindResult) -> Path:
    path = Path(path)
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(CSV_COLUMNS)
    for s in result.seeds:
        wr.writerow([f"{v:.3f}" for v in s.position_mm] + [f"{v:.5f}" for v in s.direction] + [f"{s.confidence:.3f}"])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_seeds_toml(path: str | Path, result: SeedFindResult, sk_U: float, model: str | None = None,
                     reference_date: datetime | None = None) -> Path:
    path = Path(path)
    lines = [f"# {result.n_seeds} seeds found in {result.source} by brachymc seeds find",
             f"# {len(result.clusters)} metal components, {result.clusters_split()} clusters split; "
             f"{len(result.doubtful())} doubtful",
             f"model = {_toml_str(model or result.appearance.model)}",
             'orientation = "given"',
             f"sk_U = {float(sk_U):.6g}"]
    if reference_date is not None:
        lines.append(f"reference_date = {reference_date.replace(microsecond=0).isoformat()}")
    for i, s in enumerate(result.seeds):
        c = result.clusters[s.cluster]
        lines += ["", "[[seed]]",
                  "position_mm = [" + ", ".join(f"{v:.3f}" for v in s.position_mm) + "]",
                  "direction = [" + ", ".join(f"{v:.5f}" for v in s.direction) + "]",
                  f"confidence = {s.confidence:.3f}",
                  f"cluster = {s.cluster + 1}",
                  f"cluster_seeds = {c.n_seeds}"]
        if s.doubtful:
            lines.append("doubtful = [" + ", ".join(_toml_str(d) for d in s.doubtful) + "]")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def write_seeds_rtplan(path: str | Path, result: SeedFindResult, ct: CTVolume, sk_U: float,
                       model: str | None = None, reference_date: datetime | None = None) -> Path:
    """A brachy RT Plan of the found seeds in ``ct``'s frame of reference (UIDs generated where the
    CT has none, e.g. an ``.h5`` volume)."""
    from pydicom.uid import generate_uid

    from brachymc.io.dicom_rtplan import write_rtplan

    ref = reference_date or datetime.now().replace(second=0, microsecond=0)
    plan = result.to_plan(sk_U=sk_U, model=model, reference_date=ref)
    return write_rtplan(path, plan, frame_of_reference_uid=ct.frame_of_reference_uid or generate_uid(),
                        patient_id=ct.patient_id or "", patient_name=ct.patient_name or "",
                        study_instance_uid=ct.study_instance_uid or generate_uid(), plan_label="SEEDS FROM CT",
                        seed_axes=True)


def write_seeds(path: str | Path, result: SeedFindResult, ct: CTVolume, sk_U: float | None = None,
                model: str | None = None, reference_date: datetime | None = None) -> Path:
    """Write ``result`` in the format the suffix of ``path`` names (module docstring)."""
    kind = output_format(path)
    if kind == "csv":
        return write_seeds_csv(path, result)
    if sk_U is None:
        raise ConfigError(f"{path}: a {'TOML plan' if kind == 'toml' else 'DICOM RT Plan'} needs the seeds' "
                          "strength: give --sk-U or --activity-mCi (or write a .csv)")
    if kind == "toml":
        return write_seeds_toml(path, result, sk_U, model, reference_date)
    return write_seeds_rtplan(path, result, ct, sk_U, model, reference_date)
