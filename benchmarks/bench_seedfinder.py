#!/usr/bin/env python
"""Seed finder speed: 100 seeds in a 512 x 512 x 100 CT (the timing case of
``brachymc.examples.seed_validation``: 0.5 mm pixels, 1 mm slices, pairs, chains and clumps).

The CT is simulated once; ``find_seeds`` runs once to warm up (numba caches), then the fit
solvers are run alternately (``FinderSettings.fit_solver``: the compiled loop, and SciPy's
``least_squares`` on the same residuals, the reference), ``--repeats`` times each, so that both
see the same machine. Prints wall and CPU time per run and the seeds found; record the figures
in docs/benchmarks.md.

    python benchmarks/bench_seedfinder.py --repeats 3 [--json FILE]
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
    from brachymc.examples.seed_validation import timing_ct
    from brachymc.seedfinder import FinderSettings, find_seeds, score_seeds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--solvers", default="compiled,scipy")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    sim = timing_ct()
    solvers = args.solvers.split(",")
    for s in solvers:
        find_seeds(sim.ct, settings=FinderSettings(fit_solver=s))          # warm-up
    runs = []
    for rep in range(args.repeats):
        for s in solvers:
            w, c = time.perf_counter(), time.process_time()
            res = find_seeds(sim.ct, settings=FinderSettings(fit_solver=s))
            wall, cpu = time.perf_counter() - w, time.process_time() - c
            sc = score_seeds(sim.seeds_mm, sim.directions, res.positions_mm(), res.directions())
            runs.append({"solver": s, "wall_s": wall, "cpu_s": cpu, "stages_s": res.timing_s,
                         "found": sc.n_matched, "false": sc.n_found - sc.n_matched, "load": os.getloadavg()[0]})
            print(f"{s:9s} wall {wall:6.2f} s  CPU {cpu:6.2f} s  found {sc.n_matched}/{sc.n_true} "
                  f"+{sc.n_found - sc.n_matched}  load {os.getloadavg()[0]:.2f}", flush=True)
    for s in solvers:
        w = [r["wall_s"] for r in runs if r["solver"] == s]
        print(f"{s:9s} wall {min(w):.2f}-{max(w):.2f} s (median {np.median(w):.2f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
                       "cores": os.cpu_count(), "shape_zyx": list(sim.ct.hu.shape), "runs": runs}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
