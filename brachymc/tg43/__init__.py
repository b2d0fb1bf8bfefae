"""TG-43 dose engine: AAPM TG-43U1 (Rivard et al., Med Phys 31 (2004) 633) seed dose rates in water.

* :class:`TG43Dataset` -- a seed model's Lambda, L, g_L, g_P, F, phi_an, read from the reference CSVs
  (:meth:`TG43Dataset.from_reference_csv`) or from JSON (:meth:`TG43Dataset.from_json`, also the form in
  which brachymc's Monte Carlo characterisation saves its results), with the TG-43U1 interpolation rules.
* :func:`dose_rate_at_points`, :func:`dose_rate_on_grid`, :func:`dose_rate_polar` -- dose rates in cGy/h
  for seeds of air-kerma strength S_K (U), in the 2D, 1D-point or 1D-line formalism.

Units: cm, degrees, U = uGy m^2 h^-1 = cGy cm^2 h^-1, cGy/h.
"""

from brachymc.tg43.dataset import (
    R0_CM,
    REFERENCE_MODELS,
    THETA0_DEG,
    TG43DataError,
    TG43Dataset,
    TG43Error,
    TG43InputError,
)
from brachymc.tg43.dose import (
    DEFAULT_MIN_DISTANCE_CM,
    FORMALISMS,
    dose_rate_at_points,
    dose_rate_on_grid,
    dose_rate_polar,
    geometry_factor_line,
    geometry_factor_point,
    voxel_centers,
)

__all__ = [
    "TG43Dataset",
    "TG43Error",
    "TG43DataError",
    "TG43InputError",
    "REFERENCE_MODELS",
    "R0_CM",
    "THETA0_DEG",
    "FORMALISMS",
    "DEFAULT_MIN_DISTANCE_CM",
    "geometry_factor_line",
    "geometry_factor_point",
    "dose_rate_polar",
    "dose_rate_at_points",
    "dose_rate_on_grid",
    "voxel_centers",
]
