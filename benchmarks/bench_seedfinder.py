#!/usr/bin/env python
"""Seed finder speed: 100 seeds in a 512 x 512 x 100 CT (the timing case of
``brachymc.examples.seed_validation``: 0.5 mm pixels, 1 mm slices, pairs, chains and clumps).

The CT is simulated once (about 6 min on 2 cores; ``--cache FILE`` keeps it for the next run);
``find_seeds`` runs once to warm up (numba caches), then every pair of fit solver
(``FinderSettings.fit_solver``: the compiled loop, and SciPy's ``least_squares`` on the same
residuals, the reference) and thread count (``FinderSettings.workers``) is run alternately,
``--repeats`` times each, so that all see the same machine. Prints wall and CPU time per run and
the seeds found; record the figures in docs/benchmarks.md.

``--case NAME`` times a scan of the validation page instead (``CASES`` or ``HELD_OUT`` of
``brachymc.examples.seed_validation``, e.g. 2.5mm-1.0px-90-h76, whose 21-seed component dominates
its time). ``--normal-min-seeds 8,1000`` compares the compiled fit's two ways of decomposing the
trust-region subproblem (``seedfinder._trf.NORMAL_MIN_SEEDS``: fits of that many seeds or more use
the normal matrix, smaller ones the SVD; 1000 means the SVD everywhere).

    python benchmarks/bench_seedfinder.py --repeats 3 [--solvers compiled,scipy] [--workers 2,1]
        [--normal-min-seeds 8,1000] [--case NAME] [--cache /tmp/timing_ct.pkl] [--json FILE]
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
    from brachymc.examples.seed_validation import CASES, HELD_OUT, simulate, timing_ct
    from brachymc.seedfinder import FinderSettings, _trf, find_seeds, score_seeds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--solvers", default="compiled,scipy")
    ap.add_argument("--workers", default="2", help="thread counts to compare, e.g. 2,1")
    ap.add_argument("--normal-min-seeds", default=str(_trf.NORMAL_MIN_SEEDS),
                    help="values of seedfinder._trf.NORMAL_MIN_SEEDS to compare, e.g. 8,1000")
    ap.add_argument("--case", default=None, help="a validation scan to time instead of the timing CT")
    ap.add_argument("--cache", default=None, help="pickle of the simulated CT: read if it exists, else written")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.cache and os.path.exists(args.cache):
        with open(args.cache, "rb") as fh:
            ct, seeds, dirs = pickle.load(fh)
    else:
        if args.case:
            by_name = {c.name: c for c in CASES + HELD_OUT}
            if args.case not in by_name:
                ap.error(f"--case: no scan {args.case!r}; known: {', '.join(sorted(by_name))}")
            sim = simulate(by_name[args.case])
        else:
            sim = timing_ct()
        ct, seeds, dirs = sim.ct, sim.seeds_mm, sim.directions
        if args.cache:
            with open(args.cache, "wb") as fh:
                pickle.dump((ct, seeds, dirs), fh)
    configs = [(s, int(n), int(q)) for s in args.solvers.split(",") for n in args.workers.split(",")
               for q in args.normal_min_seeds.split(",")]

    def run(s, n, q):
        _trf.NORMAL_MIN_SEEDS = q          # read by fit_seeds at each call
        return find_seeds(ct, settings=FinderSettings(fit_solver=s, workers=n))

    for cfg in configs:
        run(*cfg)                                                                  # warm-up
    runs = []
    for rep in range(args.repeats):
        for s, n, q in configs:
            w, c = time.perf_counter(), time.process_time()
            res = run(s, n, q)
            wall, cpu = time.perf_counter() - w, time.process_time() - c
            sc = score_seeds(seeds, dirs, res.positions_mm(), res.directions())
            runs.append({"solver": s, "workers": n, "normal_min_seeds": q, "wall_s": wall, "cpu_s": cpu,
                         "stages_s": res.timing_s, "found": sc.n_matched, "false": sc.n_found - sc.n_matched,
                         "load": os.getloadavg()[0]})
            stages = ", ".join(f"{k} {v:.2f}" for k, v in res.timing_s.items())
            print(f"{s:9s} {n} thread(s) normal>={q:<4d} wall {wall:6.2f} s  CPU {cpu:6.2f} s  ({stages})  found "
                  f"{sc.n_matched}/{sc.n_true} +{sc.n_found - sc.n_matched}  load {os.getloadavg()[0]:.2f}", flush=True)
    for s, n, q in configs:
        w = [r["wall_s"] for r in runs if (r["solver"], r["workers"], r["normal_min_seeds"]) == (s, n, q)]
        print(f"{s:9s} {n} thread(s) normal>={q:<4d} wall {min(w):.2f}-{max(w):.2f} s (median {np.median(w):.2f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": date.today().isoformat(), "case": args.case or "timing", "machine": platform.processor() or platform.machine(),
                       "cores": os.cpu_count(), "shape_zyx": list(ct.hu.shape), "runs": runs}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
