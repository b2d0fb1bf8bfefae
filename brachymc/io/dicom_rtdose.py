"""DICOM RT Dose output (and reading it back) for planning systems.

The dose grid is written as one multi-frame RTDOSE instance: DoseUnits GY, DoseType PHYSICAL,
DoseSummationType PLAN, unsigned 32-bit pixels (or 16-bit, ``bits=16``) with DoseGridScaling,
ImagePositionPatient (mm) = centre of the first voxel, GridFrameOffsetVector (mm) relative to it,
axial orientation. The Patient, Patient Study and General Study modules and the Frame of
Reference are copied from the CT the dose was computed on (``DicomReference.attributes``, read
by :func:`brachymc.io.dicom_ct.read_ct_series`), with the referenced RT Plan when known. Written
atomically. Every object conforms to the RT Dose IOD (DICOM PS3.3 A.18) with zero errors of
dicom3tools' ``dciodvfy`` (``tests/test_dicom_conformance.py``); dciodvfy itself cannot parse
32-bit pixels, so the 32-bit files are checked on a 16-bit rendering of the same header.

Quantisation: 32-bit pixels resolve Dmax / 4.3e9 (exact for every clinical purpose); 16-bit
pixels Dmax / 65534, i.e. 0.03 Gy per 2000 Gy maximum: enough for DVHs of targets and OARs, and
what some older planning systems accept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from brachymc import __version__
from brachymc.errors import ConfigError
from brachymc.files import atomic_path
from brachymc.geometry.phantom import GridGeometry
from brachymc.io.dicom_ct import apply_shared_attributes

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"


@dataclass(frozen=True)
class DicomReference:
    """Identifiers the RTDOSE must share with its CT (and plan).

    ``attributes``: the CT's Patient / General Study / Frame of Reference attributes
    (``CTVolume.dicom_attributes``), copied as they are; the named fields, when not empty,
    take precedence over them.
    """

    patient_id: str = ""
    patient_name: str = ""
    study_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    referenced_plan_uid: str = ""
    attributes: dict = field(default_factory=dict)


def write_rtdose(path: str | Path, dose_gy: np.ndarray, geometry: GridGeometry, ref: DicomReference,
                 comment: str = "brachymc Monte Carlo dose (Dm,m)", bits: int = 32) -> Path:
    """Write ``dose_gy`` (nz, ny, nx), Gy, on ``geometry`` (cm) as an RTDOSE file.

    ``bits``: 32 (default) or 16 bits per pixel (see the module doc for the quantisation).
    """
    dose = np.asarray(dose_gy, dtype=np.float64)
    if dose.shape != tuple(geometry.shape):
        raise ConfigError(f"dose array {dose.shape} does not match its grid {geometry.shape}")
    if not np.all(np.isfinite(dose)) or np.any(dose < 0):
        raise ConfigError("RTDOSE needs finite, non-negative doses (replace masked voxels by 0 first)")
    if bits not in (16, 32):
        raise ConfigError(f"RTDOSE bits per pixel must be 16 or 32, got {bits!r}")
    dmax = float(dose.max())
    scaling = dmax / (2**bits - 2) if dmax > 0 else 1.0
    pixels = np.rint(dose / scaling).astype(np.uint32 if bits == 32 else np.uint16)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_DOSE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    # Patient, Patient Study, General Study, Frame of Reference: as in the CT
    apply_shared_attributes(ds, ref.attributes)
    if "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = "ISO_IR 192"           # UTF-8
    for kw, value in (("PatientID", ref.patient_id), ("PatientName", ref.patient_name),
                      ("StudyInstanceUID", ref.study_instance_uid),
                      ("FrameOfReferenceUID", ref.frame_of_reference_uid)):
        if value:
            setattr(ds, kw, value)
    if not ds.get("StudyInstanceUID"):
        ds.StudyInstanceUID = generate_uid()
    if not ds.get("FrameOfReferenceUID"):
        ds.FrameOfReferenceUID = generate_uid()
    ds.SOPClassUID = RT_DOSE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # RT Series, General Equipment, General Image
    ds.Modality = "RTDOSE"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDescription = comment[:64]
    ds.OperatorsName = ""
    ds.Manufacturer = "brachymc"
    ds.SoftwareVersions = __version__
    ds.ContentDate, ds.ContentTime = date, time
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
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if ref.referenced_plan_uid:
        item = Dataset()
        item.ReferencedSOPClassUID = RT_PLAN_STORAGE
        item.ReferencedSOPInstanceUID = ref.referenced_plan_uid
        ds.ReferencedRTPlanSequence = Sequence([item])
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
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
