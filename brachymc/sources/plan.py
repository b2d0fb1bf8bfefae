"""Seed plans from CSV or TOML: positions (DICOM patient coordinates, mm), orientations, strengths.

CSV (header required; one row per seed)::

    x_mm,y_mm,z_mm[,dx,dy,dz][,sk_U | activity_mCi]

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
        if np.any(self.sk_U < 0) or not np.all(np.isfinite(self.sk_U)):
            bad = int(np.argmax(~(self.sk_U >= 0)))
            raise ConfigError(f"{self.source}: seed {bad + 1}: air-kerma strength must be >= 0, got {self.sk_U[bad]}")

    @property
    def n_seeds(self) -> int:
        return len(self.positions_cm)

    def sk_at_implant(self) -> np.ndarray:
        """Strengths (U) decayed from the reference date to the implant date."""
        if self.reference_date is None or self.implant_date is None:
            return self.sk_U.copy()
        return self.sk_U * decay_factor(hours_between(self.reference_date, self.implant_date))


def _unit_rows(d: np.ndarray, source: str) -> np.ndarray:
    n = np.linalg.norm(d, axis=1)
    if np.any(n == 0) or not np.all(np.isfinite(n)):
        bad = int(np.argmax((n == 0) | ~np.isfinite(n)))
        raise ConfigError(f"{source}: seed {bad + 1}: direction must be a non-zero vector")
    return d / n[:, None]


def _directions(n: int, given: np.ndarray | None, orientation: str, axis, random_seed, source: str) -> np.ndarray:
    if orientation == "given":
        if given is None:
            raise ConfigError(f"{source}: orientation 'given' needs a direction for every seed "
                              "(or use orientation = 'axis' / 'random')")
        return _unit_rows(given, source)
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
    """Read a CSV plan (see module docstring)."""
    path = Path(path)
    src = str(path)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")))
    except FileNotFoundError:
        raise ConfigError(f"{src}: file not found") from None
    if not rows:
        raise ConfigError(f"{src}: no seed rows")
    cols = set(rows[0])
    missing = {"x_mm", "y_mm", "z_mm"} - cols
    if missing:
        raise ConfigError(f"{src}: missing column(s) {', '.join(sorted(missing))} (need x_mm,y_mm,z_mm)")
    has_dir = {"dx", "dy", "dz"} <= cols

    def num(row, k, i):
        try:
            return float(row[k])
        except (TypeError, ValueError):
            raise ConfigError(f"{src}: row {i + 2}, column {k}: not a number ({row.get(k)!r})") from None

    pos = np.array([[num(r, k, i) for k in ("x_mm", "y_mm", "z_mm")] for i, r in enumerate(rows)]) / 10.0
    given = np.array([[num(r, k, i) for k in ("dx", "dy", "dz")] for i, r in enumerate(rows)]) if has_dir else None
    if "sk_U" in cols:
        sk = np.array([num(r, "sk_U", i) for i, r in enumerate(rows)])
    elif "activity_mCi" in cols:
        act = np.array([num(r, "activity_mCi", i) for i, r in enumerate(rows)])
        if np.any(act < 0):
            i = int(np.argmax(act < 0))
            raise ConfigError(f"{src}: row {i + 2}: negative activity {act[i]} mCi")
        sk = apparent_activity_to_sk(act)
    elif sk_U is not None:
        sk = np.full(len(rows), float(sk_U))
    else:
        raise ConfigError(f"{src}: no strength: give a sk_U or activity_mCi column, or a default strength")
    orient = orientation or ("given" if has_dir else "axis")
    dirs = _directions(len(rows), given, orient, axis, random_seed, src)
    return SeedPlan(pos, dirs, sk, model=model, reference_date=reference_date,
                    implant_date=implant_date or reference_date, orientation=orient, source=src)


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
    pos, given, sk = [], [], []
    for i, s in enumerate(seeds):
        p = s.get("position_mm")
        if not (isinstance(p, list) and len(p) == 3):
            raise ConfigError(f"{src}: [[seed]] #{i + 1}: 'position_mm' must be three numbers")
        pos.append([float(x) for x in p])
        given.append(s.get("direction"))
        v = s.get("sk_U", float(apparent_activity_to_sk(s["activity_mCi"])) if "activity_mCi" in s else default_sk)
        if v is None:
            raise ConfigError(f"{src}: [[seed]] #{i + 1}: no strength (sk_U or activity_mCi), and no default")
        if float(v) < 0:
            raise ConfigError(f"{src}: [[seed]] #{i + 1}: negative strength {v}")
        sk.append(float(v))
    orient = d.get("orientation", "given" if all(g is not None for g in given) else "axis")
    g = np.array(given, float) if all(x is not None for x in given) else None
    dirs = _directions(len(seeds), g, orient, d.get("axis"), d.get("random_seed", 0), src)
    ref = _parse_date(d.get("reference_date"), src, "reference_date")
    imp = _parse_date(d.get("implant_date"), src, "implant_date") or ref
    return SeedPlan(np.array(pos) / 10.0, dirs, np.array(sk), model=str(d.get("model", "oncoseed_6711")),
                    reference_date=ref, implant_date=imp, orientation=orient, source=src)
