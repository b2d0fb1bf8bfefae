"""Seed models: exact ray tracing through solids of revolution, volumes, closure, sampling."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from scipy import stats

from brachymc.errors import ConfigError
from brachymc.geometry.seed import (SURFACE_EPS, SeedModel, Solid, Sphere, ActiveRegion, check_seed_model,
                                    load_builtin_seed, load_seed_model, ray_invariants, seed_library)

Z = np.array([0.0, 0.0, 1.0])


def chords(model, p0, d, max_steps=400):
    """Path length per solid along rays p0 + t d (t >= 0) until they leave the model (seed frame)."""
    n = p0.shape[1]
    out = np.zeros((len(model.solids), n))
    pos = p0.copy()
    alive = np.ones(n, bool)
    for _ in range(max_steps):
        z, r2, w, pd = ray_invariants(np, pos, d, np.zeros(3), Z)
        t = model.distance_to_surface(np, z, r2, w, pd)
        alive &= t < 1e29
        if not alive.any():
            break
        t = np.where(alive, t, 0.0)
        mid = pos + d * t / 2
        zm, rm2, _, _ = ray_invariants(np, mid, d, np.zeros(3), Z)
        where = model.locate(np, zm, rm2)
        for i in range(len(model.solids)):
            out[i] += np.where(where == i, t, 0.0)
        pos = pos + d * t
    return out


def simple(solids, active="a"):
    return SeedModel(key="t", name="t", solids=tuple(solids), active=(ActiveRegion(active),))


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


@settings(max_examples=150, deadline=None)
@given(st.floats(0.01, 0.1), st.floats(0.02, 0.3), st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1),
       st.floats(-0.5, 0.5), st.floats(-0.5, 0.5), st.floats(-0.5, 0.5))
def test_cylinder_chord_matches_analytic(radius, half, a, b, c, px, py, pz):
    """Chord through a finite cylinder from the tracer = analytic slab x quadratic intersection."""
    d = _unit([a, b, c]) if abs(a) + abs(b) + abs(c) > 1e-3 else np.array([1.0, 0, 0])
    p = np.array([px, py, pz])
    m = simple([Solid("a", "water", r_max=radius, z_min=-half, z_max=half)])
    got = chords(m, p[:, None], d[:, None])[0, 0]
    # analytic: t-interval inside the infinite cylinder intersected with the z slab, t >= 0
    qa, qb, qc = d[0] ** 2 + d[1] ** 2, 2 * (p[0] * d[0] + p[1] * d[1]), p[0] ** 2 + p[1] ** 2 - radius**2
    # a ray running along the cylinder wall (measure zero) is inside or outside by rounding alone
    assume(qa > 1e-14 or abs(qc) > 1e-12 * radius**2)
    # ...and so is a ray lying in an end plane
    assume(abs(d[2]) > 1e-12 or abs(abs(p[2]) - half) > 1e-12)
    if qa < 1e-14:
        lo, hi = (-np.inf, np.inf) if qc <= 0 else (0.0, 0.0)
    else:
        disc = qb * qb - 4 * qa * qc
        if disc <= 0:
            lo = hi = 0.0
        else:
            lo, hi = (-qb - np.sqrt(disc)) / (2 * qa), (-qb + np.sqrt(disc)) / (2 * qa)
    if abs(d[2]) < 1e-14:
        zlo, zhi = (-np.inf, np.inf) if abs(p[2]) <= half else (0.0, 0.0)
    else:
        t1, t2 = (-half - p[2]) / d[2], (half - p[2]) / d[2]
        zlo, zhi = min(t1, t2), max(t1, t2)
    expected = max(0.0, min(hi, zhi) - max(lo, zlo, 0.0))
    # roots within SURFACE_EPS (1e-9 cm) of the start are the surface the ray starts on: rays grazing
    # the wall at their start may keep or lose a chord of that order
    # (near-)tangent rays: the analytic chord is the sqrt of a rounding error, compare squares there
    assert abs(got - expected) < 10 * SURFACE_EPS or abs(got**2 - expected**2) < 1e-13


@settings(max_examples=150, deadline=None)
@given(st.floats(0.01, 0.2), st.floats(-0.3, 0.3), st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1),
       st.floats(-0.3, 0.3), st.floats(-0.3, 0.3))
def test_sphere_and_hemisphere_chords(radius, z0, a, b, c, px, py):
    """Full sphere: chord 2 sqrt(R^2 - b^2); the two hemispheres (z >= z0, z <= z0) add up to it."""
    d = _unit([a, b, c]) if abs(a) + abs(b) + abs(c) > 1e-3 else np.array([0, 0, 1.0])
    p = np.array([px, py, z0]) - 2.0 * d     # start outside, aimed near the sphere
    full = simple([Solid("a", "water", spheres=(Sphere(z0, radius),))])
    halves = simple([Solid("a", "water", spheres=(Sphere(z0, radius),), z_min=z0),
                     Solid("b", "water", spheres=(Sphere(z0, radius),), z_max=z0)])
    c_ = np.array([0, 0, z0])
    bvec = (p - c_) - np.dot(p - c_, d) * d
    b2 = float(np.dot(bvec, bvec))
    expected = 2 * np.sqrt(radius**2 - b2) if b2 < radius**2 else 0.0
    # squared chords: near-tangent rays make the chord itself ill-conditioned (sqrt of a rounding error)
    got_full = chords(full, p[:, None], d[:, None])[0, 0]
    got_halves = chords(halves, p[:, None], d[:, None])[:, 0].sum()
    assert got_full**2 == pytest.approx(expected**2, abs=1e-13)
    assert got_halves**2 == pytest.approx(expected**2, abs=1e-13)


def test_6711_transverse_chords(library):
    """From the seed centre along +x: core 0.024825, coating 1.75 um, air 0.008, Ti wall 0.007 cm."""
    m = load_builtin_seed("oncoseed_6711", library)
    ch = chords(m, np.zeros((3, 1)), np.array([[1.0], [0.0], [0.0]]))[:, 0]
    got = dict(zip([s.name for s in m.solids], ch))
    assert got["silver_core"] == pytest.approx(0.024825, abs=1e-12)
    assert got["coating"] == pytest.approx(0.000175, abs=1e-12)
    assert got["gas"] == pytest.approx(0.008, abs=1e-12)
    assert got["tube"] == pytest.approx(0.007, abs=1e-12)
    # along the axis: core 0.139825 + coating 0.000175 + air 0.0475 + weld 0.04
    ch = chords(m, np.zeros((3, 1)), np.array([[0.0], [0.0], [1.0]]))[:, 0]
    got = dict(zip([s.name for s in m.solids], ch))
    assert got["silver_core"] == pytest.approx(0.139825, abs=1e-12)
    assert got["coating"] == pytest.approx(0.000175, abs=1e-12)
    assert got["gas"] == pytest.approx(0.0475, abs=1e-12)
    assert got["weld_top"] == pytest.approx(0.04, abs=1e-12)


def test_6711_volumes_match_analytic(library):
    m = load_builtin_seed("oncoseed_6711", library)
    tube = np.pi * (0.040**2 - 0.033**2) * 0.375
    weld = 2.0 / 3.0 * np.pi * 0.040**3
    # core: cylinder r = 0.024825 up to the bevel start, plus two 45-degree frustums
    r1, z_end = 0.024825, 0.139825
    z_bevel = 0.14 + 0.0172525 - r1
    h = z_end - z_bevel
    r2 = r1 - h
    core = np.pi * r1**2 * 2 * z_bevel + 2 * np.pi * h / 3 * (r1**2 + r1 * r2 + r2**2)
    for name, exact in (("tube", tube), ("weld_top", weld), ("weld_bottom", weld), ("silver_core", core)):
        v, se = m.solid_volume(m.solid_index(name))
        assert abs(v - exact) < 4 * se, name


def test_builtin_models_are_valid(library):
    """Every shipped seed model loads (materials known) and passes overlap and closure checks."""
    assert "oncoseed_6711" in seed_library()
    for key in seed_library():
        m = load_builtin_seed(key, library)
        assert not check_seed_model(m)
        assert m.effective_length_cm > 0 and m.half_life_days == pytest.approx(59.40)


def test_open_capsule_and_overlap_are_reported(tmp_path, library):
    src = (seed_library()["oncoseed_6711"]).read_text()
    # remove the top weld solid entirely
    parts = src.split("[[solid]]")
    kept = [p for p in parts if 'name = "weld_top"' not in p]
    f = tmp_path / "open.toml"
    f.write_text("[[solid]]".join(kept))
    with pytest.raises(ConfigError, match="capsule not closed"):
        load_seed_model(f, library)
    g = tmp_path / "overlap.toml"
    g.write_text(src.replace("r_min = 0.033\nr_max = 0.040", "r_min = 0.020\nr_max = 0.040"))
    with pytest.raises(ConfigError, match="overlap"):
        load_seed_model(g, library)
    h = tmp_path / "material.toml"
    h.write_text(src.replace('material = "titanium"', 'material = "titanum"', 1))
    with pytest.raises(ConfigError, match="unknown material 'titanum'"):
        load_seed_model(h, library)


def test_active_sampler_uniform_in_volume(library):
    """6711 coating: on the cylindrical side, z is uniform and r^2 uniform between the radii."""
    m = load_builtin_seed("oncoseed_6711", library)
    rng = np.random.default_rng(4)
    z, x, y = m.sample_active(np, rng, 200_000)
    r2 = x * x + y * y
    assert np.all(m.inside(np, m.solid_index("coating"), z, r2))
    side = np.abs(z) < 0.13
    assert stats.kstest(z[side], "uniform", args=(-0.13, 0.26)).pvalue > 1e-4
    lo, hi = 0.024825**2, 0.025**2
    assert stats.kstest(r2[side], "uniform", args=(lo, hi - lo)).pvalue > 1e-4
    # fraction on the side = side volume / coating volume
    v, se = m.solid_volume(m.solid_index("coating"), n=4_000_000)
    side_vol = np.pi * (0.025**2 - 0.024825**2) * 0.26
    p = side_vol / v
    assert abs(side.mean() - p) < 4 * np.hypot(np.sqrt(p * (1 - p) / side.size), p * se / v)


@pytest.mark.parametrize("key", ["oncoseed_6711", "isoseed_i25s06"])
def test_cell_proposal_sampler_matches_plain_rejection(library, key):
    """The (z, r^2)-cell proposal samples the same distribution as rejection from the bounding
    cylinder (two-sample KS on z and r; fixed seeds, 0.1 % level)."""
    from scipy.stats import ks_2samp

    from brachymc.geometry.seed import load_builtin_seed

    m = load_builtin_seed(key, library)
    z, x, y = m.sample_active(np, np.random.default_rng(2), 100_000)
    i = m.solid_index(m.active[0].solid)
    zlo, zhi, rhi = m.solids[i].bounds()
    rng = np.random.default_rng(3)
    zz, r2 = zlo + (zhi - zlo) * rng.random(20_000_000), rhi * rhi * rng.random(20_000_000)
    ok = m.inside(np, i, zz, r2)
    assert ok.sum() > 100_000
    assert ks_2samp(z, zz[ok]).pvalue > 1e-3
    assert ks_2samp(np.hypot(x, y), np.sqrt(r2[ok])).pvalue > 1e-3


def test_active_region_keys_are_checked(tmp_path, library):
    """[[active]] accepts solid, weight and an optional decay law (egsnrc_circle / egsnrc_spherical_shell
    with r_inner, z0); a uniform region keeps the model's fingerprint of before the laws existed."""
    from brachymc.geometry.seed import model_fingerprint

    src = (seed_library()["isoseed_i25s06"]).read_text()
    base = load_seed_model(seed_library()["isoseed_i25s06"], library)
    f = tmp_path / "typo.toml"
    f.write_text(src.replace('solid = "ceramic"\nweight = 1.0', 'solid = "ceramic"\nwieght = 1.0'))
    with pytest.raises(ConfigError, match=r"\[\[active\]\] #1 \(ceramic\): unknown key\(s\) wieght"):
        load_seed_model(f, library)
    g = tmp_path / "law.toml"
    g.write_text(src.replace('solid = "ceramic"\nweight = 1.0', 'solid = "ceramic"\nweight = 1.0\nlaw = "egs"'))
    with pytest.raises(ConfigError, match="law: must be one of uniform"):
        load_seed_model(g, library)
    h = tmp_path / "ring.toml"
    h.write_text(src.replace('solid = "ceramic"\nweight = 1.0',
                             'solid = "ceramic"\nweight = 1.0\nlaw = "egsnrc_circle"\nr_inner = 0.011'))
    ring = load_seed_model(h, library)
    assert ring.active[0].law == "egsnrc_circle" and ring.active[0].r_inner == 0.011
    assert model_fingerprint(ring) != model_fingerprint(base)
    u = tmp_path / "uniform.toml"
    u.write_text(src.replace('solid = "ceramic"\nweight = 1.0', 'solid = "ceramic"\nweight = 1.0\nlaw = "uniform"'))
    assert model_fingerprint(load_seed_model(u, library)) == model_fingerprint(base)


@pytest.mark.parametrize("key", sorted(seed_library()))
def test_locate_is_the_first_solid_whose_inside_holds(key, library):
    """locate (each solid classified once, subtracted solids shared) == the first solid i in order with
    inside(i), each inside() evaluated on its own, at points dense near every surface of the model."""
    model = load_builtin_seed(key, library)
    zlo, zhi, rs = model.bounds()
    rng = np.random.default_rng(11)
    s = model.surfaces
    zs = np.concatenate([rng.uniform(zlo - 0.01, zhi + 0.01, 20000)]
                        + [zp + rng.normal(0, 1e-4, 2000) for zp in s["planes"]])
    rr = np.concatenate([rng.uniform(0, rs + 0.005, zs.size - 2000 * len(s["cylinders"]))]
                        + [np.abs(r + rng.normal(0, 1e-4, 2000)) for r in s["cylinders"]])
    rng.shuffle(rr)
    r2 = rr * rr
    ref = np.full(zs.shape, -1)
    for i in range(len(model.solids)):
        ref = np.where((ref < 0) & model.inside(np, i, zs, r2), i, ref)
    got = model.locate(np, zs, r2)
    np.testing.assert_array_equal(got, ref)
    assert len(np.unique(got)) == len(model.solids) + 1        # every solid and the outside are sampled
