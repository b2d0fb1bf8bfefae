"""DICOM RT Structure Set (RTSTRUCT) input and output.

:func:`read_rtstruct` reads the ROIs of an RT Structure Set Storage object
(SOP class 1.2.840.10008.5.1.4.1.1.481.3) as :class:`Structure` objects: name, number, display
colour, interpreted type (RTROIObservationsSequence) and the closed planar contours
(ROIContourSequence → ContourSequence → ContourData), each an (N, 3) array of points in **mm**,
DICOM patient coordinates (LPS). POINT contours (markers) are skipped, open contours are skipped
with a warning, and contours that are not axial (not at one z) are refused, since brachymc
rasterises contour stacks slice by slice (:mod:`brachymc.geometry.structures`).

:func:`write_rtstruct` writes structures as an RT Structure Set that references its CT series
(frame of reference, study, series and the CT image SOP instances, per contour the CT slice at
its z), with the Patient and General Study modules of that CT. :func:`contours_from_mask` turns a voxel mask into such contours (marching squares with
contourpy on the voxel-centre grid), e.g. to give the synthetic phantoms a structure set.

Reference: DICOM PS3.3, C.8.8.5 (Structure Set module), C.8.8.6 (ROI Contour module),
C.8.8.8 (RT ROI Observations module).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pydicom
from pydicom import datadict
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from brachymc import __version__
from brachymc.errors import ConfigError
from brachymc.geometry.phantom import GridGeometry
from brachymc.files import atomic_path
from brachymc.io.dicom_ct import DicomError, apply_shared_attributes, shared_attributes

log = logging.getLogger(__name__)

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_ROOT_REFERENCE = "1.2.840.10008.3.1.2.3.1"   # conventional ReferencedSOPClassUID of a referenced study
PLANAR_TOL_MM = 0.01          # a contour's points must share z within this (mm)
SLICE_MATCH_TOL_MM = 0.05     # contour z to CT slice z for the per-contour image reference (mm)
_CS = re.compile(r"^[A-Z0-9_ ]{0,16}$")


class StructureNotFoundError(ConfigError, KeyError):
    """No structure of the requested name in a structure set (a KeyError, and a brachymc error)."""

    def __str__(self) -> str:           # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


# ----------------------------------------------------------------------------------------------
# data model
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Structure:
    """One ROI: closed axial contours in mm (LPS).

    Attributes:
        name: ROIName.
        number: ROINumber (unique within a structure set).
        contours: (N, 3) float arrays of polygon points in mm, all points of a contour at one z
            (CLOSED_PLANAR, axial), the first point not repeated; stored read-only.
        color: ROIDisplayColor (R, G, B), 0..255.
        roi_type: RTROIInterpretedType (ORGAN, PTV, CTV, GTV, EXTERNAL, AVOIDANCE, ...; may be "").

    Compared by identity (``eq=False``): contours are arrays.
    """

    name: str
    number: int
    contours: tuple[np.ndarray, ...] = ()
    color: tuple[int, int, int] = (255, 0, 0)
    roi_type: str = "ORGAN"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"structure number {self.number}: ROIName must be a non-empty string, got {self.name!r}")
        try:
            number = int(self.number)
        except (TypeError, ValueError):
            raise ConfigError(f"structure {self.name!r}: ROINumber must be an integer, got {self.number!r}") from None
        object.__setattr__(self, "number", number)
        color = tuple(int(c) for c in self.color)
        if len(color) != 3 or any(not 0 <= c <= 255 for c in color):
            raise ConfigError(f"structure {self.name!r}: ROIDisplayColor must be three integers 0..255, got {self.color!r}")
        object.__setattr__(self, "color", color)
        roi_type = str(self.roi_type or "").strip().upper()
        if not _CS.match(roi_type):
            raise ConfigError(f"structure {self.name!r}: RTROIInterpretedType {self.roi_type!r} is not a DICOM code "
                              "string (at most 16 of A-Z, 0-9, _ and space)")
        object.__setattr__(self, "roi_type", roi_type)
        arrays = []
        for i, c in enumerate(self.contours):
            a = np.array(c, dtype=np.float64)
            if a.ndim != 2 or a.shape[1] != 3:
                raise ConfigError(f"structure {self.name!r}: contour {i} must be an (N, 3) array (mm), got shape {a.shape}")
            if a.shape[0] < 3:
                raise ConfigError(f"structure {self.name!r}: contour {i} has {a.shape[0]} points; a closed polygon "
                                  "needs at least 3")
            if not np.all(np.isfinite(a)):
                raise ConfigError(f"structure {self.name!r}: contour {i} has NaN or infinite coordinates")
            if np.ptp(a[:, 2]) > PLANAR_TOL_MM:
                raise ConfigError(f"structure {self.name!r}: contour {i} is not axial (z from {a[:, 2].min():.4f} to "
                                  f"{a[:, 2].max():.4f} mm); only axial CLOSED_PLANAR contours are supported")
            a.flags.writeable = False
            arrays.append(a)
        object.__setattr__(self, "contours", tuple(arrays))

    @property
    def plane_z_mm(self) -> np.ndarray:
        """Distinct contour z positions (mm), ascending."""
        if not self.contours:
            return np.zeros(0)
        z = np.unique(np.round([float(c[0, 2]) for c in self.contours], 3))
        return z


@dataclass(frozen=True, eq=False)
class StructureSet:
    """The ROIs of one RT Structure Set, with the identifiers that tie it to its CT."""

    structures: tuple[Structure, ...]
    frame_of_reference_uid: str = ""
    patient_id: str = ""
    study_instance_uid: str = ""
    source: str = ""
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        structures = tuple(self.structures)
        object.__setattr__(self, "structures", structures)
        numbers = [s.number for s in structures]
        dup = sorted({n for n in numbers if numbers.count(n) > 1})
        if dup:
            raise ConfigError(f"{self.source or 'structure set'}: ROINumber {dup} used by more than one structure")
        index: dict[str, list[Structure]] = {}
        for s in structures:
            index.setdefault(s.name.strip().lower(), []).append(s)
        object.__setattr__(self, "_index", index)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.structures]

    def __len__(self) -> int:
        return len(self.structures)

    def __iter__(self):
        return iter(self.structures)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._index

    def __getitem__(self, name: str) -> Structure:
        """The structure called ``name`` (case-insensitive; an exact-case match wins a tie)."""
        if not isinstance(name, str):
            raise StructureNotFoundError(f"{self.source or 'structure set'}: structure names are strings, got {name!r}")
        found = self._index.get(name.strip().lower(), [])
        if len(found) == 1:
            return found[0]
        exact = [s for s in found if s.name == name]
        if len(exact) == 1:
            return exact[0]
        where = self.source or "structure set"
        if found:
            raise StructureNotFoundError(f"{where}: structure name {name!r} is ambiguous: "
                                         f"{', '.join(repr(s.name) for s in found)} (ROINumber "
                                         f"{', '.join(str(s.number) for s in found)})")
        available = ", ".join(repr(n) for n in self.names) or "none"
        raise StructureNotFoundError(f"{where}: no structure named {name!r}; available: {available}")

    def by_number(self, number: int) -> Structure:
        for s in self.structures:
            if s.number == int(number):
                return s
        raise StructureNotFoundError(f"{self.source or 'structure set'}: no ROINumber {number}; available: "
                                     f"{', '.join(str(s.number) for s in self.structures) or 'none'}")


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------

def _dcmread(path: Path, stop_before_pixels: bool = False) -> Dataset:
    """Read a DICOM file, or raise DicomError naming it."""
    if not path.exists():
        raise DicomError(f"{path}: file does not exist")
    if not path.is_file():
        raise DicomError(f"{path}: not a file")
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise DicomError(f"{path}: cannot be read ({exc})") from None
    if not head:
        raise DicomError(f"{path}: empty file (a DICOM file cut short?)")
    try:
        ds = pydicom.dcmread(str(path), force=head[128:132] != b"DICM", stop_before_pixels=stop_before_pixels)
        tags = list(ds.keys())
    except InvalidDicomError as exc:
        raise DicomError(f"{path}: not a valid DICOM file ({exc})") from None
    except Exception as exc:  # pydicom raises many types (EOFError, struct.error, ...) on corrupt input
        raise DicomError(f"{path}: corrupt or truncated DICOM file ({type(exc).__name__}: {exc})") from None
    if not any(tag.group >= 0x0008 for tag in tags):
        raise DicomError(f"{path}: corrupt or not a DICOM file (no data elements could be read)")
    return ds


def _truncated_element(ds: Dataset) -> str | None:
    """The keyword of an element whose value holds fewer bytes than its declared length, if any.

    pydicom reads a file cut short without complaint (the last value is just shorter); this
    walks the data set, sequences included, and finds such an element.
    """
    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        length = getattr(elem, "length", None)
        value = getattr(elem, "value", None)
        if (isinstance(value, (bytes, bytearray)) and isinstance(length, int) and length != 0xFFFFFFFF
                and len(value) < length):
            return datadict.keyword_for_tag(tag) or str(tag)
        vr = getattr(elem, "VR", None)
        if vr is None and datadict.dictionary_has_tag(tag):
            vr = datadict.dictionary_VR(tag)
        if vr == "SQ":
            for item in ds[tag].value or []:
                bad = _truncated_element(item)
                if bad:
                    return bad
    return None


def _text(ds: Dataset, name: str) -> str:
    value = ds.get(name)
    return "" if value is None else str(value).strip()


def _contour_points(path: Path, roi: str, k: int, item: Dataset) -> np.ndarray:
    """ContourData of one contour item as an (N, 3) float array (mm)."""
    raw = item.get_item(0x30060050) if 0x30060050 in item else None
    if raw is None:
        raise DicomError(f"{path}: ROI {roi!r} contour {k}: missing ContourData")
    try:
        value = raw.value
        if isinstance(value, (bytes, bytearray)):        # still raw: parse the DS text in one go
            flat = np.array(bytes(value).replace(b"\\", b" ").split(), dtype=np.float64)
        elif isinstance(value, str):
            flat = np.array(value.replace("\\", " ").split(), dtype=np.float64)
        else:
            flat = np.array([float(v) for v in np.atleast_1d(np.asarray(value, dtype=object))], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DicomError(f"{path}: ROI {roi!r} contour {k}: ContourData is not numeric ({exc})") from None
    if flat.size == 0 or flat.size % 3:
        raise DicomError(f"{path}: ROI {roi!r} contour {k}: ContourData holds {flat.size} numbers, "
                         "not a whole number of (x, y, z) triplets")
    if not np.all(np.isfinite(flat)):
        raise DicomError(f"{path}: ROI {roi!r} contour {k}: ContourData contains NaN or infinity")
    pts = flat.reshape(-1, 3)
    n_declared = item.get("NumberOfContourPoints")
    if n_declared not in (None, "") and int(n_declared) != pts.shape[0]:
        log.warning("%s: ROI %r contour %d: NumberOfContourPoints %s but ContourData holds %d points; "
                    "using ContourData", path, roi, k, n_declared, pts.shape[0])
    return pts


def _frames(ds: Dataset) -> list[str]:
    """Frame of reference UIDs named by ReferencedFrameOfReferenceSequence and the ROIs, in order."""
    uids: list[str] = []
    for item in ds.get("ReferencedFrameOfReferenceSequence") or []:
        uid = _text(item, "FrameOfReferenceUID")
        if uid and uid not in uids:
            uids.append(uid)
    for item in ds.get("StructureSetROISequence") or []:
        uid = _text(item, "ReferencedFrameOfReferenceUID")
        if uid and uid not in uids:
            uids.append(uid)
    return uids


def read_rtstruct(path: str | Path, frame_of_reference_uid: str | None = None) -> StructureSet:
    """Read an RT Structure Set file.

    If ``frame_of_reference_uid`` is given (normally the CT's), every frame of reference the
    structure set names (ReferencedFrameOfReferenceSequence and the ROIs'
    ReferencedFrameOfReferenceUID) must be that one. Raises :class:`DicomError` naming the file
    (and field) when the file is unreadable, is not an RTSTRUCT, holds malformed or non-axial
    contours, or lies in another frame of reference (naming both UIDs).
    """
    path = Path(path)
    ds = _dcmread(path)
    try:
        bad = _truncated_element(ds)
        if bad:
            raise DicomError(f"{path}: truncated or corrupt DICOM file ({bad} holds fewer bytes than its "
                             "declared length)")
        return _parse(path, ds, frame_of_reference_uid)
    except DicomError:
        raise
    except ConfigError as exc:            # a structure the model refuses: say which file it came from
        raise DicomError(f"{path}: {exc}") from None
    except Exception as exc:  # garbage that pydicom parsed lazily fails here
        raise DicomError(f"{path}: corrupt RT Structure Set ({type(exc).__name__}: {exc})") from None


def _parse(path: Path, ds: Dataset, frame_of_reference_uid: str | None) -> StructureSet:
    sop, modality = _text(ds, "SOPClassUID"), _text(ds, "Modality").upper()
    if sop != RT_STRUCTURE_SET_STORAGE and modality != "RTSTRUCT":
        raise DicomError(f"{path}: not an RT Structure Set (Modality {modality or 'missing'}, SOPClassUID "
                         f"{sop or 'missing'}; expected RTSTRUCT / {RT_STRUCTURE_SET_STORAGE})")
    if "StructureSetROISequence" not in ds:
        raise DicomError(f"{path}: missing StructureSetROISequence (no ROIs defined)")

    frames = _frames(ds)
    if frame_of_reference_uid is not None:
        wrong = [u for u in frames if u != frame_of_reference_uid]
        if wrong or not frames:
            found = ", ".join(frames) if frames else "none (no ReferencedFrameOfReferenceSequence/UID)"
            raise DicomError(f"{path}: FrameOfReferenceUID mismatch: the structure set is in {found}, the CT in "
                             f"{frame_of_reference_uid}; contours cannot be placed on this CT")
    elif len(frames) > 1:
        log.warning("%s: structure set references %d frames of reference (%s); using %s", path, len(frames),
                    ", ".join(frames), frames[0])

    rois: dict[int, dict] = {}
    for k, item in enumerate(ds.StructureSetROISequence):
        if item.get("ROINumber") in (None, ""):
            raise DicomError(f"{path}: StructureSetROISequence item {k}: missing ROINumber")
        number = int(item.ROINumber)
        name = _text(item, "ROIName") or f"ROI_{number}"
        if number in rois:
            raise DicomError(f"{path}: ROINumber {number} defined twice in StructureSetROISequence "
                             f"({rois[number]['name']!r} and {name!r})")
        rois[number] = {"name": name, "contours": [], "color": (255, 0, 0), "type": ""}

    for item in ds.get("RTROIObservationsSequence") or []:
        ref = item.get("ReferencedROINumber")
        if ref not in (None, "") and int(ref) in rois:
            rois[int(ref)]["type"] = _text(item, "RTROIInterpretedType").upper()

    for item in ds.get("ROIContourSequence") or []:
        ref = item.get("ReferencedROINumber")
        if ref in (None, ""):
            raise DicomError(f"{path}: ROIContourSequence item without ReferencedROINumber")
        number = int(ref)
        if number not in rois:
            log.warning("%s: ROIContourSequence refers to ROINumber %d, which StructureSetROISequence does not "
                        "define; skipped", path, number)
            continue
        roi = rois[number]
        color = item.get("ROIDisplayColor")
        if color not in (None, ""):
            try:
                rgb = tuple(int(round(float(c))) for c in color)
            except (TypeError, ValueError):
                rgb = ()
            if len(rgb) == 3 and all(0 <= c <= 255 for c in rgb):
                roi["color"] = rgb
            else:
                log.warning("%s: ROI %r: ROIDisplayColor %r is not an RGB triplet; ignored", path, roi["name"], color)
        n_open = 0
        for k, c in enumerate(item.get("ContourSequence") or []):
            ctype = _text(c, "ContourGeometricType").upper()
            if ctype == "POINT":
                continue
            if ctype in ("OPEN_PLANAR", "OPEN_NONPLANAR"):
                n_open += 1
                continue
            if ctype not in ("CLOSED_PLANAR", ""):
                raise DicomError(f"{path}: ROI {roi['name']!r} contour {k}: ContourGeometricType {ctype!r} is not "
                                 "supported (CLOSED_PLANAR, POINT, OPEN_PLANAR are understood)")
            pts = _contour_points(path, roi["name"], k, c)
            if pts.shape[0] < 3:
                log.warning("%s: ROI %r contour %d has %d point(s), not a polygon; skipped", path, roi["name"], k,
                            pts.shape[0])
                continue
            if np.ptp(pts[:, 2]) > PLANAR_TOL_MM:
                raise DicomError(
                    f"{path}: ROI {roi['name']!r} contour {k}: ContourData is not axial (z from "
                    f"{pts[:, 2].min():.4f} to {pts[:, 2].max():.4f} mm); only axial CLOSED_PLANAR contours "
                    "(all points of a contour at one z) are supported; resample the structure on axial slices")
            if np.array_equal(pts[0], pts[-1]) and pts.shape[0] > 3:
                pts = pts[:-1]            # a repeated closing point is implied by CLOSED_PLANAR
            roi["contours"].append(pts)
        if n_open:
            log.warning("%s: ROI %r: %d open contour(s) skipped (only closed contours define a volume)",
                        path, roi["name"], n_open)

    structures = tuple(
        Structure(name=r["name"], number=n, contours=tuple(r["contours"]), color=r["color"], roi_type=r["type"]
                  if _CS.match(r["type"]) else "")
        for n, r in rois.items())
    return StructureSet(structures=structures,
                        frame_of_reference_uid=frame_of_reference_uid or (frames[0] if frames else ""),
                        patient_id=_text(ds, "PatientID"), study_instance_uid=_text(ds, "StudyInstanceUID"),
                        source=str(path))


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------

def _ds_text(value: float) -> str:
    """A DS string (<= 16 characters) with 10 significant digits (1e-6 mm at 1 m)."""
    v = float(value)
    if abs(v) < 1e-9:
        return "0"
    return f"{v:.10g}"


_CONTOUR_DATA = Tag(0x3006, 0x0050)


def _raw_ds(values: np.ndarray) -> RawDataElement:
    """ContourData as an explicit VR little endian DS element, encoded once.

    Large structure sets hold ~10^6 coordinates; building them as a raw value skips pydicom's
    per-value DSfloat conversion (seconds) and writes the same bytes.
    """
    text = "\\".join(_ds_text(v) for v in values).encode("ascii")
    if len(text) % 2:
        text += b" "                                   # DS values are padded to even length with a space
    return RawDataElement(_CONTOUR_DATA, "DS", len(text), text, 0, False, True)


class _CTRef:
    """Header facts of one referenced CT image."""

    def __init__(self, path: Path) -> None:
        ds = _dcmread(path, stop_before_pixels=True)
        self.path = path
        self.sop_class = _text(ds, "SOPClassUID")
        self.sop_instance = _text(ds, "SOPInstanceUID")
        self.series = _text(ds, "SeriesInstanceUID")
        self.study = _text(ds, "StudyInstanceUID")
        self.frame = _text(ds, "FrameOfReferenceUID")
        self.shared = shared_attributes(ds)
        for name in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID"):
            if not _text(ds, name):
                raise DicomError(f"{path}: missing {name} (needed to reference the image from the RTSTRUCT)")
        ipp = ds.get("ImagePositionPatient")
        try:
            self.z = float(ipp[2]) if ipp is not None and len(ipp) == 3 else None
        except (TypeError, ValueError):
            self.z = None


def _item(**elements) -> Dataset:
    d = Dataset()
    for k, v in elements.items():
        setattr(d, k, v)
    return d


def write_rtstruct(path: str | Path, structures: Sequence[Structure] | StructureSet,
                   ct_paths: Iterable[str | Path] | None, *, frame_of_reference_uid: str, patient_id: str,
                   patient_name: str, study_instance_uid: str, series_description: str = "brachymc") -> Path:
    """Write ``structures`` as an RT Structure Set Storage file (explicit VR little endian).

    ``ct_paths``: the CT images the contours were drawn on (headers are read, pixels are not).
    They must share ``frame_of_reference_uid`` and ``study_instance_uid``; the file then lists
    every image in ReferencedFrameOfReferenceSequence → RTReferencedStudySequence →
    RTReferencedSeriesSequence → ContourImageSequence, and each contour references the image
    whose ImagePositionPatient z is within 0.05 mm of its plane, and it copies the CT's Patient
    and General Study attributes (the named arguments take precedence). Without CT paths only the
    frame of reference is referenced. Written atomically; returns ``path``.
    """
    path = Path(path)
    structs = tuple(structures.structures if isinstance(structures, StructureSet) else structures)
    if not frame_of_reference_uid:
        raise DicomError(f"{path}: write_rtstruct needs a frame_of_reference_uid")
    for s in structs:
        if not isinstance(s, Structure):
            raise DicomError(f"{path}: write_rtstruct takes Structure objects, got {type(s).__name__}")
    numbers = [s.number for s in structs]
    dup = sorted({n for n in numbers if numbers.count(n) > 1})
    if dup:
        raise DicomError(f"{path}: ROINumber {dup} used by more than one structure")

    refs = [_CTRef(Path(p)) for p in (ct_paths or [])]
    for r in refs:
        if r.frame and r.frame != frame_of_reference_uid:
            raise DicomError(f"{r.path}: FrameOfReferenceUID {r.frame} differs from the structure set's "
                             f"{frame_of_reference_uid}")
        if r.study and study_instance_uid and r.study != study_instance_uid:
            raise DicomError(f"{r.path}: StudyInstanceUID {r.study} differs from the structure set's "
                             f"{study_instance_uid}")
    by_series: dict[str, list[_CTRef]] = {}
    for r in refs:
        by_series.setdefault(r.series, []).append(r)
    for v in by_series.values():
        v.sort(key=lambda r: (r.z is None, r.z if r.z is not None else 0.0))
    located = [r for r in refs if r.z is not None]
    ref_z = np.array([r.z for r in located]) if located else np.zeros(0)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    shared = dict(refs[0].shared) if refs else {"StudyDate": date, "StudyTime": time, "StudyID": "1"}
    shared.setdefault("SpecificCharacterSet", "ISO_IR 100")
    apply_shared_attributes(ds, shared)           # Patient, General Study, Frame of Reference (as the CT)
    ds.PatientName = patient_name or ds.PatientName
    ds.PatientID = patient_id or ds.PatientID
    ds.StudyInstanceUID = study_instance_uid or ds.get("StudyInstanceUID") or generate_uid()
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.Modality = "RTSTRUCT"
    ds.OperatorsName = ""
    ds.Manufacturer = "brachymc"
    ds.SoftwareVersions = __version__
    ds.SeriesDescription = series_description[:64]
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.StructureSetLabel = (series_description or "brachymc")[:16]
    ds.StructureSetName = (series_description or "brachymc")[:64]
    ds.StructureSetDate = date
    ds.StructureSetTime = time

    frame_item = _item(FrameOfReferenceUID=frame_of_reference_uid)
    if refs:
        series_items = []
        for series_uid, items in by_series.items():
            images = [_item(ReferencedSOPClassUID=r.sop_class, ReferencedSOPInstanceUID=r.sop_instance) for r in items]
            series_items.append(_item(SeriesInstanceUID=series_uid, ContourImageSequence=DicomSequence(images)))
        study_item = _item(ReferencedSOPClassUID=STUDY_ROOT_REFERENCE, ReferencedSOPInstanceUID=ds.StudyInstanceUID,
                           RTReferencedSeriesSequence=DicomSequence(series_items))
        frame_item.RTReferencedStudySequence = DicomSequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_item])

    roi_items, contour_items, obs_items = [], [], []
    for k, s in enumerate(structs):
        roi_items.append(_item(ROINumber=s.number, ReferencedFrameOfReferenceUID=frame_of_reference_uid,
                               ROIName=s.name[:64], ROIGenerationAlgorithm="AUTOMATIC"))
        contours = []
        for j, c in enumerate(s.contours):
            citem = Dataset()
            if ref_z.size:
                dz = np.abs(ref_z - float(c[0, 2]))
                i = int(np.argmin(dz))
                if dz[i] <= SLICE_MATCH_TOL_MM:
                    r = located[i]
                    citem.ContourImageSequence = DicomSequence(
                        [_item(ReferencedSOPClassUID=r.sop_class, ReferencedSOPInstanceUID=r.sop_instance)])
            citem.ContourGeometricType = "CLOSED_PLANAR"
            citem.NumberOfContourPoints = int(c.shape[0])
            citem.ContourNumber = j + 1
            citem[_CONTOUR_DATA] = _raw_ds(c.ravel())
            citem.set_original_encoding(False, True, default_encoding)   # write the raw value as is
            contours.append(citem)
        citem = _item(ROIDisplayColor=[int(v) for v in s.color], ReferencedROINumber=s.number)
        if contours:
            citem.ContourSequence = DicomSequence(contours)
        contour_items.append(citem)
        obs_items.append(_item(ObservationNumber=k + 1, ReferencedROINumber=s.number,
                               RTROIInterpretedType=s.roi_type, ROIInterpreter=""))
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.RTROIObservationsSequence = DicomSequence(obs_items)
    ds.ApprovalStatus = "UNAPPROVED"

    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


# ----------------------------------------------------------------------------------------------
# contours from voxel masks
# ----------------------------------------------------------------------------------------------

def contours_from_mask(mask: np.ndarray, geometry: GridGeometry, level: float = 0.5) -> tuple[np.ndarray, ...]:
    """Closed axial contours (mm) of a voxel mask, one set per slice, at the slice centre z.

    ``mask``: (nz, ny, nx) bool or float (e.g. a partial-volume fraction) on ``geometry`` (cm).
    Each slice is contoured at ``level`` by marching squares (contourpy) on the voxel-centre
    grid; the mask is padded with one voxel of zeros so that structures touching the grid edge
    still give closed polygons. Holes come out as separate polygons (even-odd rule, as
    :func:`brachymc.geometry.structures.rasterise` reads them). Polygons with fewer than 3
    distinct points are dropped; the first point is not repeated at the end.
    """
    import contourpy

    m = np.asarray(mask)
    if m.shape != tuple(geometry.shape):
        raise ConfigError(f"mask shape {m.shape} does not match the grid {tuple(geometry.shape)}")
    m = m.astype(np.float64)
    if not np.all(np.isfinite(m)):
        raise ConfigError("mask contains NaN or infinite values")
    x = 10.0 * geometry.centers(0)
    y = 10.0 * geometry.centers(1)
    z = 10.0 * geometry.centers(2)
    dx, dy = 10.0 * geometry.spacing[0], 10.0 * geometry.spacing[1]
    xp = np.concatenate([[x[0] - dx], x, [x[-1] + dx]])
    yp = np.concatenate([[y[0] - dy], y, [y[-1] + dy]])
    out: list[np.ndarray] = []
    for iz in range(m.shape[0]):
        sl = m[iz]
        if not np.any(sl > level):
            continue
        padded = np.zeros((sl.shape[0] + 2, sl.shape[1] + 2))
        padded[1:-1, 1:-1] = sl
        gen = contourpy.contour_generator(xp, yp, padded, line_type=contourpy.LineType.Separate)
        for line in gen.lines(level):
            pts = np.asarray(line, dtype=np.float64)
            if pts.shape[0] >= 2:          # drop repeated points (the closing point, saddle/centre hits)
                keep = np.concatenate([[True], np.any(np.abs(np.diff(pts, axis=0)) > 1e-9, axis=1)])
                pts = pts[keep]
            while pts.shape[0] >= 2 and np.all(np.abs(pts[0] - pts[-1]) <= 1e-9):
                pts = pts[:-1]
            if pts.shape[0] < 3:
                continue
            out.append(np.column_stack([pts, np.full(pts.shape[0], z[iz])]))
    return tuple(out)
