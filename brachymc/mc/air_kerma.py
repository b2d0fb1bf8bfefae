"""Air-kerma strength per history of a seed model (in vacuo, 10 cm, 5 keV cutoff), with a cache.

A patient run takes S_K per history from the model's stored commissioning result
(``configs/tg43/<model>.brachymc.json``) while the model is unchanged (its fingerprint matches),
and computes it otherwise (:func:`air_kerma_per_history`).

S_K per history converts Monte Carlo dose per history into dose per unit air-kerma strength:
D (Gy per U h) = D_per_history / S_K_per_history (Gy cm2) x 1e-2 (1 U = 1e-2 Gy cm2 h-1); see
:class:`~brachymc.geometry.single_seed.AirKermaScorer` for how the air kerma is scored and why.
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
from brachymc.errors import ConfigError
from brachymc.geometry.seed import SeedModel, model_fingerprint
from brachymc.geometry.single_seed import SingleSeedWorld
from brachymc.mc import interactions as ia
from brachymc.files import atomic_path
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.physics import TABLE_VERSION, PhysicsSettings
from brachymc.mc.transport import TransportSettings, make_transport
from brachymc.sources.seed_source import SeedSource
from brachymc.tg43.shipped import tg43_dir

log = logging.getLogger(__name__)


class AirKermaScorer:
    """Air kerma in vacuo at ``distance_cm`` on the seed's transverse axis (for S_K).

    Photons leaving a vacuum :class:`SingleSeedWorld` travel on straight lines. Each one is followed to
    the cylinder of radius ``distance_cm`` about the seed axis; those crossing it within
    ``|z| <= half_height_cm`` of the transverse plane contribute w E (mu_en/rho)_air(E) / (A cos a)
    to the air kerma (planar fluence -> fluence with the crossing angle a; A = 4 pi d h), for
    E >= ``cutoff_kev`` (5 keV, TG-43U1). This is the point-detector idea without the variance of a
    next-event estimator: in vacuo the fluence through a thin band of the cylinder is exactly the
    fluence at the transverse point, averaged over +-h (about 1.4 deg at h = 0.25 cm, d = 10 cm) and
    over azimuth (the seed is axially symmetric). Air-kerma strength S_K = K_air(d) d^2.
    """

    def __init__(self, world: SingleSeedWorld, tables, distance_cm: float = 10.0, half_height_cm: float = 0.25,
                 cutoff_kev: float = 5.0):
        self.world = world
        self.tables = tables  # DeviceTables
        self.d = float(distance_cm)
        self.h = float(half_height_cm)
        self.cutoff = float(cutoff_kev)
        self.air_index = 0  # the world's medium slot holds air in vacuum mode

    @property
    def area(self) -> float:
        return 4.0 * np.pi * self.d * self.h

    def __call__(self, xp, b, escaped, sc) -> None:
        pos, d = b["pos"], b["dir"]
        e = b["e"]
        ok = escaped & (e >= self.cutoff)
        a = d[0] ** 2 + d[1] ** 2
        bq = pos[0] * d[0] + pos[1] * d[1]
        c = pos[0] ** 2 + pos[1] ** 2 - self.d * self.d
        disc = bq * bq - a * c
        good = ok & (a > 0) & (disc >= 0)
        t = (-bq + xp.sqrt(xp.where(good, disc, 0.0))) / xp.where(a > 0, a, 1.0)
        zh = pos[2] + t * d[2]
        xh, yh = pos[0] + t * d[0], pos[1] + t * d[1]
        cos_a = (xh * d[0] + yh * d[1]) / self.d
        hit = good & (xp.abs(zh) <= self.h) & (cos_a > 0)
        m = xp.full(e.shape, self.air_index, dtype=xp.int64)
        muen = ia.interp_log(self.tables.ln_muen, m, b["ie"], b["fe"], xp)
        contrib = xp.where(hit, b["wt"] * e * muen / xp.where(hit, cos_a, 1.0), 0.0)
        sc.extra["air_kerma_raw"] = sc.extra.get("air_kerma_raw", 0.0) + xp.sum(contrib)
        sc.extra["escaped_n"] = sc.extra.get("escaped_n", 0.0) + xp.sum(xp.where(escaped, b["wt"], 0.0))
        sc.extra["escaped_e"] = sc.extra.get("escaped_e", 0.0) + xp.sum(xp.where(escaped, b["wt"] * e, 0.0))
        sc.extra["escaped_n5"] = sc.extra.get("escaped_n5", 0.0) + xp.sum(xp.where(ok, b["wt"], 0.0))
        sc.extra["escaped_e5"] = sc.extra.get("escaped_e5", 0.0) + xp.sum(xp.where(ok, b["wt"] * e, 0.0))


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
                       seed_sequence: list | None = None, engine: str = "auto", threads: int = 0) -> AirKermaResult:
    """Run the seed in vacuo and score the air kerma at ``distance_cm`` on its transverse axis."""
    lib = default_library()
    be = get_backend(backend)
    src = SeedSource(model)
    ts = TransportSettings(bank_size=bank_size, engine=engine, threads=threads)
    zlo, zhi, rs = model.bounds()
    rad = float(np.sqrt(max(zlo * zlo, zhi * zhi) + rs * rs)) + 0.01
    world = SingleSeedWorld(model, lib, None, radius_cm=rad, r_edges=[rad * 0.999, rad], cos_edges=[-1.0, 1.0],
                      backend=be, volume_samples=10_000)
    tables = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=ts.cutoff_kev))
    tr = make_transport(world, tables, be, ts)
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
        sc = tr.run_batch(src, per, children[b], on_progress=bar.update if bar else None)
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
                  "engine": tr.engine,
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


@dataclass(frozen=True)
class AirKermaPerHistory:
    """S_K per history (Gy cm2 / history), its relative standard error and where it comes from."""

    value: float
    rel_unc: float
    provenance: str


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
    res = cached_air_kerma_strength(model, histories=histories, backend=backend)
    return AirKermaPerHistory(res.sk_per_history_Gy_cm2, res.rel_unc,
                              f"computed in vacuo ({res.histories:.3g} histories, cached)")
