"""Command-line interface: ``brachymc simulate | demo | physics | materials``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from brachymc import __version__
from brachymc._paths import config_dir
from brachymc.errors import BrachyMCError


def _add_run_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--histories", type=int, help="override [run] histories")
    p.add_argument("--batches", type=int, help="override [run] batches")
    p.add_argument("--seed", type=int, help="override [run] seed")
    p.add_argument("--backend", choices=("numpy", "cupy", "auto"), help="override [run] backend")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-cache", action="store_true", help="rebuild physics tables instead of using the cache")


def _run_config(path: Path, out: Path, args) -> tuple:
    from brachymc.io.config import load_config
    from brachymc.io.dose_h5 import write_dose_h5
    from brachymc.mc.simulation import run_simulation

    cfg = load_config(path, {"histories": args.histories, "batches": args.batches, "seed": args.seed,
                             "backend": args.backend})
    out.mkdir(parents=True, exist_ok=True)
    r = cfg.run
    print(f"brachymc {__version__}: {cfg.title}", file=sys.stderr)
    print(f"  phantom {cfg.phantom.geometry.shape[::-1]} voxels (x, y, z) of {cfg.phantom.geometry.spacing} cm, "
          f"materials: {', '.join(cfg.phantom.material_names())}", file=sys.stderr)
    print(f"  {r.histories_per_batch * r.batches:,} histories in {r.batches} batches, seed {r.seed}, "
          f"backend {r.backend}", file=sys.stderr)
    result = run_simulation(cfg.phantom, cfg.source, r, progress=not args.no_progress, cache=not args.no_cache)
    dose_path = write_dose_h5(out / "dose.h5", result, cfg.phantom, cfg.text)
    print(f"  {result.histories:,} histories in {result.wall_time_s:.1f} s on {result.backend}: "
          f"{result.histories_per_second:,.0f} histories/s, {result.steps_per_second:,.0f} voxel steps/s",
          file=sys.stderr)
    print(f"  wrote {dose_path}", file=sys.stderr)
    return cfg, result


def cmd_simulate(args) -> int:
    _run_config(Path(args.config), Path(args.out), args)
    return 0


def cmd_demo(args) -> int:
    cfg, result = _run_config(config_dir() / "examples" / "demo_slab.toml", Path(args.out), args)
    g = result.geometry
    ix = int(np.argmin(np.abs(g.centers(0))))
    iy = int(np.argmin(np.abs(g.centers(1))))
    zc = g.centers(2)
    names = cfg.phantom.material_names()
    print(f"\nDose per history along +z from the source ({cfg.title}):")
    print(f"{'z (cm)':>7} {'medium':>14} {'D (Gy/hist)':>12} {'unc %':>6} {'D r^2 / D r^2(0.5 cm)':>22} {'primary %':>9}")
    ref = None
    for z in (0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0):
        iz = int(np.argmin(np.abs(zc - z)))
        d = result.dose.mean[iz, iy, ix]
        u = result.dose.rel_uncertainty[iz, iy, ix] * 100
        dr2 = d * zc[iz] ** 2
        ref = dr2 if ref is None else ref
        prim = result.primary.mean[iz, iy, ix] / d * 100 if result.primary is not None and d > 0 else float("nan")
        med = names[cfg.phantom.material_index[iz, iy, ix]]
        print(f"{zc[iz]:7.2f} {med:>14} {d:12.4e} {u:6.2f} {dr2 / ref:22.3f} {prim:9.1f}")
    return 0


def cmd_physics(args) -> int:
    from brachymc.io.tables_cache import load_or_build_tables
    from brachymc.materials import default_library
    from brachymc.mc.physics import PhysicsSettings

    lib = default_library(args.materials or [])
    try:
        energies = [float(x) for x in args.energies_kev.split(",") if x.strip()]
    except ValueError:
        raise BrachyMCError(f"--energies-kev: expected comma-separated numbers, got {args.energies_kev!r}") from None
    settings = PhysicsSettings()
    bad = [e for e in energies if not settings.emin_kev <= e <= settings.emax_kev]
    if not energies or bad:
        raise BrachyMCError(f"--energies-kev: energies must lie in {settings.emin_kev}-{settings.emax_kev} keV, got {bad or 'none'}")
    mat = lib[args.material]
    t = load_or_build_tables([mat], settings, cache=not args.no_cache)
    rows = []
    for e in energies:
        row = {"material": mat.name, "energy_kev": e}
        for key, q in (("mu_rho", "total"), ("muen_rho", "muen"), ("photo", "photo"), ("incoh", "incoh"), ("coh", "coh")):
            row[key] = float(t.interpolate(q, 0, e))
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{mat.name} ({mat.density} g/cm3): {mat.composition_string()}")
        print(f"{'E (keV)':>8} {'mu/rho':>11} {'mu_en/rho':>11} {'photo':>11} {'incoh':>11} {'coh':>11}  (cm2/g)")
        for r in rows:
            print(f"{r['energy_kev']:8.3f} {r['mu_rho']:11.4e} {r['muen_rho']:11.4e} {r['photo']:11.4e} "
                  f"{r['incoh']:11.4e} {r['coh']:11.4e}")
    return 0


def cmd_materials(args) -> int:
    from brachymc.materials import default_library

    lib = default_library(args.materials or [])
    for name in lib:
        m = lib[name]
        print(f"{name:28s} {m.density:9.5g} g/cm3  {m.category:9s} {m.composition_string()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brachymc", description="Monte Carlo dose engine for I-125 seed brachytherapy")
    p.add_argument("--version", action="version", version=f"brachymc {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log warnings and details")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="run a phantom + source described in a TOML run file")
    s.add_argument("config", help="run file (TOML)")
    s.add_argument("--out", required=True, help="output folder (dose.h5 is written there)")
    _add_run_overrides(s)
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="run the built-in example and print a depth-dose table")
    d.add_argument("--out", required=True, help="output folder")
    _add_run_overrides(d)
    d.set_defaults(func=cmd_demo)

    ph = sub.add_parser("physics", help="print interaction coefficients of a material")
    ph.add_argument("--material", required=True)
    ph.add_argument("--energies-kev", required=True, help="comma-separated energies, e.g. 20,30,40")
    ph.add_argument("--json", action="store_true", help="JSON list of objects")
    ph.add_argument("--materials", action="append", help="extra material TOML file(s)")
    ph.add_argument("--no-cache", action="store_true")
    ph.set_defaults(func=cmd_physics)

    m = sub.add_parser("materials", help="list the material library")
    m.add_argument("--materials", action="append", help="extra material TOML file(s)")
    m.set_defaults(func=cmd_materials)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except BrachyMCError as exc:
        print(f"brachymc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brachymc: interrupted; no output was written for the unfinished run", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
