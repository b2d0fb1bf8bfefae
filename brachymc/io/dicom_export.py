"""The DICOM objects of a dose calculation: one RTDOSE per dose, and the RT Plan they reference.

An RTDOSE summed over a plan (DoseSummationType PLAN) must reference its RT Plan (PS3.3 C.8.8.3,
Referenced RT Plan Sequence, Type 1C). When the seeds came from a DICOM RT Plan, the doses
reference it; when they came from a CSV or TOML plan (or an EGSnrc phantom without a CT), an RT
Plan of exactly the seeds used is written beside the doses (``rtplan.dcm``) and referenced, so that
a planning system receives both. All objects share the CT's patient, study and frame of reference
(or, without a CT, one generated study and frame).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Mapping

import numpy as np
from pydicom.uid import generate_uid

from brachymc.geometry.phantom import GridGeometry
from brachymc.io.dicom_rtdose import DicomReference, write_rtdose
from brachymc.sources.plan import SeedPlan


def plan_for_export(plan: SeedPlan) -> SeedPlan:
    """``plan`` with strengths at implant and a reference date (the implant date, else the
    reference date, else now) as :func:`brachymc.io.dicom_rtplan.write_rtplan` needs them."""
    when = plan.implant_date or plan.reference_date or datetime.now().replace(microsecond=0)
    return replace(plan, sk_U=np.asarray(plan.sk_at_implant(), float), reference_date=when, implant_date=when)


def write_dose_set(folder: str | Path, geometry: GridGeometry, ref: DicomReference,
                   doses: Mapping[str, tuple[np.ndarray, str]], plan: SeedPlan | None = None,
                   plan_label: str = "brachymc", bits: int = 32) -> dict[str, Path]:
    """Write ``doses`` (output key -> (dose in Gy on ``geometry``, DoseComment)) as ``<key>.dcm``.

    If ``ref`` names no RT Plan and ``plan`` is given, ``rtplan.dcm`` (the seeds of ``plan``, one
    channel per seed, strengths at implant) is written first and referenced by every RTDOSE.
    Returns output key -> path (with ``"rtplan"`` when a plan was written).
    """
    folder = Path(folder)
    paths: dict[str, Path] = {}
    attrs = dict(ref.attributes or {})
    study = ref.study_instance_uid or str(attrs.get("StudyInstanceUID", "") or "") or generate_uid()
    frame = ref.frame_of_reference_uid or str(attrs.get("FrameOfReferenceUID", "") or "") or generate_uid()
    if not attrs:                   # no CT: one study date for every object of the set
        now = datetime.now()
        attrs = {"StudyDate": now.strftime("%Y%m%d"), "StudyTime": now.strftime("%H%M%S"), "StudyID": "1"}
    ref = replace(ref, study_instance_uid=study, frame_of_reference_uid=frame, attributes=attrs)
    if not ref.referenced_plan_uid and plan is not None:
        from brachymc.io.dicom_rtplan import write_rtplan

        uid = generate_uid()
        paths["rtplan"] = write_rtplan(folder / "rtplan.dcm", plan_for_export(plan),
                                       frame_of_reference_uid=frame, patient_id=ref.patient_id,
                                       patient_name=ref.patient_name, study_instance_uid=study,
                                       plan_label=plan_label, sop_instance_uid=uid, attributes=attrs)
        ref = replace(ref, referenced_plan_uid=uid)
    for key, (dose, comment) in doses.items():
        paths[key] = write_rtdose(folder / f"{key}.dcm", dose, geometry, ref, comment=comment, bits=bits)
    return paths


__all__ = ["plan_for_export", "write_dose_set"]
