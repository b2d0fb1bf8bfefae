"""Independent check of a seed model's capsule transport: MC primary kerma vs ray integration.

For each (r, theta) bin (r +- ``r_half_width_cm``, theta +- ``theta_half_width_deg``, folded
about 90 deg), the primary (unscattered) collision kerma per emitted photon in water is computed
twice:

* by the Monte Carlo transport (the photons that have not interacted, track-length estimator of
  :class:`~brachymc.geometry.single_seed.SingleSeedWorld`, batch uncertainties), and
* by :func:`brachymc.validation.primary.primary_kerma` (straight lines from decays of the
  active-region sampler to points covering the bin, path lengths by ray marching with the
  solids' point classification).

The two share the cross-section tables and the decay sampler's definition of the active region,
nothing else, so agreement within the combined standard errors checks the capsule filtration,
the marker's self-shadowing, oblique paths through the wall and the scoring. The result also
gives the *primary* anisotropy function (normalised at 90 deg, divided by the line-source
geometry factor), which isolates the capsule's part of F(r, theta) from the scatter.

Units: cm, deg; kerma in keV/g per emitted photon. Used by ``brachymc validate primary``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from brachymc.errors import ConfigError
from brachymc.geometry.seed import SeedModel
from brachymc.files import atomic_path


@dataclass(frozen=True)
class PrimaryCheckSettings:
    """Sizes of a primary-kerma check (defaults: the run recorded in docs/validation)."""

    histories: int = 20_000_000
    batches: int = 20
    seed: int = 2026
    radii_cm: tuple[float, ...] = (1.0, 2.0)
    thetas_deg: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)
    r_half_width_cm: float = 0.1
    theta_half_width_deg: float = 2.5
    n_decays: int = 6000
    decays_per_pass: int = 2000
    n_steps: int = 600
    backend: str = "numpy"
    engine: str = "auto"
    threads: int = 0

    @classmethod
    def quick(cls, **overrides) -> "PrimaryCheckSettings":
        """CI-sized check: 1e6 histories, 200 decays, 1 cm at 30, 60 and 90 deg (seconds on a CPU)."""
        kw = dict(histories=1_000_000, batches=10, n_decays=200, decays_per_pass=200, n_steps=300, radii_cm=(1.0,),
                  thetas_deg=(30.0, 60.0, 90.0))
        return cls(**{**kw, **overrides})

    def __post_init__(self):
        if self.histories < 2 * self.batches or self.batches < 2:
            raise ConfigError(f"primary check: need batches >= 2 and histories >= 2 x batches "
                              f"(got histories={self.histories}, batches={self.batches})")
        if self.n_decays < 2 or self.decays_per_pass < 1 or self.n_steps < 10:
            raise ConfigError("primary check: n_decays >= 2, decays_per_pass >= 1 and n_steps >= 10 are required")
        if not self.radii_cm or min(self.radii_cm) - self.r_half_width_cm <= 0.1:
            raise ConfigError(f"primary check: radii {self.radii_cm} must start beyond the seed "
                              f"(r - {self.r_half_width_cm} > 0.1 cm)")
        r = sorted(self.radii_cm)
        if any(b - a <= 2 * self.r_half_width_cm for a, b in zip(r, r[1:])):
            raise ConfigError("primary check: radial bins overlap; space the radii by more than 2 x r_half_width_cm")
        t = sorted(self.thetas_deg)
        if t[0] - self.theta_half_width_deg < 0 or t[-1] > 90 or 90.0 not in t:
            raise ConfigError("primary check: angles must lie in [half width, 90] deg and include 90 (the normalisation)")
        if any(b - a < 2 * self.theta_half_width_deg for a, b in zip(t, t[1:])):
            raise ConfigError("primary check: angular bins overlap; space the angles by >= 2 x theta_half_width_deg")


@dataclass
class PrimaryCheckResult:
    """Rows per (r, theta) with MC and ray-integrated primary kerma and the primary F."""

    seed: str
    model_name: str
    settings: dict
    rows: list[dict]
    chi2: float
    n_bins: int
    max_abs_z: float
    run_time_s: float
    extra: dict = field(default_factory=dict)

    @property
    def p_value(self) -> float:
        """Probability of a chi2 at least this large if MC and ray integration agree (bins independent)."""
        from scipy.stats import chi2

        return float(chi2.sf(self.chi2, self.n_bins))

    @classmethod
    def from_json(cls, path) -> "PrimaryCheckResult":
        """Read a result written by :meth:`to_json`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not a brachymc primary-check result ({exc})") from exc

    def to_json(self, path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=1))
        return path

    def markdown(self) -> str:
        """The comparison as a Markdown table (one pair of lines per radius)."""
        thetas = sorted({r["theta_deg"] for r in self.rows})
        radii = sorted({r["r_cm"] for r in self.rows})
        by = {(r["r_cm"], r["theta_deg"]): r for r in self.rows}
        out = ["| r (cm) | quantity | " + " | ".join(f"{t:g}" for t in thetas) + " |",
               "|---|---|" + "---|" * len(thetas)]
        for r in radii:
            out.append(f"| {r:g} | MC / ray - 1, % (1 sigma) | " + " | ".join(
                f"{by[r, t]['diff_pct']:+.2f} ({by[r, t]['sigma_pct']:.2f})" for t in thetas) + " |")
            out.append(f"| {r:g} | primary F, ray / MC | " + " | ".join(
                f"{by[r, t]['F_primary_ray']:.3f} / {by[r, t]['F_primary_mc']:.3f}" for t in thetas) + " |")
        return "\n".join(out)


def _theta_edges(s: PrimaryCheckSettings) -> np.ndarray:
    """Polar edges (deg, descending from 180) holding each bin and its mirror image."""
    th = {0.0, 180.0}
    for t in s.thetas_deg:
        for a in (t - s.theta_half_width_deg, min(t + s.theta_half_width_deg, 90.0)):
            th.update((a, 180.0 - a))
    return np.array(sorted(th, reverse=True))


def _theta_bins(th: np.ndarray, lo: float, hi: float) -> list[int]:
    """Indices of the polar bins inside [lo, hi] deg or its mirror [180 - hi, 180 - lo]."""
    eps = 1e-9
    return [i for i in range(len(th) - 1)
            if (th[i] <= hi + eps and th[i + 1] >= lo - eps)
            or (th[i] <= 180.0 - lo + eps and th[i + 1] >= 180.0 - hi - eps)]


def run_primary_check(model: SeedModel, settings: PrimaryCheckSettings = PrimaryCheckSettings(),
                      library=None, log=print) -> PrimaryCheckResult:
    """Compare the MC primary kerma around ``model`` in water with the ray integration."""
    from brachymc.backend import get_backend
    from brachymc.geometry.single_seed import SingleSeedWorld
    from brachymc.mc.tables_cache import load_or_build_tables
    from brachymc.materials import default_library
    from brachymc.mc.physics import PhysicsSettings
    from brachymc.mc.transport import TransportSettings, make_transport
    from brachymc.geometry.seed import model_fingerprint
    from brachymc.sources.seed_source import SeedSource
    from brachymc.tg43.dose import geometry_factor_line
    from brachymc.validation.primary import bin_points, coefficients_from_tables, primary_kerma

    t0 = time.perf_counter()
    s = settings
    lib = library or default_library()
    bk = get_backend(s.backend)
    src = SeedSource(model)
    radii = sorted(float(r) for r in s.radii_cm)
    thetas = sorted(float(t) for t in s.thetas_deg)
    r_edges = [0.0]
    for r in radii:
        r_edges += [r - s.r_half_width_cm, r + s.r_half_width_cm]
    th = _theta_edges(s)
    cos_edges = np.cos(np.radians(th))
    cos_edges[0], cos_edges[-1] = -1.0, 1.0
    world = SingleSeedWorld(model, lib, lib["water"], max(radii) + 0.5, np.array(r_edges), cos_edges, bk)
    tables = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=1.0))
    coeffs = coefficients_from_tables(model, tables, lib, src.spectrum)

    # ray integration: decays in passes (independent streams), per-decay values kept for the error.
    # Midpoint rule over each bin, at least 3 nodes each way and nodes <= 0.1 cm apart in r and <= 2.5 deg
    # in theta: the kerma falls off across a wide bin (r 0.6-1.4 cm: 3 radial nodes read 0.5 % high,
    # 8 nodes 0.04 %); the bins of docs/validation (+-0.1 cm, +-2.5 deg) get 3 x 3.
    n_r = max(3, int(np.ceil(2 * s.r_half_width_cm / 0.1)))
    n_t = max(3, int(np.ceil(2 * s.theta_half_width_deg / 2.5)))
    ray = {}
    n_pass = -(-s.n_decays // s.decays_per_pass)
    streams = np.random.SeedSequence([s.seed, 1]).spawn(n_pass)
    for r in radii:
        for t in thetas:
            lo, hi = t - s.theta_half_width_deg, min(t + s.theta_half_width_deg, 90.0)
            pts, w = bin_points(r - s.r_half_width_cm, r + s.r_half_width_cm, lo, hi, n_r=n_r, n_t=n_t, n_phi=8)
            per_decay = []
            for i, ss in enumerate(streams):
                n = min(s.decays_per_pass, s.n_decays - i * s.decays_per_pass)
                k = primary_kerma(model, pts, src.spectrum, *coeffs, n_decays=n, n_steps=s.n_steps,
                                  per_decay=True, seed=ss)
                per_decay.append((w[:, None] * k).sum(axis=0) / w.sum())
            kb = np.concatenate(per_decay)
            ray[r, t] = (kb.mean(), kb.std(ddof=1) / np.sqrt(kb.size))
    t_ray = time.perf_counter() - t0
    log(f"ray integration: {len(ray)} bins x {s.n_decays} decays in {t_ray:.0f} s")

    tr = make_transport(world, tables, bk, TransportSettings(score_primary=True, bank_size=1 << 17, engine=settings.engine,
                                                             threads=settings.threads))
    vol = world.score_volume
    per = s.histories // s.batches
    prim = []
    for seq in np.random.SeedSequence([s.seed, 2]).spawn(s.batches):
        sc = tr.run_batch(src, per, seq)
        prim.append(bk.asnumpy(sc.primary).reshape(world.score_shape) / vol / per)
    prim = np.array(prim)
    log(f"MC: {per * s.batches} histories in {time.perf_counter() - t0 - t_ray:.0f} s")

    L = model.effective_length_cm
    rows, chi2 = [], 0.0
    for ir, r in enumerate(radii):
        rb = 2 * ir + 1
        mc = {}
        for t in thetas:
            ks = _theta_bins(th, t - s.theta_half_width_deg, min(t + s.theta_half_width_deg, 90.0))
            v = vol[rb, ks]
            mc[t] = np.sum(prim[:, rb, ks] * v, axis=-1) / v.sum()            # per batch
        g90 = geometry_factor_line(np.array([r]), np.radians([90.0]), L)[0]
        for t in thetas:
            m, u = mc[t].mean(), mc[t].std(ddof=1) / np.sqrt(s.batches)
            dm, du = ray[r, t]
            sig = float(np.hypot(u / m, du / dm))
            z = (m / dm - 1.0) / sig
            chi2 += z * z
            gratio = g90 / geometry_factor_line(np.array([r]), np.radians([t]), L)[0]
            fr = mc[t] / mc[90.0]
            rows.append(dict(r_cm=r, theta_deg=t, mc_keV_per_g=float(m), mc_rel_unc=float(u / m),
                             ray_keV_per_g=float(dm), ray_rel_unc=float(du / dm),
                             diff_pct=float(100 * (m / dm - 1)), sigma_pct=100 * sig, z=float(z),
                             F_primary_mc=float(fr.mean() * gratio),
                             F_primary_mc_unc=float(fr.std(ddof=1) / np.sqrt(s.batches) * gratio),
                             F_primary_ray=float(dm / ray[r, 90.0][0] * gratio)))
    st = asdict(s)
    st["backend"] = bk.name
    st["ray_nodes_r_theta_phi"] = [n_r, n_t, 8]
    return PrimaryCheckResult(seed=model.key, model_name=model.name, settings=st, rows=rows, chi2=float(chi2),
                              n_bins=len(rows), max_abs_z=float(max(abs(r["z"]) for r in rows)),
                              run_time_s=time.perf_counter() - t0,
                              extra={"model_fingerprint": model_fingerprint(model), "effective_length_cm": L})
