"""DICOM CT series input (and a writer for synthetic series).

:func:`read_ct_series` turns a folder holding one axial CT series (one file per slice) into a
:class:`~brachymc.geometry.ct.CTVolume`: Hounsfield units (float32, RescaleSlope/Intercept
applied) on a grid in cm, DICOM patient coordinates (LPS), arrays ``[iz, iy, ix]``, with
``origin`` = ImagePositionPatient of the first slice minus half a voxel. Only series that map
exactly onto such a grid are accepted; everything else is refused with a :class:`DicomError`
naming the folder or file and the field:

* ImageOrientationPatient must be axial, (1, 0, 0, 0, 1, 0) within 1e-4 (oblique, gantry-tilted,
  prone or feet-first flipped series are not supported);
* every slice has the same Rows, Columns, PixelSpacing and orientation;
* slice positions lie on one straight line along the slice normal (a gantry tilt written with
  axial orientation shows up as a drift of the in-plane position and is refused);
* slices are evenly spaced (tolerance max(0.01 mm, 1 % of the spacing)); a gap of a whole
  multiple of the spacing is reported as missing slice(s); duplicate positions are refused.

:func:`write_ct_series` writes a CTVolume as a valid CT Image Storage series (explicit VR little
endian, uint16 pixels with RescaleIntercept -1024), each file atomically.

The Patient, Patient Study and General Study modules and the Frame of Reference of the series
(:data:`SHARED_ATTRIBUTES`) are kept in ``CTVolume.dicom_attributes``, so that the RTDOSE objects
computed on the CT carry the same patient, study and frame (:func:`shared_attributes`,
:func:`apply_shared_attributes`; DICOM PS3.3 C.7.1.1, C.7.2.1, C.7.2.2, C.7.4.1).
"""

from __future__ import annotations

import logging
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from brachymc import __version__
from brachymc.errors import ConfigError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry
from brachymc.files import atomic_path

log = logging.getLogger(__name__)

#: Attributes a derived object (RTDOSE) copies from its CT: SpecificCharacterSet (to read the
#: names), the Patient module, the Patient Study module, the General Study module and the Frame of
#: Reference module. Sequences are not copied.
SHARED_ATTRIBUTES = (
    "SpecificCharacterSet",
    # Patient (C.7.1.1)
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "OtherPatientNames", "EthnicGroup", "PatientComments", "PatientIdentityRemoved", "DeidentificationMethod",
    # Patient Study (C.7.2.2)
    "PatientAge", "PatientSize", "PatientWeight",
    # General Study (C.7.2.1)
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "StudyDescription",
    # Frame of Reference (C.7.4.1)
    "FrameOfReferenceUID", "PositionReferenceIndicator",
)
#: Type 2 attributes of those modules: written (empty when unknown) by every brachymc object.
TYPE2_SHARED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber", "PositionReferenceIndicator")


def shared_attributes(ds: Dataset) -> dict[str, object]:
    """The :data:`SHARED_ATTRIBUTES` present in ``ds``: keyword -> str (list of str if multi-valued)."""
    out: dict[str, object] = {}
    for kw in SHARED_ATTRIBUTES:
        elem = ds.get(kw)
        if elem is None or getattr(ds[kw], "VR", "") == "SQ":
            continue
        value = ds[kw].value
        if isinstance(value, (list, tuple, MultiValue)):
            out[kw] = [str(v) for v in value]
        else:
            out[kw] = "" if value is None else str(value)
    return out


def apply_shared_attributes(ds: Dataset, attributes: dict | None) -> None:
    """Set the :data:`SHARED_ATTRIBUTES` of ``attributes`` on ``ds``; Type 2 ones missing there are
    written empty (unless ``ds`` already has them)."""
    attributes = dict(attributes or {})
    for kw in SHARED_ATTRIBUTES:
        if kw in attributes:
            value = attributes[kw]
            setattr(ds, kw, list(value) if isinstance(value, (list, tuple)) else value)
        elif kw in TYPE2_SHARED and kw not in ds:
            setattr(ds, kw, "")

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"

AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
ORIENTATION_TOL = 1e-4          # direction cosines
POSITION_TOL_MM = 0.01          # absolute floor of position / spacing tolerances (mm)
SPACING_REL_TOL = 0.01          # relative slice-spacing tolerance
MISSING_SLICE_TOL = 0.15        # |gap / spacing - k| below this reads as k-1 missing slices
HU_MIN, HU_MAX = -1024, 65535 - 1024

_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}
_NON_DICOM_SUFFIXES = {
    ".txt", ".md", ".rst", ".json", ".xml", ".csv", ".tsv", ".toml", ".ini", ".cfg", ".yaml", ".yml",
    ".log", ".html", ".htm", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff",
    ".zip", ".gz", ".tar", ".7z", ".py", ".sh", ".bat", ".exe", ".nii", ".mha", ".mhd", ".raw",
    ".h5", ".hdf5", ".npy", ".npz", ".db", ".lnk",
}


class DicomError(ConfigError):
    """A DICOM file or series cannot be read, or does not fit the model brachymc supports."""


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------

def _claims_dicom(path: Path, head: bytes) -> bool:
    """Whether a file presents itself as DICOM (so that failing to read it is an error).

    True for the ``DICM`` magic at byte 128, a DICOM file name (``.dcm``, ``DICOMDIR``, ...), a
    raw data set starting with a group 0002/0008 tag, or an empty / all-zero stub shorter than a
    preamble (a copy cut short). Files with a clearly non-DICOM suffix (README.txt, notes.md,
    ...) and anything else that matches none of these do not claim to be DICOM.
    """
    if head[128:132] == b"DICM":
        return True
    suffix = path.suffix.lower()
    if suffix in _DICOM_SUFFIXES or path.name.upper() == "DICOMDIR":
        return True
    if suffix in _NON_DICOM_SUFFIXES:
        return False
    if len(head) >= 8 and struct.unpack("<H", head[:2])[0] in (0x0002, 0x0008):
        return True
    return len(head) < 132 and not head.strip(b"\0")


def _read_file(path: Path) -> Dataset | None:
    """Read one file; ``None`` (with a warning) when it clearly is not DICOM."""
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise DicomError(f"{path}: cannot be read ({exc})") from None
    if not _claims_dicom(path, head):
        log.warning("%s: not a DICOM file, skipped", path)
        return None
    if not head:
        raise DicomError(f"{path}: empty file (a DICOM file cut short?)")
    try:
        ds = pydicom.dcmread(str(path), force=head[128:132] != b"DICM")
    except InvalidDicomError as exc:
        raise DicomError(f"{path}: not a valid DICOM file ({exc})") from None
    except Exception as exc:  # pydicom raises many types (EOFError, struct.error, ...) on corrupt input
        raise DicomError(f"{path}: corrupt or truncated DICOM file ({type(exc).__name__}: {exc})") from None
    if not any(tag.group >= 0x0008 for tag in ds.keys()):
        raise DicomError(f"{path}: corrupt or truncated DICOM file (no data elements could be read)")
    return ds


def _is_ct(ds: Dataset) -> bool:
    sop = str(ds.get("SOPClassUID", ""))
    return sop in (CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE) or str(ds.get("Modality", "")).upper() == "CT"


def _field(path: Path, ds: Dataset, name: str) -> Any:
    value = ds.get(name)
    if value is None or (isinstance(value, (str, bytes)) and not str(value).strip()):
        raise DicomError(f"{path}: missing {name} (required for a CT slice; the file may be truncated)")
    return value


def _floats(path: Path, ds: Dataset, name: str, n: int) -> np.ndarray:
    value = _field(path, ds, name)
    try:
        arr = np.array([float(v) for v in (value if isinstance(value, (list, tuple, MultiValue)) else [value])])
    except (TypeError, ValueError):
        raise DicomError(f"{path}: {name} is not numeric: {value!r}") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise DicomError(f"{path}: {name} must be {n} finite numbers, got {value!r}")
    return arr


def _positive_int(path: Path, ds: Dataset, name: str) -> int:
    value = _field(path, ds, name)
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise DicomError(f"{path}: {name} is not an integer: {value!r}") from None
    if k < 1:
        raise DicomError(f"{path}: {name} must be >= 1, got {k}")
    return k


class _Slice:
    """Header facts of one CT slice, checked."""

    def __init__(self, path: Path, ds: Dataset) -> None:
        self.path, self.ds = path, ds
        try:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError):
            raise DicomError(f"{path}: NumberOfFrames is not an integer: {ds.NumberOfFrames!r}") from None
        if ds.get("SOPClassUID", "") == ENHANCED_CT_IMAGE_STORAGE or frames > 1:
            raise DicomError(f"{path}: multi-frame (Enhanced CT) images are not supported; export the series "
                             "as one classic CT Image Storage file per slice")
        self.rows = _positive_int(path, ds, "Rows")
        self.columns = _positive_int(path, ds, "Columns")
        self.spacing = _floats(path, ds, "PixelSpacing", 2)         # (row spacing = dy, column spacing = dx)
        if np.any(self.spacing <= 0):
            raise DicomError(f"{path}: PixelSpacing must be positive, got {list(self.spacing)}")
        self.orientation = _floats(path, ds, "ImageOrientationPatient", 6)
        if not np.allclose(self.orientation, AXIAL, rtol=0.0, atol=ORIENTATION_TOL):
            raise DicomError(
                f"{path}: ImageOrientationPatient {[round(v, 6) for v in self.orientation]} is not axial "
                f"(1, 0, 0, 0, 1, 0 within {ORIENTATION_TOL:g}); oblique/tilted series (and flipped prone or "
                "feet-first axes) are not supported")
        self.position = _floats(path, ds, "ImagePositionPatient", 3)
        normal = np.cross(self.orientation[:3], self.orientation[3:])
        self.z = float(self.position @ (normal / np.linalg.norm(normal)))

    def hu(self) -> np.ndarray:
        """Pixel values with RescaleSlope/Intercept applied, float64 (rows, columns)."""
        path, ds = self.path, self.ds
        if "PixelData" not in ds:
            raise DicomError(f"{path}: no PixelData (the file is truncated or holds no image)")
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise DicomError(f"{path}: SamplesPerPixel is {ds.SamplesPerPixel}; a CT slice must be greyscale (1)")
        tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if tsyntax is not None and not tsyntax.is_compressed:
            bits = _positive_int(path, ds, "BitsAllocated")
            expected = self.rows * self.columns * ((bits + 7) // 8)
            got = len(ds.PixelData)
            if got < expected:
                raise DicomError(f"{path}: PixelData holds {got} bytes, {self.rows} x {self.columns} pixels of "
                                 f"{bits} bits need {expected}: the file is truncated or corrupt")
        try:
            pixels = ds.pixel_array
        except Exception as exc:
            raise DicomError(f"{path}: PixelData cannot be decoded (transfer syntax {tsyntax or 'unknown'}: "
                             f"{type(exc).__name__}: {exc})") from None
        if pixels.shape != (self.rows, self.columns):
            raise DicomError(f"{path}: decoded pixels have shape {pixels.shape}, Rows x Columns is "
                             f"{(self.rows, self.columns)}")
        slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        if slope is None or intercept is None:
            if int(ds.get("PixelRepresentation", 0) or 0) == 1:
                log.warning("%s: no RescaleSlope/RescaleIntercept; signed pixels taken as HU", path)
                slope, intercept = 1.0, 0.0
            else:
                missing = "RescaleSlope" if slope is None else "RescaleIntercept"
                raise DicomError(f"{path}: missing {missing}: unsigned CT pixels cannot be converted to HU")
        try:
            slope, intercept = float(slope), float(intercept)
        except (TypeError, ValueError):
            raise DicomError(f"{path}: RescaleSlope/RescaleIntercept not numeric: {slope!r}, {intercept!r}") from None
        if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
            raise DicomError(f"{path}: RescaleSlope {slope} / RescaleIntercept {intercept} are not usable")
        return pixels.astype(np.float64) * slope + intercept


def _describe_series(uid: str, items: list[tuple[Path, Dataset]]) -> str:
    ds = items[0][1]
    parts = [f"{uid} ({len(items)} file{'s' if len(items) != 1 else ''}"]
    if ds.get("SeriesNumber") not in (None, ""):
        parts.append(f"series number {ds.SeriesNumber}")
    if str(ds.get("SeriesDescription", "")).strip():
        parts.append(f"'{ds.SeriesDescription}'")
    parts.append(f"e.g. {items[0][0].name})")
    return ", ".join(parts)


def _check_geometry(folder: Path, slices: list[_Slice]) -> float:
    """Check a z-sorted series for consistency; return its slice spacing (mm)."""
    first = slices[0]
    for s in slices[1:]:
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise DicomError(f"{s.path}: Rows x Columns {s.rows} x {s.columns} differ from "
                             f"{first.rows} x {first.columns} in {first.path.name}")
        if not np.allclose(s.spacing, first.spacing, rtol=1e-5, atol=1e-4):
            raise DicomError(f"{s.path}: PixelSpacing {list(s.spacing)} differs from {list(first.spacing)} "
                             f"in {first.path.name}")
        if not np.allclose(s.orientation, first.orientation, rtol=0.0, atol=ORIENTATION_TOL):
            raise DicomError(f"{s.path}: ImageOrientationPatient {list(s.orientation)} differs from "
                             f"{list(first.orientation)} in {first.path.name}")
        for name in ("FrameOfReferenceUID",):
            a, b = str(s.ds.get(name, "")), str(first.ds.get(name, ""))
            if a and b and a != b:
                raise DicomError(f"{s.path}: {name} {a} differs from {b} in {first.path.name}")

    # Positions on one straight line along the slice normal (no gantry tilt / shear).
    normal = np.cross(first.orientation[:3], first.orientation[3:])
    normal = normal / np.linalg.norm(normal)
    xy_tol = max(POSITION_TOL_MM, 0.01 * float(first.spacing.min()))
    inplane0 = first.position - first.z * normal
    for s in slices[1:]:
        drift = float(np.linalg.norm(s.position - s.z * normal - inplane0))
        if drift > xy_tol:
            raise DicomError(
                f"{s.path}: ImagePositionPatient {list(s.position)} is {drift:.4f} mm off the line through "
                f"{first.path.name} {list(first.position)} along the slice normal (tolerance {xy_tol:.4f} mm): "
                "slice positions are not on a straight line along z; gantry-tilted/oblique series are not supported")

    if len(slices) == 1:
        for name in ("SpacingBetweenSlices", "SliceThickness"):
            value = first.ds.get(name)
            try:
                dz = float(value) if value not in (None, "") else 0.0
            except (TypeError, ValueError):
                dz = 0.0
            if dz > 0:
                log.warning("%s: single-slice series; slice spacing %.4g mm taken from %s", folder, dz, name)
                return dz
        raise DicomError(f"{first.path}: single-slice series without a positive SliceThickness or "
                         "SpacingBetweenSlices: the slice spacing is unknown")

    z = np.array([s.z for s in slices])
    gaps = np.diff(z)
    for i, g in enumerate(gaps):
        if g <= POSITION_TOL_MM:
            raise DicomError(f"{folder}: duplicate slice position z = {z[i]:.4f} mm in {slices[i].path.name} and "
                             f"{slices[i + 1].path.name} (ImagePositionPatient {list(slices[i + 1].position)})")
    gmin = float(gaps.min())
    for i, g in enumerate(gaps):
        k = int(round(g / gmin))
        if k >= 2 and abs(g / gmin - k) <= MISSING_SLICE_TOL:
            raise DicomError(
                f"{folder}: missing slice{'s' if k > 2 else ''}: {slices[i].path.name} (z = {z[i]:.4f} mm) and "
                f"{slices[i + 1].path.name} (z = {z[i + 1]:.4f} mm) are {g:.4f} mm apart, about {k} x the slice "
                f"spacing {gmin:.4f} mm ({k - 1} slice{'s' if k > 2 else ''} missing, or the slice spacing changes "
                "within the series)")
    dz = float((z[-1] - z[0]) / (len(z) - 1))
    tol = max(POSITION_TOL_MM, SPACING_REL_TOL * dz)
    for i, g in enumerate(gaps):
        if abs(g - dz) > tol:
            raise DicomError(
                f"{folder}: uneven slice spacing: {slices[i].path.name} (z = {z[i]:.4f} mm) and "
                f"{slices[i + 1].path.name} (z = {z[i + 1]:.4f} mm) are {g:.4f} mm apart, the series average is "
                f"{dz:.4f} mm (tolerance {tol:.4f} mm); only evenly spaced series are supported")
    resid = z - (z[0] + dz * np.arange(len(z)))
    worst = int(np.argmax(np.abs(resid)))
    if abs(resid[worst]) > tol:
        raise DicomError(f"{folder}: uneven slice spacing: {slices[worst].path.name} (z = {z[worst]:.4f} mm) lies "
                         f"{resid[worst]:.4f} mm off an even {dz:.4f} mm grid (tolerance {tol:.4f} mm)")
    return dz


def read_ct_series(folder: str | Path, series_uid: str | None = None) -> CTVolume:
    """Read the axial CT series in ``folder`` (one file per slice) as a :class:`CTVolume`.

    Every file directly in the folder is examined (subfolders and hidden files are not); files
    that clearly are not DICOM are skipped with a warning, non-CT DICOM objects (RTSTRUCT, RTPLAN,
    RTDOSE, ...) and localizer images are skipped. If the folder holds several CT series, pass
    ``series_uid`` to choose one. Raises :class:`DicomError` (a :class:`ConfigError`) naming the
    folder or file and the field for anything that cannot be read or mapped onto a regular grid.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DicomError(f"{folder}: CT folder does not exist")
    if not folder.is_dir():
        raise DicomError(f"{folder}: not a folder (give the folder that holds the CT slices)")
    entries = sorted(folder.iterdir())
    files = [p for p in entries if p.is_file() and not p.name.startswith(".")]
    subdirs = [p.name for p in entries if p.is_dir() and not p.name.startswith(".")]
    if not files:
        hint = f" (subfolders are not searched: {', '.join(subdirs[:10])})" if subdirs else ""
        raise DicomError(f"{folder}: CT folder is empty: no files{hint}")

    series: dict[str, list[tuple[Path, Dataset]]] = {}
    n_dicom = 0
    for path in files:
        ds = _read_file(path)
        if ds is None:
            continue
        n_dicom += 1
        if not _is_ct(ds):
            log.info("%s: %s object (Modality %s), not CT, skipped", path, ds.get("SOPClassUID", "unknown"),
                     ds.get("Modality", "unknown"))
            continue
        image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
        if "LOCALIZER" in image_type:
            log.warning("%s: CT localizer (scout) image, skipped", path)
            continue
        uid = str(ds.get("SeriesInstanceUID", "")).strip()
        if not uid:
            raise DicomError(f"{path}: missing SeriesInstanceUID (the file may be truncated)")
        series.setdefault(uid, []).append((path, ds))

    if not series:
        hint = f"; subfolders are not searched: {', '.join(subdirs[:10])}" if subdirs else ""
        raise DicomError(f"{folder}: no CT images found ({len(files)} files, {n_dicom} DICOM, none a CT slice{hint})")
    if series_uid is not None:
        if series_uid not in series:
            listing = "; ".join(_describe_series(u, v) for u, v in series.items())
            raise DicomError(f"{folder}: no CT series with SeriesInstanceUID {series_uid}; found: {listing}")
        items = series[series_uid]
    elif len(series) > 1:
        listing = "; ".join(_describe_series(u, v) for u, v in series.items())
        raise DicomError(f"{folder}: {len(series)} CT series found, choose one with series_uid: {listing}")
    else:
        items = next(iter(series.values()))

    slices = sorted((_Slice(p, ds) for p, ds in items), key=lambda s: s.z)
    dz = _check_geometry(folder, slices)
    first = slices[0]
    hu = np.empty((len(slices), first.rows, first.columns), dtype=np.float32)
    for k, s in enumerate(slices):
        hu[k] = s.hu()

    dy, dx = (float(v) for v in first.spacing)
    x0, y0, z0 = (float(v) for v in first.position)
    geometry = GridGeometry(
        shape=hu.shape,
        spacing=(dx / 10.0, dy / 10.0, dz / 10.0),
        origin=((x0 - dx / 2) / 10.0, (y0 - dy / 2) / 10.0, (z0 - dz / 2) / 10.0),
    )
    ds = first.ds
    return CTVolume(
        hu=hu,
        geometry=geometry,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        patient_id=str(ds.get("PatientID", "")),
        patient_name=str(ds.get("PatientName", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        source=str(folder),
        dicom_attributes=shared_attributes(ds),
    )


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------

def _ds(value: float) -> str:
    """A DS string (<= 16 characters) as precise as the format allows."""
    value = float(value)
    for digits in range(17, 0, -1):      # (pydicom's format_number_as_ds can give 17 characters)
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise DicomError(f"cannot write {value!r} as a DICOM decimal string")  # pragma: no cover


def _save(ds: FileDataset, path: Path) -> None:
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def write_ct_series(folder: str | Path, ct: CTVolume, patient_id: str = "BRACHYMC-DEMO",
                    patient_name: str = "Demo^Spine", study_uid: str | None = None,
                    series_uid: str | None = None, frame_uid: str | None = None,
                    description: str = "", attributes: dict | None = None, body_part: str = "") -> list[Path]:
    """Write ``ct`` as a CT Image Storage series, one file ``CT_0001.dcm``, ... per slice.

    Explicit VR little endian with file meta; uint16 pixels with RescaleSlope 1 and
    RescaleIntercept -1024 (HU rounded to integers and clipped to [-1024, 64511]);
    ImagePositionPatient (mm) = centre of each slice's first pixel; axial orientation. UIDs not
    given are generated. ``body_part``: BodyPartExamined (DICOM defined terms, e.g. ``"LSPINE"``);
    with it, Laterality is left out (a spine is not a paired structure), without it Laterality is
    written empty (unknown). ``attributes``: further keyword -> value pairs written into every slice
    (e.g. ``{"PatientBirthDate": "19600101", "PatientSex": "F"}``). Each file is written
    atomically. Returns the paths in slice order (z up).
    """
    if not isinstance(ct, CTVolume):
        raise DicomError(f"{folder}: write_ct_series needs a CTVolume, got {type(ct).__name__}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DicomError(f"{folder}: not a folder")
    g = ct.geometry
    hu = np.rint(np.asarray(ct.hu, dtype=np.float64))
    if not np.all(np.isfinite(hu)):
        raise DicomError(f"{folder}: CT Hounsfield units contain NaN or infinity")
    n_clipped = int(np.count_nonzero((hu < HU_MIN) | (hu > HU_MAX)))
    if n_clipped:
        log.warning("%s: %d voxels outside [%d, %d] HU clipped", folder, n_clipped, HU_MIN, HU_MAX)
    pixels = (np.clip(hu, HU_MIN, HU_MAX) - HU_MIN).astype(np.uint16)

    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    dx, dy, dz = (10.0 * s for s in g.spacing)
    x0, y0 = (10.0 * (o + s / 2) for o, s in zip(g.origin[:2], g.spacing[:2]))
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    width = max(4, len(str(g.nz)))
    paths: list[Path] = []
    for k in range(g.nz):
        z = 10.0 * (g.origin[2] + (k + 0.5) * g.spacing[2])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"CT_{k + 1:0{width}d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
        ds.AccessionNumber = ""
        ds.Modality = "CT"
        if body_part:
            ds.BodyPartExamined = body_part[:16]
        else:
            ds.Laterality = ""                       # Type 2C, empty: unknown body part
        ds.Manufacturer = "brachymc"
        ds.SoftwareVersions = __version__
        ds.ReferringPhysicianName = ""
        ds.SeriesDescription = description[:64]
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.KVP = ""
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(z)
        ds.SliceThickness = _ds(dz)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = g.ny, g.nx
        ds.PixelSpacing = [_ds(dy), _ds(dx)]        # row spacing (y), column spacing (x)
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = str(HU_MIN)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        for kw, value in (attributes or {}).items():
            setattr(ds, kw, value)
        ds.PixelData = np.ascontiguousarray(pixels[k]).astype("<u2").tobytes()
        with atomic_path(path) as tmp:
            _save(ds, tmp)
        paths.append(path)
    return paths
