"""Scoring found seeds against known ones: one-to-one matching and the error statistics.

Matching is a minimum-cost assignment (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``)
on centre distances, pairs farther apart than ``max_distance_mm`` (2.5 mm) never match. Axis
errors are the angles between the lines (0-90 deg: a seed has no head or tail).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class SeedScore:
    """Detection and accuracy of a set of found seeds against the truth."""

    n_true: int
    n_found: int
    n_matched: int
    detection_rate: float            # matched / true
    false_positive_rate: float       # unmatched found / found
    rms_inplane_mm: float
    rms_axial_mm: float
    rms_3d_mm: float
    axis_median_deg: float
    axis_p95_deg: float
    matched_true: tuple[int, ...]
    matched_found: tuple[int, ...]

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("matched_true")
        d.pop("matched_found")
        return d


def axis_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between lines (deg, 0..90) of unit vectors row by row."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.abs(np.einsum("ij,ij->i", a, b)), 0.0, 1.0)))


def match_seeds(true_mm: np.ndarray, found_mm: np.ndarray, max_distance_mm: float = 2.5):
    """Index pairs (true, found) of the one-to-one matching within ``max_distance_mm``."""
    t = np.asarray(true_mm, float).reshape(-1, 3)
    f = np.asarray(found_mm, float).reshape(-1, 3)
    if not len(t) or not len(f):
        return np.zeros(0, int), np.zeros(0, int)
    d = np.linalg.norm(t[:, None, :] - f[None, :, :], axis=2)
    cost = np.where(d <= max_distance_mm, d, 1e6)
    r, c = linear_sum_assignment(cost)
    ok = d[r, c] <= max_distance_mm
    return r[ok], c[ok]


def score_seeds(true_mm, true_dirs, found_mm, found_dirs, max_distance_mm: float = 2.5) -> SeedScore:
    """Detection rate, false positives, RMS position errors (in-plane, axial) and axis errors."""
    true_mm = np.asarray(true_mm, float).reshape(-1, 3)
    found_mm = np.asarray(found_mm, float).reshape(-1, 3)
    r, c = match_seeds(true_mm, found_mm, max_distance_mm)
    n_t, n_f, n_m = len(true_mm), len(found_mm), len(r)
    if n_m:
        d = found_mm[c] - true_mm[r]
        rin = float(np.sqrt(np.mean(d[:, 0] ** 2 + d[:, 1] ** 2)))
        rz = float(np.sqrt(np.mean(d[:, 2] ** 2)))
        r3 = float(np.sqrt(np.mean((d ** 2).sum(1))))
        ang = axis_angle_deg(np.asarray(true_dirs, float).reshape(-1, 3)[r], np.asarray(found_dirs, float).reshape(-1, 3)[c])
        med, p95 = float(np.median(ang)), float(np.percentile(ang, 95))
    else:
        rin = rz = r3 = med = p95 = float("nan")
    return SeedScore(n_true=n_t, n_found=n_f, n_matched=n_m, detection_rate=n_m / max(n_t, 1),
                     false_positive_rate=(n_f - n_m) / max(n_f, 1), rms_inplane_mm=rin, rms_axial_mm=rz,
                     rms_3d_mm=r3, axis_median_deg=med, axis_p95_deg=p95,
                     matched_true=tuple(int(i) for i in r), matched_found=tuple(int(i) for i in c))
