"""Air-kerma strength per history of a seed model (in vacuo, 10 cm, 5 keV cutoff), with a cache.

A patient run takes S_K per history from the model's stored commissioning result
(``configs/tg43/<model>.brachymc.json``) while the model is unchanged (its fingerprint matches)
and the result was scored with the current detector definition, and computes it otherwise
(:func:`air_kerma_per_history`).

S_K per history converts Monte Carlo dose per history into dose per unit air-kerma strength:
D (Gy per U h) = D_per_history / S_K_per_history (Gy cm2) x 1e-2 (1 U = 1e-2 Gy cm2 h-1).

**What is scored.** The air-kerma strength of a low-energy seed is what the NIST Wide-Angle
Free-Air Chamber (WAFAC) measures, to which clinical calibrations are traceable: the air kerma
averaged over an aperture that subtends 7.6 deg (half-angle) at the seed, corrected to the
transverse axis by the inverse square (k_r2) of an isotropic point source (TG-43U1, Rivard et al.,
Med Phys 31 (2004) 633; Seltzer et al., J Res NIST 108 (2003) 337). CLRP scores it the same way
in a 2.66 x 2.66 x 0.05 cm3 air voxel at 10 cm with k_r2 = 1.0168 (Safigholi et al., Med Phys 47
(2020) 4656; the S_K per history in the egs_brachy .geom headers is that value). For seeds whose
emission is not flat within +-7.6 deg of the transverse plane (the OncoSeed 6711: the coated
bevelled ends of its silver rod are seen from off the plane) this differs from a point detector on
the axis (6711: +1.2 %), so the detector is part of the definition: :data:`DETECTORS`, default
``"wafac"`` (the NIST aperture, a disc of radius 4/3 cm at 10 cm). See :class:`AirKermaScorer` for
the estimator and docs/physics.md for the checks (an isotropic point source gives the analytic
value; a next-event point-detector estimator agrees within statistics,
``brachymc.validation.sk_check``).

Results are cached per seed model (its solids and materials), spectrum, detector and size of run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field

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


#: Version of the S_K estimator; stored with each result (a stored S_K scored otherwise is recomputed).
SK_SCORER_VERSION = 2


@dataclass(frozen=True)
class AirKermaDetector:
    """An in-vacuo air-kerma detector for S_K, as seen from an axially symmetric seed.

    ``shape`` "disc" (radius ``half_width_cm``) or "square" (half-side ``half_width_cm``): a plane
    aperture facing the seed at ``distance_cm`` on the transverse axis, the air kerma averaged
    over its face and corrected to the axis by the inverse square from the seed centre (k_r2 of an
    isotropic point source, as CLRP and NIST do). "band": a band |z| <= ``half_width_cm`` of the
    cylinder of radius ``distance_cm`` about the seed axis, each crossing corrected to the axis by
    (d^2 + z^2) / d^2 (the scorer before version 2, which lacked that correction).

    By the seed's axial symmetry each detector is a weighting of the emission over the elevation
    beta (angle from the transverse plane, seen from the seed centre): S = int S(beta) g(beta)
    dbeta, with S(beta) the S_K an isotropic point source would need to give the same air kerma
    in that direction, and g(beta) the normalised density :meth:`elevation_density`. For a plane
    aperture g(beta) is proportional to int dy / sqrt(d^2 + y^2) along the line of the aperture
    at elevation beta (the inverse-square weights 1/rho^2 of the face, in coordinates (y, beta)):
    asinh(Y(beta) / d), Y the half-length of that line.
    """

    name: str
    shape: str
    half_width_cm: float
    distance_cm: float = 10.0

    def __post_init__(self):
        if self.shape not in ("disc", "square", "band"):
            raise ConfigError(f"S_K detector {self.name!r}: shape must be disc, square or band, got {self.shape!r}")
        if not (0 < self.half_width_cm < self.distance_cm):
            raise ConfigError(f"S_K detector {self.name!r}: need 0 < half_width_cm < distance_cm")

    @property
    def beta_max(self) -> float:
        """Largest elevation (rad) the detector sees."""
        return float(np.arctan(self.half_width_cm / self.distance_cm))

    def _density_unnormalised(self, xp, beta):
        d, a = self.distance_cm, self.half_width_cm
        t = xp.tan(xp.abs(beta))
        inside = d * t <= a
        if self.shape == "band":
            return xp.where(inside, 1.0 + t * t, 0.0)
        if self.shape == "disc":
            y = xp.cos(beta) * xp.sqrt(xp.maximum(a * a - (d * t) ** 2, 0.0))
        else:
            y = xp.minimum(a, xp.sqrt(xp.maximum(a * a / xp.maximum(t * t, 1e-300) - d * d, 0.0)))
        return xp.where(inside, xp.arcsinh(y / d), 0.0)

    @property
    def _norm(self) -> float:
        b = np.linspace(-self.beta_max, self.beta_max, 200_001)
        return float(np.trapezoid(self._density_unnormalised(np, b), b))

    def elevation_density(self, xp, beta):
        """g(beta) (1/rad), normalised to 1 over [-beta_max, beta_max]."""
        norm = self.__dict__.get("_norm_cache")
        if norm is None:
            norm = self._norm
            object.__setattr__(self, "_norm_cache", norm)
        return self._density_unnormalised(xp, beta) / norm

    def sample_elevation(self, rng, n: int) -> np.ndarray:
        """Elevations (rad) drawn from g(beta) (inverse CDF on a fine table; for estimators)."""
        b = np.linspace(-self.beta_max, self.beta_max, 20_001)
        g = self._density_unnormalised(np, b)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]) * np.diff(b))])
        return np.interp(rng.random(n) * cdf[-1], cdf, b)

    def describe(self) -> dict:
        return {"name": self.name, "shape": self.shape, "half_width_cm": self.half_width_cm,
                "distance_cm": self.distance_cm, "beta_max_deg": float(np.degrees(self.beta_max))}


#: Detectors scored by every S_K run. ``wafac``: the NIST WAFAC aperture (7.6 deg half-angle: a disc
#: of radius 4/3 cm at 10 cm, the same solid angle as its 8 cm aperture at 30 cm; Safigholi et al.
#: 2020, sec. 2.A.1); ``clrp_wafac`` / ``clrp_point``: CLRP's 2.66 x 2.66 and 0.1 x 0.1 cm2 voxels at
#: 10 cm (front faces; Safigholi et al. 2020, sec. 2.A); ``band``: +-0.25 cm of the 10 cm cylinder.
DETECTORS = {
    "wafac": AirKermaDetector("wafac", "disc", 4.0 / 3.0),
    "clrp_wafac": AirKermaDetector("clrp_wafac", "square", 1.33),
    "clrp_point": AirKermaDetector("clrp_point", "square", 0.05),
    "band": AirKermaDetector("band", "band", 0.25),
}
DEFAULT_DETECTOR = "wafac"


def get_detector(detector: "AirKermaDetector | str") -> AirKermaDetector:
    if isinstance(detector, AirKermaDetector):
        return detector
    if detector not in DETECTORS:
        raise ConfigError(f"unknown S_K detector {detector!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[detector]


class AirKermaScorer:
    """Air kerma in vacuo for S_K, for one or more :class:`AirKermaDetector` (an escape hook).

    Photons leaving a vacuum :class:`SingleSeedWorld` travel on straight lines. Each one with
    E >= ``cutoff_kev`` (5 keV, TG-43U1: excludes the Ti K x-rays) is followed to the cylinder of
    radius d about the seed axis; crossing it at height z (elevation beta = atan(z/d)) with angle
    a to the cylinder's normal, it adds

        w E (mu_en/rho)_air(E) / cos(a) x g(beta) / (2 pi)

    to S (keV cm2/g per history after dividing by the histories; x 1.602e-13 -> Gy cm2). This is
    the track-length (surface-crossing) estimator of the fluence on the cylinder, converted to
    the isotropic-equivalent S(beta) by the inverse square to the seed centre and weighted with
    the detector's elevation density g; for an isotropic point source it gives exactly
    sum_i p_i E_i (mu_en/rho)_air(E_i) / (4 pi) whatever the detector. Also tallies the number and
    energy of escaping photons (all, and >= the cutoff) and the primary part of each S.
    """

    def __init__(self, world: SingleSeedWorld, tables, detectors=(DEFAULT_DETECTOR,), cutoff_kev: float = 5.0):
        self.world = world
        self.tables = tables  # DeviceTables
        self.detectors = tuple(get_detector(d) for d in detectors)
        self.cutoff = float(cutoff_kev)
        self.air_index = 0  # the world's medium slot holds air in vacuum mode

    def contributions(self, xp, b, escaped):
        """Per-photon contributions (keV cm2/g) to S for each detector, as a list of arrays."""
        pos, d = b["pos"], b["dir"]
        e = b["e"]
        ok = escaped & (e >= self.cutoff)
        m = xp.full(e.shape, self.air_index, dtype=xp.int64)
        muen = ia.interp_log(self.tables.ln_muen, m, b["ie"], b["fe"], xp)
        a = d[0] ** 2 + d[1] ** 2
        bq = pos[0] * d[0] + pos[1] * d[1]
        out = []
        for det in self.detectors:
            c = pos[0] ** 2 + pos[1] ** 2 - det.distance_cm ** 2
            disc = bq * bq - a * c
            good = ok & (a > 0) & (disc >= 0)
            t = (-bq + xp.sqrt(xp.where(good, disc, 0.0))) / xp.where(a > 0, a, 1.0)
            zh = pos[2] + t * d[2]
            xh, yh = pos[0] + t * d[0], pos[1] + t * d[1]
            cos_a = (xh * d[0] + yh * d[1]) / det.distance_cm
            hit = good & (cos_a > 0) & (xp.abs(zh) <= det.half_width_cm * 1.0000001 + 1e-12)
            g = det.elevation_density(xp, xp.arctan(zh / det.distance_cm))
            out.append(xp.where(hit, b["wt"] * e * muen * g / (2.0 * np.pi) / xp.where(hit, cos_a, 1.0), 0.0))
        return out

    def __call__(self, xp, b, escaped, sc) -> None:
        for det, contrib in zip(self.detectors, self.contributions(xp, b, escaped)):
            k = f"air_kerma_raw:{det.name}"
            sc.extra[k] = sc.extra.get(k, 0.0) + xp.sum(contrib)
            k = f"air_kerma_primary_raw:{det.name}"
            sc.extra[k] = sc.extra.get(k, 0.0) + xp.sum(xp.where(b["scat"], 0.0, contrib))
        ok = escaped & (b["e"] >= self.cutoff)
        for k, v in (("escaped_n", xp.where(escaped, b["wt"], 0.0)), ("escaped_e", xp.where(escaped, b["wt"] * b["e"], 0.0)),
                     ("escaped_n5", xp.where(ok, b["wt"], 0.0)), ("escaped_e5", xp.where(ok, b["wt"] * b["e"], 0.0))):
            sc.extra[k] = sc.extra.get(k, 0.0) + xp.sum(v)


@dataclass
class AirKermaResult:
    """S_K per history (Gy cm2) for the main detector with its batch values, every detector's S_K
    (``by_detector``: name -> {value, rel_unc, primary, batch_values}), and the spectrum leaving the seed."""

    seed: str
    spectrum: str
    sk_per_history_Gy_cm2: float
    rel_unc: float
    batch_values: list
    mean_energy_leaving_kev: float
    mean_energy_leaving_5kev_kev: float
    histories: int
    settings: dict
    by_detector: dict = field(default_factory=dict)
    version: str = __version__


def vacuum_world(model: SeedModel, library, backend) -> SingleSeedWorld:
    """The seed alone in vacuo (a sphere just enclosing it; one dummy scoring shell)."""
    zlo, zhi, rs = model.bounds()
    rad = float(np.sqrt(max(zlo * zlo, zhi * zhi) + rs * rs)) + 0.01
    return SingleSeedWorld(model, library, None, radius_cm=rad, r_edges=[rad * 0.999, rad], cos_edges=[-1.0, 1.0],
                           backend=backend, volume_samples=10_000)


def air_kerma_strength(model: SeedModel, histories: int = 4_000_000, batches: int = 10, seed: int = 5,
                       backend: str = "auto", bank_size: int = 1 << 16, detector: "AirKermaDetector | str" = DEFAULT_DETECTOR,
                       cutoff_kev: float = 5.0, progress: bool = False, seed_sequence: list | None = None,
                       library=None, engine: str = "auto", threads: int = 0) -> AirKermaResult:
    """Run the seed in vacuo and score S_K for ``detector`` (and every detector of :data:`DETECTORS`)."""
    lib = library or default_library()
    be = get_backend(backend)
    src = SeedSource(model)
    ts = TransportSettings(bank_size=bank_size, engine=engine, threads=threads)
    world = vacuum_world(model, lib, be)
    tables = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=ts.cutoff_kev))
    tr = make_transport(world, tables, be, ts)
    main = get_detector(detector)
    dets = (main,) + tuple(d for k, d in DETECTORS.items() if k != main.name)
    scorer = AirKermaScorer(world, tr.tables, dets, cutoff_kev)
    world.score_escape = scorer
    per = -(-int(histories) // batches)
    children = seed_sequence or np.random.SeedSequence(seed).spawn(batches)
    sk = {d.name: [] for d in dets}
    skp = {d.name: [] for d in dets}
    e_all, e_5 = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=per * batches, unit="hist", unit_scale=True, desc=f"{model.key} in vacuo")
    for b in range(batches):
        sc = tr.run_batch(src, per, children[b], on_progress=bar.update if bar else None)
        for d in dets:
            sk[d.name].append(float(sc.extra.get(f"air_kerma_raw:{d.name}", 0.0)) / per * KEV_PER_G_TO_GY)
            skp[d.name].append(float(sc.extra.get(f"air_kerma_primary_raw:{d.name}", 0.0)) / per * KEV_PER_G_TO_GY)
        e_all.append(float(sc.extra["escaped_e"]) / max(float(sc.extra["escaped_n"]), 1e-300))
        e_5.append(float(sc.extra["escaped_e5"]) / max(float(sc.extra["escaped_n5"]), 1e-300))
    if bar:
        bar.close()

    def stat(v):
        v = np.asarray(v)
        return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)) / v.mean()) if v.mean() > 0 else float("inf")

    by = {}
    for d in dets:
        m_, u_ = stat(sk[d.name])
        by[d.name] = {"value": m_, "rel_unc": u_, "primary": float(np.mean(skp[d.name])), "batch_values": sk[d.name],
                      "detector": d.describe()}
    return AirKermaResult(
        seed=model.key, spectrum=src.spectrum.name, sk_per_history_Gy_cm2=by[main.name]["value"],
        rel_unc=by[main.name]["rel_unc"], batch_values=sk[main.name],
        mean_energy_leaving_kev=float(np.mean(e_all)), mean_energy_leaving_5kev_kev=float(np.mean(e_5)),
        histories=per * batches,
        settings={"detector": main.name, "detector_geometry": main.describe(), "distance_cm": main.distance_cm,
                  "cutoff_kev": scorer.cutoff, "transport_cutoff_kev": ts.cutoff_kev, "batches": batches,
                  "seed": seed, "backend": be.name, "scorer_version": SK_SCORER_VERSION, "engine": tr.engine},
        by_detector=by,
    )


def _key(model: SeedModel, histories: int, spectrum: str, detector: str) -> str:
    payload = json.dumps({"solids": [asdict(s) for s in model.solids], "active": [a.fingerprint_dict() for a in model.active],
                          "spectrum": spectrum, "histories": histories, "tables": TABLE_VERSION,
                          "detector": get_detector(detector).describe(), "scorer": SK_SCORER_VERSION,
                          "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def cached_air_kerma_strength(model: SeedModel, histories: int = 4_000_000, cache: bool = True,
                              **kwargs) -> AirKermaResult:
    """:func:`air_kerma_strength`, read from / written to the cache folder when ``cache``."""
    key = _key(model, histories, model.spectrum, kwargs.get("detector", DEFAULT_DETECTOR))
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


def stored_sk_is_current(data: dict) -> bool:
    """Whether a stored TG-43 result's S_K was scored with the current detector and estimator."""
    s = data.get("settings", {})
    return s.get("sk_detector") == DEFAULT_DETECTOR and s.get("sk_scorer_version") == SK_SCORER_VERSION


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
            if stored == model_fingerprint(model) and stored_sk_is_current(data):
                return AirKermaPerHistory(float(data["sk_per_history_Gy_cm2"]), float(data["sk_rel_unc"]),
                                          f"{p.name} ({data['settings']['sk_histories']:.3g} histories, "
                                          f"brachymc {data.get('version', '?')})")
            elif stored != model_fingerprint(model):
                log.warning("%s was computed for another version of seed model %s; computing S_K again", p, model.key)
            else:
                log.warning("%s: its S_K was scored with another detector or estimator (%s) than the current one "
                            "(%s, version %d); computing S_K again", p, data.get("settings", {}).get("sk_detector", "band"),
                            DEFAULT_DETECTOR, SK_SCORER_VERSION)
        else:
            log.info("no stored S_K for seed model %s; computing it", model.key)
    res = cached_air_kerma_strength(model, histories=histories, backend=backend)
    return AirKermaPerHistory(res.sk_per_history_Gy_cm2, res.rel_unc,
                              f"computed in vacuo ({res.histories:.3g} histories, cached)")
