"""TG-43 source datasets: Lambda, L, g_L(r), g_P(r), F(r, theta), phi_an(r), and their interpolation.

Formalism and data: AAPM TG-43U1, Rivard MJ et al., "Update of AAPM Task Group No. 43 Report: A revised
AAPM protocol for brachytherapy dose calculations", Med Phys 31 (2004) 633-674.

Units: r in cm, theta in degrees (polar angle from the seed's long axis, 0 deg = along the axis, towards
the tip that the seed direction points to), Lambda in cGy h^-1 U^-1 (1 U = 1 uGy m^2 h^-1 = 1 cGy cm^2 h^-1),
L (effective active length of the line-source model) in cm. g_L, g_P, F and phi_an are dimensionless.

Interpolation and extrapolation (implemented in :meth:`TG43Dataset.g_L`, :meth:`~TG43Dataset.g_P`,
:meth:`~TG43Dataset.F_at`, :meth:`~TG43Dataset.phi_an_at`):

* **g_L(r), g_P(r)** -- linear interpolation in r between tabulated radii. Outside the table,
  TG-43U1 Appendix C, Eq. (C1) (p. 669): for r < r_min the nearest-neighbour value g(r_min); for
  r > r_max linear extrapolation through the last two tabulated points,
  ``g(r) = g(r_n) + (r - r_n) (g(r_n) - g(r_{n-1})) / (r_n - r_{n-1})``.
  The primary text of TG-43U1 could not be read here; the rule is taken as it is quoted and implemented,
  with that citation, by matRad (e0404/matRad, ``brachytherapy/TG43/matRad_radialDoseFunction.m``).
  No TG-43U1 recommendation of log-linear interpolation was found; Pujades-Claumarchirant et al.,
  J Contemp Brachytherapy 2 (2010) 28, compared linear and log-linear interpolation of g_L and found
  linear interpolation within 0.5 % of Monte Carlo on the usual radial mesh.
  *Guard added here, not in TG-43U1:* the extrapolated value is clipped at 0 (for the 6711 consensus
  table the straight line through 9 and 10 cm reaches 0 at r = 12.8 cm; a negative g is meaningless).
* **F(r, theta)** -- bilinear interpolation in (r, theta) (linear in theta, linear in r). Outside the
  tabulated radii, nearest neighbour: F(r < r_min, theta) = F(r_min, theta) and
  F(r > r_max, theta) = F(r_max, theta) (matRad ``matRad_anisotropyFunction2D.m`` extrapolates F this way
  under the same TG-43U1 Eq. (C1) citation). A table that stops at 90 deg is used for 180 - theta as well
  (F symmetric about the transverse plane, as in the consensus tables); a table running to 180 deg is
  used as is.
* **phi_an(r)** -- linear interpolation in r, nearest-neighbour (constant) outside the table (the same
  rule as F in r; not checked against the TG-43U1 text).

At the tabulated nodes the tabulated values come back exactly: the linear weights are formed as
``(1 - w) * a + w * b`` and w is exactly 0 at a node.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brachymc.errors import BrachyMCError

__all__ = [
    "TG43Error",
    "TG43DataError",
    "TG43InputError",
    "TG43Dataset",
    "REFERENCE_MODELS",
    "R0_CM",
    "THETA0_DEG",
]

#: TG-43 reference point: r0 = 1 cm, theta0 = 90 deg (TG-43U1 Sec. II.A).
R0_CM = 1.0
THETA0_DEG = 90.0

#: Seed models that :meth:`TG43Dataset.from_reference_csv` knows (files ``tg43u1_<model>_*.csv``).
REFERENCE_MODELS = ("6711", "2301")


class TG43Error(BrachyMCError, ValueError):
    """Base class of the TG-43 engine's errors (a ``ValueError``, and a ``BrachyMCError``)."""


class TG43DataError(TG43Error):
    """A TG-43 dataset (tables, JSON or reference CSV) is missing, malformed or inconsistent."""


class TG43InputError(TG43Error):
    """Bad arguments to a TG-43 dose function (shapes, zero direction vectors, unknown formalism...)."""


# ---------------------------------------------------------------------------------------------------------
# 1D / 2D linear interpolation (vectorised, exact at the nodes, fast for the dose engine's inner loop)
# ---------------------------------------------------------------------------------------------------------

class _Cells:
    """Locate x in the cells of a strictly increasing node list xs (n nodes -> n cells).

    Cell i < n-1 is [xs[i], xs[i+1]); cell n-1 is [xs[n-1], inf). x below xs[0] is treated as xs[0]
    (nearest neighbour). The cell index comes from a uniform bucket table (bucket width <= half the
    smallest node spacing, so each bucket holds at most one node) plus one comparison, which is several
    times faster than a binary search for millions of queries. ``w`` is the fractional position in the
    cell, ``(x - xs[i]) / (xs[i+1] - xs[i])``; in the last cell it is ``(x - xs[n-1]) / ext_step``
    (``ext_step = 0``: w = 0, constant extrapolation). w is exactly 0 at every node.
    """

    def __init__(self, xs: np.ndarray, ext_step: float = 0.0) -> None:
        xs = np.asarray(xs, dtype=float)
        n = xs.size
        self.n = n
        self.x0 = float(xs[0])
        self.xs = xs
        self.xs_next = np.append(xs[1:], np.inf)
        with np.errstate(divide="ignore"):
            last = 1.0 / ext_step if ext_step > 0 else 0.0
        self.inv_dx = np.append(1.0 / np.diff(xs), last) if n > 1 else np.array([last])
        if n > 1:
            h = 0.5 * float(np.min(np.diff(xs)))
            nb = int(math.ceil((xs[-1] - xs[0]) / h)) + 2
        else:
            h, nb = 1.0, 1
        self.lut = None
        if nb <= 1 << 20:
            edges = xs[0] + h * np.arange(nb)
            self.lut = np.clip(np.searchsorted(xs, edges, side="right") - 1, 0, n - 1).astype(np.intp)
            self.inv_h = 1.0 / h
            self.nb_max = float(nb - 1)

    def locate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xe = np.maximum(x, self.x0)                       # nearest neighbour below the table (NaN stays NaN)
        if self.n == 1:
            i = np.zeros(np.shape(xe), dtype=np.intp)
        elif self.lut is not None:
            b = np.clip((xe - self.x0) * self.inv_h, 0.0, self.nb_max)
            b = _to_index(np.asarray(b))
            i = np.take(self.lut, b)
            i = i + (xe >= np.take(self.xs_next, i))     # at most one node per bucket
        else:  # pragma: no cover - only for absurdly fine tables
            i = np.clip(np.searchsorted(self.xs, xe, side="right") - 1, 0, self.n - 1)
        w = (xe - np.take(self.xs, i)) * np.take(self.inv_dx, i)
        return i, w


def _to_index(b: np.ndarray) -> np.ndarray:
    """float bucket numbers (already clipped) -> intp, NaN -> 0 (its result stays NaN through w)."""
    if np.isnan(b).any():
        b = np.nan_to_num(b, nan=0.0)
    return b.astype(np.intp)


def _lerp(a, b, w):
    """(1 - w) a + w b: returns a exactly at w = 0 and b exactly at w = 1."""
    return (1.0 - w) * a + w * b


class _Lin1D:
    """Piecewise-linear function through (xs, ys): constant below xs[0]; above xs[-1] constant
    (``above="const"``) or continued along the last segment (``above="linear"``, TG-43U1 Eq. (C1)),
    optionally clipped at 0."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray, above: str = "const", clip0: bool = False) -> None:
        xs = np.asarray(xs, dtype=float)
        ys = np.asarray(ys, dtype=float)
        linear = above == "linear" and xs.size > 1
        step = float(xs[-1] - xs[-2]) if linear else 0.0
        self.cells = _Cells(xs, ext_step=step)
        nxt = ys[-1] + (ys[-1] - ys[-2]) if linear else ys[-1]   # virtual node one step beyond the table
        self.ys = ys
        self.ys_next = np.append(ys[1:], nxt)
        self.clip0 = clip0

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        i, w = self.cells.locate(x)
        out = _lerp(np.take(self.ys, i), np.take(self.ys_next, i), w)
        if self.clip0:
            out = np.maximum(out, 0.0)
        return out


class _Bilinear:
    """Bilinear interpolation of table[it, ir] on (ts, rs); constant outside both axes."""

    def __init__(self, rs: np.ndarray, ts: np.ndarray, table: np.ndarray) -> None:
        self.r = _Cells(rs)
        self.t = _Cells(ts)
        self.t_hi = float(ts[-1])
        nt, nr = table.shape
        pad = np.empty((nt + 1, nr + 1))
        pad[:nt, :nr] = table
        pad[nt, :nr] = table[-1]
        pad[:, nr] = pad[:, nr - 1]
        self.flat = pad.ravel()
        self.row = nr + 1

    def __call__(self, r: np.ndarray, t: np.ndarray) -> np.ndarray:
        ir, wr = self.r.locate(r)
        it, wt = self.t.locate(np.minimum(t, self.t_hi))
        k = it * self.row + ir
        f = self.flat
        lo = _lerp(np.take(f, k), np.take(f, k + self.row), wt)
        hi = _lerp(np.take(f, k + 1), np.take(f, k + self.row + 1), wt)
        return _lerp(lo, hi, wr)


# ---------------------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------------------

def _axis(name: str, a: Any, *, allow_zero: bool = False) -> np.ndarray:
    try:
        arr = np.array(a, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TG43DataError(f"{name}: not a list of numbers ({exc})") from None
    if arr.ndim != 1 or arr.size < 1:
        raise TG43DataError(f"{name}: must be a non-empty 1D list, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise TG43DataError(f"{name}: contains non-finite values: {arr.tolist()}")
    if arr.size > 1 and not np.all(np.diff(arr) > 0):
        raise TG43DataError(f"{name}: must be strictly increasing, got {arr.tolist()}")
    if (arr[0] < 0) if allow_zero else (arr[0] <= 0):
        raise TG43DataError(f"{name}: values must be {'>= 0' if allow_zero else '> 0'} (cm), got {arr[0]}")
    return arr


def _values(name: str, a: Any, n: int) -> np.ndarray:
    try:
        arr = np.array(a, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TG43DataError(f"{name}: not a list of numbers ({exc})") from None
    if arr.shape != (n,):
        raise TG43DataError(f"{name}: expected {n} values (one per tabulated radius), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise TG43DataError(f"{name}: contains non-finite values: {arr.tolist()}")
    if np.any(arr < 0):
        raise TG43DataError(f"{name}: negative values are not allowed: {arr.tolist()}")
    return arr


def _frozen(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None:
        a.setflags(write=False)
    return a


# ---------------------------------------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class TG43Dataset:
    """One seed model's TG-43 parameters (TG-43U1, Rivard et al., Med Phys 31 (2004) 633).

    Attributes
    ----------
    name : str
        Seed model identifier (e.g. ``"6711"``; a brachymc Monte Carlo dataset uses the seed key).
    dose_rate_constant : float
        Lambda, cGy h^-1 U^-1 (dose rate to water at r0 = 1 cm, theta0 = 90 deg per unit air-kerma strength).
    length_cm : float
        Effective active length L of the line-source model, cm (0 = point source: G_L = 1/r^2).
    r_gL, gL : arrays (n,)
        Radii (cm, strictly increasing, > 0) and line-source radial dose function g_L(r).
    r_gP, gP : arrays (k,) or None
        Radii and point-source radial dose function g_P(r) (needed by the 1D point formalism).
    F_r, F_theta : arrays
        Radii (cm) and polar angles (deg) of the 2D anisotropy table. F_theta must start at 0 and end at
        90 (table mirrored about the transverse plane) or 180.
    F : array (len(F_theta), len(F_r))
        2D anisotropy function, indexed ``F[i_theta, i_r]``.
    phi_r, phi_an : arrays (k,) or None
        Radii and 1D anisotropy function phi_an(r) (needed by the 1D formalisms).
    source : str
        Free-text provenance.

    Arrays are stored as read-only float64 copies. Interpolation rules: see the module docstring.
    """

    name: str
    dose_rate_constant: float
    length_cm: float
    r_gL: np.ndarray
    gL: np.ndarray
    r_gP: np.ndarray | None = None
    gP: np.ndarray | None = None
    F_r: np.ndarray = None  # type: ignore[assignment]
    F_theta: np.ndarray = None  # type: ignore[assignment]
    F: np.ndarray = None  # type: ignore[assignment]
    phi_r: np.ndarray | None = None
    phi_an: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        def put(field: str, value: Any) -> None:
            object.__setattr__(self, field, value)

        name = str(self.name)
        put("name", name)
        where = f"TG-43 dataset {name!r}"
        lam = float(self.dose_rate_constant)
        if not (math.isfinite(lam) and lam > 0):
            raise TG43DataError(
                f"{where}: dose_rate_constant must be > 0 (cGy h^-1 U^-1), got {self.dose_rate_constant}")
        put("dose_rate_constant", lam)
        length = float(self.length_cm)
        if not (math.isfinite(length) and length >= 0):
            raise TG43DataError(f"{where}: length_cm must be >= 0 (cm), got {self.length_cm}")
        put("length_cm", length)

        r_gl = _axis(f"{where}: r_gL", self.r_gL)
        put("r_gL", _frozen(r_gl))
        put("gL", _frozen(_values(f"{where}: gL", self.gL, r_gl.size)))

        for r_field, v_field in (("r_gP", "gP"), ("phi_r", "phi_an")):
            r_val, v_val = getattr(self, r_field), getattr(self, v_field)
            if (r_val is None) != (v_val is None):
                raise TG43DataError(f"{where}: give both {r_field} and {v_field}, or neither")
            if r_val is not None:
                r_arr = _axis(f"{where}: {r_field}", r_val)
                put(r_field, _frozen(r_arr))
                put(v_field, _frozen(_values(f"{where}: {v_field}", v_val, r_arr.size)))

        if self.F_r is None or self.F_theta is None or self.F is None:
            raise TG43DataError(f"{where}: the 2D anisotropy table needs F_r, F_theta and F")
        f_r = _axis(f"{where}: F_r", self.F_r)
        f_t = _axis(f"{where}: F_theta", self.F_theta, allow_zero=True)
        if f_t[0] != 0.0 or f_t[-1] not in (90.0, 180.0):
            raise TG43DataError(
                f"{where}: F_theta must run from 0 to 90 deg (mirrored about 90) or from 0 to 180 deg, "
                f"got {f_t[0]}..{f_t[-1]}")
        try:
            f = np.array(self.F, dtype=float)
        except (TypeError, ValueError) as exc:
            raise TG43DataError(f"{where}: F is not a table of numbers ({exc})") from None
        if f.shape != (f_t.size, f_r.size):
            raise TG43DataError(
                f"{where}: F must have shape (len(F_theta), len(F_r)) = ({f_t.size}, {f_r.size}) "
                f"(indexed [theta, r]), got {f.shape}")
        if not np.all(np.isfinite(f)) or np.any(f < 0):
            raise TG43DataError(f"{where}: F must be finite and >= 0")
        put("F_r", _frozen(f_r))
        put("F_theta", _frozen(f_t))
        put("F", _frozen(f))
        put("source", str(self.source))
        # interpolation tables (private; rebuilt from the fields above, not part of equality)
        put("_i_gL", _Lin1D(self.r_gL, self.gL, above="linear", clip0=True))
        put("_i_gP", None if self.gP is None else _Lin1D(self.r_gP, self.gP, above="linear", clip0=True))
        put("_i_phi", None if self.phi_an is None else _Lin1D(self.phi_r, self.phi_an, above="const"))
        put("_i_F", _Bilinear(self.F_r, np.radians(self.F_theta), self.F))  # theta axis in radians

    # ---- equality (arrays compared by value) ---------------------------------------------------------
    _FIELDS = ("name", "dose_rate_constant", "length_cm", "r_gL", "gL", "r_gP", "gP",
               "F_r", "F_theta", "F", "phi_r", "phi_an", "source")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TG43Dataset):
            return NotImplemented
        for f in self._FIELDS:
            a, b = getattr(self, f), getattr(other, f)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    # ---- derived properties -------------------------------------------------------------------------
    @property
    def has_gP(self) -> bool:
        return self.gP is not None

    @property
    def has_phi_an(self) -> bool:
        return self.phi_an is not None

    @property
    def F_mirrored(self) -> bool:
        """True when the F table stops at 90 deg and is used for 180 - theta as well."""
        return bool(self.F_theta[-1] == 90.0)

    # ---- interpolation ------------------------------------------------------------------------------
    def g_L(self, r) -> np.ndarray:
        """Line-source radial dose function g_L(r) (r in cm, any shape): linear interpolation; g(r_min)
        below the table; linear extrapolation through the last two points above it, clipped at 0
        (TG-43U1 Eq. (C1))."""
        return self._i_gL(r)

    def g_P(self, r) -> np.ndarray:
        """Point-source radial dose function g_P(r) (r in cm); same rules as :meth:`g_L`."""
        if self.gP is None:
            raise TG43DataError(f"TG-43 dataset {self.name!r} has no g_P table (needed by the 1D point formalism)")
        return self._i_gP(r)

    def F_at(self, r, theta_deg) -> np.ndarray:
        """2D anisotropy function F(r, theta) (r in cm, theta in deg in [0, 180]; broadcast together).

        Bilinear in (r, theta); nearest neighbour (constant) in r outside the tabulated radii; a table
        that stops at 90 deg is evaluated at min(theta, 180 - theta)."""
        r = np.asarray(r, dtype=float)
        t = np.asarray(theta_deg, dtype=float)
        if self.F_mirrored:
            t = np.where(t > 90.0, 180.0 - t, t)
        r, t = np.broadcast_arrays(r, t)
        return self._i_F(r, np.radians(t))

    def _F_rad(self, r: np.ndarray, t_rad: np.ndarray) -> np.ndarray:
        """F for theta in radians, already folded into the table's range (0..pi/2 or 0..pi)."""
        return self._i_F(r, t_rad)

    def phi_an_at(self, r) -> np.ndarray:
        """1D anisotropy function phi_an(r) (r in cm): linear, constant outside the table."""
        if self.phi_an is None:
            raise TG43DataError(f"TG-43 dataset {self.name!r} has no phi_an table (needed by the 1D formalisms)")
        return self._i_phi(r)

    # ---- I/O ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON form (see :meth:`from_json`)."""
        d: dict[str, Any] = {
            "seed": self.name,
            "lambda_cGy_per_h_per_U": self.dose_rate_constant,
            "length_cm": self.length_cm,
            "gL": {"r_cm": self.r_gL.tolist(), "value": self.gL.tolist()},
        }
        if self.gP is not None:
            d["gP"] = {"r_cm": self.r_gP.tolist(), "value": self.gP.tolist()}
        d["F"] = {"r_cm": self.F_r.tolist(), "theta_deg": self.F_theta.tolist(),
                  "value": self.F.T.tolist()}  # rows per r
        if self.phi_an is not None:
            d["phi_an"] = {"r_cm": self.phi_r.tolist(), "value": self.phi_an.tolist()}
        d["source"] = self.source
        return d

    def to_json(self, path) -> None:
        """Write the dataset as JSON (atomically). Floats are written with full precision (repr), so
        :meth:`from_json` gives back an equal dataset."""
        from brachymc.files import atomic_path

        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        with atomic_path(path) as tmp:
            tmp.write_text(text + "\n")

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "TG-43 JSON") -> "TG43Dataset":
        """Build from the JSON form: keys ``seed``, ``lambda_cGy_per_h_per_U``, ``length_cm`` (or
        ``settings.length_cm`` as in a brachymc ``TG43Result``), ``gL {r_cm, value}``,
        optional ``gP {r_cm, value}``, ``F {r_cm, theta_deg, value}`` with ``value`` given as one row per
        radius, optional ``phi_an {r_cm, value}``, optional ``source``. Other keys (``rel_unc``...) are
        ignored."""
        if not isinstance(data, dict):
            raise TG43DataError(f"{where}: top level must be an object")

        def need(d: dict, key: str, ctx: str):
            if not isinstance(d, dict) or key not in d:
                raise TG43DataError(f"{where}: missing key {ctx}{key!r}")
            return d[key]

        length = data.get("length_cm")
        if length is None:
            length = (data.get("settings") or {}).get("length_cm")
        if length is None:
            raise TG43DataError(f"{where}: missing key 'length_cm' (top level or in 'settings')")
        gl = need(data, "gL", "")
        f = need(data, "F", "")
        f_r = need(f, "r_cm", "F.")
        f_t = need(f, "theta_deg", "F.")
        f_v = np.array(need(f, "value", "F."), dtype=float)
        if f_v.ndim != 2 or f_v.shape != (len(f_r), len(f_t)):
            raise TG43DataError(
                f"{where}: F.value must have one row per radius: shape ({len(f_r)}, {len(f_t)}), got {f_v.shape}")
        gp = data.get("gP")
        ph = data.get("phi_an")
        try:
            return cls(
                name=str(need(data, "seed", "")),
                dose_rate_constant=need(data, "lambda_cGy_per_h_per_U", ""),
                length_cm=length,
                r_gL=need(gl, "r_cm", "gL."), gL=need(gl, "value", "gL."),
                r_gP=None if gp is None else need(gp, "r_cm", "gP."),
                gP=None if gp is None else need(gp, "value", "gP."),
                F_r=f_r, F_theta=f_t, F=f_v.T,
                phi_r=None if ph is None else need(ph, "r_cm", "phi_an."),
                phi_an=None if ph is None else need(ph, "value", "phi_an."),
                source=str(data.get("source", "")),
            )
        except TG43DataError as exc:
            raise TG43DataError(f"{where}: {exc}") from None

    @classmethod
    def from_json(cls, path) -> "TG43Dataset":
        """Read a dataset written by :meth:`to_json` or by brachymc's Monte Carlo TG-43 characterisation
        (``brachymc.validation.tg43_mc.TG43Result.to_json``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise TG43DataError(f"{path}: no such TG-43 JSON file") from None
        except json.JSONDecodeError as exc:
            raise TG43DataError(f"{path}: not valid JSON ({exc})") from None
        ds = cls.from_dict(data, where=str(path))
        if not ds.source:
            object.__setattr__(ds, "source", f"JSON {path}")
        return ds

    @classmethod
    def from_reference_csv(cls, folder, model: str = "6711") -> "TG43Dataset":
        """TG-43U1 consensus data of ``model`` ("6711" or "2301") from the reference CSV folder.

        Reads ``tg43u1_<model>_params.csv`` (Lambda: ``dose_rate_constant_Lambda``, L:
        ``effective_length_L``), ``_gL.csv`` (column ``gL``, and ``gP`` when present), ``_gP.csv`` (if
        present), ``_F.csv`` (``theta_deg`` and ``F_r<r>cm`` columns) and ``_phian.csv``. Lines starting
        with ``#`` are comments. The folder is an argument: library code knows no data path.
        """
        folder = Path(folder)
        model = str(model).strip()
        if model not in REFERENCE_MODELS:
            raise TG43DataError(f"unknown reference seed model {model!r}; known: {', '.join(REFERENCE_MODELS)}")
        if not folder.is_dir():
            raise TG43DataError(f"reference folder {folder} does not exist")

        def rows(suffix: str, required: bool = True) -> list[dict] | None:
            p = folder / f"tg43u1_{model}_{suffix}.csv"
            if not p.is_file():
                if required:
                    raise TG43DataError(f"{p}: missing reference file")
                return None
            with p.open(newline="") as fh:
                lines = [ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
            out = list(csv.DictReader(lines))
            if not out:
                raise TG43DataError(f"{p}: no data rows")
            return out

        def column(rs: list[dict], key: str, suffix: str) -> list[float]:
            try:
                return [float(r[key]) for r in rs]
            except (KeyError, TypeError, ValueError):
                raise TG43DataError(f"tg43u1_{model}_{suffix}.csv: column {key!r} missing or not numeric") from None

        params = {r["parameter"].strip(): r for r in rows("params")}
        try:
            lam = float(params["dose_rate_constant_Lambda"]["value"])
            length = float(params["effective_length_L"]["value"])
        except (KeyError, ValueError):
            raise TG43DataError(f"tg43u1_{model}_params.csv: needs numeric rows 'dose_rate_constant_Lambda' "
                                "and 'effective_length_L'") from None

        gl_rows = rows("gL")
        r_gl, gl = column(gl_rows, "r_cm", "gL"), column(gl_rows, "gL", "gL")
        r_gp = gp = None
        gp_rows = rows("gP", required=False)
        if gp_rows is not None:
            r_gp, gp = column(gp_rows, "r_cm", "gP"), column(gp_rows, "gP", "gP")
        elif "gP" in gl_rows[0]:
            r_gp, gp = r_gl, column(gl_rows, "gP", "gL")

        f_rows = rows("F")
        theta = column(f_rows, "theta_deg", "F")
        r_cols = []
        for key in f_rows[0]:
            k = key.strip()
            if k.startswith("F_r") and k.endswith("cm"):
                try:
                    r_cols.append((float(k[3:-2]), key))
                except ValueError:
                    raise TG43DataError(f"tg43u1_{model}_F.csv: cannot read a radius from column {key!r}") from None
        if not r_cols:
            raise TG43DataError(f"tg43u1_{model}_F.csv: no 'F_r<r>cm' columns")
        r_cols.sort()
        f_tab = np.array([column(f_rows, key, "F") for _, key in r_cols]).T  # [theta, r]
        order = np.argsort(theta)
        theta_arr = np.asarray(theta)[order]
        f_tab = f_tab[order]

        ph_rows = rows("phian", required=False)
        phi_r = phi = None
        if ph_rows is not None:
            phi_r, phi = column(ph_rows, "r_cm", "phian"), column(ph_rows, "phi_an", "phian")

        return cls(
            name=model, dose_rate_constant=lam, length_cm=length,
            r_gL=r_gl, gL=gl, r_gP=r_gp, gP=gp,
            F_r=[r for r, _ in r_cols], F_theta=theta_arr, F=f_tab,
            phi_r=phi_r, phi_an=phi,
            source=(f"AAPM TG-43U1 consensus data (Rivard et al., Med Phys 31 (2004) 633), model {model}, "
                    f"from {folder}/tg43u1_{model}_*.csv"),
        )

    def __repr__(self) -> str:
        return (f"TG43Dataset(name={self.name!r}, Lambda={self.dose_rate_constant} cGy/h/U, L={self.length_cm} cm, "
                f"g_L: {self.r_gL.size} radii {self.r_gL[0]}-{self.r_gL[-1]} cm, "
                f"F: {self.F_theta.size}x{self.F_r.size}, g_P: {'yes' if self.has_gP else 'no'}, "
                f"phi_an: {'yes' if self.has_phi_an else 'no'})")
