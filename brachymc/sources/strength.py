"""Source strength, decay and absolute dose for I-125 seeds.

Units: air-kerma strength S_K in U (1 U = 1 uGy m2 h-1 = 1 cGy cm2 h-1 = 1e-2 Gy cm2 h-1);
Monte Carlo results per history: dose D_h (Gy), air-kerma strength s_h (Gy cm2, see
:mod:`brachymc.mc.air_kerma`). A seed of strength S_K emits S_K x 1e-2 / s_h histories per
hour, so its dose rate is ``D_h x S_K x 1e-2 / s_h`` Gy/h.

Decay: I-125 half-life T1/2 = 59.40 d (TG-43U1), mean life tau = T1/2 / ln 2 = 2056.7 h. A
permanent implant delivers the initial dose rate x tau in total.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from brachymc.constants import I125_HALF_LIFE_DAYS
from brachymc.errors import ConfigError

#: AAPM TG-43 conversion of I-125 apparent activity to air-kerma strength (U per mCi).
U_PER_MCI_I125 = 1.270

#: Gy cm2 h-1 per U.
GY_CM2_PER_H_PER_U = 1e-2


def mean_life_hours(half_life_days: float = I125_HALF_LIFE_DAYS) -> float:
    """tau = T1/2 / ln 2, in hours (2056.7 h for I-125)."""
    if not half_life_days > 0:
        raise ConfigError(f"half-life must be > 0 days, got {half_life_days}")
    return half_life_days * 24.0 / np.log(2.0)


def apparent_activity_to_sk(mci: float | np.ndarray) -> np.ndarray:
    """Air-kerma strength (U) of I-125 seeds from apparent activity (mCi), TG-43 factor 1.270 U/mCi."""
    a = np.asarray(mci, float)
    if np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ConfigError(f"activity must be a finite non-negative number of mCi, got {mci}")
    return a * U_PER_MCI_I125


def decay_factor(hours: float | np.ndarray, half_life_days: float = I125_HALF_LIFE_DAYS) -> np.ndarray:
    """exp(-t / tau): the fraction of the strength left after ``hours``."""
    return np.exp(-np.asarray(hours, float) / mean_life_hours(half_life_days))


def hours_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600.0


def dose_rate_per_history_to_gy_per_h(dose_per_history, sk_per_history_gy_cm2: float, sk_U):
    """Dose rate (Gy/h) of a seed of strength ``sk_U`` (U) from its MC dose per history (Gy)."""
    if not sk_per_history_gy_cm2 > 0:
        raise ConfigError("air-kerma strength per history must be > 0")
    return np.asarray(dose_per_history) * np.asarray(sk_U) * GY_CM2_PER_H_PER_U / sk_per_history_gy_cm2


def permanent_implant_dose(initial_dose_rate_gy_per_h, half_life_days: float = I125_HALF_LIFE_DAYS):
    """Total dose (Gy) of a permanent implant: initial dose rate x mean life."""
    return np.asarray(initial_dose_rate_gy_per_h) * mean_life_hours(half_life_days)


def window_dose(initial_dose_rate_gy_per_h, start_h: float, end_h: float,
                half_life_days: float = I125_HALF_LIFE_DAYS):
    """Dose (Gy) delivered between ``start_h`` and ``end_h`` hours after implant."""
    if not 0 <= start_h <= end_h:
        raise ConfigError(f"dose window must satisfy 0 <= start <= end hours, got {start_h}..{end_h}")
    tau = mean_life_hours(half_life_days)
    return np.asarray(initial_dose_rate_gy_per_h) * tau * (np.exp(-start_h / tau) - np.exp(-end_h / tau))
