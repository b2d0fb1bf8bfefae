#!/usr/bin/env python
"""Transport throughput: an I-125 point source (NCRP-58 spectrum) at the centre of a (20 cm)^3
water phantom with (1 mm)^3 voxels (8 M voxels), per backend.

Reports photon histories per second and voxel steps per second (one step = one photon moved
across one voxel chord or to an interaction). Physics tables are built (or read from the cache)
and one warm-up batch is run before timing. Record results in docs/benchmarks.md.

    python benchmarks/bench_transport.py --backend numpy --histories 1000000
    python benchmarks/bench_transport.py --backend cupy --histories 100000000 --bank-size 4194304
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date

import numpy as np

from brachymc import __version__, default_library
from brachymc.backend import cupy_available, get_backend
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.simulation import RunSettings, run_simulation
from brachymc.mc.transport import TransportSettings
from brachymc.sources.simple import PointSource
from brachymc.sources.spectrum import load_spectrum


def device_name(backend: str) -> str:
    if backend == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), platform.processor())
    except OSError:
        model = platform.processor()
    import os

    return f"{model} ({os.cpu_count()} cores visible)"


def bench(backend: str, histories: int, batches: int, bank_size: int, voxel_cm: float, size_cm: float) -> dict:
    lib = default_library()
    g = GridGeometry.centered((size_cm,) * 3, (voxel_cm,) * 3)
    ph = VoxelPhantom.homogeneous(g, lib["water"])
    src = PointSource((0.0, 0.0, 0.0), load_spectrum("i125_ncrp58"))
    tables = load_or_build_tables([lib["water"]])
    ts = TransportSettings(bank_size=bank_size)
    warm = RunSettings(histories=max(2, min(histories // 10, 100_000)), batches=2, seed=1, backend=backend, transport=ts)
    run_simulation(ph, src, warm, tables=tables)
    st = RunSettings(histories=histories, batches=batches, seed=2, backend=backend, transport=ts)
    t0 = time.perf_counter()
    r = run_simulation(ph, src, st, tables=tables)
    wall = time.perf_counter() - t0
    iz, iy, ix = (np.array(g.shape) // 2)
    return {
        "problem": f"I-125 point source, ({size_cm:g} cm)^3 water, ({voxel_cm * 10:g} mm)^3 voxels, {g.n_voxels:,} voxels",
        "backend": r.backend, "device": device_name(r.backend), "histories": r.histories, "batches": r.batches,
        "bank_size": bank_size, "wall_s": wall, "transport_s": r.wall_time_s,
        "histories_per_s": r.histories / r.wall_time_s, "voxel_steps_per_s": r.voxel_steps / r.wall_time_s,
        "steps_per_history": r.voxel_steps / r.histories,
        "rel_unc_at_1cm": float(r.dose.rel_uncertainty[iz, iy, ix + int(round(1.0 / voxel_cm))]),
        "version": __version__, "date": date.today().isoformat(), "python": sys.version.split()[0],
        "numpy": np.__version__,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="all", choices=("numpy", "cupy", "all"))
    p.add_argument("--histories", type=int, default=1_000_000)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--bank-size", type=int, default=1 << 16)
    p.add_argument("--voxel-cm", type=float, default=0.1)
    p.add_argument("--size-cm", type=float, default=20.0)
    p.add_argument("--json", help="write results to this JSON file")
    a = p.parse_args(argv)
    backends = ["numpy", "cupy"] if a.backend == "all" else [a.backend]
    if "cupy" in backends and not cupy_available():
        if a.backend == "cupy":
            print("cupy backend requested but no CUDA device is available", file=sys.stderr)
            return 1
        backends.remove("cupy")
    rows = [bench(b, a.histories, a.batches, a.bank_size, a.voxel_cm, a.size_cm) for b in backends]
    print(f"{'backend':8} {'histories':>12} {'time (s)':>9} {'histories/s':>13} {'voxel steps/s':>14} "
          f"{'steps/hist':>10} {'unc@1cm':>8}  device")
    for r in rows:
        print(f"{r['backend']:8} {r['histories']:12,d} {r['transport_s']:9.2f} {r['histories_per_s']:13,.0f} "
              f"{r['voxel_steps_per_s']:14,.0f} {r['steps_per_history']:10.1f} {r['rel_unc_at_1cm'] * 100:7.2f}%  {r['device']}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
