"""DICOM RT Plan (brachytherapy): write/read round trip, needle orientations, dwell rule, refusals."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.uid import ExplicitVRLittleEndian

from brachymc.errors import ConfigError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry
from brachymc.io.dicom_ct import DicomError, write_ct_series
from brachymc.io.dicom_rtplan import RT_PLAN_STORAGE, read_rtplan, rtplan_uid, write_rtplan
from brachymc.sources.plan import SeedPlan
from brachymc.sources.strength import decay_factor

REF_DATE = datetime(2026, 11, 1, 12, 0, 30, 250000)
IDS = dict(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1", patient_id="P-001", patient_name="Demo^Prostate",
           study_instance_uid="1.2.826.0.1.3680043.8.498.2")
NEEDLE_DIRS = np.array([[0.2, 0.1, 1.0], [-0.3, 0.25, 1.0], [0.1, -0.4, 0.9]])
NEEDLE_DIRS = NEEDLE_DIRS / np.linalg.norm(NEEDLE_DIRS, axis=1)[:, None]
NEEDLE_STARTS = np.array([[-1.2345678, 0.9876543, -3.3333333], [0.4321987, -1.1111111, -2.7182818],
                          [1.4142136, 0.5772157, -3.1415927]])     # cm
SPACING_CM = 1.0
NEEDLE_SK = (0.512, 0.512, 0.6345)                                    # U, two distinct strengths


def needle_plan(starts=NEEDLE_STARTS, dirs=NEEDLE_DIRS, per_needle=4, sk=NEEDLE_SK, model="oncoseed_6711"):
    """Seeds along straight needles; seed i of needle k at start_k + i * spacing * dir_k."""
    pos, d, s, needles = [], [], [], []
    for k, (p0, u) in enumerate(zip(starts, dirs)):
        needles.append(list(range(len(pos), len(pos) + per_needle)))
        for i in range(per_needle):
            pos.append(p0 + i * SPACING_CM * u)
            d.append(u)
            s.append(sk[k])
    plan = SeedPlan(np.array(pos), np.array(d), np.array(s), model=model, reference_date=REF_DATE,
                    implant_date=REF_DATE + timedelta(days=2), orientation="given", source="test")
    return plan, needles


def rewrite(path: Path, edit) -> Path:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path, enforce_file_format=True)
    return path


def assert_error(path: Path, field: str, fn=read_rtplan):
    with pytest.raises(DicomError) as info:
        fn(path)
    msg = str(info.value)
    assert str(path) in msg and field in msg, msg
    return msg


@pytest.fixture()
def written(tmp_path):
    plan, needles = needle_plan()
    path = write_rtplan(tmp_path / "plan.dcm", plan, needles=needles, referenced_structure_set_uid="1.2.3.99",
                        sop_instance_uid="1.2.826.0.1.3680043.8.498.77", **IDS)
    return path, plan, needles


# ------------------------------------------------------------------------------------------ round trip

def test_round_trip_positions_strengths_dates_directions(written):
    path, plan, needles = written
    back = read_rtplan(path)
    order = [i for g in needles for i in g]
    assert back.n_seeds == 12
    np.testing.assert_allclose(back.positions_cm, plan.positions_cm[order], rtol=0, atol=1e-6)
    np.testing.assert_allclose(back.sk_U, plan.sk_U[order], rtol=1e-12)
    assert back.reference_date == REF_DATE
    assert back.implant_date == REF_DATE and "reference date" in back.notes["implant_date_from"]
    for k, g in enumerate(needles):
        np.testing.assert_allclose(back.directions[g], np.tile(NEEDLE_DIRS[k], (4, 1)), rtol=0, atol=1e-9)
    assert back.orientation == "given"
    assert back.notes["orientation_from_channel"] == 12 and back.notes["orientation_from_axis"] == 0
    assert back.notes["seed_channels"] == [1] * 4 + [2] * 4 + [3] * 4
    assert back.model == "oncoseed_6711" and back.notes["model_from"] == "SourceModelID 6711"
    assert back.notes["sop_instance_uid"] == rtplan_uid(path) == "1.2.826.0.1.3680043.8.498.77"
    assert back.notes["frame_of_reference_uid"] == IDS["frame_of_reference_uid"]
    assert back.notes["patient_id"] == "P-001" and back.notes["brachy_treatment_type"] == "LDR"
    assert back.notes["brachy_treatment_technique"] == "PERMANENT"
    assert back.notes["warnings"] == []
    assert {s["half_life_days"] for s in back.notes["sources"]} == {59.4}
    assert {s["active_length_mm"] for s in back.notes["sources"]} == {3.0}
    # implant date from the argument; decay to it follows the plan's.
    later = read_rtplan(path, implant_date="2026-11-03T12:00:30.250000")
    np.testing.assert_allclose(later.sk_at_implant(), plan.sk_U[order] * decay_factor(48.0), rtol=1e-12)


def test_written_file_is_a_valid_brachy_rtplan(written):
    path, plan, needles = written
    assert open(path, "rb").read()[128:132] == b"DICM"
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == RT_PLAN_STORAGE == ds.file_meta.MediaStorageSOPClassUID
    assert ds.Modality == "RTPLAN" and ds.BrachyTreatmentTechnique == "PERMANENT" and ds.BrachyTreatmentType == "LDR"
    assert ds.PatientName == "Demo^Prostate" and ds.StudyInstanceUID == IDS["study_instance_uid"]
    assert ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == "1.2.3.99"
    assert ds.RTPlanGeometry == "PATIENT"
    assert [float(s.ReferenceAirKermaRate) for s in ds.SourceSequence] == [0.512, 0.6345]
    assert {s.SourceIsotopeName for s in ds.SourceSequence} == {"I-125"}
    channels = ds.ApplicationSetupSequence[0].ChannelSequence
    assert len(channels) == 3 and [int(c.ReferencedSourceNumber) for c in channels] == [1, 1, 2]
    cps = channels[0].BrachyControlPointSequence
    assert len(cps) == 8 == channels[0].NumberOfControlPoints
    assert [float(cp.CumulativeTimeWeight) for cp in cps] == [0, 1, 1, 2, 2, 3, 3, 4]
    assert float(channels[0].FinalCumulativeTimeWeight) == 4
    np.testing.assert_allclose([float(v) for v in cps[2].ControlPoint3DPosition],
                               10 * plan.positions_cm[needles[0][1]], atol=1e-9)


@pytest.mark.parametrize("model, model_id", [("best_2301", "2301"), ("isoseed_i25s06", "I25.S06"),
                                             ("oncoseed_6711", "6711")])
def test_model_mapping(tmp_path, model, model_id):
    plan, needles = needle_plan(model=model)
    path = write_rtplan(tmp_path / "p.dcm", plan, needles=needles, **IDS)
    assert pydicom.dcmread(path).SourceSequence[0].SourceModelID == model_id
    assert read_rtplan(path).model == model
    assert read_rtplan(path, model="best_2301").notes["model_from"] == "argument"


def test_unknown_model_defaults_with_note(tmp_path):
    plan, needles = needle_plan()
    path = write_rtplan(tmp_path / "p.dcm", plan, needles=needles, source_model_id="XYZ-9", manufacturer="Acme", **IDS)
    assert read_rtplan(path).notes["model_from"] == "SourceDescription brachymc model oncoseed_6711"
    back = read_rtplan(rewrite(path, lambda ds: [delattr(s, "SourceDescription") for s in ds.SourceSequence]))
    assert back.model == "oncoseed_6711" and back.notes["model_from"] == "default"
    assert any("not recognised" in w for w in back.notes["warnings"])


def test_default_one_channel_per_seed_keeps_order_and_falls_back_to_axis(tmp_path):
    plan, _ = needle_plan()
    path = write_rtplan(tmp_path / "p.dcm", plan, **IDS)
    back = read_rtplan(path, axis=(0, 3, 4))
    np.testing.assert_allclose(back.positions_cm, plan.positions_cm, atol=1e-6)
    np.testing.assert_allclose(back.directions, np.tile([0, 0.6, 0.8], (12, 1)), atol=1e-15)
    assert back.notes["orientation_from_axis"] == 12 and back.orientation == "axis"


def test_single_seed_channel_gets_fallback_axis_with_notes(tmp_path):
    plan, needles = needle_plan()
    groups = [needles[0], needles[1][:1], needles[1][1:], needles[2]]     # needle 2 split: one single-seed channel
    path = write_rtplan(tmp_path / "p.dcm", plan, needles=groups, **IDS)
    back = read_rtplan(path, axis=(1, 0, 0))
    assert back.notes["orientation_from_channel"] == 11 and back.notes["orientation_from_axis"] == 1
    assert any("single position" in w for w in back.notes["warnings"])
    np.testing.assert_allclose(back.directions[4], [1, 0, 0], atol=0)
    np.testing.assert_allclose(back.directions[5:8], np.tile(NEEDLE_DIRS[1], (3, 1)), atol=1e-9)


def test_axis_and_random_orientations(written):
    path, plan, _ = written
    ax = read_rtplan(path, orientation="axis", axis=(0, 0, 2))
    np.testing.assert_array_equal(ax.directions, np.tile([0.0, 0.0, 1.0], (12, 1)))
    r1 = read_rtplan(path, orientation="random", random_seed=5)
    r2 = read_rtplan(path, orientation="random", random_seed=5)
    np.testing.assert_array_equal(r1.directions, r2.directions)
    np.testing.assert_allclose(np.linalg.norm(r1.directions, axis=1), 1.0, atol=1e-12)
    assert r1.orientation == "random" and "orientation_from_channel" not in r1.notes
    with pytest.raises(ConfigError, match="orientation"):
        read_rtplan(path, orientation="given")


def test_zero_dwell_stop_is_skipped(written):
    path, plan, needles = written

    def edit(ds):
        cps = ds.ApplicationSetupSequence[0].ChannelSequence[0].BrachyControlPointSequence
        for cp in cps[3:]:                                  # seed 2 of needle 1: weights 1, 1 (no dwell)
            cp.CumulativeTimeWeight = float(cp.CumulativeTimeWeight) - 1
    back = read_rtplan(rewrite(path, edit))
    order = [i for g in needles for i in g if i != needles[0][1]]
    np.testing.assert_allclose(back.positions_cm, plan.positions_cm[order], atol=1e-6)
    assert back.notes["channels"][0] == {"number": 1, "seeds": 3, "skipped_stops": 1}
    # the needle direction still uses all of the channel's positions
    np.testing.assert_allclose(back.directions[0], NEEDLE_DIRS[0], atol=1e-9)


def test_one_control_point_per_seed_and_unloaded_channel(written):
    path, plan, needles = written

    def edit(ds):
        chans = ds.ApplicationSetupSequence[0].ChannelSequence
        for ch in chans:
            ch.BrachyControlPointSequence = pydicom.Sequence(list(ch.BrachyControlPointSequence)[::2])
            ch.NumberOfControlPoints = len(ch.BrachyControlPointSequence)
        for cp in chans[2].BrachyControlPointSequence:
            cp.CumulativeTimeWeight = 0
        chans[2].FinalCumulativeTimeWeight = 0
    back = read_rtplan(rewrite(path, edit))
    order = needles[0] + needles[1]
    np.testing.assert_allclose(back.positions_cm, plan.positions_cm[order], atol=1e-6)
    assert back.notes["channels"][2]["seeds"] == 0
    assert any("channel 3" in w for w in back.notes["warnings"])


def test_sources_with_different_reference_dates_are_decayed_to_the_earliest(written):
    path, plan, needles = written

    def edit(ds):
        ds.SourceSequence[1].SourceStrengthReferenceDate = "20261111"       # ten days later
        ds.SourceSequence[1].SourceStrengthReferenceTime = "120030.25"
    back = read_rtplan(rewrite(path, edit))
    assert back.reference_date == REF_DATE
    np.testing.assert_allclose(back.sk_U[:8], 0.512, rtol=1e-12)
    np.testing.assert_allclose(back.sk_U[8:], 0.6345 / decay_factor(240.0), rtol=1e-12)


def test_non_permanent_type_is_read_with_a_warning(written):
    path, _, _ = written

    def temporary(ds):
        ds.BrachyTreatmentTechnique, ds.BrachyTreatmentType = "INTERSTITIAL", "HDR"

    back = read_rtplan(rewrite(path, temporary))
    assert back.n_seeds == 12 and "HDR" in back.notes["warnings"][0]
    # files of earlier brachymc versions: type PERMANENT (not a DICOM term), technique INTERSTITIAL

    def legacy(ds):
        ds.BrachyTreatmentTechnique, ds.BrachyTreatmentType = "INTERSTITIAL", "PERMANENT"

    assert read_rtplan(rewrite(path, legacy)).notes["warnings"] == []


# ------------------------------------------------------------------------------------------ refusals

def test_corrupt_and_truncated_files(tmp_path, written):
    path, _, _ = written
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 3)
    assert_error(garbage, "SOPClassUID")
    text = tmp_path / "notes.dcm"
    text.write_text("x_mm,y_mm,z_mm\n1,2,3\n")
    assert_error(text, "not a DICOM file")
    data = path.read_bytes()
    for frac in np.linspace(0.05, 0.97, 24):          # cut anywhere before the last control point
        cut = tmp_path / f"cut{frac:.3f}.dcm"
        cut.write_bytes(data[: int(frac * len(data))])
        with pytest.raises(DicomError) as info:
            read_rtplan(cut)
        assert str(cut) in str(info.value)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    assert_error(empty, "empty")
    assert_error(tmp_path / "missing.dcm", "does not exist")


def test_ct_file_is_not_a_plan(tmp_path):
    ct = CTVolume(hu=np.zeros((1, 2, 2), np.float32),
                  geometry=GridGeometry(shape=(1, 2, 2), spacing=(0.1, 0.1, 0.2), origin=(0, 0, 0)))
    (ct_file,) = write_ct_series(tmp_path / "ct", ct)
    msg = assert_error(ct_file, "SOPClassUID")
    assert "CT Image Storage" in msg and "not an RT Plan" in msg


def test_external_beam_plan_is_refused(written):
    path, _, _ = written

    def edit(ds):
        del ds.ApplicationSetupSequence
        ds.BeamSequence = pydicom.Sequence([pydicom.Dataset()])
    msg = assert_error(rewrite(path, edit), "ApplicationSetupSequence")
    assert "BeamSequence" in msg


def test_missing_air_kerma_rate(written):
    path, _, _ = written

    def edit(ds):
        for s in ds.SourceSequence:
            del s.ReferenceAirKermaRate
            del s.SourceStrengthUnits
    assert_error(rewrite(path, edit), "ReferenceAirKermaRate")


def test_negative_strength(written):
    path, _, _ = written
    msg = assert_error(rewrite(path, lambda ds: setattr(ds.SourceSequence[1], "ReferenceAirKermaRate", "-0.5")),
                       "ReferenceAirKermaRate")
    assert "source 2" in msg and ">= 0" in msg


def test_wrong_isotope(written):
    path, _, _ = written
    msg = assert_error(rewrite(path, lambda ds: setattr(ds.SourceSequence[0], "SourceIsotopeName", "Pd-103")),
                       "SourceIsotopeName")
    assert "Pd-103" in msg
    ok = read_rtplan(rewrite(path, lambda ds: setattr(ds.SourceSequence[0], "SourceIsotopeName", "Iodine 125")))
    assert ok.n_seeds == 12


def test_missing_control_point_position_names_the_channel(written):
    path, _, _ = written

    def edit(ds):
        del ds.ApplicationSetupSequence[0].ChannelSequence[1].BrachyControlPointSequence[2].ControlPoint3DPosition
    msg = assert_error(rewrite(path, edit), "ControlPoint3DPosition")
    assert "channel 2" in msg and "control point 2" in msg


def test_missing_reference_date_of_one_source(written):
    path, _, _ = written

    def edit(ds):
        del ds.SourceSequence[0].SourceStrengthReferenceDate
    assert_error(rewrite(path, edit), "SourceStrengthReferenceDate")


def test_writer_refusals(tmp_path):
    plan, needles = needle_plan()
    out = tmp_path / "w.dcm"
    mixed = [needles[0] + needles[2][:1], needles[1], needles[2][1:]]
    with pytest.raises(DicomError, match="different strengths"):
        write_rtplan(out, plan, needles=mixed, **IDS)
    with pytest.raises(DicomError, match="more than one needle"):
        write_rtplan(out, plan, needles=[needles[0], needles[0], needles[1], needles[2]], **IDS)
    with pytest.raises(DicomError, match="leave seed"):
        write_rtplan(out, plan, needles=needles[:2], **IDS)
    undated = SeedPlan(plan.positions_cm, plan.directions, plan.sk_U, source="t")
    with pytest.raises(DicomError, match="SourceStrengthReferenceDate"):
        write_rtplan(out, undated, **IDS)
    assert not out.exists() and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ property

unit = st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 3).map(np.array).filter(lambda v: np.linalg.norm(v) > 0.2)


@settings(max_examples=25, deadline=None)
@given(dirs=st.lists(unit, min_size=1, max_size=3),
       start=st.tuples(*[st.floats(-20, 20, allow_nan=False)] * 3),
       per_needle=st.integers(2, 5))
def test_random_needle_directions_round_trip(dirs, start, per_needle):
    dirs = np.array([d / np.linalg.norm(d) for d in dirs])
    starts = np.array(start) + np.arange(len(dirs))[:, None] * np.array([1.5, -0.7, 0.3])
    plan, needles = needle_plan(starts=starts, dirs=dirs, per_needle=per_needle, sk=(0.7,) * len(dirs))
    with tempfile.TemporaryDirectory() as tmp:
        back = read_rtplan(write_rtplan(Path(tmp) / "p.dcm", plan, needles=needles, **IDS))
    np.testing.assert_allclose(back.positions_cm, plan.positions_cm, rtol=0, atol=1e-6)
    np.testing.assert_allclose(back.directions, plan.directions, rtol=0, atol=1e-9)
