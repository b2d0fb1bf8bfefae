"""The photon transport core, written once against an array namespace (NumPy or CuPy).

A bank of photons is advanced in lockstep: every step moves each photon to the nearer of its
next voxel face (exact DDA) or its next interaction site (remaining number of mean free paths
divided by the voxel's attenuation coefficient), scores the track-length estimator of collision
kerma for that chord, and then lets the photons that reached their interaction site interact:

* photoelectric absorption, with K (and L, Z >= 30) fluorescence emitted isotropically;
* incoherent (Compton) scattering, Klein-Nishina x S(x, Z);
* coherent (Rayleigh) scattering, (1 + cos^2) F(x, Z)^2.

Photons that fall below the cutoff deposit their energy in the current voxel. Dead photons are
compacted away after each step and the bank is refilled from the source when it is half empty.

Tallies (raw, per batch): ``sum(w E mu_en/rho l)`` (keV cm3/g) plus ``w E / rho`` for local
deposits, in float64; divided by the voxel volume this is keV/g.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brachymc.errors import ConfigError, GeometryError
from brachymc.geometry.dda import cross_face, distance_to_face, flat_index
from brachymc.geometry.phantom import VoxelPhantom
from brachymc.mc import interactions as ia
from brachymc.mc.physics import PhysicsTables

BANK_FIELDS = ("pos", "dir", "ivox", "e", "wt", "nmfp", "scat", "ie", "fe")


@dataclass(frozen=True)
class TransportSettings:
    """Transport options.

    Attributes:
        cutoff_kev: photons below this energy deposit locally (keV).
        bank_size: photons advanced together; the bank is refilled when half empty.
        score_primary: also tally the dose of photons that have not interacted.
        score_collision: also tally the interaction (collision) estimator of deposited energy
            (validation only: it is noisier than the track-length estimator).
    """

    cutoff_kev: float = 1.0
    bank_size: int = 1 << 16
    score_primary: bool = False
    score_collision: bool = False

    def __post_init__(self) -> None:
        if not (1.0 <= self.cutoff_kev < 50.0):
            raise ConfigError(f"cutoff_kev must be in [1, 50) keV, got {self.cutoff_kev}")
        if not (1 <= int(self.bank_size) <= 1 << 28):
            raise ConfigError(f"bank_size must be between 1 and 2^28, got {self.bank_size}")


@dataclass
class BatchScores:
    """Raw tallies of one batch on the backend (see module docstring for units)."""

    kerma: object
    primary: object | None = None
    collision: object | None = None
    emitted_energy: object = 0.0     # keV, sum of w E of source photons
    escaped_energy: object = 0.0     # keV leaving the grid
    escaped_primary: object = 0.0    # keV leaving the grid without having interacted
    absorbed_local: object = 0.0     # keV deposited below the cutoff
    steps: int = 0                   # voxel steps (photon-steps)
    histories: int = 0
    extra: dict = field(default_factory=dict)


class Transport:
    """Transport of photons from a source through a voxel phantom.

    Args:
        phantom: the voxel phantom (materials must match ``tables.material_names``).
        tables: physics tables for the phantom's materials, in the same order.
        backend: a :class:`~brachymc.backend.Backend`.
        settings: :class:`TransportSettings`.
    """

    def __init__(self, phantom: VoxelPhantom, tables: PhysicsTables, backend, settings: TransportSettings):
        names = tuple(m.name for m in phantom.materials)
        if tables.material_names != names:
            raise ConfigError(f"physics tables are for {tables.material_names}, phantom has {names}")
        if settings.cutoff_kev != tables.settings.cutoff_kev:
            raise ConfigError(
                f"transport cutoff {settings.cutoff_kev} keV differs from the tables' {tables.settings.cutoff_kev} keV"
            )
        self.phantom = phantom
        self.geom = phantom.geometry
        self.backend = backend
        self.xp = backend.xp
        self.settings = settings
        self.tables = tables.to_backend(backend)
        self.mat = backend.asarray(phantom.material_index.reshape(-1))
        self.rho = backend.asarray(phantom.density.reshape(-1), dtype=self.xp.float64)

    # ------------------------------------------------------------------------------------------
    def new_scores(self) -> BatchScores:
        xp, n = self.xp, self.geom.n_voxels
        s = self.settings
        return BatchScores(
            kerma=xp.zeros(n, dtype=xp.float64),
            primary=xp.zeros(n, dtype=xp.float64) if s.score_primary else None,
            collision=xp.zeros(n, dtype=xp.float64) if s.score_collision else None,
            emitted_energy=xp.zeros((), dtype=xp.float64),
            escaped_energy=xp.zeros((), dtype=xp.float64),
            escaped_primary=xp.zeros((), dtype=xp.float64),
            absorbed_local=xp.zeros((), dtype=xp.float64),
        )

    def check_source(self, source) -> None:
        pts = source.bounding_points()
        inside = self.geom.contains(pts)
        if not np.all(inside):
            bad = pts[~inside][0]
            raise GeometryError(
                f"source point {tuple(np.round(bad, 4))} cm lies outside the phantom "
                f"{tuple(np.round(self.geom.origin, 4))} - {tuple(np.round(self.geom.upper, 4))} cm"
            )
        emax = source.spectrum.max_energy_kev
        if emax > self.tables.emax_kev or source.spectrum.min_energy_kev <= self.settings.cutoff_kev:
            raise ConfigError(
                f"source energies {source.spectrum.min_energy_kev}-{emax} keV must lie within "
                f"({self.settings.cutoff_kev}, {self.tables.emax_kev}] keV"
            )

    # ------------------------------------------------------------------------------------------
    def _new_photons(self, pos, direction, energy, weight, rng, scattered: bool):
        xp = self.xp
        g = self.geom
        n = energy.shape[0]
        ivox = xp.stack([
            xp.clip(xp.floor((pos[a] - g.origin[a]) / g.spacing[a]).astype(xp.int64), 0, (g.nx, g.ny, g.nz)[a] - 1)
            for a in range(3)
        ])
        ie, fe = ia.energy_position(xp, self.tables, energy)
        return {
            "pos": pos, "dir": direction, "ivox": ivox, "e": energy, "wt": weight,
            "nmfp": -xp.log1p(-rng.random(n)),
            "scat": xp.full(n, scattered, dtype=bool), "ie": ie, "fe": fe,
        }

    def _take(self, bank, idx):
        return {k: (v[:, idx] if v.ndim == 2 else v[idx]) for k, v in bank.items()}

    def _concat(self, a, b):
        xp = self.xp
        return {k: xp.concatenate([a[k], b[k]], axis=-1) for k in BANK_FIELDS}

    # ------------------------------------------------------------------------------------------
    def _step(self, b, rng, sc: BatchScores):
        """Advance every photon of bank ``b`` by one voxel chord or to its interaction."""
        xp, T, geom, bk = self.xp, self.tables, self.geom, self.backend
        n = b["e"].shape[0]
        sc.steps += n
        flat = flat_index(b["ivox"], geom)
        m = self.mat[flat].astype(xp.int64)
        rho = self.rho[flat]
        mu = rho * ia.interp_log(T.ln_mu, m, b["ie"], b["fe"], xp)
        t_face, axis = distance_to_face(xp, b["pos"], b["dir"], b["ivox"], geom)
        d_int = b["nmfp"] / mu
        hit = d_int < t_face
        d = xp.where(hit, d_int, t_face)

        # track-length estimator of collision kerma: w E (mu_en/rho) l
        score = b["wt"] * b["e"] * ia.interp_log(T.ln_muen, m, b["ie"], b["fe"], xp) * d
        bk.scatter_add(sc.kerma, flat, score)
        if sc.primary is not None:
            bk.scatter_add(sc.primary, flat, xp.where(b["scat"], 0.0, score))

        pos = b["pos"] + b["dir"] * d
        nmfp = b["nmfp"] - mu * d
        new_ivox, new_pos, inside = cross_face(xp, pos, b["dir"], b["ivox"], axis, geom)
        cross = ~hit
        b["ivox"] = xp.where(cross, new_ivox, b["ivox"])
        b["pos"] = xp.where(cross, new_pos, pos)
        b["nmfp"] = nmfp
        escaped = cross & ~inside
        esc_e = xp.where(escaped, b["wt"] * b["e"], 0.0)
        sc.escaped_energy += xp.sum(esc_e)
        sc.escaped_primary += xp.sum(xp.where(b["scat"], 0.0, esc_e))
        alive = ~escaped

        secondaries = None
        idx = xp.nonzero(hit)[0]
        k = int(idx.shape[0])
        if k:
            secondaries = self._interact(b, idx, m[idx], flat[idx], rho[idx], alive, rng, sc)
        keep = xp.nonzero(alive)[0]
        b = self._take(b, keep)
        if secondaries is not None:
            b = self._concat(b, secondaries)
        return b

    def _interact(self, b, idx, m, flat, rho, alive, rng, sc: BatchScores):
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
        if bool(low.any()):
            bk.scatter_add(sc.kerma, flat, wt * local / rho)
            sc.absorbed_local += xp.sum(wt * local)
        if sc.collision is not None:
            dep = xp.where(is_photo, e - e_fl, e - e_out) + local
            bk.scatter_add(sc.collision, flat, wt * dep / rho)

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
        return self._new_photons(
            b["pos"][:, src].copy(), ia.isotropic(xp, rng, int(j.shape[0])), e_fl[j], wt[j], rng, scattered=True
        ) | {"ivox": b["ivox"][:, src].copy()}

    # ------------------------------------------------------------------------------------------
    def run_batch(self, source, n_histories: int, rng, scores: BatchScores | None = None,
                  on_progress=None) -> BatchScores:
        """Transport ``n_histories`` source photons to completion and return the raw tallies.

        ``on_progress(n)`` is called with the number of source photons started at each refill.
        """
        self.check_source(source)
        sc = scores if scores is not None else self.new_scores()
        xp = self.xp
        size = int(self.settings.bank_size)
        remaining = int(n_histories)
        bank = None
        n_alive = 0
        while remaining > 0 or n_alive > 0:
            if remaining > 0 and n_alive <= size // 2:
                add = min(remaining, size - n_alive)
                ph = source.sample(xp, rng, add)
                new = self._new_photons(ph.position, ph.direction, ph.energy, ph.weight, rng, scattered=False)
                sc.emitted_energy += xp.sum(ph.weight * ph.energy)
                bank = new if bank is None else self._concat(bank, new)
                remaining -= add
                if on_progress is not None:
                    on_progress(add)
            bank = self._step(bank, rng, sc)
            n_alive = int(bank["e"].shape[0])
        sc.histories += int(n_histories)
        return sc
