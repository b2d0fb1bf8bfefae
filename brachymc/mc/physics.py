"""Photon interaction tables for 1-50 keV, built from xraylib.

For a set of materials this module builds, on one log-energy grid that holds every absorption
edge of the elements present exactly (twice: the value below and the value above):

* partial mass attenuation coefficients (cm2/g): photoelectric (``CS_Photo``), incoherent
  (``CS_Compt``, Compton with the incoherent scattering function) and coherent (``CS_Rayl``);
* the mass energy-absorption coefficient mu_en/rho (cm2/g) derived from the same data::

      mu_en/rho = tau (1 - X/E) + sigma_incoh <T>/E

  where X is the mean fluorescence energy emitted per photoabsorption (K shells, and L1-L3
  shells of Z >= 30, lines above the cutoff; the same channels the transport emits) and <T>/E
  the mean fraction of the photon energy given to the Compton electron, integrated over the
  Klein-Nishina cross section times the incoherent scattering function S(x, Z).
  ``xraylib.CS_Energy`` is deliberately not used (30-40 % wrong at 15-50 keV for low Z);
* photoabsorption channel probabilities (element, shell), fluorescence yields and line
  energies/probabilities (xraylib ``CS_Photo_Partial``, ``FluorYield``, ``RadRate``,
  ``LineEnergy``);
* inverse-CDF (quantile) tables of cos(theta) for Compton (Klein-Nishina x S(x)) and Rayleigh
  ((1 + cos^2) F(x)^2) scattering, with the pdf at each quantile so that sampling inside a
  quantile interval follows a linear pdf (exact where S ~ x^2 makes the pdf vanish at
  theta = 0); mixtures add the elemental terms weighted by w_i / A_i.

xraylib's spline tables put the photoelectric jump within +-3e-4 (relative) of ``EdgeEnergy``;
edge values are therefore extrapolated (log-log) from points 0.1 % and 0.2 % away on each side,
and no ordinary grid point lies within 0.1 % of an edge.

References: Hubbell & Seltzer, NISTIR 5632 (mu_en definition); Schoonjans et al.,
Spectrochim. Acta B 66 (2011) 776 (xraylib); Salvat et al., PENELOPE-2018 (sampling scheme).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import xraylib

from brachymc.constants import ELECTRON_REST_ENERGY_KEV, HC_KEV_ANGSTROM
from brachymc.errors import PhysicsDataError
from brachymc.materials import Material

#: Bump when the content or layout of the tables changes (invalidates caches).
TABLE_VERSION = 4

_EDGE_SHELLS = (
    xraylib.K_SHELL, xraylib.L1_SHELL, xraylib.L2_SHELL, xraylib.L3_SHELL,
    xraylib.M1_SHELL, xraylib.M2_SHELL, xraylib.M3_SHELL, xraylib.M4_SHELL, xraylib.M5_SHELL,
)
_SHELL_NAMES = {xraylib.K_SHELL: "K", xraylib.L1_SHELL: "L1", xraylib.L2_SHELL: "L2", xraylib.L3_SHELL: "L3"}
#: Relative offsets used to take edge values clear of xraylib's own jump position.
_EDGE_OFFSETS = (1e-3, 2e-3)
#: Smallest Z whose L shells are given fluorescence channels.
L_SHELL_MIN_Z = 30


def _line_macros() -> dict[str, list[tuple[str, int]]]:
    """xraylib line macros per initial vacancy shell, e.g. K -> [("KL3", KL3_LINE), ...]."""
    out: dict[str, list[tuple[str, int]]] = {"K": [], "L1": [], "L2": [], "L3": []}
    for name in dir(xraylib):
        m = re.match(r"^(K|L1|L2|L3)([KLMNOPQ]\d)_LINE$", name)
        if m:
            out[m.group(1)].append((m.group(1) + m.group(2), getattr(xraylib, name)))
    return out


_LINES = _line_macros()


@dataclass(frozen=True)
class PhysicsSettings:
    """Grid and table resolution. Frozen: part of the cache key.

    Attributes:
        emin_kev, emax_kev: energy range of the tables (keV).
        n_log_points: points uniform in ln E before the edges are inserted.
        cutoff_kev: photon transport cutoff; fluorescence lines below it are not emitted.
        n_sample_energies: energies (uniform in ln E) of the angular quantile tables.
        n_quantiles: quantiles per angular table.
        n_angles: angles used to integrate the angular distributions.
    """

    emin_kev: float = 1.0
    emax_kev: float = 50.0
    n_log_points: int = 1000
    cutoff_kev: float = 1.0
    n_sample_energies: int = 128
    n_quantiles: int = 1025
    n_angles: int = 4097

    def __post_init__(self) -> None:
        if not (0 < self.emin_kev < self.emax_kev):
            raise PhysicsDataError(f"energy range must satisfy 0 < emin < emax, got {self.emin_kev}-{self.emax_kev} keV")
        if self.emin_kev < 1.0 or self.emax_kev > 1000.0:
            raise PhysicsDataError("tables are built for 1 keV <= E <= 1000 keV")
        if not (self.emin_kev <= self.cutoff_kev < self.emax_kev):
            raise PhysicsDataError(
                f"cutoff {self.cutoff_kev} keV must lie in the table range [{self.emin_kev}, {self.emax_kev}) keV"
            )
        if self.n_log_points < 50 or self.n_sample_energies < 8 or self.n_quantiles < 65 or self.n_angles < 257:
            raise PhysicsDataError("table resolution too coarse")


# --------------------------------------------------------------------------------------------
# Energy grid
# --------------------------------------------------------------------------------------------
def absorption_edges(elements: Sequence[int], emin: float, emax: float) -> list[tuple[float, int, int]]:
    """Edges (energy keV, Z, shell) of K..M5 shells of ``elements`` strictly inside (emin, emax)."""
    edges = []
    for z in sorted(set(elements)):
        for shell in _EDGE_SHELLS:
            try:
                e = xraylib.EdgeEnergy(int(z), shell)
            except ValueError:
                continue
            if emin < e < emax:
                edges.append((float(e), int(z), shell))
    return sorted(edges)


def energy_grid(elements: Sequence[int], settings: PhysicsSettings) -> tuple[np.ndarray, np.ndarray]:
    """Log grid with every edge present twice.

    Returns ``(energies, side)``: ``side`` is 0 for ordinary points, -1 for the below-edge copy
    and +1 for the above-edge copy of an edge energy (which appear in that order).
    """
    base = np.geomspace(settings.emin_kev, settings.emax_kev, settings.n_log_points)
    edges = sorted({round(e, 9) for e, _, _ in absorption_edges(elements, settings.emin_kev, settings.emax_kev)})
    keep = np.ones(base.size, bool)
    for e in edges:
        keep &= np.abs(base / e - 1.0) > _EDGE_OFFSETS[0]
    keep[0] = keep[-1] = True
    pts = [(float(x), 0) for x in base[keep]]
    for e in edges:
        pts += [(e, -1), (e, 1)]
    pts.sort()
    energies = np.array([p[0] for p in pts])
    side = np.array([p[1] for p in pts], dtype=np.int8)
    return energies, side


def _on_grid(fn, energies: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Evaluate a scalar function of energy on the grid, extrapolating edge points log-log."""
    out = np.empty(energies.size)
    for i, (e, s) in enumerate(zip(energies, side)):
        if s == 0:
            out[i] = fn(e)
        else:
            e1, e2 = e * (1 + s * _EDGE_OFFSETS[0]), e * (1 + s * _EDGE_OFFSETS[1])
            v1, v2 = fn(e1), fn(e2)
            if v1 > 0 and v2 > 0:
                slope = np.log(v2 / v1) / np.log(e2 / e1)
                out[i] = v1 * np.exp(slope * np.log(e / e1))
            else:
                out[i] = v1
    return out


def _safe(fn, *args) -> float:
    try:
        return float(fn(*args))
    except ValueError:  # below the shell's edge, or no data
        return 0.0


# --------------------------------------------------------------------------------------------
# Elemental data
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FluorescenceChannel:
    """A photoabsorption channel that can emit fluorescence: an (element, shell) pair.

    ``line_energies`` (keV) and ``line_probabilities`` are per photoabsorption in this shell:
    the fluorescence yield times the normalised radiative rates, lines below the cutoff left out.
    """

    z: int
    shell: str
    edge_kev: float
    fluorescence_yield: float
    line_names: tuple[str, ...]
    line_energies: tuple[float, ...]
    line_probabilities: tuple[float, ...]

    @property
    def mean_emitted_energy(self) -> float:
        """Mean fluorescence energy emitted per vacancy in this shell (keV)."""
        return float(np.dot(self.line_energies, self.line_probabilities))


def fluorescence_channel(z: int, shell: int, cutoff_kev: float, emax_kev: float) -> FluorescenceChannel | None:
    """Fluorescence data of one shell, or None when it cannot emit a line above the cutoff."""
    name = _SHELL_NAMES[shell]
    if shell != xraylib.K_SHELL and z < L_SHELL_MIN_Z:
        return None
    edge = _safe(xraylib.EdgeEnergy, z, shell)
    omega = _safe(xraylib.FluorYield, z, shell)
    if edge <= 0 or edge >= emax_kev or omega <= 0:
        return None
    names, energies, rates = [], [], []
    for lname, macro in _LINES[name]:
        r = _safe(xraylib.RadRate, z, macro)
        e = _safe(xraylib.LineEnergy, z, macro)
        if r > 0 and e > 0:
            names.append(lname)
            energies.append(e)
            rates.append(r)
    if not rates:
        return None
    rates_arr = np.array(rates) / np.sum(rates)
    keep = np.array(energies) > cutoff_kev
    if not keep.any():
        return None
    probs = omega * rates_arr[keep]
    return FluorescenceChannel(
        z=z, shell=name, edge_kev=edge, fluorescence_yield=omega,
        line_names=tuple(np.array(names)[keep]), line_energies=tuple(np.array(energies)[keep].tolist()),
        line_probabilities=tuple(probs.tolist()),
    )


def _q_grid(emax_kev: float) -> np.ndarray:
    """Momentum-transfer grid x = sin(theta/2)/lambda (1/Angstrom) for S(x) and F(x)."""
    xmax = emax_kev / HC_KEV_ANGSTROM * 1.0001
    return np.concatenate([[0.0], np.geomspace(1e-3, xmax, 1500)])


def _scattering_functions(z: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Incoherent scattering function S(q, Z) and atomic form factor F(q, Z) on ``q``.

    xraylib's S(q) spline starts at q = 1e-3 1/A; below it S = S(1e-3) (q/1e-3)^2 (S ~ q^2).
    """
    s = np.empty(q.size)
    f = np.empty(q.size)
    s_min = xraylib.SF_Compt(z, 1e-3)
    for i, x in enumerate(q):
        s[i] = xraylib.SF_Compt(z, x) if x >= 1e-3 else s_min * (x / 1e-3) ** 2
        f[i] = xraylib.FF_Rayl(z, x) if x > 0 else float(z)
    return s, f


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
@dataclass
class PhysicsTables:
    """Interaction tables for an ordered set of materials (host NumPy arrays).

    Material index m refers to ``material_names[m]``. Energies in keV, coefficients in cm2/g.
    Use :meth:`to_backend` to upload the arrays the transport needs.
    """

    settings: PhysicsSettings
    material_names: tuple[str, ...]
    energy: np.ndarray            # (nE,) keV, edges duplicated
    photo: np.ndarray             # (nM, nE)
    incoh: np.ndarray             # (nM, nE)
    coh: np.ndarray               # (nM, nE)
    muen: np.ndarray              # (nM, nE)
    compton_mean_transfer: np.ndarray  # (nM, nE) <T>/E of incoherent scattering
    fl_cum: np.ndarray            # (nM, nE, nC) cumulative channel probability per photoabsorption
    fl_channel: np.ndarray        # (nM, nC) global channel index (-1 = padding)
    line_cum: np.ndarray          # (nG, nL) cumulative emission probability per channel vacancy
    line_energy: np.ndarray       # (nG, nL) keV
    sample_ln_e0: float           # ln E of the first quantile-table energy
    sample_dln: float             # spacing in ln E of the quantile tables
    compton_quantiles: np.ndarray  # (nM, nS, nQ) cos(theta)
    rayleigh_quantiles: np.ndarray  # (nM, nS, nQ) cos(theta)
    compton_pdf: np.ndarray        # (nM, nS, nQ) pdf(cos) at the quantiles, up to a factor per table (see _quantile_table)
    rayleigh_pdf: np.ndarray       # (nM, nS, nQ)
    channels: tuple[FluorescenceChannel, ...] = field(default=())
    key: str = ""

    # ---- convenience on the host ------------------------------------------------------------
    @property
    def total(self) -> np.ndarray:
        """mu/rho (cm2/g), shape (nM, nE)."""
        return self.photo + self.incoh + self.coh

    def index(self, name: str) -> int:
        return self.material_names.index(name)

    def interpolate(self, quantity: str, material: str | int, energy_kev) -> np.ndarray:
        """Log-log interpolation of ``photo``, ``incoh``, ``coh``, ``total`` or ``muen`` (cm2/g)."""
        m = material if isinstance(material, int) else self.index(material)
        table = getattr(self, quantity)[m]
        e = np.asarray(energy_kev, dtype=float)
        if np.any(e < self.energy[0]) or np.any(e > self.energy[-1]):
            raise PhysicsDataError(
                f"energy outside the tables ({self.energy[0]}-{self.energy[-1]} keV): {e}"
            )
        ln_e = np.log(self.energy)
        i = np.clip(np.searchsorted(ln_e, np.log(e), side="right") - 1, 0, ln_e.size - 2)
        width = ln_e[i + 1] - ln_e[i]
        f = np.where(width > 0, (np.log(e) - ln_e[i]) / np.where(width > 0, width, 1.0), 0.0)
        lo, hi = np.log(table[i]), np.log(table[i + 1])
        return np.exp(lo + f * (hi - lo))

    def to_backend(self, backend) -> "DeviceTables":
        """Upload the arrays used by the transport to ``backend`` (NumPy or CuPy)."""
        return DeviceTables.from_tables(self, backend)


@dataclass
class DeviceTables:
    """The transport's view of :class:`PhysicsTables`, as arrays of one backend."""

    ln_e: object
    inv_dln: object
    ln_mu: object
    ln_muen: object
    p_photo: object
    p_incoh: object
    fl_cum: object
    fl_channel: object
    line_cum: object
    line_energy: object
    compton_q: object
    rayleigh_q: object
    compton_pdf: object
    rayleigh_pdf: object
    sample_ln_e0: float
    sample_dln: float
    emin_kev: float
    emax_kev: float

    @classmethod
    def from_tables(cls, t: PhysicsTables, backend) -> "DeviceTables":
        a = backend.asarray
        ln_e = np.log(t.energy)
        width = np.diff(ln_e)
        inv = np.where(width > 0, 1.0 / np.where(width > 0, width, 1.0), 0.0)
        total = t.total
        return cls(
            ln_e=a(ln_e), inv_dln=a(inv),
            ln_mu=a(np.log(total)), ln_muen=a(np.log(t.muen)),
            p_photo=a(t.photo / total), p_incoh=a(t.incoh / total),
            fl_cum=a(t.fl_cum), fl_channel=a(t.fl_channel.astype(np.int32)),
            line_cum=a(t.line_cum), line_energy=a(t.line_energy),
            compton_q=a(t.compton_quantiles), rayleigh_q=a(t.rayleigh_quantiles),
            compton_pdf=a(t.compton_pdf), rayleigh_pdf=a(t.rayleigh_pdf),
            sample_ln_e0=float(t.sample_ln_e0), sample_dln=float(t.sample_dln),
            emin_kev=float(t.energy[0]), emax_kev=float(t.energy[-1]),
        )


def tables_key(materials: Sequence[Material], settings: PhysicsSettings) -> str:
    """Hash of everything the tables depend on (compositions, settings, xraylib, layout)."""
    payload = {
        "version": TABLE_VERSION,
        "xraylib": getattr(xraylib, "__version__", "?"),
        "settings": asdict(settings),
        "materials": [[m.name, [[z, round(w, 12)] for z, w in m.mass_fractions]] for m in materials],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _kn_factor(e_kev: np.ndarray, cos_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Klein-Nishina angular factor (unnormalised) and scattered-energy ratio E'/E."""
    k = e_kev / ELECTRON_REST_ENERGY_KEV
    ratio = 1.0 / (1.0 + k * (1.0 - cos_t))
    return 0.5 * ratio * ratio * (ratio + 1.0 / ratio - (1.0 - cos_t * cos_t)), ratio


def _quantile_table(pdf: np.ndarray, cos_t: np.ndarray, n_q: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of cos(theta) at cumulative probabilities linspace(0, 1, n_q), and the
    pdf at those quantiles (for sampling within an interval with a linear pdf). Note: ``norm`` below is
    a view of the CDF's last column, which the in-place normalisation sets to 1, so the returned
    values are the *unnormalised* pdf; the sampler uses only their ratios within an interval, so
    this does not matter there (a user of absolute values normalises per interval, as
    ``brachymc.validation.sk_check`` does).

    ``cos_t`` increasing; ``pdf`` (..., n_angles) unnormalised.
    """
    seg = 0.5 * (pdf[..., 1:] + pdf[..., :-1]) * np.diff(cos_t)
    cdf = np.concatenate([np.zeros(pdf.shape[:-1] + (1,)), np.cumsum(seg, axis=-1)], axis=-1)
    norm = cdf[..., -1:]
    cdf /= norm
    u = np.linspace(0.0, 1.0, n_q)
    out = np.empty(pdf.shape[:-1] + (n_q,))
    dens = np.empty_like(out)
    for idx in np.ndindex(pdf.shape[:-1]):
        out[idx] = np.interp(u, cdf[idx], cos_t)
        out[idx][0], out[idx][-1] = -1.0, 1.0
        dens[idx] = np.interp(out[idx], cos_t, pdf[idx] / norm[idx])
    return out, dens


def build_tables(materials: Sequence[Material], settings: PhysicsSettings = PhysicsSettings()) -> PhysicsTables:
    """Build interaction tables for ``materials`` (order defines the material index)."""
    if not materials:
        raise PhysicsDataError("no materials given")
    names = [m.name for m in materials]
    if len(set(names)) != len(names):
        raise PhysicsDataError(f"duplicate material names: {names}")
    elements = sorted({z for m in materials for z in m.elements})
    energies, side = energy_grid(elements, settings)
    n_e = energies.size

    # ---- elemental cross sections (cm2/g) on the grid -----------------------------------------
    el_photo = {z: _on_grid(lambda e, z=z: xraylib.CS_Photo(z, e), energies, side) for z in elements}
    el_incoh = {z: np.array([xraylib.CS_Compt(z, e) for e in energies]) for z in elements}
    el_coh = {z: np.array([xraylib.CS_Rayl(z, e) for e in energies]) for z in elements}

    # ---- fluorescence channels --------------------------------------------------------------
    channels: list[FluorescenceChannel] = []
    chan_partial: list[np.ndarray] = []
    for z in elements:
        for shell in (xraylib.K_SHELL, xraylib.L1_SHELL, xraylib.L2_SHELL, xraylib.L3_SHELL):
            ch = fluorescence_channel(z, shell, settings.cutoff_kev, settings.emax_kev)
            if ch is None:
                continue
            part = _on_grid(lambda e, z=z, s=shell: _safe(xraylib.CS_Photo_Partial, z, s, e), energies, side)
            part[energies < ch.edge_kev] = 0.0
            part[(energies == ch.edge_kev) & (side < 0)] = 0.0
            channels.append(ch)
            chan_partial.append(np.minimum(part, el_photo[z]))

    # ---- scattering functions and Compton energy transfer -----------------------------------
    q = _q_grid(settings.emax_kev)
    sf = {z: _scattering_functions(z, q) for z in elements}
    theta = np.linspace(np.pi, 0.0, settings.n_angles)  # cos increasing
    cos_t = np.cos(theta)
    cos_t[0], cos_t[-1] = -1.0, 1.0
    sin_half = np.sqrt(np.clip((1.0 - cos_t) / 2.0, 0.0, None))

    n_m = len(materials)
    photo = np.zeros((n_m, n_e))
    incoh = np.zeros((n_m, n_e))
    coh = np.zeros((n_m, n_e))
    transfer = np.zeros((n_m, n_e))
    fl_emitted = np.zeros((n_m, n_e))  # mean fluorescence energy per photoabsorption (keV)
    n_c = max(1, max(sum(1 for ch in channels if ch.z in m.elements) for m in materials))
    fl_cum = np.zeros((n_m, n_e, n_c))
    fl_channel = -np.ones((n_m, n_c), dtype=np.int32)

    s_sample = np.exp(
        np.linspace(np.log(settings.emin_kev), np.log(settings.emax_kev), settings.n_sample_energies)
    )
    compton_q = np.empty((n_m, s_sample.size, settings.n_quantiles))
    rayleigh_q = np.empty_like(compton_q)
    compton_pdf = np.empty_like(compton_q)
    rayleigh_pdf = np.empty_like(compton_q)

    kn_grid, ratio_grid = _kn_factor(energies[:, None], cos_t[None, :])
    kn_s, _ = _kn_factor(s_sample[:, None], cos_t[None, :])
    x_grid = energies[:, None] / HC_KEV_ANGSTROM * sin_half[None, :]
    x_s = s_sample[:, None] / HC_KEV_ANGSTROM * sin_half[None, :]
    rayl_shape = 0.5 * (1.0 + cos_t * cos_t)

    for m, mat in enumerate(materials):
        s_mix_grid = np.zeros_like(x_grid)
        s_mix_s = np.zeros_like(x_s)
        f2_mix_s = np.zeros_like(x_s)
        for z, w in mat.mass_fractions:
            photo[m] += w * el_photo[z]
            incoh[m] += w * el_incoh[z]
            coh[m] += w * el_coh[z]
            n_per_g = w / xraylib.AtomicWeight(z)
            s_z, f_z = sf[z]
            s_mix_grid += n_per_g * np.interp(x_grid, q, s_z)
            s_mix_s += n_per_g * np.interp(x_s, q, s_z)
            f2_mix_s += n_per_g * np.interp(x_s, q, f_z) ** 2
        # mean energy transfer fraction of incoherent scattering: <1 - E'/E> over KN x S
        dcs = kn_grid * s_mix_grid
        norm = np.trapezoid(dcs, cos_t, axis=1)
        transfer[m] = np.trapezoid(dcs * (1.0 - ratio_grid), cos_t, axis=1) / norm
        # fluorescence channels of this material
        k = 0
        cum = np.zeros(n_e)
        for g, ch in enumerate(channels):
            w = dict(mat.mass_fractions).get(ch.z)
            if w is None:
                continue
            p = np.where(photo[m] > 0, w * chan_partial[g] / photo[m], 0.0)
            fl_emitted[m] += p * ch.mean_emitted_energy
            cum = cum + p
            fl_cum[m, :, k] = cum
            fl_channel[m, k] = g
            k += 1
        fl_cum[m, :, k:] = cum[:, None] if k else 0.0
        # angular quantile tables
        compton_q[m], compton_pdf[m] = _quantile_table(kn_s * s_mix_s, cos_t, settings.n_quantiles)
        rayleigh_q[m], rayleigh_pdf[m] = _quantile_table(rayl_shape[None, :] * f2_mix_s, cos_t, settings.n_quantiles)

    if np.any(fl_cum > 1.0 + 1e-6):
        raise PhysicsDataError("photoabsorption channel probabilities exceed 1; check xraylib data")
    muen = photo * (1.0 - fl_emitted / energies[None, :]) + incoh * transfer

    n_l = max([len(ch.line_energies) for ch in channels] + [1])
    line_cum = np.zeros((max(1, len(channels)), n_l))
    line_energy = np.zeros_like(line_cum)
    for g, ch in enumerate(channels):
        c = np.cumsum(ch.line_probabilities)
        line_cum[g, : c.size] = c
        line_cum[g, c.size:] = c[-1]
        line_energy[g, : c.size] = ch.line_energies
    if not channels:
        line_cum[:] = 0.0

    return PhysicsTables(
        settings=settings, material_names=tuple(names), energy=energies,
        photo=photo, incoh=incoh, coh=coh, muen=muen, compton_mean_transfer=transfer,
        fl_cum=fl_cum, fl_channel=fl_channel, line_cum=line_cum, line_energy=line_energy,
        sample_ln_e0=float(np.log(s_sample[0])),
        sample_dln=float(np.log(s_sample[1] / s_sample[0])),
        compton_quantiles=compton_q, rayleigh_quantiles=rayleigh_q,
        compton_pdf=compton_pdf, rayleigh_pdf=rayleigh_pdf,
        channels=tuple(channels), key=tables_key(materials, settings),
    )


def angular_pdf(tables_materials: Sequence[Material], material: str, kind: str, energy_kev: float,
                cos_t: np.ndarray, emax_kev: float = 50.0) -> np.ndarray:
    """Normalised differential cross section p(cos theta) computed directly from xraylib.

    Independent of the quantile tables (used by tests and plots): ``kind`` is ``"compton"``
    (Klein-Nishina x S) or ``"rayleigh"`` ((1 + cos^2)/2 x F^2), mixtures weighted by w_i/A_i.
    """
    mat = next(m for m in tables_materials if m.name == material)
    x = energy_kev / HC_KEV_ANGSTROM * np.sqrt(np.clip((1 - cos_t) / 2, 0, None))
    pdf = np.zeros_like(cos_t)
    for z, w in mat.mass_fractions:
        n = w / xraylib.AtomicWeight(z)
        if kind == "compton":
            s = np.array([xraylib.SF_Compt(z, xx) if xx >= 1e-3 else xraylib.SF_Compt(z, 1e-3) * (xx / 1e-3) ** 2
                          for xx in x])
            pdf += n * s
        elif kind == "rayleigh":
            f = np.array([xraylib.FF_Rayl(z, xx) if xx > 0 else z for xx in x])
            pdf += n * f * f
        else:
            raise ValueError(kind)
    if kind == "compton":
        pdf *= _kn_factor(np.asarray(energy_kev), cos_t)[0]
    else:
        pdf *= 0.5 * (1 + cos_t**2)
    return pdf / np.trapezoid(pdf, cos_t)
