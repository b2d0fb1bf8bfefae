"""Photon budget of a seed model in vacuo: where the emitted photons go, per history.

One Monte Carlo run of the seed alone in vacuum (array engine, the world's optional
``score_interaction`` and ``score_escape`` hooks) tallies, per emitted photon (= history):

* the interactions in every solid of the seed (photoabsorption, incoherent, coherent), the
  photons that end there (photoabsorbed, or scattered below the 1 keV transport cutoff) and the
  energy deposited there;
* the fluorescence photons created in every solid, per element (identified by their line energy),
  and those that leave the seed still carrying their line energy;
* the photons that leave the capsule: primary (never interacted, per emitted line), scattered,
  fluorescence per element, and below the 5 keV S_K cutoff; their number and mean energy;
* S_K per history for the chosen detector (:mod:`brachymc.mc.air_kerma`), split into the same
  primary / scattered / fluorescence parts.

The budget closes exactly: photons emitted + fluorescence photons created = photons ended in
solids + photons escaped, and energy emitted = energy deposited + energy escaped (to rounding).

**Independent part.** For primary photons the same budget follows from a deterministic ray
integration through the solids (:func:`brachymc.validation.primary.primary_fate`: decays from the
active-region sampler, straight lines over 4 pi, ray marching with the solids' point
classification): the probability of escaping without interacting, per line, and of a first
interaction in each solid, per kind. The MC counterparts are the primary photons' escapes and
first interactions. The primary part of S_K is also integrated deterministically
(:func:`brachymc.validation.primary.primary_kerma` in vacuum at points spread over the detector's
elevations). Both share with the MC only the cross-section tables and the decay sampler.

Used by ``brachymc validate budget``; tables in docs/validation/photon_budget.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from brachymc import default_library
from brachymc.backend import get_backend
from brachymc.constants import KEV_PER_G_TO_GY
from brachymc.errors import ConfigError
from brachymc.files import atomic_path
from brachymc.geometry.seed import SeedModel, model_fingerprint
from brachymc.materials import element_symbol
from brachymc.mc.air_kerma import DEFAULT_DETECTOR, DETECTORS, AirKermaScorer, get_detector, vacuum_world
from brachymc.mc.physics import PhysicsSettings
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.transport import TransportSettings, make_transport
from brachymc.sources.seed_source import SeedSource
from brachymc.validation.clrp import CLRP_SK_DETECTOR, CLRP_SK_PER_HISTORY
from brachymc.validation.primary import coefficient_parts, primary_fate, primary_kerma

KINDS = ("photoabsorption", "incoherent", "coherent")


@dataclass(frozen=True)
class BudgetSettings:
    """Sizes of a photon-budget run (defaults: the runs recorded in docs/validation)."""

    histories: int = 10_000_000
    batches: int = 10
    seed: int = 1515
    backend: str = "numpy"
    detector: str = DEFAULT_DETECTOR
    n_decays: int = 2000          # ray integration: decay positions
    n_directions: int = 64        # ... directions per decay (4 pi)
    n_steps: int = 600            # ... ray-marching steps per ray
    sk_elevations: int = 12       # primary S_K by ray integration: Gauss-Legendre nodes in elevation
    sk_azimuths: int = 8
    sk_decays: int = 4000

    @classmethod
    def quick(cls, **overrides) -> "BudgetSettings":
        """CI-sized run (seconds on a CPU)."""
        kw = dict(histories=200_000, batches=5, n_decays=100, n_directions=32, n_steps=300, sk_elevations=4,
                  sk_azimuths=4, sk_decays=400)
        return cls(**{**kw, **overrides})

    def __post_init__(self):
        if self.batches < 2 or self.histories < 2 * self.batches:
            raise ConfigError(f"photon budget: need batches >= 2 and histories >= 2 x batches "
                              f"(got histories={self.histories}, batches={self.batches})")
        if min(self.n_decays, self.n_directions, self.sk_decays) < 2 or self.n_steps < 10:
            raise ConfigError("photon budget: n_decays, n_directions, sk_decays >= 2 and n_steps >= 10 are required")
        get_detector(self.detector)


class _LineTable:
    """Fluorescence line energies of the run's tables -> element (Z), for exact look-up."""

    def __init__(self, tables):
        pairs = sorted({(float(e), ch.z) for ch in tables.channels for e in ch.line_energies})
        self.energy = np.array([p[0] for p in pairs])
        self.z = np.array([p[1] for p in pairs], dtype=np.int64)

    def element(self, e: np.ndarray) -> np.ndarray:
        """Z of the line each energy equals exactly, else 0."""
        if self.energy.size == 0:
            return np.zeros(e.shape, dtype=np.int64)
        i = np.clip(np.searchsorted(self.energy, e), 0, self.energy.size - 1)
        return np.where(self.energy[i] == e, self.z[i], 0)


class _Tally:
    """Per-batch tallies of the hooks (host NumPy; the vacuum world runs on any backend)."""

    def __init__(self, model: SeedModel, backend, lines: _LineTable, source_lines: np.ndarray, scorer: AirKermaScorer):
        self.model, self.be, self.lines, self.scorer = model, backend, lines, scorer
        self.src_lines = source_lines
        n_s = len(model.solids) + 1                      # last row: outside every solid (must stay empty)
        self.zs = sorted(set(int(z) for z in lines.z)) or [0]
        nz = len(self.zs)
        self.count = np.zeros((n_s, 3))                  # interactions per solid and kind
        self.first = np.zeros((n_s, 3, source_lines.size))   # first interactions of primaries, per emitted line
        self.ended = np.zeros(n_s)                       # photons ending there (photoabsorbed or below cutoff)
        self.deposit = np.zeros(n_s)                     # keV
        self.fl_made = np.zeros((n_s, nz))
        self.fl_made_e = np.zeros((n_s, nz))
        self.esc = {k: 0.0 for k in ("n", "e", "n5", "n_primary", "e_primary", "n_scatter", "e_scatter")}
        self.esc_primary_line = np.zeros(source_lines.size)
        self.esc_fl = np.zeros(nz)
        self.esc_fl_e = np.zeros(nz)
        self.sk = {k: 0.0 for k in ("total", "primary", "scatter")}
        self.sk_fl = np.zeros(nz)
        self.sk_other = {}                               # totals for the other detectors

    def _zcol(self, z: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.array(self.zs), z)

    def interaction(self, xp, b, idx, kind, e_in, e_out, e_fl, sc) -> None:
        be = self.be
        pos = be.asnumpy(b["pos"][:, idx])
        kind, e_in, e_out, e_fl = (be.asnumpy(a) for a in (kind, e_in, e_out, e_fl))
        w = be.asnumpy(b["wt"][idx])
        primary = ~be.asnumpy(b["scat"][idx])
        s = np.asarray(self.model.locate(np, pos[2], pos[0] ** 2 + pos[1] ** 2))
        s = np.where(s < 0, len(self.model.solids), s)
        np.add.at(self.count, (s, kind), w)
        ended = (kind == 0) | (e_out <= 0)
        np.add.at(self.ended, s, np.where(ended, w, 0.0))
        np.add.at(self.deposit, s, w * (e_in - e_out - e_fl))
        li = np.searchsorted(self.src_lines, e_in)
        ok = primary & (li < self.src_lines.size)
        ok &= self.src_lines[np.clip(li, 0, self.src_lines.size - 1)] == e_in
        np.add.at(self.first, (s[ok], kind[ok], li[ok]), w[ok])
        made = e_fl > 0
        if made.any():
            zc = self._zcol(self.lines.element(e_fl[made]))
            np.add.at(self.fl_made, (s[made], zc), w[made])
            np.add.at(self.fl_made_e, (s[made], zc), w[made] * e_fl[made])

    def escape(self, xp, b, escaped, sc) -> None:
        be = self.be
        esc = be.asnumpy(escaped)
        if not esc.any():
            return
        parts = self.scorer.contributions(xp, b, escaped)
        contrib = be.asnumpy(parts[0])[esc]
        for det, c in zip(self.scorer.detectors[1:], parts[1:]):
            self.sk_other[det.name] = self.sk_other.get(det.name, 0.0) + float(be.asnumpy(xp.sum(c)))
        e = be.asnumpy(b["e"])[esc]
        w = be.asnumpy(b["wt"])[esc]
        primary = ~be.asnumpy(b["scat"])[esc]
        z = self.lines.element(e)
        fl = (~primary) & (z > 0)
        scat = (~primary) & (z == 0)
        t = self.esc
        t["n"] += w.sum()
        t["e"] += (w * e).sum()
        t["n5"] += w[e >= self.scorer.cutoff].sum()
        t["n_primary"] += w[primary].sum()
        t["e_primary"] += (w * e)[primary].sum()
        t["n_scatter"] += w[scat].sum()
        t["e_scatter"] += (w * e)[scat].sum()
        li = np.clip(np.searchsorted(self.src_lines, e[primary]), 0, self.src_lines.size - 1)
        np.add.at(self.esc_primary_line, li, w[primary])
        zc = self._zcol(z[fl])
        np.add.at(self.esc_fl, zc, w[fl])
        np.add.at(self.esc_fl_e, zc, (w * e)[fl])
        self.sk["total"] += contrib.sum()
        self.sk["primary"] += contrib[primary].sum()
        self.sk["scatter"] += contrib[scat].sum()
        np.add.at(self.sk_fl, zc, contrib[fl])

    def snapshot(self) -> dict:
        return {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else dict(v) if isinstance(v, dict) else v)
                for k, v in vars(self).items() if k not in ("model", "be", "lines", "scorer", "src_lines", "zs")}


@dataclass
class PhotonBudget:
    """The budget of one seed model (per emitted photon unless stated); see the module docstring."""

    seed: str
    model_name: str
    settings: dict
    histories: int
    solids: list[dict]
    escaped: dict
    fluorescence: list[dict]
    air_kerma: dict
    closure: dict
    ray_integration: dict
    run_time_s: float
    extra: dict = field(default_factory=dict)

    def to_json(self, path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def from_json(cls, path) -> "PhotonBudget":
        path = Path(path)
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not a brachymc photon-budget result ({exc})") from exc

    def markdown(self) -> str:
        """The budget as Markdown tables (per emitted photon, 1 sigma in brackets)."""
        def num(v):
            return "0" if v == 0 else (f"{v:.2e}" if abs(v) < 1e-3 else f"{v:.4f}")

        def pm(v, u):
            return f"{num(v)} ({num(u)})"

        out = [f"{self.model_name} (`{self.seed}`), {self.histories:.3g} histories in vacuo, "
               f"{self.settings['batches']} batches; per emitted photon, 1 sigma in brackets", "",
               "| solid | material | role | interactions | ended (absorbed) | energy deposited (keV) | "
               "fluorescence created | primary first interaction: MC / ray |",
               "|---|---|---|---|---|---|---|---|"]
        for r in self.solids:
            fl = ", ".join(f"{k} {num(v)}" for k, v in r["fluorescence_created"].items() if v > 0) or "-"
            out.append(f"| {r['solid']} | {r['material']} | {r['role']} | {num(r['interactions'])} | "
                       f"{pm(r['ended'], r['ended_se'])} | {r['deposited_kev']:.3f} | {fl} | "
                       f"{num(r['primary_first_mc'])} / {num(r['primary_first_ray'])} "
                       + (f"(z {r['primary_first_z']:+.1f}) |" if max(r["primary_first_mc"], r["primary_first_ray"]) > 1e-5
                          else "|"))
        e = self.escaped
        c = self.closure
        out += ["", "| leaving the capsule | photons | mean energy (keV) |", "|---|---|---|",
                f"| all | {pm(e['photons'], e['photons_se'])} | {e['mean_energy_kev']:.3f} |",
                f"| primary (MC / ray integration) | {pm(e['primary'], e['primary_se'])} / "
                f"{pm(self.ray_integration['escape'], self.ray_integration['escape_se'])} | "
                f"{e['primary_mean_energy_kev']:.3f} |",
                f"| scattered in the seed | {pm(e['scattered'], e['scattered_se'])} | {e['scattered_mean_energy_kev']:.3f} |"]
        for f in self.fluorescence:
            if f["created"] < 1e-6 and f["escaped"] == 0:
                continue
            me = f"{f['mean_energy_kev']:.3f}" if f["escaped"] > 0 else "-"
            out.append(f"| {f['element']} fluorescence (created {num(f['created'])}) | "
                       f"{pm(f['escaped'], f['escaped_se'])} | {me} |")
        out.append(f"| below the 5 keV S_K cutoff | {num(e['below_sk_cutoff'])} | - |")
        a = self.air_kerma
        out += ["", f"S_K per history ({a['detector']}): {a['total']:.5e} Gy cm2 (+- {100 * a['total_rel_unc']:.2f} %); "
                    f"primary {a['primary']:.5e} (ray integration {a['primary_ray']:.5e}, "
                    f"MC/ray - 1 = {100 * (a['primary'] / a['primary_ray'] - 1):+.2f} % +- "
                    f"{100 * a['primary_ray_cmp_unc']:.2f} %), scattered {a['scattered']:.4e}, "
                    + ", ".join(f"{k} fluorescence {v:.4e}" for k, v in a["fluorescence"].items() if v > 0),
                "",
                (f"CLRP (egs_brachy header) S_K per history {a['clrp_header']['value']:.4e} Gy cm2 ({CLRP_SK_DETECTOR}); "
                 f"brachymc, same detector: {a['clrp_header']['brachymc']:.4e} (ratio {a['clrp_header']['ratio']:.4f})"
                 if "clrp_header" in a else ""),
                "",
                f"Closure: emitted {c['emitted']:.0f} + fluorescence created {c['fluorescence_created']:.0f} - ended "
                f"{c['ended']:.0f} - escaped {c['escaped']:.0f} = {c['photon_balance']:.0f} photons; energy emitted - "
                f"deposited - escaped = {c['energy_balance_rel']:.1e} of the emitted energy."]
        return "\n".join(out)


def run_photon_budget(model: SeedModel, settings: BudgetSettings = BudgetSettings(), library=None,
                      progress: bool = False) -> PhotonBudget:
    """MC photon budget of ``model`` in vacuo and its ray-integrated primary counterpart."""
    t0 = time.perf_counter()
    lib = library or default_library()
    be = get_backend(settings.backend)
    src = SeedSource(model)
    ts = TransportSettings(engine="array")       # the interaction hook is the array engine's
    world = vacuum_world(model, lib, be)
    host_tables = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=ts.cutoff_kev))
    tr = make_transport(world, host_tables, be, ts)
    det = get_detector(settings.detector)
    others = tuple(d for k, d in DETECTORS.items() if k != det.name)
    scorer = AirKermaScorer(world, tr.tables, (det,) + others)
    lines = _LineTable(host_tables)
    src_lines = np.array(sorted(src.spectrum.energies_kev))
    tally = _Tally(model, be, lines, src_lines, scorer)
    world.score_interaction = tally.interaction
    world.score_escape = tally.escape
    per = -(-settings.histories // settings.batches)
    children = np.random.SeedSequence(settings.seed).spawn(settings.batches)
    snaps, emitted_e, escaped_e = [], 0.0, 0.0
    for b in range(settings.batches):
        before = tally.snapshot()
        sc = tr.run_batch(src, per, children[b])
        after = tally.snapshot()
        snaps.append({k: (after[k] - before[k]) if not isinstance(after[k], dict) else
                      {kk: after[k][kk] - before[k].get(kk, 0.0) for kk in after[k]} for k in after})
        emitted_e += float(be.asnumpy(sc.emitted_energy))
        escaped_e += float(be.asnumpy(sc.escaped_energy))
    n = per * settings.batches

    def total(key, sub=None):
        return sum((s[key][sub] if sub else s[key]) for s in snaps)

    def per_hist(key, sub=None):
        """Mean per emitted photon and its batch standard error."""
        v = np.array([(s[key][sub] if sub else s[key]) / per for s in snaps])
        return v.mean(axis=0), v.std(axis=0, ddof=1) / np.sqrt(len(v))

    zs = tally.zs
    names = [s.name for s in model.solids]
    # ---- ray integration of the primaries --------------------------------------------------------
    e_lines = np.asarray(src.spectrum.energies_kev, float)
    order = np.argsort(e_lines)
    parts = coefficient_parts(model, host_tables, lib, e_lines)
    fate = primary_fate(model, src.spectrum, parts, n_decays=settings.n_decays, n_directions=settings.n_directions,
                        n_steps=settings.n_steps, seed=settings.seed + 1)
    p_lines = np.asarray(src.spectrum.yields, float) / np.sum(src.spectrum.yields)
    first_mc, first_mc_se = per_hist("first")                    # (n_s, 3, lines sorted)
    first_mc = first_mc.sum(axis=(1, 2))
    first_mc_se = np.sqrt((first_mc_se ** 2).sum(axis=(1, 2)))
    first_ray = fate["first"].sum(axis=1)
    first_ray_se = np.sqrt((fate["first_se"] ** 2).sum(axis=1))

    ended, ended_se = per_hist("ended")
    count, _ = per_hist("count")
    dep, _ = per_hist("deposit")
    made, _ = per_hist("fl_made")
    made_e = total("fl_made_e")
    solids = []
    for k, s in enumerate(model.solids):
        z_mc = (first_mc[k] - first_ray[k]) / max(np.hypot(first_mc_se[k], first_ray_se[k]), 1e-300)
        solids.append({"solid": s.name, "material": s.material, "role": s.role, "interactions": float(count[k].sum()),
                       "by_kind": dict(zip(KINDS, map(float, count[k]))), "ended": float(ended[k]),
                       "ended_se": float(ended_se[k]), "deposited_kev": float(dep[k]),
                       "fluorescence_created": {element_symbol(z): float(made[k, j]) for j, z in enumerate(zs) if z > 0},
                       "primary_first_mc": float(first_mc[k]), "primary_first_mc_se": float(first_mc_se[k]),
                       "primary_first_ray": float(first_ray[k]), "primary_first_ray_se": float(first_ray_se[k]),
                       "primary_first_z": float(z_mc) if np.isfinite(z_mc) else 0.0,
                       "primary_first_by_kind_ray": dict(zip(KINDS, map(float, fate["first"][k])))})
    outside = float(total("count")[-1].sum())

    esc = {k: per_hist("esc", k) for k in tally.esc}
    esc_line, esc_line_se = per_hist("esc_primary_line")
    esc_fl, esc_fl_se = per_hist("esc_fl")
    esc_fl_e = total("esc_fl_e")
    fl_rows = []
    for j, z in enumerate(zs):
        if z <= 0:
            continue
        created = float(made[:, j].sum())
        if created <= 0 and esc_fl[j] <= 0:
            continue
        fl_rows.append({"element": element_symbol(z), "z": int(z), "created": created,
                        "created_mean_energy_kev": float(made_e[:, j].sum() / max(total("fl_made")[:, j].sum(), 1e-300)),
                        "escaped": float(esc_fl[j]), "escaped_se": float(esc_fl_se[j]),
                        "mean_energy_kev": float(esc_fl_e[j] / max(total("esc_fl")[j], 1e-300)),
                        "by_solid": {names[k]: float(made[k, j]) for k in range(len(names)) if made[k, j] > 0}})

    def mean_e(nk, ek):
        return float(total("esc", ek) / max(total("esc", nk), 1e-300))

    escaped = {"photons": float(esc["n"][0]), "photons_se": float(esc["n"][1]), "mean_energy_kev": mean_e("n", "e"),
               "primary": float(esc["n_primary"][0]), "primary_se": float(esc["n_primary"][1]),
               "primary_mean_energy_kev": mean_e("n_primary", "e_primary"),
               "primary_by_line": {f"{e_:g}": {"mc": float(esc_line[i] / p_lines[order][i]),
                                                "mc_se": float(esc_line_se[i] / p_lines[order][i]),
                                                "ray": float(fate["escape_by_line"][order][i]),
                                                "ray_se": float(fate["escape_by_line_se"][order][i])}
                                   for i, e_ in enumerate(src_lines)},
               "scattered": float(esc["n_scatter"][0]), "scattered_se": float(esc["n_scatter"][1]),
               "scattered_mean_energy_kev": mean_e("n_scatter", "e_scatter"),
               "below_sk_cutoff": float(esc["n"][0] - esc["n5"][0])}

    # ---- S_K and its parts -------------------------------------------------------------------------
    sk_tot, sk_tot_se = per_hist("sk", "total")
    sk_p, sk_p_se = per_hist("sk", "primary")
    sk_s, _ = per_hist("sk", "scatter")
    sk_fl, _ = per_hist("sk_fl")
    prim_ray, prim_ray_se = _primary_sk_by_rays(model, src.spectrum, host_tables, lib, det, settings)
    air_kerma = {"detector": det.name, "detector_geometry": det.describe(), "total": float(sk_tot * KEV_PER_G_TO_GY),
                 "total_rel_unc": float(sk_tot_se / sk_tot), "primary": float(sk_p * KEV_PER_G_TO_GY),
                 "primary_rel_unc": float(sk_p_se / sk_p), "scattered": float(sk_s * KEV_PER_G_TO_GY),
                 "fluorescence": {element_symbol(z): float(sk_fl[j] * KEV_PER_G_TO_GY) for j, z in enumerate(zs) if z > 0},
                 "primary_ray": prim_ray, "primary_ray_rel_unc": prim_ray_se,
                 "primary_ray_cmp_unc": float(np.hypot(sk_p_se / sk_p, prim_ray_se)),
                 "by_detector": {det.name: float(sk_tot * KEV_PER_G_TO_GY)}}
    for d in others:
        v = np.array([s["sk_other"].get(d.name, 0.0) / per for s in snaps]) * KEV_PER_G_TO_GY
        air_kerma["by_detector"][d.name] = float(v.mean())
        air_kerma["by_detector"][d.name + "_rel_unc"] = float(v.std(ddof=1) / np.sqrt(v.size) / v.mean())
    ref = CLRP_SK_PER_HISTORY.get(model.key)
    if ref is not None:
        mine = air_kerma["by_detector"][CLRP_SK_DETECTOR]
        air_kerma["clrp_header"] = {"value": ref, "detector": CLRP_SK_DETECTOR, "brachymc": mine,
                                    "ratio": mine / ref}

    n_fl = float(total("fl_made").sum())
    n_end = float(total("ended").sum())
    n_esc = float(total("esc", "n"))
    dep_tot = float(total("deposit").sum())
    closure = {"emitted": float(n), "fluorescence_created": n_fl, "ended": n_end, "escaped": n_esc,
               "photon_balance": float(n) + n_fl - n_end - n_esc, "energy_emitted_kev": emitted_e,
               "energy_deposited_kev": dep_tot, "energy_escaped_kev": escaped_e,
               "energy_balance_rel": (emitted_e - dep_tot - escaped_e) / emitted_e, "interactions_outside_solids": outside}
    ray = {"escape": float(fate["escape"]), "escape_se": float(fate["escape_se"]),
           "n_decays": settings.n_decays, "n_directions": settings.n_directions, "n_steps": settings.n_steps}
    return PhotonBudget(seed=model.key, model_name=model.name, settings=asdict(settings), histories=n, solids=solids,
                        escaped=escaped, fluorescence=fl_rows, air_kerma=air_kerma, closure=closure,
                        ray_integration=ray, run_time_s=time.perf_counter() - t0,
                        extra={"model_fingerprint": model_fingerprint(model), "spectrum": src.spectrum.name})


def _primary_sk_by_rays(model, spectrum, tables, library, det, settings) -> tuple[float, float]:
    """Primary S_K (Gy cm2) for ``det`` by ray integration: S(beta) at Gauss-Legendre elevations
    (points on the detector's cylinder, several azimuths), weighted with the detector's g(beta)."""
    from brachymc.validation.primary import coefficients_from_tables

    mu_seed, _, _ = coefficients_from_tables(model, tables, library, spectrum, medium="air")
    e = np.asarray(spectrum.energies_kev, float)
    muen = tables.interpolate("muen", "air", e)
    x, w = np.polynomial.legendre.leggauss(settings.sk_elevations)
    beta = 0.5 * det.beta_max * (x + 1.0)                     # [0, beta_max]; g is even and the seed symmetric
    wb = 0.5 * det.beta_max * w * 2.0 * det.elevation_density(np, beta)
    d = det.distance_cm
    phi = 2 * np.pi * (np.arange(settings.sk_azimuths) + 0.5) / settings.sk_azimuths
    pts, wt = [], []
    for b_, w_ in zip(beta, wb):
        for sgn in (1.0, -1.0):
            for ph in phi:
                pts.append([d * np.cos(ph), d * np.sin(ph), sgn * d * np.tan(b_)])
                wt.append(0.5 * w_ / settings.sk_azimuths)
    pts, wt = np.array(pts), np.array(wt)
    k = primary_kerma(model, pts, spectrum, mu_seed, np.zeros_like(e), muen, n_decays=settings.sk_decays,
                      n_steps=settings.n_steps, seed=settings.seed + 2, per_decay=True)      # (points, decays)
    r2 = np.sum(pts * pts, axis=1)
    per_decay = np.sum((wt * r2)[:, None] * k, axis=0) / np.sum(wt) * KEV_PER_G_TO_GY
    return float(per_decay.mean()), float(per_decay.std(ddof=1) / np.sqrt(per_decay.size) / per_decay.mean())
