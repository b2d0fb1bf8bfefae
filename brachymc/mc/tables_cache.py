"""On-disk HDF5 cache of physics tables, keyed by a hash of materials and settings."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import h5py

from brachymc._paths import cache_dir
from brachymc.files import atomic_path
from brachymc.materials import Material
from brachymc.mc.physics import FluorescenceChannel, PhysicsSettings, PhysicsTables, build_tables, tables_key

log = logging.getLogger(__name__)

_ARRAYS = ("energy", "photo", "incoh", "coh", "muen", "compton_mean_transfer", "fl_cum", "fl_channel",
           "line_cum", "line_energy", "compton_quantiles", "rayleigh_quantiles", "compton_pdf", "rayleigh_pdf")


def write_tables(tables: PhysicsTables, path: str | Path) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name in _ARRAYS:
            f.create_dataset(name, data=getattr(tables, name), compression="gzip", compression_opts=1)
        f.attrs["settings"] = json.dumps(asdict(tables.settings))
        f.attrs["material_names"] = json.dumps(list(tables.material_names))
        f.attrs["channels"] = json.dumps([asdict(c) for c in tables.channels])
        f.attrs["sample_ln_e0"] = tables.sample_ln_e0
        f.attrs["sample_dln"] = tables.sample_dln
        f.attrs["key"] = tables.key


def read_tables(path: str | Path) -> PhysicsTables:
    with h5py.File(path, "r") as f:
        arrays = {name: f[name][()] for name in _ARRAYS}
        settings = PhysicsSettings(**json.loads(f.attrs["settings"]))
        channels = tuple(
            FluorescenceChannel(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in c.items()})
            for c in json.loads(f.attrs["channels"])
        )
        return PhysicsTables(
            settings=settings, material_names=tuple(json.loads(f.attrs["material_names"])),
            sample_ln_e0=float(f.attrs["sample_ln_e0"]), sample_dln=float(f.attrs["sample_dln"]),
            channels=channels, key=str(f.attrs["key"]), **arrays,
        )


def load_or_build_tables(materials: Sequence[Material], settings: PhysicsSettings = PhysicsSettings(),
                         cache: bool | str | Path = True) -> PhysicsTables:
    """Tables for ``materials``: read from the cache when present, else built (and cached).

    ``cache`` is True (default folder, see :func:`brachymc._paths.cache_dir`), False (no cache)
    or a folder.
    """
    if cache is False:
        return build_tables(materials, settings)
    folder = cache_dir() if cache is True else Path(cache)
    key = tables_key(materials, settings)
    path = folder / f"physics-{key}.h5"
    if path.exists():
        try:
            t = read_tables(path)
            if t.key == key:
                return t
        except (OSError, KeyError, ValueError, TypeError) as exc:  # corrupt cache: rebuild
            log.warning("ignoring unreadable physics cache %s (%s)", path, exc)
    t = build_tables(materials, settings)
    try:
        write_tables(t, path)
    except OSError as exc:  # read-only home etc.: run without a cache
        log.warning("cannot write physics cache %s (%s)", path, exc)
    return t


__all__ = ["load_or_build_tables", "read_tables", "write_tables"]
