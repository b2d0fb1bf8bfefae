"""``dose.h5``: the dose grid, its uncertainty and everything needed to reproduce the run.

Layout (all arrays indexed [iz, iy, ix], z slowest)::

    /dose                     Gy/history   track-length collision kerma = dose to medium (Dm,m)
    /dose_uncertainty         Gy/history   standard error of the mean over batches
    /dose_rel_uncertainty     1            uncertainty / dose (NaN where dose = 0)
    /primary, /primary_uncertainty         (if scored) photons that have not interacted
    /collision, /collision_uncertainty     (if scored) interaction estimator
    /geometry/material_index, /geometry/density (g/cm3)
    /materials/<name>         attrs: density_g_cm3, composition (JSON {symbol: mass fraction})
    attrs on /geometry: shape_zyx, spacing_cm (dx, dy, dz), origin_cm (x, y, z of the grid corner)
    root attrs: histories, batches, seed, backend, version, wall_time_s, histories_per_second,
                voxel_steps, source (JSON), settings (JSON), config (the run file's text), created,
                emitted/escaped/local energy per history (keV)
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.files import atomic_path
from brachymc.materials import element_symbol
from brachymc.mc.simulation import SimulationResult
from brachymc.mc.tally import Estimate


def _write_estimate(f: h5py.File, name: str, est: Estimate) -> None:
    kw = dict(compression="gzip", compression_opts=4, shuffle=True)
    d = f.create_dataset(name, data=est.mean, **kw)
    d.attrs["units"] = "Gy/history"
    u = f.create_dataset(f"{name}_uncertainty", data=est.uncertainty, **kw)
    u.attrs["units"] = "Gy/history"
    r = f.create_dataset(f"{name}_rel_uncertainty", data=est.rel_uncertainty.astype(np.float32), **kw)
    r.attrs["units"] = "1"


def write_dose_h5(path: str | Path, result: SimulationResult, phantom: VoxelPhantom, config_text: str = "") -> Path:
    """Write ``result`` atomically to ``path`` and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        _write_estimate(f, "dose", result.dose)
        for name in ("primary", "collision"):
            est = getattr(result, name)
            if est is not None:
                _write_estimate(f, name, est)
        g = f.create_group("geometry")
        geom = result.geometry
        g.attrs["shape_zyx"] = np.asarray(geom.shape)
        g.attrs["spacing_cm"] = np.asarray(geom.spacing)
        g.attrs["origin_cm"] = np.asarray(geom.origin)
        g.attrs["axis_order"] = "arrays are [iz, iy, ix]; origin is the low corner of voxel (0,0,0)"
        g.create_dataset("material_index", data=phantom.material_index, compression="gzip")
        g.create_dataset("density", data=phantom.density, compression="gzip").attrs["units"] = "g/cm3"
        mg = f.create_group("materials")
        for k, m in enumerate(phantom.materials):
            d = mg.create_group(m.name)
            d.attrs["index"] = k
            d.attrs["density_g_cm3"] = m.density
            d.attrs["composition"] = json.dumps({element_symbol(z): w for z, w in m.mass_fractions})
            d.attrs["reference"] = m.reference
        f.attrs.update({
            "histories": result.histories, "batches": result.batches, "seed": result.seed,
            "backend": result.backend, "version": result.version, "wall_time_s": result.wall_time_s,
            "histories_per_second": result.histories_per_second, "voxel_steps": result.voxel_steps,
            "emitted_energy_kev_per_history": result.emitted_energy_kev,
            "escaped_energy_kev_per_history": result.escaped_energy_kev,
            "local_energy_kev_per_history": result.local_energy_kev,
            "source": json.dumps(result.source), "settings": json.dumps(asdict(result.settings), default=str),
            "config": config_text, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "dose_quantity": "Dm,m (dose to medium in medium, kerma approximation)",
        })
    return path


def read_dose_h5(path: str | Path) -> dict:
    """Read a dose file into a dict of NumPy arrays, the geometry and the root attributes."""
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        g = f["geometry"]
        out["geometry"] = GridGeometry(
            shape=tuple(int(x) for x in g.attrs["shape_zyx"]),
            spacing=tuple(float(x) for x in g.attrs["spacing_cm"]),
            origin=tuple(float(x) for x in g.attrs["origin_cm"]),
        )
        out["material_index"] = g["material_index"][()]
        out["density"] = g["density"][()]
        out["materials"] = {name: dict(f["materials"][name].attrs) for name in f["materials"]}
        out["attrs"] = dict(f.attrs)
    return out
