"""TG-43 source characterisation by Monte Carlo: S_K, Lambda, g_L, g_P, F, phi_an.

Two runs per seed model (Rivard et al., TG-43U1, Med Phys 31 (2004) 633; the CLRP database
method, Taylor & Rogers, Med Phys 35 (2008) 4228):

1. **In vacuo**: the seed alone, photons that leave it scored on a 10 cm cylinder band
   (:class:`~brachymc.geometry.single_seed.AirKermaScorer`) with a 5 keV cutoff -> air-kerma
   strength per history S_K (Gy cm2), and the mean energy of photons leaving the capsule.
2. **In water**: the seed at the centre of a water sphere of radius 15 cm, collision kerma scored
   on (r, theta) bins tight around the TG-43 radii and angles (relative radial half-width 2 %,
   angular half-width 0.5-2.5 deg) -> D(r, theta) per history, folded about theta = 90 deg.

Derived quantities (per batch, so that their uncertainties come from the batch spread):
Lambda = D(1 cm, 90) / S_K; g_L(r) = D(r, 90) G_L(1, 90) / (D(1, 90) G_L(r, 90)); g_P with
G_P = 1/r^2; F(r, theta) = D(r, theta) G_L(r, 90) / (D(r, 90) G_L(r, theta)); phi_an(r) = the
solid-angle average of D over the full shell / D(r, 90). Volume averaging over the bins changes
no value by more than 0.5 % at r >= 0.25 cm (relative width 2 %: 1/r^2 averaging ~0.01 %).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from brachymc import __version__, default_library
from brachymc.backend import get_backend
from brachymc.geometry.seed import SeedModel, model_fingerprint
from brachymc.geometry.single_seed import SingleSeedWorld
from brachymc.mc.air_kerma import air_kerma_strength
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.physics import PhysicsSettings
from brachymc.mc.tally import DoseTally
from brachymc.mc.transport import TransportSettings, make_transport
from brachymc.sources.seed_source import SeedSource
from brachymc.constants import KEV_PER_G_TO_GY

R_LIST = (0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)
F_R_LIST = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0)
THETA_LIST = (0, 1, 2, 3, 5, 7, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90)


def geometry_factor_line(r, theta_deg, length):
    """TG-43U1 line-source geometry function G_L(r, theta) (cm^-2)."""
    r = np.asarray(r, float)
    th = np.radians(np.asarray(theta_deg, float))
    x, z = r * np.sin(th), r * np.cos(th)
    half = length / 2.0
    on_axis = np.abs(np.sin(th)) < 1e-12
    beta = np.arctan2(z + half, x) - np.arctan2(z - half, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(on_axis, 1.0 / (r * r - half * half), beta / (length * np.where(on_axis, 1.0, x)))
    return g


@dataclass(frozen=True)
class TG43RunSettings:
    histories: int = 10_000_000          # water run
    sk_histories: int | None = None      # vacuum run (default: as many as the water run)
    batches: int = 10
    seed: int = 43
    backend: str = "auto"
    water_radius_cm: float = 15.0
    radial_half_width: float = 0.02      # relative
    bank_size: int = 1 << 16
    engine: str = "auto"                 # transport engine (mc/transport.py)
    threads: int = 0                     # CPU threads of the kernel engine (0: one per core)


def _bins(radial_half_width: float):
    """Radial and cos(theta) bin edges, and the bin of each requested radius / angle."""
    r_edges = sorted({round(r * (1 + s * radial_half_width), 9) for r in R_LIST for s in (-1, 1)})
    r_edges = np.array(r_edges)
    r_bin = {r: int(np.searchsorted(r_edges, r)) - 1 for r in R_LIST}

    def half_width(t):
        return 0.5 if t < 5 else (1.0 if t < 15 else 2.5)

    th_edges = {0.0, 90.0}
    for t in THETA_LIST:
        hw = half_width(t)
        th_edges.update({max(0.0, t - hw), min(90.0, t + hw)})
    th = np.array(sorted(th_edges))                  # 0 .. 90
    th_full = np.concatenate([th, 180.0 - th[::-1][1:]])
    cos_edges = np.cos(np.radians(th_full))[::-1].copy()   # ascending: -1 .. 1
    cos_edges[0], cos_edges[-1] = -1.0, 1.0
    # each requested angle: the bins (upper and mirrored lower hemisphere) covering [t - hw, t + hw]
    th_bins = {}
    for t in THETA_LIST:
        hw = half_width(t)
        lo, hi = np.cos(np.radians(min(90.0, t + hw))), np.cos(np.radians(max(0.0, t - hw)))
        upper = [k for k in range(cos_edges.size - 1) if cos_edges[k] >= lo - 1e-12 and cos_edges[k + 1] <= hi + 1e-12]
        lower = [k for k in range(cos_edges.size - 1) if cos_edges[k] >= -hi - 1e-12 and cos_edges[k + 1] <= -lo + 1e-12]
        th_bins[t] = sorted(set(upper + lower))
    return r_edges, cos_edges, r_bin, th_bins


@dataclass
class TG43Result:
    seed: str
    seed_name: str
    lambda_cGy_per_h_per_U: float
    lambda_rel_unc: float
    length_cm: float
    sk_per_history_Gy_cm2: float
    sk_rel_unc: float
    dose_1cm_90_Gy_per_history: float
    dose_1cm_90_rel_unc: float
    mean_energy_leaving_kev: float
    mean_energy_leaving_5kev_kev: float
    gL: dict
    gP: dict
    F: dict
    phi_an: dict
    settings: dict
    run_time_s: float
    device: str
    version: str = __version__
    extra: dict = field(default_factory=dict)

    def to_json(self, path) -> None:
        from brachymc.files import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def from_json(cls, path) -> "TG43Result":
        """Read a result written by :meth:`to_json` (e.g. to rebuild its report)."""
        from brachymc.errors import ConfigError

        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable TG-43 result JSON ({exc})") from exc
        names = {f.name for f in fields(cls)}
        if isinstance(data, dict) and "length_cm" not in data and "length_cm" in data.get("settings", {}):
            data["length_cm"] = data["settings"]["length_cm"]      # results written before 0.1.0 kept L there only
        missing = sorted(n for n in names if n not in data and n not in ("version", "extra"))
        if not isinstance(data, dict) or missing:
            raise ConfigError(f"{path}: not a brachymc TG-43 result (missing {', '.join(missing) or 'object'})")
        return cls(**{k: v for k, v in data.items() if k in names})


def _device_name(backend) -> str:
    if backend.name == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}), NumPy"


def run_tg43(model: SeedModel, settings: TG43RunSettings = TG43RunSettings(), progress: bool = False) -> TG43Result:
    """Characterise ``model`` in water and in vacuo; see the module docstring."""
    t0 = time.perf_counter()
    lib = default_library()
    backend = get_backend(settings.backend)
    src = SeedSource(model)
    ts = TransportSettings(bank_size=settings.bank_size, engine=settings.engine, threads=settings.threads)
    children = np.random.SeedSequence(settings.seed).spawn(2 * settings.batches)

    # ---- 1. in vacuo: S_K ------------------------------------------------------------------------
    n_sk = settings.sk_histories or settings.histories
    ak = air_kerma_strength(model, n_sk, batches=settings.batches, backend=settings.backend,
                            bank_size=settings.bank_size, progress=progress, engine=settings.engine,
                            threads=settings.threads,
                            seed_sequence=children[: settings.batches])
    sk_b = np.array(ak.batch_values)
    per_sk = ak.histories // settings.batches
    e_all, e_5 = [ak.mean_energy_leaving_kev], [ak.mean_energy_leaving_5kev_kev]
    bar = None

    # ---- 2. in water: D(r, theta) ----------------------------------------------------------------
    r_edges, cos_edges, r_bin, th_bins = _bins(settings.radial_half_width)
    world = SingleSeedWorld(model, lib, lib["water"], settings.water_radius_cm, r_edges, cos_edges, backend)
    tables_w = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=ts.cutoff_kev))
    tr_w = make_transport(world, tables_w, backend, ts)
    tally = DoseTally(backend, world.score_shape, world.score_volume)
    per = -(-settings.histories // settings.batches)
    vol = world.score_volume
    dose_b = []
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=per * settings.batches, unit="hist", unit_scale=True, desc=f"{model.key} in water")
    for b in range(settings.batches):
        sc = tr_w.run_batch(src, per, children[settings.batches + b],
                            on_progress=bar.update if bar else None)
        tally.add_batch({"dose": sc.kerma}, per)
        raw = backend.asnumpy(sc.kerma).reshape(world.score_shape)
        dose_b.append(raw / vol * KEV_PER_G_TO_GY / per)
    if bar:
        bar.close()
    dose_b = np.array(dose_b)                   # (B, n_r, n_c), Gy/history

    # ---- derived quantities per batch ----------------------------------------------------------
    with np.errstate(divide="ignore", invalid="ignore"):
        res = _derive(model, settings, ts, ak.settings, src, r_edges, r_bin, th_bins, vol, dose_b, sk_b, e_all,
                      e_5, per_sk, per, t0, backend)
    eng = tr_w.describe()
    res.settings["transport"] = eng
    res.device = f"{res.device}, {eng['engine']} engine" + (f" ({eng['build']})" if "build" in eng else "")
    return res


def _derive(model, settings, ts, sk_settings, src, r_edges, r_bin, th_bins, vol, dose_b, sk_b, e_all, e_5, per_sk, per,
            t0, backend) -> TG43Result:
    L = model.effective_length_cm

    def d_at(db, r, t):
        ks = th_bins[t]
        ir = r_bin[r]
        v = vol[ir, ks]
        return np.sum(db[..., ir, ks] * v, axis=-1) / v.sum()

    def shell_mean(db, r):
        ir = r_bin[r]
        v = vol[ir]
        return np.sum(db[..., ir, :] * v, axis=-1) / v.sum()

    d90 = {r: d_at(dose_b, r, 90) for r in R_LIST}
    lam_b = d90[1.0] / sk_b
    g1 = geometry_factor_line(1.0, 90.0, L)

    def stat(x):
        x = np.asarray(x, float)
        m = x.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return m, np.abs(x.std(axis=0, ddof=1) / np.sqrt(x.shape[0]) / m)

    gl_v, gl_u, gp_v, gp_u = [], [], [], []
    for r in R_LIST:
        m, u = stat(d90[r] / d90[1.0] * g1 / geometry_factor_line(r, 90.0, L))
        gl_v.append(m)
        gl_u.append(u if r != 1.0 else 0.0)
        m, u = stat(d90[r] / d90[1.0] * r * r)
        gp_v.append(m)
        gp_u.append(u if r != 1.0 else 0.0)
    f_rows, f_unc = [], []
    for r in F_R_LIST:
        row, urow = [], []
        for t in THETA_LIST:
            ratio = d_at(dose_b, r, t) / d90[r] * geometry_factor_line(r, 90.0, L) / geometry_factor_line(r, t, L)
            m, u = stat(ratio)
            row.append(float(m))
            urow.append(float(u) if t != 90 else 0.0)
        f_rows.append(row)
        f_unc.append(urow)
    phi_v, phi_u = [], []
    for r in F_R_LIST:
        m, u = stat(shell_mean(dose_b, r) / d90[r])
        phi_v.append(float(m))
        phi_u.append(float(u))
    lam, lam_u = stat(lam_b)
    sk, sk_u = stat(sk_b)
    d1, d1_u = stat(d90[1.0])
    return TG43Result(
        seed=model.key, seed_name=model.name,
        lambda_cGy_per_h_per_U=float(lam), lambda_rel_unc=float(lam_u), length_cm=float(L),
        sk_per_history_Gy_cm2=float(sk), sk_rel_unc=float(sk_u),
        dose_1cm_90_Gy_per_history=float(d1), dose_1cm_90_rel_unc=float(d1_u),
        mean_energy_leaving_kev=float(np.mean(e_all)), mean_energy_leaving_5kev_kev=float(np.mean(e_5)),
        gL={"r_cm": list(R_LIST), "value": [float(x) for x in gl_v], "rel_unc": [float(x) for x in gl_u]},
        gP={"r_cm": list(R_LIST), "value": [float(x) for x in gp_v], "rel_unc": [float(x) for x in gp_u]},
        F={"r_cm": list(F_R_LIST), "theta_deg": list(THETA_LIST), "value": f_rows, "rel_unc": f_unc},
        phi_an={"r_cm": list(F_R_LIST), "value": phi_v, "rel_unc": phi_u},
        settings={**asdict(settings), "length_cm": L, "spectrum": src.spectrum.name,
                  "sk_histories": per_sk * settings.batches, "water_histories": per * settings.batches,
                  "r_edges_cm": r_edges.tolist(), "cutoff_kev": ts.cutoff_kev, "sk_cutoff_kev": sk_settings["cutoff_kev"],
                  "sk_band_half_height_cm": sk_settings["half_height_cm"], "sk_distance_cm": sk_settings["distance_cm"]},
        run_time_s=time.perf_counter() - t0, device=_device_name(backend),
        extra={"model_fingerprint": model_fingerprint(model)},
    )
