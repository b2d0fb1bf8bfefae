"""Per-model data a patient run needs: air-kerma strength per history and TG-43 datasets.

``configs/tg43/<model>.brachymc.json`` holds brachymc's own commissioning result for each shipped
seed model (``brachymc validate tg43``; 2e7 histories, see ``docs/validation``): S_K per history
(Gy cm2 per history) and the MC-derived TG-43 dataset. ``configs/tg43/<model>.tg43u1.json`` holds
the AAPM TG-43U1 consensus dataset (Rivard et al., Med Phys 31 (2004) 633) where one exists: what a
planning system uses.

The stored S_K is used only while the seed model is unchanged: each file records a fingerprint of
the model (solids, active regions, spectrum); if the model differs, S_K is computed again
(:func:`brachymc.sources.air_kerma.cached_air_kerma_strength`, cached on disk).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from brachymc._paths import config_dir
from brachymc.errors import ConfigError
from brachymc.geometry.seed import SeedModel
from brachymc.tg43 import TG43Dataset

log = logging.getLogger(__name__)

DATASET_KINDS = ("tg43u1", "brachymc")


@dataclass(frozen=True)
class AirKermaPerHistory:
    """S_K per history (Gy cm2 / history), its relative standard error and where it comes from."""

    value: float
    rel_unc: float
    provenance: str


def tg43_dir() -> Path:
    return config_dir() / "tg43"


def model_fingerprint(model: SeedModel) -> str:
    """Hash of what determines a seed's dose per history: solids, active regions and spectrum."""
    payload = json.dumps({"solids": [asdict(s) for s in model.solids], "active": [asdict(a) for a in model.active],
                          "spectrum": model.spectrum}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


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


def air_kerma_per_history(model: SeedModel, source: str = "library", histories: int = 4_000_000,
                          backend: str = "auto") -> AirKermaPerHistory:
    """S_K per history of ``model``: stored commissioning value if the model is unchanged, else computed."""
    if source not in ("library", "compute"):
        raise ConfigError(f"air-kerma strength source must be 'library' or 'compute', got {source!r}")
    if source == "library":
        p = tg43_dir() / f"{model.key}.brachymc.json"
        if p.is_file():
            data = json.loads(p.read_text())
            stored = data.get("extra", {}).get("model_fingerprint")
            if stored == model_fingerprint(model):
                return AirKermaPerHistory(float(data["sk_per_history_Gy_cm2"]), float(data["sk_rel_unc"]),
                                          f"{p.name} ({data['settings']['sk_histories']:.3g} histories, "
                                          f"brachymc {data.get('version', '?')})")
            log.warning("%s was computed for another version of seed model %s; computing S_K again", p, model.key)
        else:
            log.info("no stored S_K for seed model %s; computing it", model.key)
    from brachymc.sources.air_kerma import cached_air_kerma_strength

    res = cached_air_kerma_strength(model, histories=histories, backend=backend)
    return AirKermaPerHistory(res.sk_per_history_Gy_cm2, res.rel_unc,
                              f"computed in vacuo ({res.histories:.3g} histories, cached)")
