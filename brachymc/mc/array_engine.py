"""The array engine: photon transport written once against an array namespace (NumPy or CuPy).

This engine is the reference and the test twin of the kernel engine (``mc/kernel_engine.py``).

A bank of photons is advanced in lockstep through a *world* (``geometry/world.py``: a voxel
phantom, or a seed in a scoring medium): every step moves each photon to the nearer of its next
geometric boundary (exact DDA face, seed surface, scoring shell) or its next interaction site
(remaining number of mean free paths divided by the step's attenuation coefficient), scores the
track-length estimator of collision kerma for that chord in the step's scoring bin, and then
lets the photons that reached their interaction site interact:

* photoelectric absorption, with K (and L, Z >= 30) fluorescence emitted isotropically;
* incoherent (Compton) scattering, Klein-Nishina x S(x, Z);
* coherent (Rayleigh) scattering, (1 + cos^2) F(x, Z)^2.

Photons that fall below the cutoff deposit their energy in the current voxel. Dead photons are
compacted away after each step and the bank is refilled from the source when it is half empty.

Tallies (raw, per batch and scoring bin): ``sum(w E mu_en/rho l)`` (keV cm3/g) plus ``w E / rho``
for local deposits, in float64; divided by the bin's volume this is keV/g.
"""

from __future__ import annotations

import numpy as np

from brachymc.errors import ConfigError
from brachymc.geometry.phantom import VoxelPhantom
from brachymc.geometry.world import VoxelWorld
from brachymc.mc import interactions as ia
from brachymc.mc.physics import PhysicsTables
from brachymc.mc.transport import BatchScores, TransportSettings, auto_bank_size
from brachymc.sources.simple import isotropic



class ArrayTransport:
    """Transport of photons from a source through a world, a lockstep bank of photons at a time.

    Args:
        world: a :class:`~brachymc.geometry.world.VoxelWorld` or another world (a
            :class:`~brachymc.geometry.phantom.VoxelPhantom` is wrapped in a VoxelWorld).
        tables: physics tables for the world's materials, in the same order.
        backend: a :class:`~brachymc.backend.Backend`.
        settings: :class:`TransportSettings`.
    """

    engine = "array"

    def __init__(self, world, tables: PhysicsTables, backend, settings: TransportSettings):
        if isinstance(world, VoxelPhantom):
            world = VoxelWorld(world, backend)
        names = tuple(m.name for m in world.materials)
        if tables.material_names != names:
            raise ConfigError(f"physics tables are for {tables.material_names}, the geometry has {names}")
        if settings.cutoff_kev != tables.settings.cutoff_kev:
            raise ConfigError(
                f"transport cutoff {settings.cutoff_kev} keV differs from the tables' {tables.settings.cutoff_kev} keV"
            )
        self.world = world
        self.backend = backend
        self.xp = backend.xp
        self.settings = settings
        self.tables = tables.to_backend(backend)
        self._water = None
        if settings.score_water:
            if "water" not in names:
                raise ConfigError("dose to water in medium needs 'water' among the world's materials")
            self._water = names.index("water")

    def describe(self) -> dict:
        return {"engine": "array", "backend": self.backend.name}

    # ------------------------------------------------------------------------------------------
    def new_scores(self) -> BatchScores:
        xp, n = self.xp, self.world.n_scores
        s = self.settings
        zero = (lambda: xp.zeros((), dtype=xp.float64))
        return BatchScores(
            kerma=xp.zeros(n, dtype=xp.float64),
            primary=xp.zeros(n, dtype=xp.float64) if s.score_primary else None,
            collision=xp.zeros(n, dtype=xp.float64) if s.score_collision else None,
            water=xp.zeros(n, dtype=xp.float64) if s.score_water else None,
            emitted_energy=zero(), escaped_energy=zero(), escaped_primary=zero(), absorbed_local=zero(),
            unscored_energy=zero(),
        )

    def check_source(self, source) -> None:
        self.world.check_source(source)
        emax = source.spectrum.max_energy_kev
        if emax > self.tables.emax_kev or source.spectrum.min_energy_kev <= self.settings.cutoff_kev:
            raise ConfigError(
                f"source energies {source.spectrum.min_energy_kev}-{emax} keV must lie within "
                f"({self.settings.cutoff_kev}, {self.tables.emax_kev}] keV"
            )

    # ------------------------------------------------------------------------------------------
    def _new_photons(self, pos, direction, energy, weight, rng, scattered: bool, state: dict | None = None,
                     tag=None):
        xp = self.xp
        n = energy.shape[0]
        ie, fe = ia.energy_position(xp, self.tables, energy)
        bank = {
            "pos": pos, "dir": direction, "e": energy, "wt": weight,
            "nmfp": -xp.log1p(-rng.random(n)),
            "scat": xp.full(n, scattered, dtype=bool), "ie": ie, "fe": fe,
        }
        bank.update(state if state is not None else self.world.init_state(xp, pos, tag))
        return bank

    _PHOTON_FIELDS = ("pos", "dir", "e", "wt", "nmfp", "scat", "ie", "fe")

    @staticmethod
    def _take(bank, idx):
        return {k: (v[:, idx] if v.ndim == 2 else v[idx]) for k, v in bank.items()}

    def _concat(self, a, b):
        xp = self.xp
        return {k: xp.concatenate([a[k], b[k]], axis=-1) for k in a}

    # ------------------------------------------------------------------------------------------
    def _step(self, b, rng, sc: BatchScores):
        """Advance every photon of bank ``b`` to its next boundary or interaction."""
        n = b["e"].shape[0]
        sc.steps += n
        hit, m, rho, sidx, inside = self._move_and_score(b, sc, self.world.geometry_step, self.world.cross)
        return self._finish_step(b, rng, sc, hit, m, rho, sidx, inside)

    def _move_and_score(self, b, sc: BatchScores, geometry_step, cross):
        """Distance to the boundary or interaction, track-length scoring, move, boundary crossing.

        Updates ``b`` (pos, nmfp and the world's state) and returns (hit, m, rho, sidx, inside).
        """
        xp, T, bk = self.xp, self.tables, self.backend
        t_face, m, rho, sidx, ctx = geometry_step(xp, b)
        mu = rho * ia.interp_log(T.ln_mu, m, b["ie"], b["fe"], xp)
        d_int = xp.where(mu > 0, b["nmfp"] / xp.where(mu > 0, mu, 1.0), np.inf)
        hit = d_int < t_face
        d = xp.where(hit, d_int, t_face)

        # track-length estimator of collision kerma: w E (mu_en/rho) l, in the step's scoring bin
        scored = sidx >= 0
        bin_ = xp.where(scored, sidx, 0)
        score = xp.where(scored, b["wt"] * b["e"] * ia.interp_log(T.ln_muen, m, b["ie"], b["fe"], xp) * d, 0.0)
        bk.scatter_add(sc.kerma, bin_, score)
        if sc.primary is not None:
            bk.scatter_add(sc.primary, bin_, xp.where(b["scat"], 0.0, score))
        if sc.water is not None:
            mw = xp.full_like(m, self._water)
            bk.scatter_add(sc.water, bin_, xp.where(
                scored, b["wt"] * b["e"] * ia.interp_log(T.ln_muen, mw, b["ie"], b["fe"], xp) * d, 0.0))

        b["pos"] = b["pos"] + b["dir"] * d
        b["nmfp"] = b["nmfp"] - mu * d
        inside = cross(xp, b, ~hit, ctx)
        return hit, m, rho, sidx, inside

    def _finish_step(self, b, rng, sc: BatchScores, hit, m, rho, sidx, inside):
        """Escapes, interactions at the photons' sites and compaction of the bank."""
        xp, world = self.xp, self.world
        escaped = ~inside
        esc_e = xp.where(escaped, b["wt"] * b["e"], 0.0)
        sc.escaped_energy += xp.sum(esc_e)
        sc.escaped_primary += xp.sum(xp.where(b["scat"], 0.0, esc_e))
        if hasattr(world, "score_escape"):
            world.score_escape(xp, b, escaped, sc)
        alive = inside

        secondaries = None
        idx = xp.nonzero(hit)[0]
        if int(idx.shape[0]):
            secondaries = self._interact(b, idx, m[idx], sidx[idx], rho[idx], alive, rng, sc)
        keep = xp.nonzero(alive)[0]
        b = self._take(b, keep)
        if secondaries is not None:
            b = self._concat(b, secondaries)
        return b

    def _interact(self, b, idx, m, sidx, rho, alive, rng, sc: BatchScores):
        """Interactions of photons ``idx`` (in place on the bank); returns fluorescence photons."""
        xp, T, bk = self.xp, self.tables, self.backend
        k = int(idx.shape[0])
        e = b["e"][idx]
        wt = b["wt"][idx]
        ie, fe = b["ie"][idx], b["fe"][idx]
        r = rng.random(k)
        p_photo = ia.interp_lin(T.p_photo, m, ie, fe)
        p_incoh = ia.interp_lin(T.p_incoh, m, ie, fe)
        is_photo = r < p_photo
        is_incoh = (~is_photo) & (r < p_photo + p_incoh)

        # scattering (computed for all, used where not absorbed)
        u_ang = rng.random(k)
        cos_c = ia.sample_cos_theta(xp, T.compton_q, T, m, e, u_ang, T.compton_pdf)
        cos_r = ia.sample_cos_theta(xp, T.rayleigh_q, T, m, e, u_ang, T.rayleigh_pdf)
        cos_t = xp.where(is_incoh, cos_c, cos_r)
        e_out = xp.where(is_incoh, ia.compton_energy(e, cos_t), e)
        phi = 2.0 * np.pi * rng.random(k)
        new_dir = ia.rotate(xp, b["dir"][:, idx], cos_t, phi)

        # photoabsorption and fluorescence
        emit, e_fl = ia.sample_fluorescence(xp, T, m, ie, rng.random(k), rng.random(k))
        emit = emit & is_photo
        e_fl = xp.where(emit, e_fl, 0.0)

        low = (~is_photo) & (e_out < self.settings.cutoff_kev)
        survive = (~is_photo) & (~low)
        local = xp.where(low, e_out, 0.0)            # sub-cutoff photon energy, deposited here
        scored = sidx >= 0
        bin_ = xp.where(scored, sidx, 0)
        if bool(low.any()):
            bk.scatter_add(sc.kerma, bin_, xp.where(scored, wt * local / rho, 0.0))
            sc.absorbed_local += xp.sum(wt * local)
        dep = xp.where(is_photo, e - e_fl, e - e_out) + local
        sc.unscored_energy += xp.sum(xp.where(scored, 0.0, wt * dep))
        if sc.collision is not None:
            bk.scatter_add(sc.collision, bin_, xp.where(scored, wt * dep / rho, 0.0))

        e_new = xp.where(survive, e_out, e)
        b["e"][idx] = e_new
        b["dir"][:, idx] = xp.where(survive, new_dir, b["dir"][:, idx])
        b["scat"][idx] = True
        b["nmfp"][idx] = -xp.log1p(-rng.random(k))
        ie_new, fe_new = ia.energy_position(xp, T, e_new)
        b["ie"][idx] = ie_new
        b["fe"][idx] = fe_new
        alive[idx] = survive

        j = xp.nonzero(emit)[0]
        if int(j.shape[0]) == 0:
            return None
        src = idx[j]
        state = {k: self._take({k: b[k]}, src)[k] for k in b if k not in self._PHOTON_FIELDS}
        return self._new_photons(
            b["pos"][:, src].copy(), isotropic(xp, rng, int(j.shape[0])), e_fl[j], wt[j], rng, scattered=True,
            state=state)

    # ------------------------------------------------------------------------------------------
    def run_batch(self, source, n_histories: int, stream: np.random.SeedSequence,
                  scores: BatchScores | None = None, on_progress=None) -> BatchScores:
        """Transport ``n_histories`` source photons to completion and return the raw tallies.

        ``stream``: the batch's random stream (a SeedSequence; the backend's generator is seeded
        from it). ``on_progress(n)`` is called with the number of source photons started at each refill.
        """
        self.check_source(source)
        rng = self.backend.rng(stream)
        sc = scores if scores is not None else self.new_scores()
        xp = self.xp
        size = int(self.settings.bank_size) or auto_bank_size(self.backend)
        remaining = int(n_histories)
        bank = None
        n_alive = 0
        while remaining > 0 or n_alive > 0:
            if remaining > 0 and n_alive <= size // 2:
                add = min(remaining, size - n_alive)
                ph = source.sample(xp, rng, add)
                new = self._new_photons(ph.position, ph.direction, ph.energy, ph.weight, rng, scattered=False,
                                        tag=ph.tag)
                sc.emitted_energy += xp.sum(ph.weight * ph.energy)
                bank = new if bank is None else self._concat(bank, new)
                remaining -= add
                if on_progress is not None:
                    on_progress(add)
            bank = self._step(bank, rng, sc)
            n_alive = int(bank["e"].shape[0])
        sc.histories += int(n_histories)
        return sc
