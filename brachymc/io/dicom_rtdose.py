"""DICOM RT Dose output (and reading it back) for planning systems.

The dose grid is written as one multi-frame RTDOSE instance: DoseUnits GY, DoseType PHYSICAL,
DoseSummationType PLAN, unsigned 32-bit pixels with DoseGridScaling, ImagePositionPatient (mm) =
centre of the first voxel, GridFrameOffsetVector (mm) relative to it, axial orientation, and the
patient, study and frame of reference of the CT it was computed on (plus the referenced RT Plan
when known). Written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from brachymc import __version__
from brachymc.errors import ConfigError
from brachymc.geometry.phantom import GridGeometry
from brachymc.files import atomic_path

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"


@dataclass(frozen=True)
class DicomReference:
    """Identifiers the RTDOSE must share with its CT (and plan)."""

    patient_id: str = ""
    patient_name: str = ""
    study_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    referenced_plan_uid: str = ""


def write_rtdose(path: str | Path, dose_gy: np.ndarray, geometry: GridGeometry, ref: DicomReference,
                 comment: str = "brachymc Monte Carlo dose (Dm,m)") -> Path:
    """Write ``dose_gy`` (nz, ny, nx), Gy, on ``geometry`` (cm) as an RTDOSE file."""
    dose = np.asarray(dose_gy, dtype=np.float64)
    if dose.shape != tuple(geometry.shape):
        raise ConfigError(f"dose array {dose.shape} does not match its grid {geometry.shape}")
    if not np.all(np.isfinite(dose)) or np.any(dose < 0):
        raise ConfigError("RTDOSE needs finite, non-negative doses (replace masked voxels by 0 first)")
    dmax = float(dose.max())
    scaling = dmax / (2**32 - 2) if dmax > 0 else 1.0
    pixels = np.rint(dose / scaling).astype(np.uint32)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_DOSE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.now()
    ds.SOPClassUID = RT_DOSE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTDOSE"
    ds.Manufacturer = "brachymc"
    ds.SoftwareVersions = __version__
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.PatientID = ref.patient_id
    ds.PatientName = ref.patient_name
    ds.StudyInstanceUID = ref.study_instance_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = ref.frame_of_reference_uid or generate_uid()
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.DoseComment = comment[:64]
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.DoseGridScaling = f"{scaling:.10e}"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    dx, dy, dz = (10.0 * s for s in geometry.spacing)
    x0, y0, z0 = (10.0 * (o + s / 2) for o, s in zip(geometry.origin, geometry.spacing))
    ds.ImagePositionPatient = [f"{x0:.6f}", f"{y0:.6f}", f"{z0:.6f}"]
    ds.PixelSpacing = [f"{dy:.6f}", f"{dx:.6f}"]        # row spacing (y), column spacing (x)
    ds.SliceThickness = f"{dz:.6f}"
    ds.GridFrameOffsetVector = [f"{k * dz:.6f}" for k in range(geometry.nz)]
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x3004, 0x000C)
    ds.NumberOfFrames = geometry.nz
    ds.Rows, ds.Columns = geometry.ny, geometry.nx
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    if ref.referenced_plan_uid:
        item = Dataset()
        item.ReferencedSOPClassUID = RT_PLAN_STORAGE
        item.ReferencedSOPInstanceUID = ref.referenced_plan_uid
        ds.ReferencedRTPlanSequence = Sequence([item])
    ds.PixelData = pixels.tobytes()
    path = Path(path)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def read_rtdose(path: str | Path) -> tuple[np.ndarray, GridGeometry, Dataset]:
    """Read an RTDOSE back: dose (nz, ny, nx) in Gy, its grid (cm) and the dataset."""
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # pydicom raises several types for corrupt files
        raise ConfigError(f"{path}: not a readable DICOM file ({exc})") from None
    if getattr(ds, "Modality", "") != "RTDOSE":
        raise ConfigError(f"{path}: Modality is {getattr(ds, 'Modality', None)!r}, not RTDOSE")
    dose = ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)
    if dose.ndim == 2:
        dose = dose[None]
    offsets = np.asarray(ds.GridFrameOffsetVector, float)
    dz = float(offsets[1] - offsets[0]) if len(offsets) > 1 else float(ds.SliceThickness)
    dy, dx = (float(v) for v in ds.PixelSpacing)
    x0, y0, z0 = (float(v) for v in ds.ImagePositionPatient)
    geom = GridGeometry(shape=dose.shape, spacing=(dx / 10, dy / 10, dz / 10),
                        origin=((x0 - dx / 2) / 10, (y0 - dy / 2) / 10, (z0 + offsets[0] - dz / 2) / 10))
    return dose, geom, ds
