"""DICOM CT series: write/read round trip, slice sorting, and refusal of unusable series."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brachymc.errors import BrachyMCError, ConfigError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry
from brachymc.io.dicom_ct import CT_IMAGE_STORAGE, DicomError, read_ct_series, write_ct_series
from brachymc.io.dicom_rtdose import DicomReference, write_rtdose

SHAPE = (7, 10, 12)                      # nz, ny, nx
SPACING = (0.08, 0.11, 0.25)             # dx, dy, dz cm (0.8 x 1.1 mm pixels, 2.5 mm slices)
ORIGIN = (-12.34, -7.65, -3.1)           # cm


def synthetic_ct(shape=SHAPE, spacing=SPACING, origin=ORIGIN, seed=1) -> CTVolume:
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1000, 3001, size=shape).astype(np.float32)
    return CTVolume(hu=hu, geometry=GridGeometry(shape=shape, spacing=spacing, origin=origin))


@pytest.fixture()
def series(tmp_path) -> tuple[Path, CTVolume, list[Path]]:
    ct = synthetic_ct()
    folder = tmp_path / "ct"
    paths = write_ct_series(folder, ct, study_uid="1.2.3.4", series_uid="1.2.3.4.5", frame_uid="1.2.3.4.6",
                            description="synthetic")
    return folder, ct, paths


def edit(path: Path, **fields) -> None:
    ds = pydicom.dcmread(path)
    for name, value in fields.items():
        setattr(ds, name, value)
    ds.save_as(path)


def assert_same_geometry(a: GridGeometry, b: GridGeometry) -> None:
    assert tuple(a.shape) == tuple(b.shape)
    np.testing.assert_allclose(a.spacing, b.spacing, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.origin, b.origin, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# round trip
# ---------------------------------------------------------------------------------------------

def test_round_trip_hu_geometry_and_identifiers(series):
    folder, ct, paths = series
    assert len(paths) == 7 and all(p.parent == folder and p.is_file() for p in paths)
    back = read_ct_series(folder)
    assert back.hu.dtype == np.float32
    assert back.hu.shape == (7, 10, 12)
    np.testing.assert_array_equal(back.hu.astype(np.int64), ct.hu.astype(np.int64))
    assert np.all(back.hu == np.rint(back.hu))
    assert_same_geometry(back.geometry, ct.geometry)
    assert back.geometry.spacing[0] == pytest.approx(0.08, abs=1e-9)      # dx: column spacing
    assert back.geometry.spacing[1] == pytest.approx(0.11, abs=1e-9)      # dy: row spacing
    assert back.geometry.spacing[2] == pytest.approx(0.25, abs=1e-9)
    assert back.study_instance_uid == "1.2.3.4"
    assert back.series_instance_uid == "1.2.3.4.5"
    assert back.frame_of_reference_uid == "1.2.3.4.6"
    assert back.patient_id == "BRACHYMC-DEMO"
    assert back.patient_name == "Demo^Spine"
    assert back.source == str(folder)


def test_written_files_are_valid_ct_instances(series):
    folder, ct, paths = series
    sop_uids = set()
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPClassUID == CT_IMAGE_STORAGE
        assert ds.SOPClassUID == CT_IMAGE_STORAGE
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        sop_uids.add(ds.SOPInstanceUID)
        assert ds.Modality == "CT" and ds.InstanceNumber == k + 1
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        # centre of the first pixel, mm: origin + half a voxel
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient],
                                   [-123.4 + 0.4, -76.5 + 0.55, -31.0 + 1.25 + 2.5 * k], atol=1e-9)
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [1.1, 0.8], atol=1e-12)
        assert float(ds.SliceThickness) == pytest.approx(2.5)
        assert (ds.Rows, ds.Columns) == (10, 12)
        assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
        assert ds.pixel_array.dtype == np.uint16
        np.testing.assert_array_equal(ds.pixel_array.astype(np.int64), ct.hu[k].astype(np.int64) + 1024)
        assert ds.SeriesDescription == "synthetic"
    assert len(sop_uids) == 7
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]      # no temporary files left


def test_writer_generates_uids_and_clips_hu(tmp_path):
    ct = synthetic_ct(shape=(2, 3, 4))
    hu = ct.hu.copy()
    hu[0, 0, 0], hu[0, 0, 1], hu[1, 2, 3] = -3000.0, 70000.0, 12.4
    paths = write_ct_series(tmp_path / "a", CTVolume(hu=hu, geometry=ct.geometry))
    back = read_ct_series(tmp_path / "a")
    assert back.hu[0, 0, 0] == -1024 and back.hu[0, 0, 1] == 64511 and back.hu[1, 2, 3] == 12
    ds = pydicom.dcmread(paths[0])
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID):
        assert pydicom.uid.UID(uid).is_valid
    assert len({ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID}) == 3


def test_decimal_strings_fit_sixteen_characters(tmp_path, recwarn):
    # 10 * 0.9999999999999999 mm rounds up to "10.00000000000000" (17 characters) if done naively
    ct = synthetic_ct(shape=(3, 2, 2), spacing=(0.9999999999999999, 0.12345678901234567, 0.9999999999999999),
                      origin=(-49.99999999999999, 0.1 + 0.2, -0.00012345678901234))
    paths = write_ct_series(tmp_path / "ds", ct)
    assert not [w for w in recwarn if "VR DS" in str(w.message)]
    for p in paths:
        ds = pydicom.dcmread(p)
        for name in ("ImagePositionPatient", "PixelSpacing", "SliceThickness", "SliceLocation"):
            values = ds[name].value if ds[name].VM > 1 else [ds[name].value]
            assert all(len(str(v.original_string if hasattr(v, "original_string") else v)) <= 16 for v in values)
    assert_same_geometry(read_ct_series(tmp_path / "ds").geometry, ct.geometry)


def test_shuffled_file_names_sort_by_position(series, tmp_path):
    folder, ct, paths = series
    order = list(range(len(paths)))
    random.Random(3).shuffle(order)
    assert order != sorted(order)
    for new_rank, k in enumerate(order):           # lexical file order no longer follows z
        paths[k].rename(folder / f"IMG{new_rank:02d}")
    for p in folder.iterdir():                     # InstanceNumber scrambled as well
        edit(p, InstanceNumber=int(p.name[3:]) + 1)
    back = read_ct_series(folder)
    np.testing.assert_array_equal(back.hu, ct.hu)
    assert_same_geometry(back.geometry, ct.geometry)


def test_rescale_slope_and_intercept_are_applied(series):
    folder, ct, paths = series
    ds = pydicom.dcmread(paths[3])
    stored = ds.pixel_array.astype(np.float64)
    edit(paths[3], RescaleSlope="2", RescaleIntercept="-2048")
    back = read_ct_series(folder)
    np.testing.assert_array_equal(back.hu[3], (2 * stored - 2048).astype(np.float32))
    np.testing.assert_array_equal(back.hu[2], ct.hu[2])


def test_non_dicom_and_non_ct_files_are_skipped(series, caplog):
    folder, ct, _ = series
    (folder / "README").write_text("CT of a demo spine phantom\n")
    (folder / "notes.txt").write_text("nothing to see\n")
    write_rtdose(folder / "RD.dcm", np.ones(ct.geometry.shape), ct.geometry, DicomReference())
    with caplog.at_level(logging.WARNING, logger="brachymc.io.dicom_ct"):
        back = read_ct_series(folder)
    np.testing.assert_array_equal(back.hu, ct.hu)
    assert any("README" in r.getMessage() and "not a DICOM" in r.getMessage() for r in caplog.records)


hyp_len = st.integers(min_value=1, max_value=4)
hyp_spacing = st.floats(min_value=0.01, max_value=1.0, allow_nan=False)
hyp_origin = st.floats(min_value=-60.0, max_value=60.0, allow_nan=False)


@settings(max_examples=25, deadline=None)
@given(nz=hyp_len, ny=hyp_len, nx=hyp_len, dx=hyp_spacing, dy=hyp_spacing, dz=hyp_spacing,
       ox=hyp_origin, oy=hyp_origin, oz=hyp_origin, seed=st.integers(0, 2**16))
def test_geometry_round_trip_property(tmp_path_factory, nz, ny, nx, dx, dy, dz, ox, oy, oz, seed):
    ct = synthetic_ct(shape=(nz, ny, nx), spacing=(dx, dy, dz), origin=(ox, oy, oz), seed=seed)
    folder = tmp_path_factory.mktemp("hyp")
    write_ct_series(folder, ct)
    back = read_ct_series(folder)
    assert_same_geometry(back.geometry, ct.geometry)
    np.testing.assert_array_equal(back.hu, ct.hu)


# ---------------------------------------------------------------------------------------------
# refusals: typed errors naming the file or folder
# ---------------------------------------------------------------------------------------------

def test_error_types():
    assert issubclass(DicomError, ConfigError) and issubclass(DicomError, BrachyMCError)


@pytest.mark.parametrize("keep", ["pixels", "header"])
def test_truncated_file_is_named(series, keep):
    folder, _, paths = series
    data = paths[4].read_bytes()
    paths[4].write_bytes(data[:-60] if keep == "pixels" else data[:300])
    with pytest.raises(DicomError, match="truncated") as exc:
        read_ct_series(folder)
    assert str(paths[4]) in str(exc.value)


def test_corrupt_file_with_dicom_name_is_an_error(series):
    folder, _, _ = series
    bad = folder / "CT_0099.dcm"
    bad.write_bytes(b"\x00" * 40)
    with pytest.raises(DicomError) as exc:
        read_ct_series(folder)
    assert str(bad) in str(exc.value)


def test_missing_middle_slice(series):
    folder, _, paths = series
    paths[3].unlink()
    with pytest.raises(DicomError, match="missing slice") as exc:
        read_ct_series(folder)
    msg = str(exc.value)
    assert str(folder) in msg and paths[2].name in msg and paths[4].name in msg


def test_two_missing_slices(series):
    folder, _, paths = series
    paths[2].unlink()
    paths[3].unlink()
    with pytest.raises(DicomError, match="2 slices missing"):
        read_ct_series(folder)


def test_uneven_spacing(series):
    folder, _, paths = series
    ds = pydicom.dcmread(paths[3])
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    edit(paths[3], ImagePositionPatient=[x, y, z + 0.4])
    with pytest.raises(DicomError, match="uneven slice spacing") as exc:
        read_ct_series(folder)
    assert str(folder) in str(exc.value)


def test_small_position_jitter_is_tolerated(series):
    folder, ct, paths = series
    ds = pydicom.dcmread(paths[3])
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    edit(paths[3], ImagePositionPatient=[x, y, z + 0.005])
    back = read_ct_series(folder)
    np.testing.assert_array_equal(back.hu, ct.hu)


def test_duplicate_positions(series):
    folder, _, paths = series
    ds = pydicom.dcmread(paths[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "CT_copy.dcm")
    with pytest.raises(DicomError, match="duplicate slice position") as exc:
        read_ct_series(folder)
    assert str(folder) in str(exc.value)


def test_oblique_orientation(series):
    folder, _, paths = series
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    for p in paths:
        edit(p, ImageOrientationPatient=[1, 0, 0, 0, float(c), float(s)])
    with pytest.raises(DicomError, match="oblique/tilted") as exc:
        read_ct_series(folder)
    assert "ImageOrientationPatient" in str(exc.value) and str(folder) in str(exc.value)


def test_gantry_tilt_as_position_drift(series):
    folder, _, paths = series
    for k, p in enumerate(paths):                  # axial orientation, but y drifts with z
        ds = pydicom.dcmread(p)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        edit(p, ImagePositionPatient=[x, y + 0.44 * k, z])
    with pytest.raises(DicomError, match="tilted") as exc:
        read_ct_series(folder)
    assert "straight line" in str(exc.value) and str(folder) in str(exc.value)


def test_mismatched_pixel_spacing(series):
    folder, _, paths = series
    edit(paths[5], PixelSpacing=["1.2", "0.8"])
    with pytest.raises(DicomError, match="PixelSpacing") as exc:
        read_ct_series(folder)
    assert str(paths[5]) in str(exc.value)


def test_missing_required_field(series):
    folder, _, paths = series
    ds = pydicom.dcmread(paths[1])
    del ds.ImagePositionPatient
    ds.save_as(paths[1])
    with pytest.raises(DicomError, match="missing ImagePositionPatient") as exc:
        read_ct_series(folder)
    assert str(paths[1]) in str(exc.value)


def test_two_series_listed_and_selectable(tmp_path):
    folder = tmp_path / "mixed"
    a, b = synthetic_ct(seed=1), synthetic_ct(shape=(3, 4, 5), seed=2)
    pa = write_ct_series(folder / "a", a, series_uid="1.2.826.0.1.111")
    pb = write_ct_series(folder / "b", b, series_uid="1.2.826.0.1.222")
    folder.mkdir(exist_ok=True)
    for p in pa:
        p.rename(folder / f"A_{p.name}")
    for p in pb:
        p.rename(folder / f"B_{p.name}")
    with pytest.raises(DicomError) as exc:
        read_ct_series(folder)
    msg = str(exc.value)
    assert str(folder) in msg and "1.2.826.0.1.111" in msg and "1.2.826.0.1.222" in msg
    assert "series_uid" in msg
    back = read_ct_series(folder, series_uid="1.2.826.0.1.222")
    np.testing.assert_array_equal(back.hu, b.hu)
    assert_same_geometry(back.geometry, b.geometry)
    with pytest.raises(DicomError, match="1.2.826.0.1.333"):
        read_ct_series(folder, series_uid="1.2.826.0.1.333")


def test_empty_and_missing_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DicomError, match="empty") as exc:
        read_ct_series(empty)
    assert str(empty) in str(exc.value)
    with pytest.raises(DicomError, match="does not exist"):
        read_ct_series(tmp_path / "nowhere")
    (empty / "README").write_text("no images here\n")
    with pytest.raises(DicomError, match="no CT images") as exc:
        read_ct_series(empty)
    assert str(empty) in str(exc.value)
