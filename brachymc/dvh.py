"""Dose-volume histograms and DVH metrics of structures.

A structure is a fractional mask on the dose grid (partial-volume weights in [0, 1], e.g. from
sub-sampled contour rasterisation). The cumulative DVH V(D) is the volume receiving at least D;
D_x is the minimum dose received by the hottest x of the volume (x in % or cc), found by exact
interpolation on the sorted voxel doses (each voxel's volume is a block of the cumulative volume).

Metrics (prostate/spine LDR practice): D90, D100, V100, V150, V200 (relative to a prescription),
D2cc, D0.1cc, Dmax, Dmean, volume. D0.1cc and D2cc are the organ-at-risk metrics; Dmax is a
single-voxel value, taken over the voxels that lie wholly inside the structure (fraction >=
:data:`WHOLE_VOXEL`), so that a voxel beside a seed that only grazes the structure does not set it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brachymc.errors import ConfigError

#: a voxel counts as wholly inside a structure at this fraction (rasterisation rounding)
WHOLE_VOXEL = 0.999


@dataclass(frozen=True)
class DVH:
    """Cumulative DVH: ``dose`` (Gy, ascending bin edges) and ``volume_cc`` receiving >= dose."""

    name: str
    dose: np.ndarray
    volume_cc: np.ndarray
    total_cc: float

    @property
    def volume_percent(self) -> np.ndarray:
        return 100.0 * self.volume_cc / self.total_cc


def _sorted(dose: np.ndarray, weights: np.ndarray, voxel_cc: float):
    d = np.asarray(dose, float).ravel()
    w = np.asarray(weights, float).ravel()
    if d.shape != w.shape:
        raise ConfigError("dose and structure mask must have the same shape")
    if np.any(w < 0) or np.any(w > 1 + 1e-9):
        raise ConfigError("structure weights must lie in [0, 1]")
    keep = w > 0
    d, v = d[keep], w[keep] * voxel_cc
    if d.size == 0:
        raise ConfigError("structure is empty on the dose grid")
    if not np.all(np.isfinite(d)):
        raise ConfigError("structure contains voxels without a dose (masked seed voxels): exclude them first")
    order = np.argsort(-d, kind="stable")     # hottest first
    return d[order], v[order]


def dose_at_volume(dose, weights, voxel_cc: float, volume_cc: float) -> float:
    """Minimum dose to the hottest ``volume_cc`` of the structure (Gy)."""
    d, v = _sorted(dose, weights, voxel_cc)
    cum = np.cumsum(v)
    if volume_cc <= 0:
        return float(d[0])
    if volume_cc >= cum[-1]:
        return float(d[-1])
    k = int(np.searchsorted(cum, volume_cc, side="left"))
    return float(d[k])


def dose_at_percent(dose, weights, voxel_cc: float, percent: float) -> float:
    """D_x: minimum dose to the hottest ``percent`` % of the structure (D90 = dose_at_percent(..., 90))."""
    d, v = _sorted(dose, weights, voxel_cc)
    return dose_at_volume(dose, weights, voxel_cc, percent / 100.0 * v.sum())


def volume_at_dose(dose, weights, voxel_cc: float, dose_gy: float) -> float:
    """Volume (cc) receiving at least ``dose_gy``."""
    d, v = _sorted(dose, weights, voxel_cc)
    return float(v[d >= dose_gy].sum())


def cumulative_dvh(name: str, dose, weights, voxel_cc: float, bin_gy: float | None = None) -> DVH:
    d, v = _sorted(dose, weights, voxel_cc)
    top = float(d[0])
    bin_gy = bin_gy or max(top / 1000.0, 1e-12)
    edges = np.arange(0.0, top + 2 * bin_gy, bin_gy)
    # volume receiving >= edge: cumulative sum over the sorted (descending) doses
    asc_d, asc_v = d[::-1], v[::-1]
    tail = np.concatenate([np.cumsum(asc_v[::-1])[::-1], [0.0]])
    idx = np.searchsorted(asc_d, edges, side="left")
    return DVH(name, edges, tail[idx], float(v.sum()))


def dvh_metrics(dose, weights, voxel_cc: float, prescription_gy: float | None = None) -> dict:
    """D90, D100, V100/V150/V200 (% of volume, with a prescription), D2cc, D0.1cc, Dmax, Dmean, volume.

    ``Dmax_Gy`` is the highest dose of a voxel wholly inside the structure (None if no voxel is).
    """
    d, v = _sorted(dose, weights, voxel_cc)
    total = float(v.sum())
    whole = v >= WHOLE_VOXEL * voxel_cc
    out = {
        "volume_cc": total,
        "Dmax_Gy": float(d[whole][0]) if whole.any() else None,
        "Dmean_Gy": float(np.sum(d * v) / total),
        "D100_Gy": float(d[-1]),
        "D90_Gy": dose_at_volume(dose, weights, voxel_cc, 0.9 * total),
        "D2cc_Gy": dose_at_volume(dose, weights, voxel_cc, 2.0) if total >= 2.0 else None,
        "D0.1cc_Gy": dose_at_volume(dose, weights, voxel_cc, 0.1) if total >= 0.1 else None,
    }
    if prescription_gy:
        for f in (100, 150, 200):
            out[f"V{f}_percent"] = 100.0 * float(v[d >= prescription_gy * f / 100.0].sum()) / total
    return out
