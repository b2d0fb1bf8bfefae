"""TG-43 dose engine (brachymc.tg43): consensus data, geometry functions, interpolation rules,
formalisms, superposition, grids, JSON round trip and input errors.

Reference numbers: AAPM TG-43U1 consensus data (Rivard et al., Med Phys 31 (2004) 633) in
configs/reference (found through the ``reference_dir`` fixture of conftest.py).
"""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import read_reference_csv

from brachymc.errors import BrachyMCError
from brachymc.tg43 import (
    DEFAULT_MIN_DISTANCE_CM,
    TG43DataError,
    TG43Dataset,
    TG43Error,
    TG43InputError,
    dose_rate_at_points,
    dose_rate_on_grid,
    dose_rate_polar,
    geometry_factor_line,
    geometry_factor_point,
    voxel_centers,
)


@pytest.fixture(scope="module")
def ds6711(reference_dir):
    return TG43Dataset.from_reference_csv(reference_dir, model="6711")


@pytest.fixture(scope="module")
def ds2301(reference_dir):
    return TG43Dataset.from_reference_csv(reference_dir, model="2301")


@pytest.fixture(scope="module")
def tables6711(reference_dir):
    """The 6711 consensus tables read independently of the library (conftest's CSV reader)."""
    params = {r["parameter"]: r["value"] for r in read_reference_csv(reference_dir / "tg43u1_6711_params.csv")}
    gl = read_reference_csv(reference_dir / "tg43u1_6711_gL.csv")
    f_rows = read_reference_csv(reference_dir / "tg43u1_6711_F.csv")
    r_cols = [k for k in f_rows[0] if k.startswith("F_r")]
    return {
        "Lambda": float(params["dose_rate_constant_Lambda"]),
        "L": float(params["effective_length_L"]),
        "r_gL": np.array([float(r["r_cm"]) for r in gl]),
        "gL": np.array([float(r["gL"]) for r in gl]),
        "F_r": np.array([float(k[3:-2]) for k in r_cols]),
        "F_theta": np.array([float(r["theta_deg"]) for r in f_rows]),
        "F": np.array([[float(r[k]) for k in r_cols] for r in f_rows]),
    }


def g_line_transverse(r, L):
    """G_L(r, 90 deg) = beta / (L r) with beta = 2 atan(L / 2r) (independent of the library's formula)."""
    return 2.0 * np.arctan(L / (2.0 * r)) / (L * r)


def random_unit(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1)[:, None]


# ---------------------------------------------------------------------------------------------------------
# reference data
# ---------------------------------------------------------------------------------------------------------

def test_reference_datasets_load(reference_dir, ds6711, ds2301, tables6711):
    assert ds6711.dose_rate_constant == 0.965 == tables6711["Lambda"]
    assert ds6711.length_cm == 0.30 == tables6711["L"]
    np.testing.assert_array_equal(ds6711.r_gL, tables6711["r_gL"])
    np.testing.assert_array_equal(ds6711.gL, tables6711["gL"])
    assert ds6711.F.shape == (11, 6)                      # [theta, r]
    np.testing.assert_array_equal(ds6711.F, tables6711["F"])
    assert ds6711.F_mirrored and ds6711.has_gP and ds6711.has_phi_an
    assert ds6711.phi_an_at(1.0) == 0.944 and ds6711.g_P(0.1) == 0.696
    assert ds2301.dose_rate_constant == 1.018 and ds2301.length_cm == 0.40
    assert ds2301.F.shape == (11, 7) and ds2301.gP[0] == 0.579 and ds2301.F[0, 2] == 0.922
    assert "TG-43U1" in ds6711.source
    with pytest.raises(TG43DataError, match="unknown reference seed model"):
        TG43Dataset.from_reference_csv(reference_dir, model="9999")


def test_reference_folder_must_exist(tmp_path):
    with pytest.raises(TG43DataError, match="does not exist"):
        TG43Dataset.from_reference_csv(tmp_path / "nope", model="6711")
    with pytest.raises(TG43DataError, match="missing reference file"):
        TG43Dataset.from_reference_csv(tmp_path, model="6711")


# ---------------------------------------------------------------------------------------------------------
# (1), (2): consensus values reproduced at the tabulated points
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sk", [1.0, 0.437])
def test_transverse_axis_at_every_tabulated_radius(ds6711, tables6711, sk):
    r = tables6711["r_gL"]                      # all 16 radii, 0.1 .. 10 cm
    L, lam = tables6711["L"], tables6711["Lambda"]
    expected = sk * lam * g_line_transverse(r, L) / g_line_transverse(1.0, L) * tables6711["gL"]
    polar = dose_rate_polar(ds6711, r, 90.0, sk)
    np.testing.assert_allclose(polar, expected, rtol=1e-12, atol=0)
    # the same through the seeds -> points path, seed off the origin along +y, points along x and -x
    seed = np.array([[0.25, -1.5, 2.0]])
    pts = np.concatenate([seed + np.c_[r, 0 * r, 0 * r], seed - np.c_[r, 0 * r, 0 * r]])
    got = dose_rate_at_points(ds6711, seed, [[0.0, 1.0, 0.0]], sk, pts)
    np.testing.assert_allclose(got, np.concatenate([expected, expected]), rtol=1e-12, atol=0)


def test_F_exact_at_tabulated_points(ds6711, tables6711):
    rr, tt = np.meshgrid(tables6711["F_r"], tables6711["F_theta"])   # [theta, r]
    np.testing.assert_array_equal(ds6711.F_at(rr, tt), tables6711["F"])
    np.testing.assert_array_equal(ds6711.F_at(rr, 180.0 - tt), tables6711["F"])   # mirrored about 90 deg
    # and in the dose: D(r, theta) / [S_K Lambda G_L(r, theta)/G_L(1, 90) g_L(r)] = F(r, theta)
    L = tables6711["L"]
    g = geometry_factor_line(rr, np.radians(tt), L) / geometry_factor_line(1.0, np.pi / 2, L)
    d = dose_rate_polar(ds6711, rr, tt, 1.0)
    np.testing.assert_allclose(d / (0.965 * g * ds6711.g_L(rr)), tables6711["F"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("sk", [1.0, 0.5, 0.437, 3.3])
@pytest.mark.parametrize("model", ["6711", "2301"])
def test_reference_point_is_sk_lambda_exactly(reference_dir, model, sk):
    ds = TG43Dataset.from_reference_csv(reference_dir, model)
    assert dose_rate_polar(ds, 1.0, 90.0, sk) == sk * ds.dose_rate_constant
    seed = np.array([[0.5, -2.0, 0.25]])
    for direction, point in (([0, 0, 1], [1.5, -2.0, 0.25]), ([0, 0, 1], [0.5, -1.0, 0.25]),
                             ([1, 0, 0], [0.5, -2.0, 1.25]), ([0, -3.0, 0], [-0.5, -2.0, 0.25])):
        d = dose_rate_at_points(ds, seed, [direction], [sk], [point])
        assert d[0] == sk * ds.dose_rate_constant
    # 1D formalisms at r0: S_K Lambda phi_an(r0)
    assert dose_rate_polar(ds, 1.0, 90.0, sk, "1D-line") == sk * ds.dose_rate_constant * ds.phi_an_at(1.0)
    assert dose_rate_polar(ds, 1.0, 90.0, sk, "1D-point") == sk * ds.dose_rate_constant * ds.phi_an_at(1.0)


# ---------------------------------------------------------------------------------------------------------
# (3) geometry functions
# ---------------------------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(L=st.floats(0.01, 1.0), r_over_L=st.floats(1.0, 1000.0), theta=st.floats(0.0, math.pi))
def test_geometry_factor_line_far_field_and_symmetry(L, r_over_L, theta):
    r = r_over_L * L
    g = float(geometry_factor_line(r, theta, L))
    assert np.isfinite(g) and g > 0
    assert abs(g * r * r - 1.0) < (L / r) ** 2
    g_mirror = float(geometry_factor_line(r, math.pi - theta, L))
    assert g_mirror == pytest.approx(g, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(L=st.floats(0.01, 1.0), r_over_L=st.floats(0.501, 50.0))
def test_geometry_factor_line_continuous_onto_the_axis(L, r_over_L):
    r = r_over_L * L
    axis = 1.0 / (r * r - L * L / 4)
    assert float(geometry_factor_line(r, 0.0, L)) == pytest.approx(axis, rel=1e-14)
    assert float(geometry_factor_line(r, math.pi, L)) == pytest.approx(axis, rel=1e-12)
    assert float(geometry_factor_line(r, 1e-9, L)) == pytest.approx(axis, rel=1e-12)


def test_geometry_factor_values():
    L = 0.3
    # transverse axis: beta / (L r) with beta = 2 atan(L / 2r); r < L/2 off the axis is finite
    for r in (0.1, 0.15, 0.5, 1.0, 7.0):
        assert float(geometry_factor_line(r, math.pi / 2, L)) == pytest.approx(g_line_transverse(r, L), rel=1e-14)
    # a point at 45 deg: beta from the two end-point angles
    r, th = 0.4, math.radians(45)
    x, z = r * math.sin(th), r * math.cos(th)
    beta = math.atan((z + L / 2) / x) - math.atan((z - L / 2) / x)
    assert float(geometry_factor_line(r, th, L)) == pytest.approx(beta / (L * x), rel=1e-13)
    # on the source segment: undefined -> NaN, never inf
    assert np.all(np.isnan(geometry_factor_line([0.1, 0.15, 0.0], [0.0, math.pi, 1.0], L)))
    np.testing.assert_array_equal(geometry_factor_line([0.5, 2.0], [0.3, 2.0], 0.0), geometry_factor_point([0.5, 2.0]))
    assert geometry_factor_point(2.0) == 0.25 and np.isnan(geometry_factor_point(0.0))


# ---------------------------------------------------------------------------------------------------------
# interpolation / extrapolation rules (TG-43U1 Appendix C, Eq. (C1))
# ---------------------------------------------------------------------------------------------------------

def test_radial_dose_function_rules(ds6711):
    g = ds6711.g_L
    np.testing.assert_array_equal(g(ds6711.r_gL), ds6711.gL)            # nodes exactly
    assert g(0.01) == g(0.05) == 1.055                                  # nearest neighbour below 0.1 cm
    assert g(1.25) == pytest.approx(0.5 * (1.000 + 0.908), rel=1e-15)   # linear between nodes
    assert g(3.3) == pytest.approx(0.632 + 0.3 * (0.496 - 0.632), rel=1e-14)
    slope = 0.0803 - 0.109                                              # last two points, 9 and 10 cm
    assert g(11.0) == pytest.approx(0.0803 + slope, rel=1e-13)          # linear extrapolation above 10 cm
    assert g(12.0) == pytest.approx(0.0803 + 2 * slope, rel=1e-13)
    assert g(13.0) == 0.0 and g(50.0) == 0.0                            # clipped at zero (guard)
    assert ds6711.g_P(0.125) == pytest.approx(0.5 * (0.696 + 0.853), rel=1e-14)
    assert ds6711.g_P(0.05) == 0.696
    assert np.isnan(g(np.nan))


def test_anisotropy_rules(ds6711):
    phi = ds6711.phi_an_at
    assert phi(0.1) == 0.973 and phi(9.0) == 0.944                      # constant outside 0.5 .. 5 cm
    assert phi(1.5) == pytest.approx(0.5 * (0.944 + 0.941), rel=1e-15)
    F = ds6711.F_at
    # nearest neighbour in r outside 0.5 .. 5 cm, linear in theta
    np.testing.assert_array_equal(F(0.2, [0, 5, 40]), [0.333, 0.400, 0.926])
    np.testing.assert_array_equal(F(8.0, [0, 5, 40]), [0.550, 0.587, 0.928])
    assert F(8.0, 2.5) == pytest.approx(0.5 * (0.550 + 0.587), rel=1e-15)
    # bilinear: centre of the cell r 1..2, theta 10..20
    assert F(1.5, 15.0) == pytest.approx(0.25 * (0.537 + 0.580 + 0.705 + 0.727), rel=1e-14)
    assert F(1.5, 165.0) == F(1.5, 15.0)                                 # mirrored about 90 deg
    assert F(3.0, 90.0) == 1.0 and F(3.0, 95.0) == F(3.0, 85.0)


# ---------------------------------------------------------------------------------------------------------
# (4) 1D formalisms against the solid-angle average of the 2D dose
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("r", [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0])
def test_1d_formalisms_match_solid_angle_average(ds6711, r):
    x, w = np.polynomial.legendre.leggauss(200)           # nodes in cos(theta), weights sum to 2
    d2 = dose_rate_polar(ds6711, r, np.degrees(np.arccos(x)), 1.0, "2D")
    mean = 0.5 * np.sum(w * d2)
    d1p = dose_rate_polar(ds6711, r, 90.0, 1.0, "1D-point")
    d1l = dose_rate_polar(ds6711, r, 90.0, 1.0, "1D-line")
    assert d1p == pytest.approx(mean, rel=0.01)
    assert d1l == pytest.approx(mean, rel=0.01)
    # 1D-point by hand: S_K Lambda (r0/r)^2 g_P(r) phi_an(r)
    assert d1p == pytest.approx(0.965 / r**2 * ds6711.g_P(r) * ds6711.phi_an_at(r), rel=1e-13)
    # and through the points path (1D: independent of the direction)
    rng = np.random.default_rng(4)
    dirs = random_unit(rng, 5)
    pts = np.array([[0.0, 0.0, r]])
    for u in dirs:
        assert dose_rate_at_points(ds6711, [0, 0, 0], [u], 1.0, pts, "1D-point")[0] == pytest.approx(d1p, rel=1e-13)


# ---------------------------------------------------------------------------------------------------------
# (5) superposition, direction reversal, frame invariance
# ---------------------------------------------------------------------------------------------------------

def test_superposition_and_direction_reversal(ds6711):
    rng = np.random.default_rng(7)
    seeds = np.array([[0.0, 0.0, 0.0], [0.8, -0.3, 0.5]])
    dirs = random_unit(rng, 2)
    sk = np.array([0.6, 0.45])
    pts = rng.uniform(-3, 3, size=(2000, 3))
    for formalism in ("2D", "1D-line", "1D-point"):
        both = dose_rate_at_points(ds6711, seeds, dirs, sk, pts, formalism)
        one = dose_rate_at_points(ds6711, seeds[:1], dirs[:1], sk[:1], pts, formalism)
        two = dose_rate_at_points(ds6711, seeds[1:], dirs[1:], sk[1:], pts, formalism)
        np.testing.assert_allclose(both, one + two, rtol=1e-14, atol=0)
        flipped = dose_rate_at_points(ds6711, seeds, -dirs, sk, pts, formalism)
        np.testing.assert_allclose(flipped, both, rtol=1e-14, atol=0)
        # non-unit directions are normalised
        scaled = dose_rate_at_points(ds6711, seeds, dirs * np.array([[3.0], [0.2]]), sk, pts, formalism)
        np.testing.assert_allclose(scaled, both, rtol=1e-14, atol=0)
    # strength is linear
    np.testing.assert_allclose(dose_rate_at_points(ds6711, seeds, dirs, 2 * sk, pts),
                               2 * dose_rate_at_points(ds6711, seeds, dirs, sk, pts), rtol=1e-15)


def test_points_agree_with_polar_in_the_seed_frame(ds6711):
    rng = np.random.default_rng(11)
    seed, u = rng.uniform(-1, 1, 3), random_unit(rng, 1)[0]
    r = rng.uniform(0.2, 9.0, 500)
    theta = rng.uniform(0.0, 180.0, 500)
    # build an orthonormal frame (e1, e2, u) and place the points at (r, theta, random azimuth)
    e1 = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    phi = rng.uniform(0, 2 * np.pi, 500)
    t = np.radians(theta)
    pts = seed + (r * np.sin(t))[:, None] * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2) \
        + (r * np.cos(t))[:, None] * u
    got = dose_rate_at_points(ds6711, [seed], [u], 0.7, pts)
    np.testing.assert_allclose(got, dose_rate_polar(ds6711, r, theta, 0.7), rtol=1e-9)


# ---------------------------------------------------------------------------------------------------------
# near the source
# ---------------------------------------------------------------------------------------------------------

def test_near_source_is_nan_never_inf(ds6711):
    seed, u = np.zeros((1, 3)), [[0.0, 0.0, 1.0]]
    pts = [[0, 0, 0], [0, 0, 0.1], [0, 0, 0.15], [0.02, 0, 0.1], [0, 0, 0.19],   # within 0.05 cm of the segment
           [0.1, 0, 0], [0, 0, 0.25], [0.06, 0, 0.0]]                         # outside: finite
    for formalism in ("2D", "1D-line", "1D-point"):
        d = dose_rate_at_points(ds6711, seed, u, 1.0, pts, formalism)
        assert np.all(np.isnan(d[:5])) and np.all(np.isfinite(d[5:]) & (d[5:] > 0))
    # a larger exclusion distance, and the polar form
    d = dose_rate_at_points(ds6711, seed, u, 1.0, pts, min_distance_cm=0.08)
    assert np.isnan(d).tolist() == [True] * 5 + [False, False, True]
    assert np.isnan(dose_rate_polar(ds6711, 0.1, 0.0)) and np.isfinite(dose_rate_polar(ds6711, 0.1, 90.0))
    assert DEFAULT_MIN_DISTANCE_CM == 0.05
    with pytest.raises(TG43InputError, match="min_distance_cm"):
        dose_rate_at_points(ds6711, seed, u, 1.0, pts, min_distance_cm=0.0)


# ---------------------------------------------------------------------------------------------------------
# (6) grid
# ---------------------------------------------------------------------------------------------------------

def test_grid_equals_points_at_voxel_centres(ds6711):
    rng = np.random.default_rng(3)
    seeds = rng.uniform(-0.8, 0.8, size=(5, 3))
    dirs = rng.normal(size=(5, 3))
    sk = rng.uniform(0.3, 0.7, 5)
    origin, spacing, shape = (-1.5, -1.2, -1.0), (0.1, 0.15, 0.2), (10, 16, 30)   # (nz, ny, nx)
    grid = dose_rate_on_grid(ds6711, seeds, dirs, sk, origin, spacing, shape)
    assert grid.shape == shape
    iz, iy, ix = np.meshgrid(np.arange(10), np.arange(16), np.arange(30), indexing="ij")
    centres = np.stack([origin[0] + (ix + 0.5) * spacing[0], origin[1] + (iy + 0.5) * spacing[1],
                        origin[2] + (iz + 0.5) * spacing[2]], axis=-1)
    pts = dose_rate_at_points(ds6711, seeds, dirs, sk, centres.reshape(-1, 3)).reshape(shape)
    np.testing.assert_array_equal(grid, pts)
    np.testing.assert_array_equal(dose_rate_at_points(ds6711, seeds, dirs, sk, centres), pts)  # (..., 3) input
    x, y, z = voxel_centers(origin, spacing, shape)
    assert (x.size, y.size, z.size) == (30, 16, 10) and x[0] == -1.45 and z[-1] == pytest.approx(0.9)
    # one seed (along z) at the centre of voxel (5, 5, 5) of a 0.12 cm grid: the voxels whose centres lie on
    # its active segment (dz = 0, +-0.12 cm; L/2 = 0.15 cm) are NaN, all others finite, nothing infinite
    cx, cy, cz = voxel_centers((-0.6, -0.6, -0.6), 0.12, (10, 10, 10))
    g1 = dose_rate_on_grid(ds6711, [[cx[5], cy[5], cz[5]]], [[0, 0, 1]], 1.0, (-0.6, -0.6, -0.6), 0.12, (10, 10, 10))
    assert np.argwhere(np.isnan(g1)).tolist() == [[4, 5, 5], [5, 5, 5], [6, 5, 5]] and not np.isinf(g1).any()
    assert g1[5, 5, 6] == pytest.approx(float(dose_rate_polar(ds6711, 0.12, 90.0)), rel=1e-12)
    assert g1[7, 5, 5] == pytest.approx(float(dose_rate_polar(ds6711, 0.24, 0.0)), rel=1e-12)
    # isotropic-spacing scalar and 1D formalisms work on grids too
    g2 = dose_rate_on_grid(ds6711, seeds, dirs, sk, origin, 0.2, (3, 4, 5), formalism="1D-line")
    assert g2.shape == (3, 4, 5) and np.all(np.isfinite(g2[~np.isnan(g2)]))


def test_many_seeds_many_points_blocks(ds6711):
    """Blocked summation over many seeds equals a plain per-seed loop."""
    rng = np.random.default_rng(5)
    n, m = 70, 30000
    seeds = rng.uniform(-2, 2, size=(n, 3))
    dirs = rng.normal(size=(n, 3))
    sk = rng.uniform(0.3, 0.7, n)
    pts = rng.uniform(-3, 3, size=(m, 3))
    total = dose_rate_at_points(ds6711, seeds, dirs, sk, pts)
    loop = sum(dose_rate_at_points(ds6711, seeds[i], dirs[i], sk[i], pts) for i in range(n))
    np.testing.assert_allclose(total, loop, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------------------
# (7) JSON
# ---------------------------------------------------------------------------------------------------------

def test_json_round_trip(ds6711, ds2301, tmp_path):
    for ds in (ds6711, ds2301):
        path = tmp_path / f"{ds.name}.json"
        ds.to_json(path)
        back = TG43Dataset.from_json(path)
        assert back == ds
        data = json.loads(path.read_text())
        assert data["seed"] == ds.name and data["lambda_cGy_per_h_per_U"] == ds.dose_rate_constant
        assert data["length_cm"] == ds.length_cm
        assert len(data["F"]["value"]) == ds.F_r.size                  # rows per r
        assert len(data["F"]["value"][0]) == ds.F_theta.size
        r = np.linspace(0.05, 12, 37)
        t = np.linspace(0, 180, 37)
        np.testing.assert_array_equal(back.F_at(r, t), ds.F_at(r, t))
        np.testing.assert_array_equal(back.g_L(r), ds.g_L(r))


def test_json_monte_carlo_layout(ds6711, tmp_path):
    """A brachymc Monte Carlo result (TG43Result.to_json): length in settings, extra keys ignored."""
    mc = {
        "seed": "oncoseed_6711", "seed_name": "OncoSeed 6711", "lambda_cGy_per_h_per_U": 0.942,
        "lambda_rel_unc": 0.004,
        "gL": {"r_cm": [0.5, 1.0, 2.0], "value": [1.07, 1.0, 0.81], "rel_unc": [0.01, 0.0, 0.01]},
        "gP": {"r_cm": [0.5, 1.0, 2.0], "value": [1.05, 1.0, 0.82], "rel_unc": [0.01, 0.0, 0.01]},
        "F": {"r_cm": [1.0, 2.0], "theta_deg": [0, 45, 90],
              "value": [[0.4, 0.9, 1.0], [0.5, 0.95, 1.0]], "rel_unc": [[0, 0, 0], [0, 0, 0]]},
        "phi_an": {"r_cm": [1.0, 2.0], "value": [0.95, 0.96], "rel_unc": [0.01, 0.01]},
        "settings": {"length_cm": 0.3, "histories": 100},
        "device": "cpu",
    }
    path = tmp_path / "mc.json"
    path.write_text(json.dumps(mc))
    ds = TG43Dataset.from_json(path)
    assert ds.name == "oncoseed_6711" and ds.length_cm == 0.3 and ds.dose_rate_constant == 0.942
    np.testing.assert_array_equal(ds.F, [[0.4, 0.5], [0.9, 0.95], [1.0, 1.0]])   # stored [theta, r]
    assert ds.F_at(2.0, 45.0) == 0.95 and ds.F_at(1.5, 0.0) == pytest.approx(0.45, rel=1e-15)
    assert dose_rate_polar(ds, 1.0, 90.0, 2.0) == 2.0 * 0.942
    for bad, msg in (({"gL": None}, "gL"), ({"settings": {}}, "length_cm"),
                     ({"F": {**mc["F"], "value": [[0.4, 0.9, 1.0]]}}, "one row per radius"),
                     ({"gL": {"r_cm": [1.0, 0.5, 2.0], "value": [1, 1, 1]}}, "strictly increasing")):
        path.write_text(json.dumps({**mc, **bad}))
        with pytest.raises(TG43DataError, match=msg):
            TG43Dataset.from_json(path)
    path.write_text("{not json")
    with pytest.raises(TG43DataError, match="not valid JSON"):
        TG43Dataset.from_json(path)


# ---------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------

def test_input_errors(ds6711):
    seed, u = [[0.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]
    pts = [[1.0, 0.0, 0.0]]
    assert issubclass(TG43InputError, ValueError) and issubclass(TG43DataError, TG43Error)
    assert issubclass(TG43Error, BrachyMCError)
    with pytest.raises(TG43InputError, match="zero length at index \\[1\\]"):
        dose_rate_at_points(ds6711, [[0, 0, 0], [1, 1, 1]], [[0, 0, 1], [0, 0, 0]], 1.0, pts)
    with pytest.raises(ValueError, match="seeds_positions_cm must have shape"):
        dose_rate_at_points(ds6711, [[0, 0]], u, 1.0, pts)
    with pytest.raises(TG43InputError, match="seeds_directions must have shape"):
        dose_rate_at_points(ds6711, [[0, 0, 0], [1, 1, 1]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]], 1.0, pts)
    with pytest.raises(TG43InputError, match="sk_U"):
        dose_rate_at_points(ds6711, seed, u, [1.0, 2.0], pts)
    with pytest.raises(TG43InputError, match="sk_U"):
        dose_rate_at_points(ds6711, seed, u, -1.0, pts)
    with pytest.raises(TG43InputError, match="points_cm"):
        dose_rate_at_points(ds6711, seed, u, 1.0, [[1.0, 0.0]])
    with pytest.raises(TG43InputError, match="non-finite"):
        dose_rate_at_points(ds6711, seed, u, 1.0, [[np.nan, 0.0, 0.0]])
    with pytest.raises(TG43InputError, match="unknown formalism"):
        dose_rate_at_points(ds6711, seed, u, 1.0, pts, formalism="3D")
    with pytest.raises(TG43InputError, match="spacing_cm"):
        dose_rate_on_grid(ds6711, seed, u, 1.0, (0, 0, 0), (0.1, 0.0, 0.1), (2, 2, 2))
    with pytest.raises(TG43InputError, match="shape_zyx"):
        dose_rate_on_grid(ds6711, seed, u, 1.0, (0, 0, 0), 0.1, (2, 0, 2))
    # empty inputs
    assert dose_rate_at_points(ds6711, np.zeros((0, 3)), np.zeros((0, 3)), [], pts).tolist() == [0.0]
    assert dose_rate_at_points(ds6711, seed, u, 1.0, np.zeros((0, 3))).shape == (0,)


def test_dataset_validation(ds6711):
    base = dict(name="t", dose_rate_constant=1.0, length_cm=0.3, r_gL=[0.5, 1.0, 2.0], gL=[1.1, 1.0, 0.8],
                F_r=[1.0, 2.0], F_theta=[0.0, 90.0], F=[[0.5, 0.6], [1.0, 1.0]])
    ds = TG43Dataset(**base)
    assert not ds.has_gP and not ds.has_phi_an
    with pytest.raises(TG43DataError, match="needs g_P"):
        dose_rate_polar(ds, 1.0, 90.0, formalism="1D-point")
    with pytest.raises(TG43DataError, match="needs phi_an"):
        dose_rate_polar(ds, 1.0, 90.0, formalism="1D-line")
    for change, msg in (({"dose_rate_constant": 0.0}, "dose_rate_constant"), ({"length_cm": -0.1}, "length_cm"),
                        ({"r_gL": [0.5, 0.5, 2.0]}, "strictly increasing"), ({"gL": [1.0, 1.0]}, "expected 3"),
                        ({"F_theta": [0.0, 80.0]}, "F_theta must run"), ({"F": [[0.5, 0.6]]}, "shape"),
                        ({"r_gP": [1.0]}, "both r_gP and gP"), ({"gL": [1.0, np.nan, 1.0]}, "non-finite")):
        with pytest.raises(TG43DataError, match=msg):
            TG43Dataset(**{**base, **change})
    # arrays are read-only copies; the dataclass is frozen
    with pytest.raises(ValueError):
        ds.gL[0] = 2.0
    with pytest.raises(AttributeError):
        ds.length_cm = 1.0
    # a full 0..180 deg table is used as is (no mirroring)
    full = TG43Dataset(**{**base, "F_theta": [0.0, 90.0, 180.0], "F": [[0.5, 0.6], [1.0, 1.0], [0.7, 0.8]]})
    assert not full.F_mirrored and full.F_at(1.0, 180.0) == 0.7 and full.F_at(1.0, 0.0) == 0.5
    assert ds6711 != ds and ds == TG43Dataset(**base)
