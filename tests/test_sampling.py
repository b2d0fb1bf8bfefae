"""Sampled angular distributions, Compton energies and fluorescence against the cross sections.

The reference pdfs are computed directly from xraylib (``angular_pdf``), independently of the
quantile tables the transport samples from. Chi-square tests at a fixed seed; a correct sampler
fails with probability 1e-4 per test.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from brachymc.backend import get_backend
from brachymc.constants import ELECTRON_REST_ENERGY_KEV
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc import interactions as ia
from brachymc.mc.physics import angular_pdf
from brachymc.sources.simple import isotropic

N = 400_000
P_MIN = 1e-4


@pytest.fixture(scope="module")
def mats(library):
    return [library[n] for n in ("water", "cortical_bone", "silver", "gold")]


@pytest.fixture(scope="module")
def dev(mats):
    be = get_backend("numpy")
    return be, load_or_build_tables(mats).to_backend(be)


def _chi2_pvalue(samples, edges, probs):
    counts, _ = np.histogram(samples, bins=edges)
    expected = probs / probs.sum() * samples.size
    keep = expected > 20
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    return stats.chi2.sf(chi2, keep.sum() - 1)


def _bin_probs(mats, material, kind, energy, edges):
    fine = np.linspace(-1, 1, 40001)
    pdf = angular_pdf(mats, material, kind, energy, fine)
    cdf = np.concatenate([[0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(fine))])
    return np.diff(np.interp(edges, fine, cdf))


@pytest.mark.parametrize("kind", ["compton", "rayleigh"])
@pytest.mark.parametrize("material,energy", [("water", 28.0), ("water", 35.49), ("cortical_bone", 20.3),
                                             ("silver", 31.0), ("gold", 12.7), ("water", 4.2)])
def test_angular_distribution(mats, dev, kind, material, energy):
    be, t = dev
    m = [x.name for x in mats].index(material)
    rng = np.random.default_rng(12345)
    e = np.full(N, energy)
    q, pdf = (t.compton_q, t.compton_pdf) if kind == "compton" else (t.rayleigh_q, t.rayleigh_pdf)
    cos_t = ia.sample_cos_theta(np, q, t, np.full(N, m), e, rng.random(N), pdf)
    # bins in theta (so that forward-peaked Rayleigh is resolved), 60 bins
    edges = np.cos(np.linspace(np.pi, 0, 61))
    edges[0], edges[-1] = -1.0, 1.0
    p = _chi2_pvalue(cos_t, edges, _bin_probs(mats, material, kind, energy, edges))
    assert p > P_MIN, f"{kind} {material} {energy} keV: p = {p:.2e}"


def test_compton_energy_distribution(mats, dev):
    """E' = E / (1 + k(1 - cos)) of sampled photons follows the KN x S energy spectrum."""
    be, t = dev
    energy = 30.0
    rng = np.random.default_rng(7)
    cos_t = ia.sample_cos_theta(np, t.compton_q, t, np.zeros(N, int), np.full(N, energy), rng.random(N),
                                t.compton_pdf)
    e_out = ia.compton_energy(np.full(N, energy), cos_t)
    k = energy / ELECTRON_REST_ENERGY_KEV
    e_min = energy / (1 + 2 * k)
    e_edges = np.linspace(e_min, energy, 41)
    # E' is monotonic in cos: bin probabilities from the cos-pdf at the mapped edges
    cos_edges = 1 - (energy / e_edges - 1) / k
    cos_edges[0], cos_edges[-1] = -1.0, 1.0
    probs = _bin_probs(mats, "water", "compton", energy, cos_edges)
    assert _chi2_pvalue(e_out, e_edges, probs) > P_MIN
    # mean energy transfer agrees with the tabulated <T>/E used in mu_en
    tab = load_or_build_tables(mats)
    expected = float(np.interp(energy, tab.energy, tab.compton_mean_transfer[0]))
    got = 1 - e_out.mean() / energy
    sem = (e_out / energy).std() / np.sqrt(N)
    assert abs(got - expected) < 4 * sem


def test_fluorescence_frequencies(mats, dev):
    """Silver at 30 keV: K-shell fluorescence per photoabsorption = P_K x omega_K; line mix as tabulated."""
    be, t = dev
    tab = load_or_build_tables(mats)
    m = [x.name for x in mats].index("silver")
    e = 30.0
    i, _ = ia.energy_position(np, t, np.full(N, e))
    rng = np.random.default_rng(99)
    emit, e_fl = ia.sample_fluorescence(np, t, np.full(N, m), i, rng.random(N), rng.random(N))
    ch = [c for c in tab.channels if c.z == 47]
    ii = int(i[0])
    cum = tab.fl_cum[m, ii]
    p_ch = np.diff(np.concatenate([[0], cum]))
    expected_emit = sum(p_ch[k] * sum(tab.channels[g].line_probabilities)
                        for k, g in enumerate(tab.fl_channel[m]) if g >= 0)
    sigma = np.sqrt(expected_emit * (1 - expected_emit) / N)
    assert abs(emit.mean() - expected_emit) < 4 * sigma
    k_ch = next(c for c in ch if c.shell == "K")
    ka = np.isin(e_fl, [e for n, e in zip(k_ch.line_names, k_ch.line_energies) if n.startswith("KL")])
    k_index = list(tab.fl_channel[m]).index(tab.channels.index(k_ch))
    p_ka = p_ch[k_index] * sum(p for n, p in zip(k_ch.line_names, k_ch.line_probabilities) if n.startswith("KL"))
    assert abs(ka.mean() - p_ka) < 4 * np.sqrt(p_ka * (1 - p_ka) / N)
    assert np.all(e_fl[emit] < 25.6) and np.all(e_fl[~emit] == 0)


@settings(max_examples=100, deadline=None)
@given(st.floats(-1, 1), st.floats(-1, 1), st.floats(0, 2 * np.pi), st.floats(-1, 1), st.floats(0, 2 * np.pi))
def test_rotation_preserves_angle(w, c, phi0, cos_t, phi):
    """The new direction is a unit vector at the requested angle to the old one."""
    s = np.sqrt(1 - w * w)
    d = np.array([[s * np.cos(phi0)], [s * np.sin(phi0)], [w]])
    new = ia.rotate(np, d, np.array([cos_t]), np.array([phi]))
    assert np.linalg.norm(new[:, 0]) == pytest.approx(1.0, abs=1e-12)
    assert float(np.dot(new[:, 0], d[:, 0])) == pytest.approx(cos_t, abs=1e-9)


def test_isotropic_directions():
    rng = np.random.default_rng(1)
    d = isotropic(np, rng, 200_000)
    np.testing.assert_allclose(np.linalg.norm(d, axis=0), 1.0, atol=1e-12)
    # each component is uniform on [-1, 1] for an isotropic distribution
    for a in range(3):
        assert stats.kstest(d[a], "uniform", args=(-1, 2)).pvalue > P_MIN
