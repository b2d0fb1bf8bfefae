#!/usr/bin/env python
"""Speed of the deterministic ray integration of the primary kerma around a seed
(``brachymc.validation.primary.primary_kerma``), on the problem of the CI test
``tests/test_primary_kerma.py``: r = 0.6-1.4 cm at theta 35-45 deg and 85-90 deg (mirrored),
8 radial x 3-4 polar x 8 azimuthal nodes, 300 march steps, ``--decays`` decays.

Prints, per seed model, the wall and CPU time of each bin and a checksum of the kerma (the same
decays and points give the same value on any revision); record the figures in docs/benchmarks.md.

    python benchmarks/bench_primary.py [--models oncoseed_6711,best_2301] [--decays 2000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date

import numpy as np


def main(argv=None) -> int:
    from brachymc import default_library
    from brachymc.geometry.seed import load_builtin_seed
    from brachymc.mc.physics import PhysicsSettings
    from brachymc.mc.tables_cache import load_or_build_tables
    from brachymc.sources.seed_source import SeedSource
    from brachymc.validation.primary import bin_points, coefficients_from_tables, primary_kerma

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="oncoseed_6711,best_2301")
    ap.add_argument("--decays", type=int, default=2000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    lib = default_library()
    rows = []
    for key in args.models.split(","):
        model = load_builtin_seed(key, lib)
        src = SeedSource(model)
        tables = load_or_build_tables([lib["water"]] + [lib[m] for m in model.materials], PhysicsSettings(cutoff_kev=1.0))
        coeffs = coefficients_from_tables(model, tables, lib, src.spectrum)
        for lo, hi, n_t in ((35.0, 45.0, 4), (85.0, 90.0, 3)):
            pts, w = bin_points(0.6, 1.4, lo, hi, n_r=8, n_t=n_t, n_phi=8)
            t0, c0 = time.perf_counter(), time.process_time()
            k = primary_kerma(model, pts, src.spectrum, *coeffs, n_decays=args.decays, n_steps=300, seed=77)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            kb = float(np.sum(w * k) / w.sum())
            rows.append(dict(model=key, theta_deg=f"{lo:g}-{hi:g}", points=len(pts), decays=args.decays,
                             wall_s=round(wall, 2), cpu_s=round(cpu, 2), kerma_keV_per_g=kb))
            print(f"{key:16s} theta {lo:g}-{hi:g} deg: {len(pts)} points x {args.decays} decays  "
                  f"{wall:6.2f} s wall  {cpu:6.2f} s CPU  kerma {kb:.10g} keV/g")
    if args.json:
        info = dict(date=str(date.today()), machine=platform.processor() or platform.machine(),
                    cores=os.cpu_count(), rows=rows)
        with open(args.json, "w") as fh:
            json.dump(info, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
