"""CT volumes: Hounsfield units on a voxel grid in patient coordinates.

Coordinates are DICOM patient coordinates (LPS) converted to cm. Arrays are indexed
[iz, iy, ix] (z slowest): x runs along a CT row (DICOM column index), y down the columns (row
index), z across slices in increasing ImagePositionPatient z. ``geometry.origin`` is the outer
corner of voxel (0, 0, 0), i.e. ImagePositionPatient of the first slice (the centre of its first
pixel) minus half a voxel, in cm. Only axial, untilted series map onto this grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from brachymc.errors import GeometryError
from brachymc.geometry.phantom import GridGeometry


@dataclass(frozen=True)
class CTVolume:
    """A CT image as Hounsfield units on a :class:`GridGeometry` (cm, LPS)."""

    hu: np.ndarray
    geometry: GridGeometry
    frame_of_reference_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    source: str = ""
    #: DICOM attributes the dose objects share with this CT, keyword -> value (strings, or lists of
    #: strings for multi-valued elements): the Patient and General Study modules and the Frame of
    #: Reference of the series (``io.dicom_ct.SHARED_ATTRIBUTES``); empty for non-DICOM input.
    dicom_attributes: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hu.shape != tuple(self.geometry.shape):
            raise GeometryError(f"CT array shape {self.hu.shape} does not match its grid {self.geometry.shape}")
        if not np.all(np.isfinite(self.hu)):
            raise GeometryError(f"{self.source or 'CT'}: Hounsfield units contain NaN or infinity")
