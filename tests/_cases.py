"""Tiny patient cases written to disk for the pipeline tests: a water-like CT volume, a CSV plan,
an RTSTRUCT drawn from boxes, and a run file; all small enough for a run in a few seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry
from brachymc.io.dicom_rtstruct import Structure, write_rtstruct
from brachymc.io.volume import write_ct_volume

FRAME = "1.2.826.0.1.3680043.8.498.4242"


def box_contours(x_mm, y_mm, z_planes_mm, hole=None) -> list[np.ndarray]:
    """Axial rectangles x_mm = (lo, hi), y_mm = (lo, hi) on each plane; ``hole``: an inner
    rectangle ((x0, x1), (y0, y1)) drawn as a second contour on the same planes (even-odd: a hole)."""
    out = []
    for z in z_planes_mm:
        for (x0, x1), (y0, y1) in [(x_mm, y_mm)] + ([hole] if hole else []):
            out.append(np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], float))
    return out


def write_case(folder: Path, *, shape_zyx=(16, 20, 20), voxel_mm=2.0, seeds_mm=((0.0, 0.0, 0.0),),
               dirs=((0.0, 0.0, 1.0),), sk_U=1.0, rois: list[Structure] | None = None, ct: str = "",
               structures: str = "", simulation: dict | None = None, dose: str = "", tg43: str = "", output: str = "",
               plan_header: str = "x_mm,y_mm,z_mm,dx,dy,dz,sk_U", plan_rows: list[str] | None = None,
               extra: str = "") -> Path:
    """A case in ``folder``: ``ct.npz`` (0 HU, centred on the origin), ``plan.csv``, ``rtstruct.dcm``
    (when ``rois``) and ``run.toml``; returns the run file. Strings are extra TOML lines per table;
    ``simulation`` maps [simulation] keys to TOML values (strings quoted by the caller)."""
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = shape_zyx
    v = voxel_mm / 10.0
    g = GridGeometry.centered((nx * v, ny * v, nz * v), (v, v, v))
    write_ct_volume(folder / "ct.npz", CTVolume(np.zeros(g.shape, np.float32), g, frame_of_reference_uid=FRAME))
    rows = plan_rows if plan_rows is not None else [
        f"{p[0]},{p[1]},{p[2]},{d[0]},{d[1]},{d[2]},{sk_U}" for p, d in zip(seeds_mm, dirs)]
    (folder / "plan.csv").write_text("\n".join([plan_header] + rows) + "\n")
    st = ""
    if rois is not None:
        write_rtstruct(folder / "rtstruct.dcm", rois, None, frame_of_reference_uid=FRAME, patient_id="TEST",
                       patient_name="Test^Case", study_instance_uid="1.2.826.0.1.3680043.8.498.4243")
        st = 'rtstruct = "rtstruct.dcm"\n'
    sim = {"backend": '"numpy"', "seed": 3, "histories": 8000, "batch_histories": 2000, "min_batches": 4,
           "checkpoint_every_s": 0, "target_uncertainty": 0}
    sim.update(simulation or {})
    sim_text = "\n".join(f"{k} = {v}" for k, v in sim.items())
    (folder / "run.toml").write_text(f"""
[ct]
volume = "ct.npz"
{ct}
[calibration]
artefact_radius_mm = 0
[plan]
file = "plan.csv"
orientation = "given"
[structures]
{st}{structures}
[dose]
prescription_gy = 100
{dose}
[simulation]
{sim_text}
[tg43]
dataset = "brachymc"
gamma = false
{tg43}
[output]
rtdose = false
threeddose = false
{output or 'figures = false' + chr(10) + 'report = false'}
{extra}
""")
    return folder / "run.toml"
