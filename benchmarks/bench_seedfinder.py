#!/usr/bin/env python
"""Seed finder speed: 100 seeds in a 512 x 512 x 100 CT (the timing case of
``brachymc.examples.seed_validation``: 0.5 mm pixels, 1 mm slices, pairs, chains and clumps).

The CT is simulated once (about 6 min on 2 cores; ``--cache FILE`` keeps it for the next run);
``find_seeds`` runs once to warm up (numba caches), then every pair of fit solver
(``FinderSettings.fit_solver``: the compiled loop, and SciPy's ``least_squares`` on the same
residuals, the reference) and thread count (``FinderSettings.workers``) is run alternately,
``--repeats`` times each, so that all see the same machine. Prints wall and CPU time per run and
the seeds found; record the figures in docs/benchmarks.md.

    python benchmarks/bench_seedfinder.py --repeats 3 [--solvers compiled,scipy] [--workers 2,1]
        [--cache /tmp/timing_ct.pkl] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
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
    ap.add_argument("--workers", default="2", help="thread counts to compare, e.g. 2,1")
    ap.add_argument("--cache", default=None, help="pickle of the simulated CT: read if it exists, else written")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.cache and os.path.exists(args.cache):
        with open(args.cache, "rb") as fh:
            ct, seeds, dirs = pickle.load(fh)
    else:
        sim = timing_ct()
        ct, seeds, dirs = sim.ct, sim.seeds_mm, sim.directions
        if args.cache:
            with open(args.cache, "wb") as fh:
                pickle.dump((ct, seeds, dirs), fh)
    configs = [(s, int(n)) for s in args.solvers.split(",") for n in args.workers.split(",")]
    for s, n in configs:
        find_seeds(ct, settings=FinderSettings(fit_solver=s, workers=n))          # warm-up
    runs = []
    for rep in range(args.repeats):
        for s, n in configs:
            w, c = time.perf_counter(), time.process_time()
            res = find_seeds(ct, settings=FinderSettings(fit_solver=s, workers=n))
            wall, cpu = time.perf_counter() - w, time.process_time() - c
            sc = score_seeds(seeds, dirs, res.positions_mm(), res.directions())
            runs.append({"solver": s, "workers": n, "wall_s": wall, "cpu_s": cpu, "stages_s": res.timing_s,
                         "found": sc.n_matched, "false": sc.n_found - sc.n_matched, "load": os.getloadavg()[0]})
            stages = ", ".join(f"{k} {v:.2f}" for k, v in res.timing_s.items())
            print(f"{s:9s} {n} thread(s)  wall {wall:6.2f} s  CPU {cpu:6.2f} s  ({stages})  found "
                  f"{sc.n_matched}/{sc.n_true} +{sc.n_found - sc.n_matched}  load {os.getloadavg()[0]:.2f}", flush=True)
    for s, n in configs:
        w = [r["wall_s"] for r in runs if (r["solver"], r["workers"]) == (s, n)]
        print(f"{s:9s} {n} thread(s)  wall {min(w):.2f}-{max(w):.2f} s (median {np.median(w):.2f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
                       "cores": os.cpu_count(), "shape_zyx": list(ct.hu.shape), "runs": runs}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
