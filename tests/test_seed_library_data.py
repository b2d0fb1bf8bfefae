"""Every shipped seed model has its commissioning data, made for exactly that model.

A patient run converts dose per history to dose per U with the S_K stored in
configs/tg43/MODEL.brachymc.json only when the stored fingerprint matches the model (else it
recomputes S_K); these tests make a seed-model edit without a new validation run visible in CI.
"""

import json
from pathlib import Path

import pytest

from brachymc import default_library
from brachymc.geometry.seed import load_builtin_seed
from brachymc.geometry.seed import model_fingerprint
from brachymc.mc.air_kerma import air_kerma_per_history
from brachymc.tg43.shipped import load_tg43_dataset, tg43_dir

SEEDS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs" / "seeds").glob("*.toml"))


def test_the_four_models_are_shipped():
    assert SEEDS == ["best_2301", "isoseed_i25s06", "oncoseed_6711", "oncoseed_6711_nrc"]


@pytest.mark.parametrize("key", SEEDS)
def test_stored_dataset_matches_the_model(key):
    model = load_builtin_seed(key, default_library())
    data = json.loads((tg43_dir() / f"{key}.brachymc.json").read_text())
    assert data["seed"] == key
    assert data["extra"]["model_fingerprint"] == model_fingerprint(model), \
        f"{key}: seed model changed since its validation run; rerun brachymc validate tg43 and update configs/tg43"
    sk = air_kerma_per_history(model)
    assert sk.provenance.startswith(f"{key}.brachymc.json") and sk.value == data["sk_per_history_Gy_cm2"]
    ds = load_tg43_dataset(key, "brachymc")
    assert ds.dose_rate_constant == pytest.approx(data["lambda_cGy_per_h_per_U"], rel=1e-12)
    # Lambda in the dataset is the one of docs/validation (same run)
    doc = json.loads((Path(__file__).resolve().parents[1] / "docs" / "validation" / key / f"tg43_{key}.json").read_text())
    assert doc["lambda_cGy_per_h_per_U"] == pytest.approx(data["lambda_cGy_per_h_per_U"], rel=1e-12)
