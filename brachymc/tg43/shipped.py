"""TG-43 datasets shipped per seed model (``configs/tg43/``).

``configs/tg43/<model>.tg43u1.json`` holds the AAPM TG-43U1 consensus dataset (Rivard et al., Med
Phys 31 (2004) 633) where one exists: what a planning system uses. ``configs/tg43/<model>.brachymc.json``
holds brachymc's own commissioning result for the model (``brachymc validate tg43``; see
``docs/validation``): the MC-derived TG-43 dataset and the air-kerma strength per history
(read by :func:`brachymc.mc.air_kerma.air_kerma_per_history`).
"""

from __future__ import annotations

from pathlib import Path

from brachymc._paths import config_dir
from brachymc.errors import ConfigError
from brachymc.tg43.dataset import TG43Dataset

DATASET_KINDS = ("tg43u1", "brachymc")


def tg43_dir() -> Path:
    return config_dir() / "tg43"


def load_tg43_dataset(model_key: str, kind: str = "tg43u1") -> TG43Dataset:
    """A TG-43 dataset for ``model_key``: ``"tg43u1"`` (consensus), ``"brachymc"`` (own MC) or a JSON path."""
    if kind not in DATASET_KINDS:
        p = Path(kind)
        if not p.is_file():
            raise ConfigError(f"TG-43 dataset {kind!r}: not 'tg43u1', 'brachymc' or an existing JSON file")
        return TG43Dataset.from_json(p)
    p = tg43_dir() / f"{model_key}.{kind}.json"
    if not p.is_file():
        have = sorted(x.name for x in tg43_dir().glob(f"{model_key}.*.json"))
        raise ConfigError(f"no {kind} TG-43 dataset for seed model {model_key!r} (have: {', '.join(have) or 'none'}); "
                          "give a JSON file path instead")
    return TG43Dataset.from_json(p)


def brachymc_lambda(model_key: str) -> tuple[float, float | None] | None:
    """brachymc's own Monte Carlo dose-rate constant of a shipped model: (Lambda in cGy h-1 U-1,
    its relative standard uncertainty or None); None when the model has no commissioning result."""
    import json

    p = tg43_dir() / f"{model_key}.brachymc.json"
    if not p.is_file():
        return None
    try:
        d = json.loads(p.read_text())
        lam = float(d["lambda_cGy_per_h_per_U"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{p}: no dose-rate constant ({exc})") from None
    unc = d.get("lambda_rel_unc")
    return lam, float(unc) if unc is not None else None
