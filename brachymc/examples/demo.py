"""The built-in demo: the synthetic spine case written as DICOM, plus a run file for it.

:func:`write_demo_case` writes, into one folder::

    ct/CT_0001.dcm ...   CT Image Storage series (post-implant, with bright seed voxels and streaks)
    rtstruct.dcm         Body, Vertebra, GTV, SpinalCord (same frame of reference as the CT)
    rtplan.dcm           brachy RT Plan: 32 seeds (0.6 mCi) of a 6711-type model on posterolateral needles
    run.toml             the run file ``brachymc run`` reads (also what ``brachymc demo`` runs)

Modes size the run file for the hardware:

* ``full``: the CT's own 1 mm in-plane grid, stop at 2 % mean uncertainty in the GTV (GPU);
* ``cpu``: 2 mm calculation voxels cropped around the implant, stop at 2 % in the GTV or after
  150 s of transport (a 2-core CPU finishes in a few minutes, uncertainty reported);
* ``ci``: 4 mm voxels and a few hundred thousand histories (tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from brachymc.errors import ConfigError
from brachymc.pipeline.config import PatientRunConfig, load_run_config

MODES = ("full", "cpu", "ci")

_RUN = {
    "full": dict(ct_voxel_mm=(1.0, 1.0, 2.0), calc="", crop=40, histories=500_000_000, batch=2_000_000,
                 target=0.02, budget=None, gamma=10_000),
    "cpu": dict(ct_voxel_mm=(1.0, 1.0, 2.0), calc="calculation_voxel_mm = [2.0, 2.0, 2.0]", crop=25,
                histories=30_000_000, batch=250_000, target=0.02, budget=150, gamma=20_000),
    "ci": dict(ct_voxel_mm=(2.0, 2.0, 2.5), calc="calculation_voxel_mm = [4.0, 4.0, 5.0]", crop=15,
               histories=200_000, batch=20_000, target=None, budget=None, gamma=3_000),
}


def _run_toml(mode: str, prescription_gy: float, sk_note: str) -> str:
    r = _RUN[mode]
    target = f"target_uncertainty = {r['target']}" if r["target"] else "target_uncertainty = 0"
    budget = f"time_budget_s = {r['budget']}" if r["budget"] else "# time_budget_s = 600"
    return f"""# brachymc run file for the built-in synthetic spine case ({mode} mode), written by `brachymc demo`.
# Paths are relative to this file. Reference: README.md, "Patient runs".

[ct]
dicom = "ct"
{r['calc']}
crop_margin_mm = {r['crop']}          # calculate only around the implant

[calibration]
name = "spine_default"
artefact_radius_mm = 6              # seed streaks within 6 mm of a seed get the surrounding tissue

[[override]]
roi = "GTV"                         # osteolytic tumour: soft tissue whatever its CT number
material = "soft_tissue"

[[override]]
roi = "SpinalCord"
material = "spinal_cord"

[plan]
file = "rtplan.dcm"                 # {sk_note}
orientation = "auto"                # along each needle

[structures]
rtstruct = "rtstruct.dcm"
target = "GTV"
cord = "SpinalCord"
subsamples = 3

[dose]
prescription_gy = {prescription_gy:g}
kind = "permanent"
dose_to_water = true

[simulation]
histories = {r['histories']}
batch_histories = {r['batch']}
min_batches = 10
{target}
{budget}
seed = 2026
backend = "auto"
mode = "full"                       # every seed modelled: inter-seed attenuation

[tg43]
dataset = "tg43u1"                  # what a planning system uses
gamma_max_points = {r['gamma']}
"""


def write_demo_case(folder: str | Path, mode: str = "cpu", seed: int = 2026) -> Path:
    """Generate the spine case as DICOM files and a run file in ``folder``; return the run file's path."""
    if mode not in MODES:
        raise ConfigError(f"demo mode must be one of {', '.join(MODES)}, got {mode!r}")
    from brachymc.examples.spine import make_spine_case
    from brachymc.io.dicom_ct import write_ct_series
    from brachymc.io.dicom_rtplan import write_rtplan
    from brachymc.io.dicom_rtstruct import Structure, contours_from_mask, write_rtstruct
    from brachymc.sources.plan import SeedPlan
    from brachymc.sources.strength import apparent_activity_to_sk

    folder = Path(folder)
    case = make_spine_case(voxel_mm=_RUN[mode]["ct_voxel_mm"], seed=seed)
    study, frame = generate_uid(), generate_uid()
    pid, pname = "BRACHYMC-SPINE-DEMO", "Demo^Spine"
    ct_dir = folder / "ct"
    if ct_dir.exists():
        for p in ct_dir.glob("CT_*.dcm"):
            p.unlink()
    ct_paths = write_ct_series(ct_dir, case.ct, patient_id=pid, patient_name=pname, study_uid=study,
                               frame_uid=frame, description="brachymc synthetic post-implant spine CT",
                               body_part="LSPINE")
    colors = {"Body": (0, 170, 0), "Vertebra": (240, 220, 120), "GTV": (255, 0, 0), "SpinalCord": (0, 200, 255)}
    structures = []
    for k, name in enumerate(("Body", "Vertebra", "GTV", "SpinalCord")):
        if name not in case.masks:
            continue
        structures.append(Structure(name=name, number=k + 1,
                                    contours=contours_from_mask(case.masks[name], case.ct.geometry),
                                    color=colors[name], roi_type="GTV" if name == "GTV" else "ORGAN"))
    ss_path = write_rtstruct(folder / "rtstruct.dcm", structures, ct_paths, frame_of_reference_uid=frame,
                             patient_id=pid, patient_name=pname, study_instance_uid=study,
                             series_description="brachymc demo structures")
    import pydicom

    ss_uid = str(pydicom.dcmread(ss_path, stop_before_pixels=True).SOPInstanceUID)
    from datetime import datetime

    n = len(case.seeds_cm)
    plan = SeedPlan(positions_cm=np.asarray(case.seeds_cm, float), directions=np.asarray(case.seed_directions, float),
                    sk_U=np.full(n, float(apparent_activity_to_sk(case.activity_mci))), model="oncoseed_6711",
                    reference_date=datetime(2026, 11, 2, 9, 0), implant_date=datetime(2026, 11, 2, 9, 0),
                    orientation="given", source="brachymc demo")
    from brachymc.io.dicom_ct import shared_attributes

    write_rtplan(folder / "rtplan.dcm", plan, needles=[list(nd) for nd in case.needles],
                 frame_of_reference_uid=frame, patient_id=pid, patient_name=pname, study_instance_uid=study,
                 referenced_structure_set_uid=ss_uid, plan_label="SPINE-I125",
                 attributes=shared_attributes(pydicom.dcmread(ct_paths[0], stop_before_pixels=True)))
    run = folder / "run.toml"
    from brachymc.files import atomic_path

    with atomic_path(run) as tmp:
        tmp.write_text(_run_toml(mode, case.prescription_gy,
                                 f"{n} seeds, {case.activity_mci:g} mCi ({plan.sk_U[0]:.3f} U) each"))
    return run


def demo_config(run_file: str | Path) -> PatientRunConfig:
    """The parsed run file of a demo case."""
    return load_run_config(run_file)
