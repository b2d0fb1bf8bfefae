"""Non-DICOM volume I/O (EGSnrc .egsphant / .3ddose, CT as .h5 / .npz) and grid resampling."""

from __future__ import annotations

import gzip

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brachymc.errors import ConfigError, GeometryError, MaterialError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.geometry.resample import coarser_grid, overlap_matrix, resample_ct, resample_to
from brachymc.io.egsnrc import (
    DEFAULT_ALIASES,
    EGS_BRACHY_NAMES,
    MEDIA_CHARS,
    read_3ddose,
    read_egsphant,
    resolve_medium,
    write_3ddose,
    write_egsphant,
)
from brachymc.io.volume import read_ct_volume, write_ct_volume


# ---------------------------------------------------------------------------------------------
# .egsphant
# ---------------------------------------------------------------------------------------------
def _two_media_text(x_planes: str = "0.0 0.5 1.0 1.5", media: tuple[str, str] = ("WATER_0.998", "AIR_TG43")) -> str:
    # nx=3, ny=2, nz=2
    return (
        "2\n"
        f"{media[0]}\n{media[1]}\n"
        "0.25 0.25\n"
        "  3  2  2\n"
        f"{x_planes}\n"
        "-1.0 -0.5 0.0\n"
        "2.0 2.25 2.5\n"
        "112\n121\n\n"
        "222\n111\n\n"
        "0.998 0.998 0.0012\n0.998 0.0012 0.998\n\n"
        "0.0012 0.0012 0.0012\n0.998 0.998 1.05\n"
    )


def test_egsphant_hand_written_two_media(tmp_path, library):
    p = tmp_path / "two.egsphant"
    p.write_text(_two_media_text())
    ph = read_egsphant(p, library)
    assert ph.material_names() == ["water_0998", "air_tg43"]
    g = ph.geometry
    assert g.shape == (2, 2, 3)
    assert g.spacing == pytest.approx((0.5, 0.5, 0.25))
    assert g.origin == pytest.approx((0.0, -1.0, 2.0))
    # voxel (ix=2, iy=0, iz=0) is medium '2' (air) with density 0.0012; x is fastest
    assert ph.material_index[0, 0].tolist() == [0, 0, 1]
    assert ph.material_index[1, 0].tolist() == [1, 1, 1]
    assert ph.density[0, 0, 2] == pytest.approx(0.0012)
    assert ph.density[1, 1, 2] == pytest.approx(1.05)
    assert ph.material_index.dtype == np.uint8 and ph.density.dtype == np.float32


def test_egsphant_round_trip_two_media(tmp_path, library):
    g = GridGeometry(shape=(3, 4, 5), spacing=(0.2, 0.25, 0.3), origin=(-0.5, -0.5, 1.0))
    ph = VoxelPhantom.homogeneous(g, library["water"]).with_box(library["cortical_bone"], (-0.5, -0.5, 1.0),
                                                              (0.0, 0.0, 1.4), density=1.85)
    p = write_egsphant(tmp_path / "ph.egsphant", ph)
    back = read_egsphant(p, library)
    assert back.material_names() == ["water", "cortical_bone"]
    np.testing.assert_array_equal(back.material_index, ph.material_index)
    np.testing.assert_array_equal(back.density, ph.density)
    assert back.geometry.shape == g.shape
    np.testing.assert_allclose(back.geometry.spacing, g.spacing, rtol=1e-9)
    np.testing.assert_allclose(back.geometry.origin, g.origin, atol=1e-9)
    assert int((back.material_index == 1).sum()) == int((ph.material_index == 1).sum()) > 0


@pytest.mark.parametrize("suffix", [".egsphant", ".egsphant.gz"])
def test_egsphant_round_trip_random(tmp_path, library, suffix):
    rng = np.random.default_rng(7)
    names = ["water", "air_tg43", "muscle", "adipose", "cortical_bone", "titanium", "lung", "soft_tissue",
             "skin", "brain", "liver", "blood"]
    mats = tuple(library[n] for n in names)
    g = GridGeometry(shape=(4, 6, 7), spacing=(0.1, 0.15, 0.2), origin=(-0.35, 0.1, -2.0))
    idx = rng.integers(0, len(mats), size=g.shape).astype(np.uint8)   # > 9 media: letters used
    rho = rng.uniform(0.001, 5.0, size=g.shape).astype(np.float32)
    ph = VoxelPhantom(g, mats, idx, rho)
    p = write_egsphant(tmp_path / f"rand{suffix}", ph)
    raw = p.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == suffix.endswith(".gz")
    text = gzip.decompress(raw).decode() if suffix.endswith(".gz") else raw.decode()
    lines = text.splitlines()
    header = 1 + len(names) + 1 + 1 + 3                       # nmed, names, ESTEPE, nx ny nz, boundaries
    rows = [ln for ln in lines[header:header + g.nz * (g.ny + 1)] if ln]
    assert len(rows) == g.nz * g.ny and all(len(r) == g.nx for r in rows)
    assert set("".join(rows)) == set(MEDIA_CHARS[:12])         # '1'..'9', then 'A', 'B', 'C'
    assert rows[0] == "".join(MEDIA_CHARS[i] for i in idx[0, 0])
    back = read_egsphant(p, library)
    assert back.material_names() == names
    np.testing.assert_array_equal(back.material_index, idx)
    np.testing.assert_array_equal(back.density, rho)          # 9 significant digits: exact for float32
    np.testing.assert_allclose(back.geometry.origin, g.origin, atol=1e-9)


def test_egsphant_egs_brachy_names_and_aliases(tmp_path, library):
    g = GridGeometry(shape=(1, 2, 2), spacing=(0.1, 0.1, 0.1), origin=(0, 0, 0))
    ph = VoxelPhantom(g, (library["water_0998"], library["titanium"]),
                      np.array([[[0, 1], [1, 0]]], np.uint8), np.array([[[0.998, 4.54], [4.54, 0.998]]], np.float32))
    p = write_egsphant(tmp_path / "eb.egsphant", ph, names=EGS_BRACHY_NAMES)
    lines = p.read_text().splitlines()
    assert lines[:3] == ["2", "WATER_0.998", "Ti"]
    back = read_egsphant(p, library)
    assert back.material_names() == ["water_0998", "titanium"]
    # user aliases take precedence over the default table; two media mapped to one are merged
    back2 = read_egsphant(p, library, aliases={"ti": "WATER_0998"})
    assert back2.material_names() == ["water_0998"]
    assert back2.material_index.max() == 0
    np.testing.assert_array_equal(back2.density, ph.density)


def test_default_aliases_point_at_library_materials(library):
    missing = {k: v for k, v in DEFAULT_ALIASES.items() if v not in library}
    assert not missing
    assert all(k in DEFAULT_ALIASES for k in ("H2O521ICRU", "AIR521ICRU", "ICRPBONE521ICRU"))
    # egs_brachy names are library aliases of exactly their medium, not closest-medium defaults
    assert "WATER_0.998" not in DEFAULT_ALIASES and resolve_medium("WATER_0.998", library).name == "water_0998"
    assert not {v for v in EGS_BRACHY_NAMES if v not in library}


def test_egsphant_pegs_names_via_default_aliases(tmp_path, library):
    p = tmp_path / "pegs.egsphant"
    p.write_text(_two_media_text(media=("H2O521ICRU", "icrpbone521icru")))
    assert read_egsphant(p, library).material_names() == ["water", "cortical_bone"]


def test_egsphant_truncated(tmp_path, library):
    text = _two_media_text()
    p = tmp_path / "trunc.egsphant"
    p.write_text(text[: text.rindex("0.998 0.998 1.05")])
    with pytest.raises(ConfigError) as exc:
        read_egsphant(p, library)
    msg = str(exc.value)
    assert str(p) in msg and "12 voxel densities" in msg and "truncated" in msg
    # cut inside the media matrix
    p.write_text(text[: text.index("222")])
    with pytest.raises(ConfigError, match="media matrix"):
        read_egsphant(p, library)
    # cut inside the boundaries
    p.write_text(text[: text.index("-1.0 -0.5")])
    with pytest.raises(ConfigError, match="y boundaries"):
        read_egsphant(p, library)


def test_egsphant_bad_media_character(tmp_path, library):
    p = tmp_path / "badchar.egsphant"
    p.write_text(_two_media_text().replace("121\n", "131\n", 1))
    with pytest.raises(ConfigError, match=r"ix=1, iy=1, iz=0.*'3'"):
        read_egsphant(p, library)


def test_egsphant_unknown_medium(tmp_path, library):
    p = tmp_path / "unknown.egsphant"
    p.write_text(_two_media_text(media=("WATER_0.998", "UNOBTANIUM_9")))
    with pytest.raises(MaterialError) as exc:
        read_egsphant(p, library)
    msg = str(exc.value)
    assert str(p) in msg and "UNOBTANIUM_9" in msg and "aliases=" in msg and "[[material]]" in msg
    # an alias makes it readable; an alias to a non-library name is itself reported
    assert read_egsphant(p, library, aliases={"unobtanium_9": "lead"}).material_names() == ["water_0998", "lead"]
    with pytest.raises(MaterialError, match="'kryptonite'.*not in the material library"):
        read_egsphant(p, library, aliases={"UNOBTANIUM_9": "kryptonite"})


def test_egsphant_non_uniform_boundaries(tmp_path, library):
    p = tmp_path / "nonuni.egsphant"
    p.write_text(_two_media_text(x_planes="0.0 0.5 1.1 1.5"))
    with pytest.raises(GeometryError) as exc:
        read_egsphant(p, library)
    assert str(p) in str(exc.value) and "x voxel boundaries" in str(exc.value)
    p.write_text(_two_media_text(x_planes="0.0 0.5 0.5 1.5"))
    with pytest.raises(GeometryError, match="x boundaries must increase"):
        read_egsphant(p, library)


def test_egsphant_bad_density_and_extra_values(tmp_path, library):
    p = tmp_path / "dens.egsphant"
    p.write_text(_two_media_text().replace("0.998 0.998 1.05", "0.998 0.0 1.05"))
    with pytest.raises(ConfigError, match=r"ix=1, iy=1, iz=1.*density"):
        read_egsphant(p, library)
    p.write_text(_two_media_text() + "7.0\n")
    with pytest.raises(ConfigError, match="unexpected values"):
        read_egsphant(p, library)
    with pytest.raises(ConfigError, match="not found"):
        read_egsphant(tmp_path / "nope.egsphant", library)


# ---------------------------------------------------------------------------------------------
# .3ddose
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".3ddose", ".3ddose.gz"])
def test_3ddose_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(11)
    g = GridGeometry(shape=(3, 4, 5), spacing=(0.1, 0.2, 0.25), origin=(-0.25, -0.4, 0.5))
    dose = rng.uniform(0, 3e-12, size=g.shape)
    unc = rng.uniform(0.001, 0.5, size=g.shape)
    unc[0, 0, 0] = np.nan                                      # zero-dose voxel: written as 100 %
    p = write_3ddose(tmp_path / f"d{suffix}", dose, unc, g)
    d2, u2, g2 = read_3ddose(p)
    np.testing.assert_allclose(d2, dose, rtol=1e-6)
    assert u2[0, 0, 0] == 1.0
    np.testing.assert_allclose(u2.ravel()[1:], unc.ravel()[1:], rtol=1e-6)
    assert g2.shape == g.shape
    np.testing.assert_allclose(g2.spacing, g.spacing, rtol=1e-9)
    np.testing.assert_allclose(g2.origin, g.origin, atol=1e-9)


def test_3ddose_layout_and_no_uncertainty(tmp_path):
    g = GridGeometry(shape=(2, 1, 2), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    dose = np.array([[[1.0, 2.0]], [[3.0, 4.0]]])            # x fastest in the file
    p = write_3ddose(tmp_path / "d.3ddose", dose, None, g)
    tokens = p.read_text().split()
    assert tokens[:3] == ["2", "1", "2"]
    assert [float(t) for t in tokens[3 + 3 + 2 + 3:]] == [1.0, 2.0, 3.0, 4.0]
    d2, u2, _ = read_3ddose(p)
    assert u2 is None
    np.testing.assert_array_equal(d2, dose)
    p.write_text(" ".join(tokens[:-1]))
    with pytest.raises(ConfigError, match="truncated.*4 doses"):
        read_3ddose(p)
    p.write_text(" ".join(tokens + ["0.1", "0.1"]))
    with pytest.raises(ConfigError, match="relative uncertainties"):
        read_3ddose(p)


# ---------------------------------------------------------------------------------------------
# CT volumes as .h5 / .npz
# ---------------------------------------------------------------------------------------------
def _ct() -> CTVolume:
    rng = np.random.default_rng(3)
    g = GridGeometry(shape=(4, 5, 6), spacing=(0.09765625, 0.09765625, 0.25), origin=(-25.0, -20.0, 101.5))
    hu = rng.integers(-1000, 2000, size=g.shape).astype(np.float32)
    return CTVolume(hu, g, frame_of_reference_uid="1.2.3.4", patient_id="P01", patient_name="Doe^Jane",
                    study_instance_uid="1.2.3.5", series_instance_uid="1.2.3.6", source="synthetic")


@pytest.mark.parametrize("suffix", [".h5", ".hdf5", ".npz"])
def test_ct_volume_round_trip(tmp_path, suffix):
    ct = _ct()
    p = write_ct_volume(tmp_path / f"ct{suffix}", ct)
    assert p.exists() and not list(tmp_path.glob(".*tmp"))
    back = read_ct_volume(p)
    np.testing.assert_array_equal(back.hu, ct.hu)
    assert back.hu.dtype == np.float32
    assert back.geometry == ct.geometry
    for k in ("frame_of_reference_uid", "patient_id", "patient_name", "study_instance_uid", "series_instance_uid"):
        assert getattr(back, k) == getattr(ct, k)
    assert back.source == str(p)


def test_ct_h5_fields_as_datasets_and_int_hu(tmp_path):
    p = tmp_path / "ds.h5"
    with h5py.File(p, "w") as f:
        f["hu"] = np.zeros((2, 3, 4), np.int16) - 1000
        f["origin_cm"] = [1.0, 2.0, 3.0]
        f["spacing_cm"] = [0.1, 0.2, 0.3]
    ct = read_ct_volume(p)
    assert ct.geometry.origin == (1.0, 2.0, 3.0) and ct.geometry.spacing == pytest.approx((0.1, 0.2, 0.3))
    assert ct.hu.dtype == np.float32 and float(ct.hu.mean()) == -1000.0
    assert ct.frame_of_reference_uid == ""


def test_ct_h5_errors(tmp_path):
    p = tmp_path / "bad.h5"
    with h5py.File(p, "w") as f:
        f["spacing_cm"] = [0.1, 0.1, 0.1]
    with pytest.raises(ConfigError, match=r"bad\.h5.*no dataset 'hu'"):
        read_ct_volume(p)
    with h5py.File(p, "w") as f:
        f["hu"] = np.zeros((2, 2, 2))
        f.attrs["spacing_cm"] = [0.1, 0.1, 0.1]
    with pytest.raises(ConfigError, match=r"bad\.h5.*missing 'origin_cm'"):
        read_ct_volume(p)
    with h5py.File(p, "w") as f:
        f["hu"] = np.zeros((2, 2, 2))
        f.attrs["origin_cm"] = [0, 0, 0]
        f.attrs["spacing_cm"] = [0.1, 0.0, 0.1]
    with pytest.raises(ConfigError, match=r"'spacing_cm' must be > 0"):
        read_ct_volume(p)
    with h5py.File(p, "w") as f:
        f["hu"] = np.zeros((2, 2))
        f.attrs["origin_cm"] = [0, 0, 0]
        f.attrs["spacing_cm"] = [0.1, 0.1, 0.1]
    with pytest.raises(ConfigError, match=r"'hu' must be 3-D"):
        read_ct_volume(p)
    p.write_bytes(b"not hdf5 at all")
    with pytest.raises(ConfigError, match="cannot open as HDF5"):
        read_ct_volume(p)


def test_ct_npz_errors(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, origin_cm=np.zeros(3), spacing_cm=np.ones(3))
    with pytest.raises(ConfigError, match=r"bad\.npz.*no array 'hu'"):
        read_ct_volume(p)
    np.savez(p, hu=np.zeros((2, 2, 2)), origin_cm=np.zeros(3))
    with pytest.raises(ConfigError, match=r"missing 'spacing_cm'"):
        read_ct_volume(p)
    hu = np.zeros((2, 2, 2))
    hu[1, 0, 1] = np.nan
    np.savez(p, hu=hu, origin_cm=np.zeros(3), spacing_cm=np.ones(3))
    with pytest.raises(ConfigError, match=r"NaN.*iz=1, iy=0, ix=1"):
        read_ct_volume(p)
    np.savez(p, hu=np.zeros((2, 2, 2)), origin_cm=np.zeros(2), spacing_cm=np.ones(3))
    with pytest.raises(ConfigError, match=r"'origin_cm' must have shape \(3,\)"):
        read_ct_volume(p)
    with pytest.raises(ConfigError, match="unsupported CT volume format '.nii'"):
        read_ct_volume(tmp_path / "ct.nii")
    with pytest.raises(ConfigError, match="not found"):
        read_ct_volume(tmp_path / "missing.npz")


# ---------------------------------------------------------------------------------------------
# resampling
# ---------------------------------------------------------------------------------------------
def test_overlap_matrix_and_half_voxel_offset_by_hand():
    w = overlap_matrix(np.arange(5.0), np.array([0.5, 2.5, 4.5]))
    np.testing.assert_allclose(w, [[0.5, 1.0, 0.5, 0.0], [0.0, 0.0, 0.5, 1.0]])
    src = GridGeometry(shape=(1, 1, 4), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    img = np.array([0.0, 10.0, 20.0, 30.0]).reshape(1, 1, 4)
    # 2 cm voxels shifted by half a source voxel: [0.5, 2.5] and [2.5, 4.5] (the latter half outside)
    dst = GridGeometry(shape=(1, 1, 2), spacing=(2.0, 1.0, 1.0), origin=(0.5, 0.0, 0.0))
    out = resample_to(img, src, dst)
    np.testing.assert_allclose(out.ravel(), [(0.5 * 0 + 1 * 10 + 0.5 * 20) / 2.0, (0.5 * 20 + 1 * 30) / 1.5])
    # same voxel size shifted by half a voxel: neighbour means inside, NaN fill where nothing overlaps
    dst2 = GridGeometry(shape=(1, 1, 6), spacing=(1.0, 1.0, 1.0), origin=(-1.5, 0.0, 0.0))
    out2 = resample_to(img, src, dst2).ravel()
    assert np.isnan(out2[0])
    np.testing.assert_allclose(out2[1:], [0.0, 5.0, 15.0, 25.0, 30.0])
    assert resample_to(img, src, dst2, fill=-1000.0).ravel()[0] == -1000.0
    # nearest: the source voxel holding each target centre
    np.testing.assert_array_equal(resample_to(img.astype(np.uint8), src, dst, mode="nearest").ravel(), [10, 30])
    # centres -1 (outside), 0, 1, 2, 3 and 4 (on the high face: closed box, last voxel)
    near = resample_to(img.astype(np.uint8), src, dst2, mode="nearest", fill=255)
    assert near.dtype == np.uint8 and near.ravel().tolist() == [255, 0, 10, 20, 30, 30]
    assert np.isnan(resample_to(img, src, dst2, mode="nearest")).ravel().tolist() == [True] + [False] * 5
    with pytest.raises(GeometryError, match="mode"):
        resample_to(img, src, dst, mode="cubic")


def test_resample_ct_constant_and_metadata():
    g = GridGeometry(shape=(10, 12, 14), spacing=(0.1, 0.1, 0.25), origin=(-0.7, -0.6, 3.0))
    ct = CTVolume(np.full(g.shape, 40.0, np.float32), g, frame_of_reference_uid="1.2.3", patient_id="P",
                  series_instance_uid="4.5.6", source="s")
    out = resample_ct(ct, (0.3, 0.25, 0.5))
    assert out.geometry.spacing == (0.3, 0.25, 0.5)
    assert out.geometry.shape == (5, 5, 5)       # 1.4/0.3 -> 4.67 -> 5, 1.2/0.25 -> 4.8 -> 5, 2.5/0.5 = 5
    np.testing.assert_allclose(out.hu, 40.0, rtol=0, atol=1e-4)
    assert out.hu.dtype == np.float32
    meta = (out.frame_of_reference_uid, out.patient_id, out.series_instance_uid, out.source)
    assert meta == ("1.2.3", "P", "4.5.6", "s")


def test_coarser_grid_keeps_box_centre():
    g = GridGeometry(shape=(7, 10, 11), spacing=(0.1, 0.12, 0.3), origin=(-1.0, 2.0, -5.0))
    c = coarser_grid(g, (0.25, 0.4, 0.5))
    assert c.shape == (4, 3, 4)                  # x 1.1/0.25 = 4.4 -> 4; y 1.2/0.4 = 3; z 2.1/0.5 = 4.2 -> 4
    for a in range(3):
        assert (c.origin[a] + c.upper[a]) / 2 == pytest.approx((g.origin[a] + g.upper[a]) / 2, abs=1e-12)
        assert abs((c.upper[a] - c.origin[a]) - (g.upper[a] - g.origin[a])) <= c.spacing[a] / 2 + 1e-12
    assert coarser_grid(g, 10.0).shape == (1, 1, 1)
    with pytest.raises(GeometryError):
        coarser_grid(g, (0.1, -0.1, 0.1))


_dims = st.integers(1, 9)


@settings(max_examples=60)
@given(nx=_dims, ny=_dims, nz=_dims, mx=_dims, my=_dims, mz=_dims, seed=st.integers(0, 2**31 - 1),
       dx=st.floats(0.05, 0.5), dy=st.floats(0.05, 0.5), dz=st.floats(0.05, 0.5))
def test_resample_same_box_preserves_mean(nx, ny, nz, mx, my, mz, seed, dx, dy, dz):
    """Target grid covering the same box with any voxel counts: volume-weighted mean preserved."""
    rng = np.random.default_rng(seed)
    src = GridGeometry(shape=(nz, ny, nx), spacing=(dx, dy, dz), origin=tuple(rng.uniform(-3, 3, 3)))
    size = (nx * dx, ny * dy, nz * dz)
    dst = GridGeometry(shape=(mz, my, mx), spacing=(size[0] / mx, size[1] / my, size[2] / mz), origin=src.origin)
    img = rng.uniform(-1000, 2000, size=src.shape)
    out = resample_to(img, src, dst)
    assert np.all(np.isfinite(out))
    assert out.mean() == pytest.approx(img.mean(), rel=1e-10, abs=1e-8)   # equal voxel volumes on each grid
    const = resample_to(np.full(src.shape, -123.5), src, dst)
    np.testing.assert_allclose(const, -123.5, rtol=1e-12)


def _integral_over_box(img, g: GridGeometry, lo, hi) -> float:
    """Integral of a piecewise-constant image over the box [lo, hi] (brute force along each axis)."""
    w = [overlap_matrix(g.edges(a), np.array([lo[a], hi[a]]))[0] if hi[a] > lo[a] else np.zeros(g.shape[2 - a])
         for a in range(3)]
    return float(np.einsum("k,j,i,kji->", w[2], w[1], w[0], img))


@settings(max_examples=60)
@given(nx=_dims, ny=_dims, nz=_dims, seed=st.integers(0, 2**31 - 1),
       vx=st.floats(0.03, 0.9), vy=st.floats(0.03, 0.9), vz=st.floats(0.03, 0.9),
       shift=st.tuples(st.floats(-0.4, 0.4), st.floats(-0.4, 0.4), st.floats(-0.4, 0.4)))
def test_resample_integral_over_common_region(nx, ny, nz, seed, vx, vy, vz, shift):
    """Any voxel sizes and offsets: sum(out * overlap volume) = integral of the source over the
    intersection of both boxes, and a constant image stays constant where defined."""
    rng = np.random.default_rng(seed)
    src = GridGeometry(shape=(nz, ny, nx), spacing=tuple(rng.uniform(0.05, 0.3, 3)), origin=(0.0, 0.0, 0.0))
    dst = coarser_grid(src, (vx, vy, vz))
    dst = GridGeometry(dst.shape, dst.spacing, tuple(o + s for o, s in zip(dst.origin, shift)))
    img = rng.uniform(-1000, 2000, size=src.shape)
    out = resample_to(img, src, dst, fill=np.nan)
    # overlap volume of each target voxel with the source box
    ov = [overlap_matrix(np.array([src.origin[a], src.upper[a]]), dst.edges(a))[:, 0] for a in range(3)]
    vol = ov[2][:, None, None] * ov[1][None, :, None] * ov[0][None, None, :]
    assert np.all(np.isnan(out[vol == 0])) and np.all(np.isfinite(out[vol > 0]))
    lo = np.maximum(src.origin, dst.origin)
    hi = np.minimum(src.upper, dst.upper)
    expected = _integral_over_box(img, src, lo, hi)
    got = float(np.nansum(out * vol))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9 * float(np.abs(img).sum()))
    const = resample_to(np.full(src.shape, 77.0), src, dst)
    np.testing.assert_allclose(const[vol > 0], 77.0, rtol=1e-12)


@settings(max_examples=30)
@given(n=st.tuples(_dims, _dims, _dims), k=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
       seed=st.integers(0, 2**31 - 1))
def test_resample_ct_integer_factor_is_block_mean(n, k, seed):
    """Voxel size an integer multiple dividing the grid: each coarse voxel is the block mean."""
    rng = np.random.default_rng(seed)
    shape = (n[2] * k[2], n[1] * k[1], n[0] * k[0])
    g = GridGeometry(shape=shape, spacing=(0.1, 0.2, 0.3), origin=(-1.0, 0.5, 7.0))
    ct = CTVolume(rng.uniform(-1000, 1500, shape).astype(np.float32), g)
    out = resample_ct(ct, (0.1 * k[0], 0.2 * k[1], 0.3 * k[2]))
    assert out.geometry.shape == (n[2], n[1], n[0])
    np.testing.assert_allclose(out.geometry.origin, g.origin, atol=1e-9)
    blocks = ct.hu.astype(np.float64).reshape(n[2], k[2], n[1], k[1], n[0], k[0]).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(out.hu, blocks, rtol=1e-5, atol=1e-3)
    assert float(out.hu.astype(np.float64).mean()) == pytest.approx(float(ct.hu.astype(np.float64).mean()), abs=1e-3)
