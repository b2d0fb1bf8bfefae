"""Every DICOM object brachymc writes conforms to its IOD: zero errors of dicom3tools' ``dciodvfy``.

Checked: the demo CT (first, middle and last slice), RTSTRUCT and RT Plan; the three RTDOSE of a
demo run (MC Dm,m, Dw,m, TG-43); a run with a CSV plan on a CT that carries real patient and study
details (the RTDOSE copies them, and the RT Plan brachymc writes for the seeds is referenced and
conforms); 16-bit RTDOSE output. dciodvfy (dicom3tools 2022) aborts on 32-bit pixel data, so the
32-bit RTDOSE files are checked on a 16-bit rendering: the same header with the pixels rescaled to
16 bits (the pixel module is the only part that changes).

``.ci/run`` installs dicom3tools (Debian package ``dicom3tools``); without ``dciodvfy`` on the PATH the
tests skip and say so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry
from brachymc.io.dicom_ct import SHARED_ATTRIBUTES, write_ct_series
from brachymc.io.dicom_rtdose import DicomReference, read_rtdose, write_rtdose

DCIODVFY = shutil.which("dciodvfy")
pytestmark = pytest.mark.skipif(
    DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed: `apt-get install dicom3tools` "
                             "(.ci/run installs it); the DICOM conformance checks need it")


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) of dciodvfy for one file."""
    proc = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    assert not any("Assertion" in ln or "aborted" in ln.lower() for ln in lines), (path, lines)
    errors = [ln for ln in lines if ln.startswith("Error")]
    warnings = [ln for ln in lines if ln.startswith("Warning")]
    return errors, warnings


def as_16_bit(path: Path, folder: Path) -> Path:
    """The RTDOSE ``path`` with its pixels rescaled to 16 bits (header otherwise unchanged)."""
    ds = pydicom.dcmread(path)
    if int(ds.BitsAllocated) == 16:
        return path
    dose = ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)
    scaling = float(dose.max()) / 65534 if dose.max() > 0 else 1.0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.DoseGridScaling = f"{scaling:.10e}"
    ds.PixelData = np.rint(dose / scaling).astype("<u2").tobytes()
    out = folder / f"{path.stem}_16bit.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


def assert_conforms(path: Path, folder: Path) -> list[str]:
    checked = as_16_bit(path, folder) if pydicom.dcmread(path, stop_before_pixels=True).Modality == "RTDOSE" else path
    errors, warnings = dciodvfy(checked)
    assert errors == [], (path.name, errors)
    return warnings


@pytest.fixture(scope="module")
def demo_run(ci_demo_run):
    return ci_demo_run[0]


def test_demo_ct_rtstruct_and_rtplan_conform(demo_run, tmp_path):
    slices = sorted((demo_run / "case" / "ct").glob("CT_*.dcm"))
    for path in (slices[0], slices[len(slices) // 2], slices[-1], demo_run / "case" / "rtstruct.dcm",
                 demo_run / "case" / "rtplan.dcm"):
        warnings = assert_conforms(path, tmp_path)
        assert not any("Laterality" in w or "defined term" in w for w in warnings), (path.name, warnings)


def test_every_rtdose_of_a_run_conforms_and_shares_the_ct(demo_run, tmp_path):
    ct = pydicom.dcmread(next((demo_run / "case" / "ct").glob("CT_*.dcm")), stop_before_pixels=True)
    plan = pydicom.dcmread(demo_run / "case" / "rtplan.dcm", stop_before_pixels=True)
    rtdoses = sorted(demo_run.glob("rtdose*.dcm"))
    assert [p.name for p in rtdoses] == ["rtdose.dcm", "rtdose_tg43.dcm", "rtdose_water.dcm"]
    for path in rtdoses:
        assert_conforms(path, tmp_path)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                   "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "FrameOfReferenceUID",
                   "PositionReferenceIndicator"):
            assert kw in ds and str(ds[kw].value) == str(ct[kw].value), (path.name, kw)
        assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
        assert not (demo_run / "rtplan.dcm").exists()        # the input plan is referenced, not rewritten


CT_DETAILS = {"PatientBirthDate": "19580412", "PatientSex": "F", "ReferringPhysicianName": "House^Gregory",
              "AccessionNumber": "ACC-2026-0042", "StudyID": "S7", "StudyDescription": "post-implant CT",
              "PatientAge": "068Y", "PositionReferenceIndicator": "XY"}


def test_rtdose_copies_a_clinical_ct_and_references_the_plan_brachymc_writes(tmp_path):
    """CSV plan on a DICOM CT with patient and study details: the RTDOSE copies the Patient, Patient
    Study and General Study modules and the frame of reference; the seeds go to rtplan.dcm, which the
    RTDOSE references and which conforms too."""
    from brachymc.pipeline.config import load_run_config
    from brachymc.pipeline.patient import run_patient

    g = GridGeometry.centered((16, 16, 12), (0.25, 0.25, 0.25))
    ct_paths = write_ct_series(tmp_path / "ct", CTVolume(np.zeros(g.shape, np.float32), g), patient_id="PID-42",
                               patient_name="Doe^Jane", study_uid="1.2.826.0.1.3680043.10.1042.1",
                               frame_uid="1.2.826.0.1.3680043.10.1042.2", body_part="LSPINE", attributes=CT_DETAILS)
    (tmp_path / "plan.csv").write_text("x_mm,y_mm,z_mm,dx,dy,dz,sk_U\n1.0,0.0,0.0,0,0,1,0.8\n")
    (tmp_path / "run.toml").write_text("""
[ct]
dicom = "ct"
[calibration]
artefact_radius_mm = 0
[plan]
file = "plan.csv"
orientation = "given"
[simulation]
histories = 20_000
batch_histories = 2_000
min_batches = 10
target_uncertainty = 0
backend = "numpy"
[tg43]
dataset = "brachymc"
gamma = false
[output]
figures = false
report = false
threeddose = false
""")
    run_patient(load_run_config(tmp_path / "run.toml"), tmp_path / "out", progress=False, echo=lambda m: None)
    out = tmp_path / "out"
    ct = pydicom.dcmread(ct_paths[0], stop_before_pixels=True)
    plan_path = out / "rtplan.dcm"
    assert assert_conforms(plan_path, tmp_path) is not None
    plan = pydicom.dcmread(plan_path, stop_before_pixels=True)
    assert plan.FrameOfReferenceUID == ct.FrameOfReferenceUID and plan.StudyInstanceUID == ct.StudyInstanceUID
    assert float(plan.SourceSequence[0].ReferenceAirKermaRate) == pytest.approx(0.8)
    from brachymc.io.dicom_rtplan import read_rtplan

    back = read_rtplan(plan_path)
    assert back.n_seeds == 1 and np.allclose(back.positions_cm, [[0.1, 0.0, 0.0]])
    assert not any("permanent" in w for w in back.notes.get("warnings", []))
    for path in (out / "rtdose.dcm", out / "rtdose_tg43.dcm"):
        assert_conforms(path, tmp_path)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for kw in SHARED_ATTRIBUTES:
            if kw in ct:
                assert kw in ds and str(ds[kw].value) == str(ct[kw].value), (path.name, kw)
        for kw, value in CT_DETAILS.items():
            assert str(ds[kw].value) == value
        assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID


def test_16_bit_rtdose_output_conforms_and_reads_back(tmp_path):
    g = GridGeometry(shape=(5, 7, 9), spacing=(0.2, 0.25, 0.3), origin=(-1.0, -2.5, 10.0))
    dose = np.random.default_rng(3).gamma(2.0, 30.0, g.shape)
    ref = DicomReference("P16", "Doe^Joe", "1.2.3.4", "1.2.3.5", "1.2.3.6")
    path = write_rtdose(tmp_path / "RD16.dcm", dose, g, ref, bits=16)
    errors, _ = dciodvfy(path)
    assert errors == []
    back, _, ds = read_rtdose(path)
    assert int(ds.BitsAllocated) == 16
    assert np.max(np.abs(back - dose)) <= 0.5 * float(ds.DoseGridScaling) * (1 + 1e-9)
