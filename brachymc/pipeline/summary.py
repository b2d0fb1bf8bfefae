"""``summary.json`` of a patient run: strict JSON (null, never NaN) and what each dose is.

:func:`json_safe` turns NumPy scalars and arrays, paths, tuples and notes into plain JSON values
and every non-finite float into ``None``; :func:`write_json` writes with ``allow_nan=False`` (a
NaN that slipped through is an error, not an invalid file) and atomically.

:func:`dose_descriptions` says, for every dose a run writes, what quantity it is (the report
and ``summary.json`` print it beside the numbers).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path

import numpy as np

from brachymc.files import atomic_path
from brachymc.pipeline.notes import Note


def json_safe(obj):
    """``obj`` with plain JSON types only; NaN and infinities become None."""
    if isinstance(obj, Note):
        return json_safe(obj.to_json())
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def dumps(data) -> str:
    return json.dumps(json_safe(data), indent=1, allow_nan=False)


def write_json(path: Path, data) -> Path:
    """Strict JSON (see :func:`json_safe`), written atomically."""
    text = dumps(data) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def dose_descriptions(*, dose_to_water: bool, tg43_dataset, tg43_kind: str, formalism: str,
                      own_lambda: tuple[float, float | None] | None, model_name: str, dose_unit: str) -> dict:
    """What each dose of the run is: ``mc`` (Dm,m), ``mc_water`` (Dw,m, when computed), ``tg43``."""
    out = {
        "mc": {"quantity": "Dm,m", "name": "Monte Carlo dose to medium in medium",
               "description": "Monte Carlo dose to the local medium (HU -> media and densities), photons only, "
                              "collision kerma by track length (kerma approximation), every seed modelled",
               "unit": dose_unit},
    }
    if dose_to_water:
        out["mc_water"] = {"quantity": "Dw,m", "name": "Monte Carlo dose to water in medium",
                           "description": "the same photon fluence scored with the mass energy-absorption "
                                          "coefficient of water (TG-186 Dw,m)", "unit": dose_unit}
    lam = float(tg43_dataset.dose_rate_constant)
    own = None if own_lambda is None else {"lambda_cGy_per_h_per_U": own_lambda[0], "rel_unc": own_lambda[1]}
    out["tg43"] = {
        "quantity": "Dw,w", "name": "TG-43 dose to water in water",
        "description": f"TG-43 formalism ({formalism}), patient as water, no inter-seed attenuation, "
                       "averaged over each voxel",
        "dataset": tg43_kind, "dataset_source": tg43_dataset.source or tg43_dataset.name,
        "seed_model": model_name, "lambda_cGy_per_h_per_U": lam, "brachymc_mc_lambda": own,
        "lambda_vs_brachymc_percent": (100.0 * (lam / own_lambda[0] - 1.0) if own_lambda else None),
        "unit": dose_unit,
    }
    return out
