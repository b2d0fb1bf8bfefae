"""Air-kerma strength per history of a seed model (in vacuo, 10 cm, 5 keV cutoff), with a cache.

S_K per history converts Monte Carlo dose per history into dose per unit air-kerma strength:
D (Gy per U h) = D_per_history / S_K_per_history (Gy cm2) x 1e-2 (1 U = 1e-2 Gy cm2 h-1); see
:class:`~brachymc.geometry.seed_world.AirKermaScorer` for how the air kerma is scored and why.
Results are cached per seed model (its solids and materials), spectrum, cutoff and size of run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass

import numpy as np

from brachymc import __version__, default_library
from brachymc._paths import cache_dir
from brachymc.backend import get_backend
from brachymc.constants import KEV_PER_G_TO_GY
from brachymc.geometry.seed import SeedModel
from brachymc.geometry.seed_world import AirKermaScorer, SeedWorld
from brachymc.io.atomic import atomic_path
from brachymc.io.tables_cache import load_or_build_tables
from brachymc.mc.physics import TABLE_VERSION, PhysicsSettings
from brachymc.mc.transport import Transport, TransportSettings
from brachymc.sources.seed_source import SeedSource

log = logging.getLogger(__name__)


@dataclass
class AirKermaResult:
    """S_K per history (Gy cm2) with its batch values, and the spectrum leaving the seed."""

    seed: str
    spectrum: str
    sk_per_history_Gy_cm2: float
    rel_unc: float
    batch_values: list
    mean_energy_leaving_kev: float
    mean_energy_leaving_5kev_kev: float
    histories: int
    settings: dict
    version: str = __version__


def air_kerma_strength(model: SeedModel, histories: int = 4_000_000, batches: int = 10, seed: int = 5,
                       backend: str = "auto", bank_size: int = 1 << 16, distance_cm: float = 10.0,
                       half_height_cm: float = 0.25, cutoff_kev: float = 5.0, progress: bool = False,
                       seed_sequence: list | None = None) -> AirKermaResult:
    """Run the seed in vacuo and score the air kerma at ``distance_cm`` on its transverse axis."""
    lib = default_library()
    be = get_backend(backend)
    src = SeedSource(model)
    ts = TransportSettings(bank_size=bank_size)
    zlo, zhi, rs = model.bounds()
    rad = float(np.sqrt(max(zlo * zlo, zhi * zhi) + rs * rs)) + 0.01
    world = SeedWorld(model, lib, None, radius_cm=rad, r_edges=[rad * 0.999, rad], cos_edges=[-1.0, 1.0],
                      backend=be, volume_samples=10_000)
    tables = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=ts.cutoff_kev))
    tr = Transport(world, tables, be, ts)
    scorer = AirKermaScorer(world, tr.tables, distance_cm, half_height_cm, cutoff_kev)
    world.score_escape = scorer
    per = -(-int(histories) // batches)
    children = seed_sequence or np.random.SeedSequence(seed).spawn(batches)
    sk, e_all, e_5 = [], [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=per * batches, unit="hist", unit_scale=True, desc=f"{model.key} in vacuo")
    for b in range(batches):
        sc = tr.run_batch(src, per, be.rng(children[b]), on_progress=bar.update if bar else None)
        k_air = float(sc.extra.get("air_kerma_raw", 0.0)) / scorer.area / per * KEV_PER_G_TO_GY  # Gy/history
        sk.append(k_air * scorer.d**2)
        e_all.append(float(sc.extra["escaped_e"]) / max(float(sc.extra["escaped_n"]), 1e-300))
        e_5.append(float(sc.extra["escaped_e5"]) / max(float(sc.extra["escaped_n5"]), 1e-300))
    if bar:
        bar.close()
    sk = np.array(sk)
    return AirKermaResult(
        seed=model.key, spectrum=src.spectrum.name, sk_per_history_Gy_cm2=float(sk.mean()),
        rel_unc=float(sk.std(ddof=1) / np.sqrt(len(sk)) / sk.mean()), batch_values=sk.tolist(),
        mean_energy_leaving_kev=float(np.mean(e_all)), mean_energy_leaving_5kev_kev=float(np.mean(e_5)),
        histories=per * batches,
        settings={"distance_cm": scorer.d, "half_height_cm": scorer.h, "cutoff_kev": scorer.cutoff,
                  "transport_cutoff_kev": ts.cutoff_kev, "batches": batches, "seed": seed, "backend": be.name},
    )


def _key(model: SeedModel, histories: int, spectrum: str) -> str:
    payload = json.dumps({"solids": [asdict(s) for s in model.solids], "active": [asdict(a) for a in model.active],
                          "spectrum": spectrum, "histories": histories, "tables": TABLE_VERSION,
                          "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def cached_air_kerma_strength(model: SeedModel, histories: int = 4_000_000, cache: bool = True,
                              **kwargs) -> AirKermaResult:
    """:func:`air_kerma_strength`, read from / written to the cache folder when ``cache``."""
    key = _key(model, histories, model.spectrum)
    path = cache_dir() / f"sk-{model.key}-{key}.json"
    if cache and path.exists():
        try:
            return AirKermaResult(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            log.warning("ignoring unreadable S_K cache %s (%s)", path, exc)
    res = air_kerma_strength(model, histories, **kwargs)
    if cache:
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(asdict(res)))
        except OSError as exc:
            log.warning("cannot write S_K cache %s (%s)", path, exc)
    return res
