"""CT volumes as single files: HDF5 (``.h5``/``.hdf5``) and NumPy (``.npz``).

An alternative to a DICOM series for research data and tests. Layout (both formats):

* ``hu``: Hounsfield units, shape (nz, ny, nx), indexed [iz, iy, ix] (z slowest); read as float32;
* ``origin_cm``: (x, y, z) in cm of the LOW CORNER of voxel (0, 0, 0) (not its centre);
* ``spacing_cm``: (dx, dy, dz) voxel size in cm, all > 0;
* optional strings ``frame_of_reference_uid``, ``patient_id``, ``patient_name``,
  ``study_instance_uid``, ``series_instance_uid``.

In HDF5 ``hu`` is a dataset; every other field may be an attribute of the file root, an attribute
of ``hu``, or a dataset (looked up in that order). In ``.npz`` every field is an array (strings
as 0-d string arrays). Coordinates are patient coordinates (LPS) in cm as for
:class:`~brachymc.geometry.ct.CTVolume`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from brachymc.errors import ConfigError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry
from brachymc.files import atomic_path

H5_SUFFIXES = (".h5", ".hdf5")
NPZ_SUFFIXES = (".npz",)
#: Optional string metadata stored with the volume (CTVolume field names).
META_FIELDS = ("frame_of_reference_uid", "patient_id", "patient_name", "study_instance_uid",
               "series_instance_uid")


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in H5_SUFFIXES:
        return "h5"
    if suffix in NPZ_SUFFIXES:
        return "npz"
    raise ConfigError(
        f"{path}: unsupported CT volume format {suffix or '(no suffix)'!r}; use one of "
        f"{', '.join(H5_SUFFIXES + NPZ_SUFFIXES)} (or a DICOM series folder)"
    )


def _as_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    arr = np.asarray(value)
    if arr.ndim == 0:
        v = arr.item()
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return str(value)


def _vector3(path: Path, name: str, value: Any, positive: bool) -> tuple[float, float, float]:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: {name!r} must be three numbers (x, y, z) in cm") from None
    if arr.shape != (3,):
        raise ConfigError(f"{path}: {name!r} must have shape (3,) = (x, y, z) in cm, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{path}: {name!r} contains NaN or infinity: {arr.tolist()}")
    if positive and np.any(arr <= 0):
        raise ConfigError(f"{path}: {name!r} must be > 0 cm along x, y and z, got {arr.tolist()}")
    return tuple(float(v) for v in arr)


def _check_hu(path: Path, hu: Any) -> np.ndarray:
    arr = np.asarray(hu)
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"{path}: 'hu' must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ConfigError(f"{path}: 'hu' must be 3-D (nz, ny, nx), got shape {arr.shape}")
    if arr.size == 0:
        raise ConfigError(f"{path}: 'hu' is empty (shape {arr.shape})")
    arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr)
    if np.any(bad):
        iz, iy, ix = (int(v) for v in np.argwhere(bad)[0])
        raise ConfigError(f"{path}: 'hu' contains {int(bad.sum())} NaN/infinite values "
                          f"(first at iz={iz}, iy={iy}, ix={ix})")
    return arr


def _build(path: Path, hu: Any, origin: Any, spacing: Any, meta: dict[str, str]) -> CTVolume:
    arr = _check_hu(path, hu)
    if origin is None:
        raise ConfigError(f"{path}: missing 'origin_cm' (x, y, z of the low corner of voxel (0,0,0), cm)")
    if spacing is None:
        raise ConfigError(f"{path}: missing 'spacing_cm' (dx, dy, dz voxel size, cm)")
    o = _vector3(path, "origin_cm", origin, positive=False)
    d = _vector3(path, "spacing_cm", spacing, positive=True)
    geometry = GridGeometry(shape=tuple(int(n) for n in arr.shape), spacing=d, origin=o)
    return CTVolume(hu=arr, geometry=geometry, source=str(path), **meta)


def _read_h5(path: Path) -> CTVolume:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open as HDF5 ({exc})") from None
    with f:
        if "hu" not in f or not isinstance(f["hu"], h5py.Dataset):
            raise ConfigError(f"{path}: no dataset 'hu' (Hounsfield units, shape (nz, ny, nx))")
        dset = f["hu"]

        def field(name: str) -> Any:
            if name in f.attrs:
                return f.attrs[name]
            if name in dset.attrs:
                return dset.attrs[name]
            if name in f and isinstance(f[name], h5py.Dataset):
                return f[name][()]
            return None

        hu = dset[()]
        meta = {k: _as_str(v) for k in META_FIELDS if (v := field(k)) is not None}
        return _build(path, hu, field("origin_cm"), field("spacing_cm"), meta)


def _read_npz(path: Path) -> CTVolume:
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: cannot read as .npz ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ConfigError(f"{path}: not an .npz archive of named arrays (hu, origin_cm, spacing_cm)")
    with npz:
        keys = set(npz.files)
        if "hu" not in keys:
            raise ConfigError(f"{path}: no array 'hu' (Hounsfield units, shape (nz, ny, nx)); arrays present: "
                              f"{', '.join(sorted(keys)) or 'none'}")

        def field(name: str) -> Any:
            try:
                return npz[name] if name in keys else None
            except ValueError as exc:   # object arrays need pickle: refused
                raise ConfigError(f"{path}: array {name!r} cannot be read without pickle ({exc})") from None

        meta = {k: _as_str(v) for k in META_FIELDS if (v := field(k)) is not None}
        return _build(path, field("hu"), field("origin_cm"), field("spacing_cm"), meta)


def read_ct_volume(path: str | Path) -> CTVolume:
    """Read a CT volume from ``.h5``/``.hdf5`` or ``.npz`` (layout in the module docstring).

    Raises:
        ConfigError: unknown suffix, missing/unreadable file, missing ``hu``/``origin_cm``/
            ``spacing_cm``, wrong shapes, non-finite values or non-positive spacing; the message
            names the file and the field.
    """
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise ConfigError(f"{path}: CT volume file not found")
    return _read_h5(path) if kind == "h5" else _read_npz(path)


def write_ct_volume(path: str | Path, ct: CTVolume) -> Path:
    """Write ``ct`` to ``.h5``/``.hdf5`` (gzip-compressed dataset, fields as root attributes) or
    ``.npz`` (compressed), atomically. Returns the path."""
    path = Path(path)
    kind = _kind(path)
    g = ct.geometry
    hu = np.asarray(ct.hu, dtype=np.float32)
    origin = np.asarray(g.origin, dtype=np.float64)
    spacing = np.asarray(g.spacing, dtype=np.float64)
    meta = {k: str(getattr(ct, k)) for k in META_FIELDS}
    with atomic_path(path) as tmp:
        if kind == "h5":
            with h5py.File(tmp, "w") as f:
                d = f.create_dataset("hu", data=hu, compression="gzip", compression_opts=4, shuffle=True)
                d.attrs["units"] = "HU"
                f.attrs["origin_cm"] = origin
                f.attrs["spacing_cm"] = spacing
                f.attrs["axis_order"] = "hu is [iz, iy, ix]; origin_cm is the low corner of voxel (0,0,0)"
                for k, v in meta.items():
                    f.attrs[k] = v
        else:
            with open(tmp, "wb") as fh:   # a file object: np.savez would append '.npz' to a name
                np.savez_compressed(fh, hu=hu, origin_cm=origin, spacing_cm=spacing,
                                    **{k: np.array(v) for k, v in meta.items()})
    return path
