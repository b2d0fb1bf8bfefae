"""`brachymc demo` end to end in CI mode: the spine case as DICOM, the pipeline, every output."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from brachymc.examples.demo import write_demo_case
from brachymc.io.dicom_ct import read_ct_series
from brachymc.io.dicom_rtdose import read_rtdose
from brachymc.io.dicom_rtplan import read_rtplan
from brachymc.io.dicom_rtstruct import read_rtstruct


@pytest.fixture(scope="module")
def demo_run(ci_demo_run):
    return ci_demo_run


def test_demo_case_reads_back(demo_run):
    out, _ = demo_run
    case = out / "case"
    ct = read_ct_series(case / "ct")
    assert ct.geometry.spacing == pytest.approx((0.2, 0.2, 0.25))
    assert ct.hu.max() >= 3000          # bright seed voxels
    ss = read_rtstruct(case / "rtstruct.dcm", frame_of_reference_uid=ct.frame_of_reference_uid)
    assert {"GTV", "SpinalCord", "Vertebra", "Body"} <= set(ss.names)
    plan = read_rtplan(case / "rtplan.dcm")
    assert 28 <= plan.n_seeds <= 40
    assert plan.sk_U == pytest.approx(0.6 * 1.270)
    assert plan.notes["frame_of_reference_uid"] == ct.frame_of_reference_uid


def test_demo_outputs(demo_run):
    out, stdout = demo_run
    for name in ("dose.h5", "rtdose.dcm", "rtdose_tg43.dcm", "rtdose_water.dcm", "dose.3ddose", "dvh.csv",
                 "dvh.json", "slices.png", "dvh.png", "mc_vs_tg43.png", "report.pdf", "summary.json"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.h5").exists()
    assert "GTV" in stdout and "D90" in stdout and "SpinalCord" in stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["histories"] == 200_000 and s["batches"] == 10
    gtv = s["metrics"]["GTV"]
    # permanent implant of 32 x 0.762 U seeds in a ~25 cc GTV, planned (TG-43) to the clinical 110 Gy
    assert 100 < gtv["tg43"]["D90_Gy"] < 120 and 30 < gtv["mc"]["D90_Gy"] < 400
    # MC and TG-43 agree to tens of percent in soft tissue; bone absorbs more (Dm,m) than water
    r = s["tissue_ratios"]
    assert 0.8 < r["soft tissue"]["mean_ratio"] < 1.2
    assert r["cortical bone"]["mean_ratio"] > 1.5
    assert {g["criterion"] for g in s["gamma"]} == {"3%/2mm", "2%/2mm"}
    # RTDOSE: same patient and frame as the CT, matches dose.h5
    ct0 = pydicom.dcmread(next((out / "case" / "ct").glob("CT_*.dcm")), stop_before_pixels=True)
    dose, geom, ds = read_rtdose(out / "rtdose.dcm")
    assert ds.FrameOfReferenceUID == ct0.FrameOfReferenceUID and ds.PatientID == ct0.PatientID
    assert ds.DoseUnits == "GY" and ds.DoseType == "PHYSICAL"
    plan_uid = pydicom.dcmread(out / "case" / "rtplan.dcm", stop_before_pixels=True).SOPInstanceUID
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan_uid
    import h5py

    with h5py.File(out / "dose.h5") as f:
        d = f["dose"][...]
    assert dose.shape == d.shape
    assert np.allclose(dose, d, rtol=0, atol=float(d.max()) / 2**31)
    assert (out / "report.pdf").read_bytes()[:4] == b"%PDF"


def test_demo_case_is_deterministic(tmp_path):
    a = write_demo_case(tmp_path / "a", mode="ci")
    b = write_demo_case(tmp_path / "b", mode="ci")
    ca, cb = read_ct_series(a.parent / "ct"), read_ct_series(b.parent / "ct")
    assert np.array_equal(ca.hu, cb.hu)
    assert np.array_equal(read_rtplan(a.parent / "rtplan.dcm").positions_cm,
                          read_rtplan(b.parent / "rtplan.dcm").positions_cm)
