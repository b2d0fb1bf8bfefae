"""Seed plans from CSV or TOML: positions (DICOM patient coordinates, mm), orientations, strengths.

CSV (header required; one row per seed; blank lines and lines starting with ``#`` are skipped)::

    x_mm,y_mm,z_mm[,dx,dy,dz | ,ux,uy,uz][,sk_U | activity_mCi]

``dx,dy,dz`` and ``ux,uy,uz`` are two spellings of the seed's long-axis direction (any length,
normalised here). Errors name the line as the file counts it (the header is line 1) and the seed
(1-based), with positions in mm.

TOML::

    model = "oncoseed_6711"
    reference_date = 2026-11-01T12:00:00      # date the strengths refer to
    implant_date = 2026-11-03T09:00:00        # optional (default: reference date)
    orientation = "given" | "axis" | "random" # per-seed directions, one axis for all, or random
    axis = [0, 0, 1]                          # for orientation = "axis"
    random_seed = 7                           # for orientation = "random"
    sk_U = 0.889                              # default per-seed strength (or activity_mCi = 0.7)
    [[seed]]
    position_mm = [10.0, -32.5, 104.0]
    direction = [0.1, 0.0, 1.0]               # optional
    sk_U = 0.9                                # optional per seed

Positions are converted to cm. Errors name the file and the row/field.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from brachymc.errors import ConfigError
from brachymc.files import load_toml
from brachymc.sources.strength import apparent_activity_to_sk, decay_factor, hours_between


@dataclass(frozen=True)
class SeedPlan:
    """Seeds of one model: positions (n, 3) cm, unit directions (n, 3), strengths (n,) U at ``reference_date``."""

    positions_cm: np.ndarray
    directions: np.ndarray
    sk_U: np.ndarray
    model: str = "oncoseed_6711"
    reference_date: datetime | None = None
    implant_date: datetime | None = None
    orientation: str = "given"
    source: str = ""
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.positions_cm)
        if n == 0:
            raise ConfigError(f"{self.source}: the plan has no seeds")
        if self.positions_cm.shape != (n, 3) or self.directions.shape != (n, 3) or self.sk_U.shape != (n,):
            raise ConfigError(f"{self.source}: positions, directions and strengths disagree in size")
        bad = ~np.all(np.isfinite(self.positions_cm), axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise ConfigError(f"{self.source}: seed {i + 1}: position {fmt_mm(self.positions_cm[i])} mm is not finite")
        if np.any(self.sk_U < 0) or not np.all(np.isfinite(self.sk_U)):
            i = int(np.argmax(~(self.sk_U >= 0) | ~np.isfinite(self.sk_U)))
            raise ConfigError(f"{self.source}: seed {i + 1}: air-kerma strength must be a finite number >= 0 U, "
                              f"got {float(self.sk_U[i]):g}")

    @property
    def n_seeds(self) -> int:
        return len(self.positions_cm)

    def sk_at_implant(self) -> np.ndarray:
        """Strengths (U) decayed from the reference date to the implant date."""
        if self.reference_date is None or self.implant_date is None:
            return self.sk_U.copy()
        return self.sk_U * decay_factor(hours_between(self.reference_date, self.implant_date))


def fmt_mm(p_cm) -> str:
    """A position given in cm as plain millimetres, e.g. ``(12.5, -3, 104)``."""
    return "(" + ", ".join(f"{10.0 * float(v):.4g}" for v in np.asarray(p_cm, float).ravel()) + ")"


def _unit_rows(d: np.ndarray, source: str, label=None) -> np.ndarray:
    n = np.linalg.norm(d, axis=1)
    if np.any(n == 0) or not np.all(np.isfinite(n)):
        bad = int(np.argmax((n == 0) | ~np.isfinite(n)))
        where = label(bad) if label is not None else f"seed {bad + 1}"
        raise ConfigError(f"{source}: {where}: direction must be a finite non-zero vector, got "
                          f"({', '.join(f'{float(v):g}' for v in d[bad])})")
    return d / n[:, None]


def _directions(n: int, given: np.ndarray | None, orientation: str, axis, random_seed, source: str,
                label=None) -> np.ndarray:
    if orientation == "given":
        if given is None:
            raise ConfigError(f"{source}: orientation 'given' needs a direction for every seed "
                              "(or use orientation = 'axis' / 'random')")
        return _unit_rows(given, source, label)
    if orientation == "axis":
        a = np.asarray(axis if axis is not None else (0.0, 0.0, 1.0), float)
        return _unit_rows(np.tile(a, (n, 1)), source)
    if orientation == "random":
        rng = np.random.default_rng(random_seed)
        c = 2 * rng.random(n) - 1
        phi = 2 * np.pi * rng.random(n)
        s = np.sqrt(1 - c * c)
        return np.stack([s * np.cos(phi), s * np.sin(phi), c], axis=1)
    raise ConfigError(f"{source}: orientation must be 'given', 'axis' or 'random', got {orientation!r}")


def _parse_date(v, source: str, key: str) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v
    try:
        return datetime.fromisoformat(str(v))
    except ValueError:
        raise ConfigError(f"{source}: '{key}' must be an ISO date/time, got {v!r}") from None


def read_plan_csv(path: str | Path, model: str = "oncoseed_6711", sk_U: float | None = None,
                  orientation: str | None = None, axis=None, random_seed: int = 0,
                  reference_date: datetime | None = None, implant_date: datetime | None = None) -> SeedPlan:
    """Read a CSV plan (see module docstring).

    Every number must be finite, strengths and activities positive; an error names the line as
    the file counts it (header = line 1), the seed (1-based) and the column.
    """
    path = Path(path)
    src = str(path)
    try:
        with path.open(newline="") as fh:
            lines = [(k + 1, ln) for k, ln in enumerate(fh) if ln.strip() and not ln.lstrip().startswith("#")]
    except FileNotFoundError:
        raise ConfigError(f"{src}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{src}: not a text (CSV) file ({exc.reason})") from None
    if not lines:
        raise ConfigError(f"{src}: no header line (x_mm,y_mm,z_mm,...)")
    header = [c.strip() for c in next(csv.reader([lines[0][1]]))]
    if len(set(header)) != len(header):
        raise ConfigError(f"{src}: line {lines[0][0]}: repeated column name in the header {header}")
    body = [(no, [c.strip() for c in next(csv.reader([ln]))]) for no, ln in lines[1:]]
    if not body:
        raise ConfigError(f"{src}: no seed rows")
    cols = set(header)
    missing = {"x_mm", "y_mm", "z_mm"} - cols
    if missing:
        raise ConfigError(f"{src}: missing column(s) {', '.join(sorted(missing))} (need x_mm,y_mm,z_mm)")
    dir_sets = [c for c in (("dx", "dy", "dz"), ("ux", "uy", "uz")) if set(c) <= cols]
    if len(dir_sets) > 1:
        raise ConfigError(f"{src}: both dx,dy,dz and ux,uy,uz direction columns; give one set")
    partial = [c for c in (("dx", "dy", "dz"), ("ux", "uy", "uz")) if 0 < len(set(c) & cols) < 3]
    if partial:
        raise ConfigError(f"{src}: incomplete direction columns: need all of {','.join(partial[0])}")
    dir_cols = dir_sets[0] if dir_sets else None
    index = {c: k for k, c in enumerate(header)}

    def label(i: int) -> str:
        return f"line {body[i][0]} (seed {i + 1})"

    what = {"sk_U": "air-kerma strength (U)", "activity_mCi": "apparent activity (mCi)"}

    def num(i: int, col: str, positive: bool = False) -> float:
        no, cells = body[i]
        if len(cells) != len(header):
            raise ConfigError(f"{src}: {label(i)}: {len(cells)} values for {len(header)} columns")
        text = cells[index[col]]
        try:
            v = float(text)
        except ValueError:
            raise ConfigError(f"{src}: {label(i)}, column {col}: not a number ({text!r})") from None
        if not np.isfinite(v):
            raise ConfigError(f"{src}: {label(i)}, column {col}: {text} is not a finite number")
        if positive and not v > 0:
            raise ConfigError(f"{src}: {label(i)}, column {col}: {what.get(col, 'value')} must be > 0, got {v:g}")
        return v

    n = len(body)
    pos = np.array([[num(i, k) for k in ("x_mm", "y_mm", "z_mm")] for i in range(n)]) / 10.0
    given = np.array([[num(i, k) for k in dir_cols] for i in range(n)]) if dir_cols else None
    if "sk_U" in cols:
        sk = np.array([num(i, "sk_U", positive=True) for i in range(n)])
    elif "activity_mCi" in cols:
        sk = apparent_activity_to_sk(np.array([num(i, "activity_mCi", positive=True) for i in range(n)]))
    elif sk_U is not None:
        sk = np.full(n, float(sk_U))
    else:
        raise ConfigError(f"{src}: no strength: give a sk_U or activity_mCi column, or a default strength")
    orient = orientation or ("given" if dir_cols else "axis")
    dirs = _directions(n, given, orient, axis, random_seed, src, label)
    return SeedPlan(pos, dirs, np.asarray(sk, float), model=model, reference_date=reference_date,
                    implant_date=implant_date or reference_date, orientation=orient, source=src,
                    notes={"direction_columns": ",".join(dir_cols) if dir_cols else ""})


def read_plan_toml(path: str | Path) -> SeedPlan:
    """Read a TOML plan (see module docstring)."""
    path = Path(path)
    src = str(path)
    d = load_toml(path)
    seeds = d.get("seed", [])
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{src}: no [[seed]] entries")
    default_sk = d.get("sk_U")
    if default_sk is None and "activity_mCi" in d:
        default_sk = float(apparent_activity_to_sk(d["activity_mCi"]))
    def finite(v, where: str, positive: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise ConfigError(f"{src}: {where}: must be a finite number, got {v!r}")
        if positive and not v > 0:
            raise ConfigError(f"{src}: {where}: strength must be > 0, got {v:g}")
        return float(v)

    for key in ("sk_U", "activity_mCi"):
        if key in d:
            finite(d[key], key, positive=True)
    pos, given, sk = [], [], []
    for i, s in enumerate(seeds):
        where = f"[[seed]] #{i + 1}"
        if not isinstance(s, dict):
            raise ConfigError(f"{src}: {where}: must be a table")
        p = s.get("position_mm")
        if not (isinstance(p, list) and len(p) == 3):
            raise ConfigError(f"{src}: {where}: 'position_mm' must be three numbers")
        pos.append([finite(x, f"{where}.position_mm") for x in p])
        g = s.get("direction")
        if g is not None:
            if not (isinstance(g, list) and len(g) == 3):
                raise ConfigError(f"{src}: {where}: 'direction' must be three numbers")
            g = [finite(x, f"{where}.direction") for x in g]
        given.append(g)
        if "activity_mCi" in s:
            v = float(apparent_activity_to_sk(finite(s["activity_mCi"], f"{where}.activity_mCi", positive=True)))
        else:
            v = s.get("sk_U", default_sk)
        if v is None:
            raise ConfigError(f"{src}: {where}: no strength (sk_U or activity_mCi), and no default")
        sk.append(finite(v, f"{where}.sk_U", positive=True))
    orient = d.get("orientation", "given" if all(g is not None for g in given) else "axis")
    g = np.array(given, float) if all(x is not None for x in given) else None
    dirs = _directions(len(seeds), g, orient, d.get("axis"), d.get("random_seed", 0), src,
                       lambda i: f"[[seed]] #{i + 1}")
    ref = _parse_date(d.get("reference_date"), src, "reference_date")
    imp = _parse_date(d.get("implant_date"), src, "implant_date") or ref
    return SeedPlan(np.array(pos) / 10.0, dirs, np.array(sk), model=str(d.get("model", "oncoseed_6711")),
                    reference_date=ref, implant_date=imp, orientation=orient, source=src)
