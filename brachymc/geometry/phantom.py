"""Voxel phantoms: a regular grid of material indices and mass densities.

Axis convention (the same as a DICOM CT volume read slice by slice):

* arrays are indexed ``[iz, iy, ix]`` (C order, **z slowest, x fastest**);
* the flat voxel index is ``(iz * ny + iy) * nx + ix``;
* ``origin`` is the (x, y, z) position in cm of the outer corner of voxel (0, 0, 0), i.e. the
  low edges of the grid; voxel (ix, iy, iz) spans
  ``origin + (ix, iy, iz) * spacing`` to ``origin + (ix+1, iy+1, iz+1) * spacing``;
* ``spacing`` is (dx, dy, dz) in cm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from brachymc.errors import GeometryError, MaterialError
from brachymc.materials import Material


@dataclass(frozen=True)
class GridGeometry:
    """Shape, spacing and position of a voxel grid (cm)."""

    shape: tuple[int, int, int]           # (nz, ny, nx)
    spacing: tuple[float, float, float]   # (dx, dy, dz) cm
    origin: tuple[float, float, float]    # (x, y, z) cm of the grid's low corner

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(n) < 1 for n in self.shape):
            raise GeometryError(f"grid shape must be three positive integers (nz, ny, nx), got {self.shape}")
        if len(self.spacing) != 3 or any(not (float(d) > 0) for d in self.spacing):
            raise GeometryError(f"voxel spacing must be three positive lengths (cm), got {self.spacing}")
        if len(self.origin) != 3 or not np.all(np.isfinite(self.origin)):
            raise GeometryError(f"grid origin must be three finite coordinates (cm), got {self.origin}")

    @property
    def nx(self) -> int:
        return int(self.shape[2])

    @property
    def ny(self) -> int:
        return int(self.shape[1])

    @property
    def nz(self) -> int:
        return int(self.shape[0])

    @property
    def n_voxels(self) -> int:
        return self.nx * self.ny * self.nz

    @property
    def voxel_volume(self) -> float:
        """cm3."""
        return float(np.prod(self.spacing))

    @property
    def upper(self) -> tuple[float, float, float]:
        """(x, y, z) of the grid's high corner (cm)."""
        return tuple(o + n * d for o, n, d in zip(self.origin, (self.nx, self.ny, self.nz), self.spacing))

    def centers(self, axis: int) -> np.ndarray:
        """Voxel-centre coordinates along axis 0=x, 1=y, 2=z (cm)."""
        n = (self.nx, self.ny, self.nz)[axis]
        return self.origin[axis] + (np.arange(n) + 0.5) * self.spacing[axis]

    def edges(self, axis: int) -> np.ndarray:
        n = (self.nx, self.ny, self.nz)[axis]
        return self.origin[axis] + np.arange(n + 1) * self.spacing[axis]

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Whether points (..., 3) in cm lie inside the grid (closed box)."""
        p = np.asarray(points, dtype=float)
        lo, hi = np.array(self.origin), np.array(self.upper)
        return np.all((p >= lo) & (p <= hi), axis=-1)

    def voxel_of(self, points: np.ndarray) -> np.ndarray:
        """Integer (ix, iy, iz) of points (..., 3); points on the high faces map to the last voxel."""
        p = np.asarray(points, dtype=float)
        idx = np.floor((p - np.array(self.origin)) / np.array(self.spacing)).astype(np.int64)
        return np.clip(idx, 0, np.array([self.nx, self.ny, self.nz]) - 1)

    @classmethod
    def centered(cls, size_cm: Sequence[float], voxel_cm: Sequence[float],
                 center_cm: Sequence[float] = (0.0, 0.0, 0.0)) -> "GridGeometry":
        """A grid of extent ``size_cm`` (x, y, z) made of voxels ``voxel_cm`` centred on ``center_cm``."""
        n = [int(round(s / v)) for s, v in zip(size_cm, voxel_cm)]
        if any(abs(k * v - s) > 1e-6 * max(s, 1.0) for k, v, s in zip(n, voxel_cm, size_cm)):
            raise GeometryError(f"phantom size {tuple(size_cm)} cm is not a whole number of voxels {tuple(voxel_cm)} cm")
        origin = tuple(c - k * v / 2 for c, k, v in zip(center_cm, n, voxel_cm))
        return cls(shape=(n[2], n[1], n[0]), spacing=tuple(float(v) for v in voxel_cm), origin=origin)


@dataclass(frozen=True)
class VoxelPhantom:
    """Materials and mass densities on a :class:`GridGeometry`.

    Attributes:
        geometry: the grid.
        materials: media referenced by ``material_index``.
        material_index: integer array (nz, ny, nx), uint8 or uint16.
        density: float32 array (nz, ny, nx) of mass densities (g/cm3).
    """

    geometry: GridGeometry
    materials: tuple[Material, ...]
    material_index: np.ndarray
    density: np.ndarray

    def __post_init__(self) -> None:
        shape = tuple(self.geometry.shape)
        if self.material_index.shape != shape or self.density.shape != shape:
            raise GeometryError(
                f"material_index {self.material_index.shape} and density {self.density.shape} must have the grid shape {shape}"
            )
        if not self.materials:
            raise MaterialError("a phantom needs at least one material")
        if self.material_index.dtype.kind != "u":
            raise GeometryError("material_index must be an unsigned integer array")
        if self.material_index.size and int(self.material_index.max()) >= len(self.materials):
            raise MaterialError(
                f"material_index refers to material {int(self.material_index.max())} but only "
                f"{len(self.materials)} materials are defined"
            )
        if self.density.size and not (float(self.density.min()) > 0):
            raise GeometryError("voxel densities must be > 0 g/cm3")
        if self.density.dtype != np.float32:       # the documented layout (and the kernel engine's)
            object.__setattr__(self, "density", np.ascontiguousarray(self.density, dtype=np.float32))

    @classmethod
    def homogeneous(cls, geometry: GridGeometry, material: Material, density: float | None = None) -> "VoxelPhantom":
        """A phantom filled with one material (at its nominal density unless given)."""
        idx = np.zeros(geometry.shape, dtype=np.uint8)
        rho = np.full(geometry.shape, material.density if density is None else density, dtype=np.float32)
        return cls(geometry, (material,), idx, rho)

    def with_box(self, material: Material, lo_cm: Sequence[float], hi_cm: Sequence[float],
                 density: float | None = None) -> "VoxelPhantom":
        """A copy in which voxels whose centres lie inside the box [lo, hi] (cm) get ``material``."""
        lo, hi = np.asarray(lo_cm, float), np.asarray(hi_cm, float)
        if lo.shape != (3,) or hi.shape != (3,) or np.any(hi <= lo):
            raise GeometryError(f"box needs low < high corners, got {tuple(lo)} and {tuple(hi)}")
        mats = list(self.materials)
        if material in mats:
            m = mats.index(material)
        else:
            mats.append(material)
            m = len(mats) - 1
        g = self.geometry
        sel = [(g.centers(a) >= lo[a]) & (g.centers(a) <= hi[a]) for a in range(3)]
        mask = sel[2][:, None, None] & sel[1][None, :, None] & sel[0][None, None, :]
        dtype = np.uint8 if len(mats) <= 255 else np.uint16
        idx = self.material_index.astype(dtype, copy=True)
        rho = self.density.copy()
        idx[mask] = m
        rho[mask] = material.density if density is None else density
        return VoxelPhantom(g, tuple(mats), idx, rho)

    def material_names(self) -> list[str]:
        return [m.name for m in self.materials]
