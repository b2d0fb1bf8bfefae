"""Pure array functions for table look-up and interaction sampling.

Every function takes the array namespace ``xp`` (NumPy or CuPy) and a
:class:`~brachymc.mc.physics.DeviceTables`; none keeps state. Energies in keV.
"""

from __future__ import annotations


from brachymc.constants import ELECTRON_REST_ENERGY_KEV


def energy_position(xp, tables, energy):
    """Interval index ``i`` and fraction ``f`` of ln E on the interaction grid.

    Duplicated edge energies form zero-width intervals that are never selected: an energy equal
    to an edge takes the above-edge values.
    """
    ln = xp.log(energy)
    i = xp.searchsorted(tables.ln_e, ln, side="right") - 1
    i = xp.clip(i, 0, tables.ln_e.size - 2)
    f = (ln - tables.ln_e[i]) * tables.inv_dln[i]
    return i, f


def interp_log(table, m, i, f, xp):
    """exp of the linear interpolation of a ln-table (nM, nE) at material ``m``, position (i, f)."""
    lo = table[m, i]
    return xp.exp(lo + f * (table[m, i + 1] - lo))


def interp_lin(table, m, i, f):
    """Linear interpolation of a table (nM, nE) at material ``m``, position (i, f)."""
    lo = table[m, i]
    return lo + f * (table[m, i + 1] - lo)


def _within_interval(c0, c1, p0, p1, fu, xp):
    """Point at probability fraction ``fu`` of the interval [c0, c1] under a linear pdf p0 -> p1."""
    h = c1 - c0
    area = fu * 0.5 * h * (p0 + p1)
    slope = (p1 - p0) / xp.where(h > 0, h, 1.0)
    root = xp.sqrt(xp.maximum(p0 * p0 + 2.0 * slope * area, 0.0))
    den = p0 + root
    x = xp.where(den > 0, 2.0 * area / xp.where(den > 0, den, 1.0), fu * h)
    return c0 + xp.clip(x, 0.0, h)


def sample_cos_theta(xp, quantiles, tables, m, energy, u, pdf=None):
    """cos(theta) from a quantile table (nM, nS, nQ).

    ``u`` selects a quantile interval and the position in it; with ``pdf`` (the pdf at the
    quantiles) the position follows a linear pdf across the interval, otherwise it is linear
    in cos. The two neighbouring table energies are sampled with the same ``u`` and the
    results interpolated linearly in ln E.
    """
    n_s, n_q = quantiles.shape[1], quantiles.shape[2]
    s = (xp.log(energy) - tables.sample_ln_e0) / tables.sample_dln
    j = xp.clip(xp.floor(s).astype(xp.int64), 0, n_s - 2)
    fe = xp.clip(s - j, 0.0, 1.0)
    v = u * (n_q - 1)
    k = xp.clip(xp.floor(v).astype(xp.int64), 0, n_q - 2)
    fu = v - k
    out = []
    for jj in (j, j + 1):
        c0, c1 = quantiles[m, jj, k], quantiles[m, jj, k + 1]
        if pdf is None:
            out.append(c0 + fu * (c1 - c0))
        else:
            out.append(_within_interval(c0, c1, pdf[m, jj, k], pdf[m, jj, k + 1], fu, xp))
    return xp.clip(out[0] + fe * (out[1] - out[0]), -1.0, 1.0)


def compton_energy(energy, cos_t):
    """Scattered photon energy E' = E / (1 + (E / m c^2)(1 - cos theta)) (keV)."""
    return energy / (1.0 + (energy / ELECTRON_REST_ENERGY_KEV) * (1.0 - cos_t))


def sample_fluorescence(xp, tables, m, i, u_channel, u_line):
    """Fluorescence after photoabsorption.

    Returns ``(emit, energy)``: whether a fluorescence photon leaves the atom and its energy
    (keV; 0 where none). The channel (element, shell) is chosen with the tabulated probabilities
    at the grid point ``i`` below the photon energy; the line with yield x radiative rate.
    """
    cum = tables.fl_cum[m, i]                                  # (n, nC)
    n_c = cum.shape[-1]
    k = xp.sum(u_channel[:, None] >= cum, axis=1)
    g = tables.fl_channel[m, xp.clip(k, 0, n_c - 1)]
    has = (k < n_c) & (g >= 0)
    g = xp.clip(g, 0, None)
    lc = tables.line_cum[g]                                    # (n, nL)
    n_l = lc.shape[-1]
    line = xp.sum(u_line[:, None] >= lc, axis=1)
    emit = has & (line < n_l)
    e_fl = tables.line_energy[g, xp.clip(line, 0, n_l - 1)]
    return emit, xp.where(emit, e_fl, 0.0)


def rotate(xp, direction, cos_t, phi):
    """New unit directions (3, n) after scattering by polar angle theta and azimuth phi."""
    u, v, w = direction[0], direction[1], direction[2]
    sin_t = xp.sqrt(xp.maximum(0.0, 1.0 - cos_t * cos_t))
    cp, sp = xp.cos(phi), xp.sin(phi)
    rho2 = 1.0 - w * w
    ok = rho2 > 1e-20
    rho = xp.sqrt(xp.where(ok, rho2, 1.0))
    un = xp.where(ok, u * cos_t + sin_t * (u * w * cp - v * sp) / rho, sin_t * cp)
    vn = xp.where(ok, v * cos_t + sin_t * (v * w * cp + u * sp) / rho, sin_t * sp)
    wn = xp.where(ok, w * cos_t - sin_t * rho * cp, xp.where(w >= 0, 1.0, -1.0) * cos_t)
    norm = xp.sqrt(un * un + vn * vn + wn * wn)
    return xp.stack([un / norm, vn / norm, wn / norm])
