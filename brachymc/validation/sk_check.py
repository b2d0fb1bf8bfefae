"""Independent check of the S_K scorer: a next-event (point-detector) estimator in vacuo.

The shipped scorer (:class:`brachymc.mc.air_kerma.AirKermaScorer`) follows the photons that leave
the seed to a cylinder of radius d and weights their crossings with the detector's elevation
density g(beta). The next-event estimator (NEE) gets the same quantity another way: at every
event that sends a photon off in a new direction - each emission of a source photon, each
incoherent or coherent scattering, each fluorescence emission - it scores the expected air
kerma at a detector point P on the same cylinder, drawn per event with elevation beta ~ g(beta)
and a uniform azimuth:

    w  f(omega_P)  exp(-sum_m mu_m(E') l_m)  E' (mu_en/rho)_air(E') |P|^2 / |P - p|^2      (E' >= 5 keV)

f the probability per steradian of going towards P (1/(4 pi) for emission and fluorescence; the
tabulated incoherent or coherent angular pdf / 2 pi for scattering, with the Compton energy E'),
l_m the path lengths in the seed's solids along p -> P (exact tracing), |P|^2 the inverse square
that refers the kerma to the axis. Averaged over histories this is S = int S(beta) g(beta) dbeta,
exactly what the crossing scorer estimates, but from every history instead of the few percent
that hit the detector, and with no surface-crossing or 1/cos weighting. ``beta`` fixed at 0 gives
the point detector on the transverse axis.

The collision events come from the array engine's ``score_interaction`` hook during a normal
vacuum run; the emission events from a wrapper of the seed source that sees every photon it
starts. Events can be sub-sampled (``fraction``, weight 1/fraction) to bound the cost.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from brachymc import default_library
from brachymc.backend import get_backend
from brachymc.constants import KEV_PER_G_TO_GY
from brachymc.geometry.seed import _BIG, SeedModel, ray_invariants
from brachymc.mc import interactions as ia
from brachymc.mc.air_kerma import AirKermaDetector, AirKermaScorer, get_detector, vacuum_world
from brachymc.mc.physics import PhysicsSettings
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.transport import TransportSettings, make_transport
from brachymc.sources.seed_source import SeedSource


def seed_optical_depth(model: SeedModel, mu_of, pos, direction, energy, max_crossings: int = 64):
    """Optical depth sum_m mu_m(E) l_m from ``pos`` (3, n) along ``direction`` (3, n) out of the seed.

    Exact tracing through the seed's surfaces (next-surface rule, medium at step midpoints);
    ``mu_of(solid_index, energy)`` gives the linear attenuation coefficient (1/cm).
    """
    n = energy.shape[0]
    tau = np.zeros(n)
    p = pos.copy()
    alive = np.ones(n, bool)
    zlo, zhi, rs = model.bounds()
    r_out2 = max(zlo * zlo, zhi * zhi) + rs * rs
    origin, axis = np.zeros(3), np.array([0.0, 0.0, 1.0])
    for _ in range(max_crossings):
        if not alive.any():
            break
        z, r2, w, pd = ray_invariants(np, p[:, alive], direction[:, alive], origin, axis)
        t = model.distance_to_surface(np, z, r2, w, pd)
        idx = np.nonzero(alive)[0]
        ok = t < _BIG
        mid = p[:, idx] + direction[:, idx] * np.where(ok, 0.5 * t, 0.0)
        zm, rm2, _, _ = ray_invariants(np, mid, direction[:, idx], origin, axis)
        loc = np.asarray(model.locate(np, zm, rm2))
        inside = ok & (loc >= 0)
        if inside.any():
            j = idx[inside]
            tau[j] += mu_of(loc[inside], energy[j]) * t[inside]
        p[:, idx] += direction[:, idx] * np.where(ok, t, 0.0)
        gone = ~ok | (np.sum(p[:, idx] ** 2, axis=0) > r_out2 * (1 + 1e-9) + 1e-12)
        alive[idx[gone]] = False
    return tau


class NextEventAirKerma:
    """NEE tallies of S for one detector (raw keV cm2/g sums, per batch: call :meth:`take`)."""

    def __init__(self, model: SeedModel, host_tables, device_tables, library, detector: AirKermaDetector,
                 fraction: float = 1.0, cutoff_kev: float = 5.0, rng=None, point: bool = False):
        self.model, self.T, self.D = model, host_tables, device_tables
        self.det = detector
        self.fraction = float(fraction)
        self.cutoff = float(cutoff_kev)
        self.rng = rng or np.random.default_rng(0)
        self.point = point
        mats = [library[s.material] for s in model.solids]
        self._solid_mat = np.array([host_tables.index(m.name) for m in mats])
        self._solid_rho = np.array([m.density for m in mats])
        self._air = host_tables.index("air")
        self.sum_emission = 0.0
        self.sum_collision = 0.0

    def take(self) -> tuple[float, float]:
        out = (self.sum_emission, self.sum_collision)
        self.sum_emission = self.sum_collision = 0.0
        return out

    def _mu(self, solid, e):
        t = self.T
        out = np.empty(e.shape)
        for k in np.unique(solid):
            sel = solid == k
            out[sel] = t.interpolate("total", int(self._solid_mat[k]), e[sel]) * self._solid_rho[k]
        return out

    def _targets(self, n):
        d = self.det.distance_cm
        beta = np.zeros(n) if self.point else self.det.sample_elevation(self.rng, n)
        phi = 2 * np.pi * self.rng.random(n)
        return np.stack([d * np.cos(phi), d * np.sin(phi), d * np.tan(beta)])

    def _score(self, pos, weight, angular):
        """Score events at ``pos``; ``angular(keep, omega)`` gives (cos, E', f) for the directions to P."""
        n = weight.shape[0]
        if n == 0:
            return 0.0
        keep = self.rng.random(n) < self.fraction
        if not keep.any():
            return 0.0
        pos, weight = pos[:, keep], weight[keep] / self.fraction
        P = self._targets(pos.shape[1])
        v = P - pos
        dist2 = np.sum(v * v, axis=0)
        omega = v / np.sqrt(dist2)
        cos_t, e_out, f = angular(keep, omega)
        ok = e_out >= self.cutoff
        if not ok.any():
            return 0.0
        pos, omega, e_out, f, weight, dist2, P = pos[:, ok], omega[:, ok], e_out[ok], f[ok], weight[ok], dist2[ok], P[:, ok]
        tau = seed_optical_depth(self.model, self._mu, pos, omega, e_out)
        muen = self.T.interpolate("muen", self._air, e_out)
        return float(np.sum(weight * f * np.exp(-tau) * e_out * muen * np.sum(P * P, axis=0) / dist2))

    def emission(self, pos, energy, weight) -> None:
        """Source photons (isotropic emission)."""
        def ang(keep, omega):
            e = energy[keep]
            return None, e, np.full(e.shape, 1.0 / (4.0 * np.pi))

        self.sum_emission += self._score(pos, weight, ang)

    def interaction(self, xp, b, idx, kind, e_in, e_out, e_fl, sc) -> None:
        """``score_interaction`` hook: scattering and fluorescence emission."""
        pos = np.asarray(b["pos"][:, idx])
        d_in = np.asarray(b["dir"][:, idx])
        w = np.asarray(b["wt"][idx])
        kind = np.asarray(kind)
        e_in = np.asarray(e_in)
        e_fl = np.asarray(e_fl)
        m = np.asarray(self._material_at(pos))
        scat = kind > 0
        if scat.any():
            def ang(keep, omega, sel=np.nonzero(scat)[0]):
                s = sel[keep]
                c = np.clip(np.sum(d_in[:, s] * omega, axis=0), -1.0, 1.0)
                e = e_in[s]
                inc = kind[s] == 1
                f = np.where(inc, self._pdf(m[s], e, c, "compton"), self._pdf(m[s], e, c, "rayleigh")) / (2 * np.pi)
                return c, np.where(inc, np.asarray(ia.compton_energy(e, c)), e), f

            self.sum_collision += self._score(pos[:, scat], w[scat], ang)
        fl = (kind == 0) & (e_fl > 0)
        if fl.any():
            ef = e_fl[fl]

            def ang_fl(keep, omega):
                e = ef[keep]
                return None, e, np.full(e.shape, 1.0 / (4.0 * np.pi))

            self.sum_collision += self._score(pos[:, fl], w[fl], ang_fl)

    def _material_at(self, pos):
        loc = np.asarray(self.model.locate(np, pos[2], pos[0] ** 2 + pos[1] ** 2))
        return self._solid_mat[np.clip(loc, 0, None)]

    def _pdf(self, m, e, c, kind):
        """The angular pdf p(cos theta) (per unit cos) the transport samples from, mixed linearly
        between the two neighbouring table energies.

        Each quantile interval of a table holds probability 1/(nQ - 1) and the sampler puts a linear
        pdf through the tabulated values at its ends, so the normalised pdf in the interval is that
        line divided by its area and multiplied by 1/(nQ - 1) (the tabulated values themselves are
        a pdf only up to a constant; only their ratios enter the sampling)."""
        t = self.T
        q = t.compton_quantiles if kind == "compton" else t.rayleigh_quantiles
        p = t.compton_pdf if kind == "compton" else t.rayleigh_pdf
        n_s = q.shape[1]
        s = (np.log(e) - t.sample_ln_e0) / t.sample_dln
        j = np.clip(np.floor(s).astype(np.int64), 0, n_s - 2)
        fe = np.clip(s - j, 0.0, 1.0)
        out = np.zeros(e.shape)
        for jj, wj in ((j, 1.0 - fe), (j + 1, fe)):
            qq, pp = q[m, jj], p[m, jj]                                    # (n, nQ)
            k = np.clip(np.sum(qq <= c[:, None], axis=1) - 1, 0, qq.shape[1] - 2)
            r = np.arange(c.size)
            c0, c1, p0, p1 = qq[r, k], qq[r, k + 1], pp[r, k], pp[r, k + 1]
            h = c1 - c0
            area = 0.5 * h * (p0 + p1)
            good = (h > 0) & (area > 0)
            lin = p0 + (p1 - p0) * np.clip((c - c0) / np.where(good, h, 1.0), 0.0, 1.0)
            out += wj * np.where(good, lin / np.where(good, area, 1.0) / (qq.shape[1] - 1), 0.0)
        return out


class _ObservedSource:
    """Wraps a source: every photon it starts is also shown to ``on_emit(pos, energy, weight)``."""

    def __init__(self, source, on_emit):
        self._source, self._on_emit = source, on_emit

    def __getattr__(self, name):
        return getattr(self._source, name)

    def sample(self, xp, rng, n):
        ph = self._source.sample(xp, rng, n)
        self._on_emit(np.asarray(ph.position), np.asarray(ph.energy), np.asarray(ph.weight))
        return ph


@dataclass
class SKCheckResult:
    """Crossing scorer vs NEE for one detector (Gy cm2 per history, batch standard errors)."""

    seed: str
    detector: dict
    histories: int
    scorer: float
    scorer_rel_unc: float
    nee: float
    nee_rel_unc: float
    nee_emission: float
    nee_collision: float
    nee_point: float
    nee_point_rel_unc: float
    z: float
    run_time_s: float
    settings: dict

    def to_dict(self) -> dict:
        return asdict(self)


def run_sk_check(model: SeedModel, detector="wafac", histories: int = 2_000_000, batches: int = 10, seed: int = 77,
                 fraction: float = 0.1, backend: str = "numpy", library=None) -> SKCheckResult:
    """One vacuum run scored by the crossing scorer and by the NEE (detector weighting and, as a
    second NEE, the point on the transverse axis)."""
    t0 = time.perf_counter()
    lib = library or default_library()
    be = get_backend(backend)
    if be.name != "numpy":
        raise ValueError("the NEE check runs on the NumPy backend")
    det = get_detector(detector)
    ts = TransportSettings(engine="array")       # the interaction hook is the array engine's
    world = vacuum_world(model, lib, be)
    host = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=ts.cutoff_kev))
    tr = make_transport(world, host, be, ts)
    scorer = AirKermaScorer(world, tr.tables, (det,))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    nee = NextEventAirKerma(model, host, tr.tables, lib, det, fraction=fraction, rng=rng)
    nee_pt = NextEventAirKerma(model, host, tr.tables, lib, det, fraction=fraction, rng=rng, point=True)

    def on_int(*a):
        nee.interaction(*a)
        nee_pt.interaction(*a)

    def on_emit(pos, e, w):
        nee.emission(pos, e, w)
        nee_pt.emission(pos, e, w)

    world.score_escape = scorer
    world.score_interaction = on_int
    src = _ObservedSource(SeedSource(model), on_emit)
    per = -(-histories // batches)
    xs, ns, ne, nc, npt = [], [], [], [], []
    for ss in np.random.SeedSequence(seed).spawn(batches):
        sc = tr.run_batch(src, per, ss)
        xs.append(float(sc.extra[f"air_kerma_raw:{det.name}"]) / per * KEV_PER_G_TO_GY)
        em, co = nee.take()
        ne.append(em / per * KEV_PER_G_TO_GY)
        nc.append(co / per * KEV_PER_G_TO_GY)
        ns.append(ne[-1] + nc[-1])
        npt.append(sum(nee_pt.take()) / per * KEV_PER_G_TO_GY)

    def stat(v):
        v = np.asarray(v)
        return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size) / v.mean())

    x, xu = stat(xs)
    y, yu = stat(ns)
    p, pu = stat(npt)
    z = (x - y) / np.hypot(x * xu, y * yu)
    return SKCheckResult(seed=model.key, detector=det.describe(), histories=per * batches, scorer=x, scorer_rel_unc=xu,
                         nee=y, nee_rel_unc=yu, nee_emission=float(np.mean(ne)), nee_collision=float(np.mean(nc)),
                         nee_point=p, nee_point_rel_unc=pu, z=float(z), run_time_s=time.perf_counter() - t0,
                         settings={"batches": batches, "seed": seed, "fraction": fraction})
