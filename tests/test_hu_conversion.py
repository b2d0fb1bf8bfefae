"""CT number (HU) -> density and material: calibrations, bins, overrides, seeds and streak artefacts."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from brachymc.errors import BrachyMCError, ConfigError, MaterialError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.hu import (
    ArtefactCorrection,
    DensityCurve,
    HUCalibration,
    Override,
    TissueBin,
    available_calibrations,
    ct_to_phantom,
    hu_to_bin,
    hu_to_density,
    load_calibration,
)
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom


@pytest.fixture(scope="module")
def spine(library):
    return load_calibration("spine_default", library)


@pytest.fixture(scope="module")
def schneider(library):
    return load_calibration("schneider2000", library)


def make_ct(hu, spacing=0.1, origin=(0.0, 0.0, 0.0)) -> CTVolume:
    hu = np.asarray(hu, dtype=np.float32)
    return CTVolume(hu, GridGeometry(hu.shape, (spacing,) * 3, origin))


def centre_cm(geom: GridGeometry, iz, iy, ix) -> np.ndarray:
    return np.array([geom.centers(0)[ix], geom.centers(1)[iy], geom.centers(2)[iz]])


# ----------------------------------------------------------------------------------------------
# built-in calibrations
# ----------------------------------------------------------------------------------------------

def test_builtin_calibrations_listed_and_load(library):
    names = available_calibrations()
    assert {"spine_default", "schneider2000"} <= set(names)
    for n in names:
        cal = load_calibration(n, library)
        assert cal.name == n and cal.reference and cal.bins
        assert cal.bins[0].hu_min == -math.inf and cal.bins[-1].hu_max == math.inf


def test_spine_default_density_curve_monotone_and_through_points(spine):
    c = spine.density
    assert c.is_monotone and not c.allow_decreasing
    assert np.allclose(hu_to_density(np.array(c.hu), c), c.g_cm3, rtol=0, atol=1e-12)
    for h, d in zip(c.hu, c.g_cm3):
        assert hu_to_density(h, c) == pytest.approx(d, abs=1e-12)
    grid = np.linspace(-3000, 6000, 90001)
    rho = hu_to_density(grid, c)
    assert np.all(np.diff(rho) >= 0)
    # piecewise linear: midpoints of every segment are the mean of the ends
    for (h0, d0), (h1, d1) in zip(zip(c.hu, c.g_cm3), zip(c.hu[1:], c.g_cm3[1:])):
        assert hu_to_density((h0 + h1) / 2, c) == pytest.approx((d0 + d1) / 2, rel=1e-12)
    # constant outside
    assert hu_to_density(-5000.0, c) == c.g_cm3[0] and hu_to_density(1e5, c) == c.g_cm3[-1]
    # plausibility: air ~0.0012, water-like 0 HU ~1, bone at 1000 HU ~1.6 g/cm3
    assert hu_to_density(-1000, c) == pytest.approx(0.00121)
    assert hu_to_density(0, c) == pytest.approx(1.0, abs=0.03)
    assert hu_to_density(1000, c) == pytest.approx(1.6, abs=0.02)


def test_spine_default_curve_equals_schneider_except_the_step(spine, schneider):
    """The default curve is Schneider's, made non-decreasing only between 100 and ~175 HU."""
    h = np.arange(-1200.0, 3500.0, 0.5)
    a, b = hu_to_density(h, spine.density), hu_to_density(h, schneider.density)
    outside = (h <= 100) | (h >= 175)
    assert np.max(np.abs(a - b)[outside]) < 2e-5
    assert np.all(a >= b - 2e-5) and np.max(a - b) < 0.045


def test_spine_default_tissues(spine):
    expect = {-1024: "air", -960: "air", -700: "lung", -100: "adipose", -50: "adipose", 0: "soft_tissue",
              40: "soft_tissue", 110: "soft_tissue", 250: "spongiosa", 550: "spongiosa", 900: "cortical_bone",
              1800: "cortical_bone", 3071: "titanium"}
    for hu, name in expect.items():
        assert spine.bin_of(hu).material.name == name, hu
    assert spine.bin_of(3071).voxel_density == pytest.approx(4.54)


@pytest.mark.parametrize("which", ["spine", "schneider"])
def test_interval_boundaries(which, request):
    cal = request.getfixturevalue(which)
    for i, b in enumerate(cal.bins):
        if math.isfinite(b.hu_min):
            assert hu_to_bin(b.hu_min, cal) == i                       # hu_min belongs to the bin
            assert hu_to_bin(np.nextafter(b.hu_min, -np.inf), cal) == i - 1
        if math.isfinite(b.hu_max):
            assert hu_to_bin(b.hu_max, cal) == i + 1                   # hu_max belongs to the next one
            assert hu_to_bin(np.nextafter(b.hu_max, -np.inf), cal) == i
    assert hu_to_bin(-1e9, cal) == 0 and hu_to_bin(1e9, cal) == len(cal.bins) - 1
    arr = hu_to_bin(np.array([[b.hu_min for b in cal.bins[1:]]]), cal)
    assert arr.shape == (1, len(cal.bins) - 1) and list(arr[0]) == list(range(1, len(cal.bins)))


def test_schneider_table_reproduces_shared_csv(schneider, reference_dir):
    from conftest import read_reference_csv
    from brachymc.materials import element_z

    rows = read_reference_csv(reference_dir / "schneider2000_hu.csv")
    assert len(rows) == len(schneider.bins) == 26
    elements = [k for k in rows[0] if k not in ("hu_min", "hu_max", "name")]
    for i, (row, b) in enumerate(zip(rows, schneider.bins)):
        assert b.label == row["name"]
        assert b.hu_min == (-math.inf if i == 0 else float(row["hu_min"]))
        assert b.hu_max == (math.inf if i == len(rows) - 1 else float(row["hu_max"]))
        assert b.voxel_density is None
        want = {element_z(e): float(row[e]) for e in elements if row[e]}
        got = dict(b.material.mass_fractions)
        assert set(got) == set(want), row["name"]
        for z, w in want.items():
            assert got[z] == pytest.approx(w, abs=1e-12), (row["name"], z)
    # materials are distinct inline media, not library ones
    assert len(schneider.materials()) == 26


def test_schneider_density_is_the_gate_points(schneider, reference_dir):
    from conftest import read_reference_csv

    pts = [(float(r["hu"]), float(r["density_g_cm3"]))
           for r in read_reference_csv(reference_dir / "schneider2000_density.csv") if r["section"] == "gate_points"]
    c = schneider.density
    assert list(c.hu) == [h for h, _ in pts]
    assert list(c.g_cm3) == [d for _, d in pts]
    assert c.allow_decreasing and not c.is_monotone          # the published 100 -> 101 HU step
    assert hu_to_density(100, c) == pytest.approx(1.1199) and hu_to_density(101, c) == pytest.approx(1.0762)
    assert hu_to_density(850.5, c) == pytest.approx(1.0762 + (1.9642 - 1.0762) * (850.5 - 101) / 1499, rel=1e-12)


def test_schneider_density_matches_topas_formula(schneider, reference_dir):
    """Independent check: TOPAS's piecewise-linear form (DensityCorrection = 1) agrees within 0.002 g/cm3."""
    from conftest import read_reference_csv

    segs = [r for r in read_reference_csv(reference_dir / "schneider2000_density.csv") if r["section"] == "topas_linear"]
    for r in segs:
        lo, hi = float(r["hu_lo"]), float(r["hu_hi"])
        if lo >= 2001:              # beyond GATE's 1600 -> 3000 HU line (TOPAS extends differently)
            continue
        for h in np.linspace(lo, hi - 1, 7):
            topas = float(r["offset"]) + float(r["factor"]) * (float(r["factor_offset"]) + h)
            assert hu_to_density(h, schneider.density) == pytest.approx(topas, abs=2.1e-3), h


# ----------------------------------------------------------------------------------------------
# properties on random volumes
# ----------------------------------------------------------------------------------------------

hu_values = st.one_of(
    st.floats(-1500.0, 4000.0, allow_nan=False, width=32),
    st.sampled_from([-1000.0, -950.0, -190.0, -30.0, 120.0, 600.0, 3000.0, -120.0, 19.0, 100.0, 101.0, 2300.0]),
)


@settings(max_examples=60, deadline=None)
@given(hu=hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=5), elements=hu_values),
       which=st.sampled_from(["spine_default", "schneider2000"]))
def test_random_volumes_every_voxel_one_bin(hu, which):
    cal = _CACHE.setdefault(which, load_calibration(which))
    ph, rep = ct_to_phantom(make_ct(hu), cal)
    assert isinstance(ph, VoxelPhantom)
    assert ph.material_index.dtype == np.uint8 and ph.density.dtype == np.float32
    assert int(ph.material_index.max()) < len(ph.materials)
    names = [m.name for m in ph.materials]
    assert len(set(names)) == len(names)
    h = hu.astype(np.float64)
    # exactly one bin per voxel, and it is the voxel's material
    member = np.stack([(h >= b.hu_min) & (h < b.hu_max) for b in cal.bins])
    assert np.all(member.sum(axis=0) == 1)
    bins = np.argmax(member, axis=0)
    assert np.array_equal(bins, hu_to_bin(h, cal))
    got = np.array(names)[ph.material_index]
    want = np.array([b.material.name for b in cal.bins])[bins]
    assert np.array_equal(got, want)
    # densities: from the curve (within its range) unless the bin fixes one
    fixed = np.array([b.voxel_density if b.voxel_density is not None else np.nan for b in cal.bins])[bins]
    curve = hu_to_density(h, cal.density)
    from_curve = np.isnan(fixed)
    assert np.allclose(ph.density[from_curve], curve[from_curve], rtol=1e-6)
    assert np.all(ph.density[from_curve] >= np.float32(cal.density.min_density) * (1 - 1e-6))
    assert np.all(ph.density[from_curve] <= np.float32(cal.density.max_density) * (1 + 1e-6))
    assert np.allclose(ph.density[~from_curve], fixed[~from_curve], rtol=1e-6)
    # materials: only those used, in bin order; counts add up
    order = [b.material.name for b in cal.bins]
    assert names == sorted(set(want.ravel()), key=order.index)
    assert sum(n for _, n in rep.material_counts) == hu.size == rep.n_voxels
    assert dict(rep.material_counts) == {n: int(np.sum(got == n)) for n in names}


_CACHE: dict[str, object] = {}


# ----------------------------------------------------------------------------------------------
# overrides, seeds, artefacts
# ----------------------------------------------------------------------------------------------

def test_overrides_in_order_with_counts(spine, library):
    hu = np.full((4, 6, 6), 300.0)            # spongiosa everywhere
    hu[:, :, :2] = -100.0                     # adipose column
    ct = make_ct(hu)
    a = np.zeros(hu.shape, bool)
    a[:, :3, :] = True                        # 72 voxels
    b = np.zeros(hu.shape, bool)
    b[:, 2:4, :] = True                       # 48 voxels, 24 of them also in a
    ph, rep = ct_to_phantom(ct, spine, library,
                            overrides=[(a, "soft_tissue"), Override(b, "spinal_cord", 1.04, label="cord")])
    names = np.array(ph.material_names())[ph.material_index]
    assert np.all(names[b] == "spinal_cord")                 # later override wins in the overlap
    assert np.all(names[a & ~b] == "soft_tissue")
    assert np.all(names[~a & ~b & (hu == 300)] == "spongiosa")
    assert np.all(names[~a & ~b & (hu == -100)] == "adipose")
    assert [(o.label, o.material, o.voxels) for o in rep.overrides] == [("1", "soft_tissue", 72), ("cord", "spinal_cord", 48)]
    assert rep.overrides[0].changed == 72 and rep.overrides[1].changed == 48
    # density None keeps the CT density; a number sets it
    curve = hu_to_density(hu, spine.density)
    assert np.allclose(ph.density[a & ~b], curve[a & ~b], rtol=1e-6)
    assert np.allclose(ph.density[b], 1.04)
    assert ph.material_names() == ["adipose", "soft_tissue", "spongiosa", "spinal_cord"]   # bin order, then overrides
    assert rep.count("spinal_cord") == 48 and rep.count("soft_tissue") == 48
    assert "override cord: 48 voxels -> spinal_cord" in rep.summary()

    ph2, _ = ct_to_phantom(ct, spine, library, overrides=[(a, "muscle", "nominal")])
    assert np.allclose(ph2.density[a], library["muscle"].density)
    with pytest.raises(MaterialError, match="soft_tisue"):
        ct_to_phantom(ct, spine, library, overrides=[(a, "soft_tisue")])
    with pytest.raises(BrachyMCError, match="mask must be a boolean"):
        ct_to_phantom(ct, spine, library, overrides=[(a[:2], "muscle")])


def test_seed_voxels_ignored(spine, library):
    hu = np.full((9, 9, 9), -100.0)           # adipose
    hu[:, :, 6:] = 40.0                       # soft tissue slab far from the seed
    seed = np.zeros(hu.shape, bool)
    seed[4, 4, 2:4] = True                    # a 2-voxel seed in fat
    hu[seed] = 3071.0                         # saturated seed HU
    ct = make_ct(hu)
    ph, rep = ct_to_phantom(ct, spine, library, seed_mask=seed)
    names = np.array(ph.material_names())[ph.material_index]
    assert np.all(names[seed] == "adipose")
    assert np.allclose(ph.density[seed], hu_to_density(-100.0, spine.density))
    assert "titanium" not in ph.material_names()
    assert rep.seed_voxels == 2 and rep.seed_components == 1 and rep.seed_fallback_components == 0
    assert "seed voxels ignored: 2" in rep.summary()
    # without the mask the seed would be titanium
    ph0, _ = ct_to_phantom(ct, spine, library)
    assert np.all(np.array(ph0.material_names())[ph0.material_index][seed] == "titanium")
    # majority of the neighbours decides, and a seed with no neighbours falls back to soft tissue
    hu2 = np.full((5, 5, 5), 300.0)
    hu2[:, :, :1] = -100.0
    seed2 = np.zeros(hu2.shape, bool)
    seed2[2, 2, 1] = True                     # touches the adipose column, mostly spongiosa around
    ph2, _ = ct_to_phantom(make_ct(hu2), spine, library, seed_mask=seed2)
    assert ph2.material_names()[ph2.material_index[2, 2, 1]] == "spongiosa"
    ph3, rep3 = ct_to_phantom(make_ct(np.full((2, 2, 2), 3071.0)), spine, library, seed_mask=np.ones((2, 2, 2), bool))
    assert ph3.material_names() == ["soft_tissue"] and rep3.seed_fallback_components == 1
    assert np.allclose(ph3.density, library["soft_tissue"].density)


def test_artefact_reassignment_only_within_radius_and_streak_hu(spine, library):
    n = 21
    hu = np.full((n, n, n), 40.0)             # soft tissue; 1 mm voxels
    hu[:, :, :4] = 300.0                      # spongiosa far away (x < 0.4 cm)
    ct = make_ct(hu)
    g = ct.geometry
    c = centre_cm(g, 10, 10, 10)
    seed = np.zeros(hu.shape, bool)
    seed[10, 10, 10] = True
    hu[seed] = 3071.0
    bright_in = [(10, 10, 13), (10, 12, 10), (7, 10, 10)]     # within 0.3 cm
    dark_in = [(10, 8, 11), (12, 10, 10)]
    bright_out = [(10, 10, 17), (2, 10, 10)]                  # 0.7 and 0.8 cm away
    bone_in = (10, 11, 11)                                    # 300 HU, a real bony voxel near the seed
    for v in bright_in + bright_out:
        hu[v] = 2500.0
    for v in dark_in:
        hu[v] = -800.0
    hu[bone_in] = 300.0
    ct = make_ct(hu)
    art = ArtefactCorrection(radius_cm=0.5, hu_threshold_high=2000.0, hu_threshold_low=-300.0)
    ph, rep = ct_to_phantom(ct, spine, library, seed_mask=seed, artefact=art, seed_centers_cm=c[None, :])
    names = np.array(ph.material_names())[ph.material_index]
    for v in bright_in + dark_in:
        assert names[v] == "soft_tissue", v
        assert ph.density[v] == pytest.approx(hu_to_density(40.0, spine.density), rel=1e-6)
    for v in bright_out:
        assert names[v] == "cortical_bone", v                 # outside the radius: untouched
    assert names[bone_in] == "spongiosa"                      # not streak HU: untouched
    assert names[10, 10, 10] == "soft_tissue"                 # seed voxel: surrounding tissue
    assert rep.artefact_voxels == 5 and rep.artefact_bright == 3 and rep.artefact_dark == 2
    assert rep.seed_voxels == 1
    assert "artefact voxels reassigned: 5" in rep.summary()

    # centres default to the seed-mask centroids; an explicit material replaces the local mode
    ph2, rep2 = ct_to_phantom(ct, spine, library, seed_mask=seed,
                              artefact=ArtefactCorrection(0.5, material="muscle"))
    names2 = np.array(ph2.material_names())[ph2.material_index]
    assert all(names2[v] == "muscle" for v in bright_in + dark_in)
    assert rep2.artefact_voxels == 5
    assert np.allclose(ph2.density[tuple(np.array(bright_in).T)], library["muscle"].density)

    # no seeds and no centres: refused
    with pytest.raises(ConfigError, match="seed centres"):
        ct_to_phantom(ct, spine, library, artefact=art)
    with pytest.raises(ConfigError, match="radius_cm"):
        ArtefactCorrection(radius_cm=0.0)


def test_artefact_uses_nearest_seeds_surroundings(spine, library):
    """Two seeds, one in fat and one in bone: each seed's streaks take its own surroundings."""
    hu = np.full((11, 11, 30), -100.0)        # adipose for x < 1.5 cm
    hu[:, :, 15:] = 300.0                     # spongiosa for x >= 1.5 cm
    ct0 = make_ct(hu)
    g = ct0.geometry
    c1, c2 = centre_cm(g, 5, 5, 5), centre_cm(g, 5, 5, 24)
    hu[5, 5, 7] = 2600.0
    hu[5, 5, 22] = 2600.0
    ct = make_ct(hu)
    ph, rep = ct_to_phantom(ct, spine, library, artefact=ArtefactCorrection(0.4), seed_centers_cm=np.array([c1, c2]))
    names = np.array(ph.material_names())[ph.material_index]
    assert names[5, 5, 7] == "adipose" and names[5, 5, 22] == "spongiosa"
    assert rep.artefact_voxels == 2 and "cortical_bone" not in ph.material_names()


def test_report_and_phantom_materials_stable(spine, library):
    hu = np.array([[[-1000.0, -700.0, -100.0, 40.0, 300.0, 1200.0]]])
    ph, rep = ct_to_phantom(make_ct(hu), spine, library)
    assert ph.material_names() == ["air", "lung", "adipose", "soft_tissue", "spongiosa", "cortical_bone"]
    assert list(ph.material_index.ravel()) == [0, 1, 2, 3, 4, 5]
    assert rep.material_counts == tuple((n, 1) for n in ph.material_names())
    assert rep.bin_counts[-1][1] == 0 and rep.hu_min == -1000 and rep.hu_max == 1200
    s = rep.summary()
    assert "spine_default" in s and "cortical_bone" in s
    # reversed HU order still lists the materials in bin order
    ph2, _ = ct_to_phantom(make_ct(hu[..., ::-1].copy()), spine, library)
    assert ph2.material_names() == ph.material_names()


# ----------------------------------------------------------------------------------------------
# bad calibration files
# ----------------------------------------------------------------------------------------------

GOOD = """
name = "t"
reference = "test"
[density]
hu = [-1000.0, 0.0, 1000.0]
g_cm3 = [0.0012, 1.0, 1.6]
[[tissue]]
hu_min = -inf
hu_max = -500.0
material = "air"
[[tissue]]
hu_min = -500.0
hu_max = 200.0
material = "soft_tissue"
[[tissue]]
hu_min = 200.0
hu_max = inf
material = "cortical_bone"
"""


def _write(tmp_path, text, name="cal.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_good_file_by_path_and_inline_material(tmp_path, library):
    cal = load_calibration(_write(tmp_path, GOOD), library)
    assert [b.material.name for b in cal.bins] == ["air", "soft_tissue", "cortical_bone"]
    inline = GOOD.replace('material = "cortical_bone"', """voxel_density = 1.8
[tissue.material]
name = "my_bone"
density = 1.85
composition = { H = 0.04, C = 0.15, O = 0.44, P = 0.11, Ca = 0.26 }
""").replace('hu_max = 200.0\nmaterial = "soft_tissue"', 'hu_max = 200.0\nmaterial = "my_bone"')
    cal2 = load_calibration(_write(tmp_path, inline, "inline.toml"), library)
    assert cal2.bins[1].material is cal2.bins[2].material
    assert cal2.bins[2].material.density == 1.85 and cal2.bins[2].voxel_density == 1.8
    assert cal2.materials()[1].name == "my_bone"
    ph, _ = ct_to_phantom(make_ct(np.array([[[0.0, 500.0]]])), cal2, library)
    assert ph.material_names() == ["my_bone"] and np.allclose(ph.density, [[[1.0, 1.8]]])


@pytest.mark.parametrize("old,new,error,match", [
    ("hu = [-1000.0, 0.0, 1000.0]", "hu = [-1000.0, 0.0, 0.0]", ConfigError, r"\[density\] 'hu' must be strictly increasing: hu\[2\]"),
    ("g_cm3 = [0.0012, 1.0, 1.6]", "g_cm3 = [0.0012, 1.0, 0.9]", ConfigError, r"'g_cm3' decreases from 1 \(hu 0\) to 0.9"),
    ("g_cm3 = [0.0012, 1.0, 1.6]", "g_cm3 = [-0.1, 1.0, 1.6]", ConfigError, r"g_cm3\[0\] = -0.1 must be a finite density > 0"),
    ("g_cm3 = [0.0012, 1.0, 1.6]", "g_cm3 = [0.0012, 1.0]", ConfigError, "equal length"),
    ("hu_min = -500.0", "hu_min = -400.0", ConfigError, r"gap between \[\[tissue\]\] 1 .* and \[\[tissue\]\] 2"),
    ("hu_min = 200.0", "hu_min = 100.0", ConfigError, r"\[\[tissue\]\] 2 .* and \[\[tissue\]\] 3 .* overlap on HU 100 .. 200"),
    ('material = "soft_tissue"', 'material = "sof_tissue"', MaterialError, r"\[\[tissue\]\] 2 material: unknown material 'sof_tissue'; did you mean soft_tissue"),
    ("hu_min = -inf", "hu_min = -1024.0", ConfigError, r"must start at hu_min = -inf"),
    ("hu_max = inf", "hu_max = 3000.0", ConfigError, r"must end at hu_max = inf"),
    ("hu_max = -500.0", "hu_mx = -500.0", ConfigError, r"\[\[tissue\]\] 1: unknown key\(s\) 'hu_mx'"),
    ('material = "air"', 'material = "air"\nvoxel_density = -1.0', ConfigError, r"\[\[tissue\]\] 1 voxel_density = -1 must be > 0"),
    ("[density]", "[dens]", ConfigError, r"unknown key\(s\) 'dens'"),
    ('material = "air"', 'material = { name = "air", density = 0.0012, composition = { N = 0.8, O = 0.2 } }', MaterialError, "name of a library material"),
    ('material = "air"', 'material = { name = "gas", density = 0.0012, composition = { N = 0.5, O = 0.2 } }', MaterialError, "sum to 0.7"),
])
def test_bad_files_give_clear_errors(tmp_path, library, old, new, error, match):
    assert old in GOOD
    p = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(error, match=match) as exc:
        load_calibration(p, library)
    assert str(p) in str(exc.value)


def test_unknown_name_and_malformed_toml(tmp_path, library):
    with pytest.raises(ConfigError, match="unknown calibration 'spine_defualt'.*spine_default"):
        load_calibration("spine_defualt", library)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_calibration(_write(tmp_path, "[density\nhu = 1"), library)
    with pytest.raises(ConfigError, match="file not found"):
        load_calibration(tmp_path / "missing.toml", library)


def test_dataclass_validation(library):
    with pytest.raises(ConfigError, match="strictly increasing"):
        DensityCurve((0.0, 0.0), (1.0, 1.0))
    DensityCurve((0.0, 1.0), (1.0, 0.5), allow_decreasing=True)
    air, st_ = library["air"], library["soft_tissue"]
    with pytest.raises(ConfigError, match="hu_min < hu_max"):
        TissueBin(5.0, 5.0, air)
    with pytest.raises(ConfigError, match="overlap"):
        HUCalibration("x", "", DensityCurve((0.0,), (1.0,)),
                      (TissueBin(-math.inf, 10.0, air), TissueBin(5.0, math.inf, st_)))
