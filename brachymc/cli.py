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


def _run_config(path: Path, out: Path, args, on_batch=None, prepare=None) -> tuple:
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
    if prepare is not None:
        on_batch = prepare(cfg)
    result = run_simulation(cfg.phantom, cfg.source, r, progress=not args.no_progress, cache=not args.no_cache,
                            on_batch=on_batch)
    dose_path = write_dose_h5(out / "dose.h5", result, cfg.phantom, cfg.text)
    print(f"  {result.histories:,} histories in {result.wall_time_s:.1f} s on {result.backend}: "
          f"{result.histories_per_second:,.0f} histories/s, {result.steps_per_second:,.0f} voxel steps/s",
          file=sys.stderr)
    print(f"  wrote {dose_path}", file=sys.stderr)
    return cfg, result


def cmd_simulate(args) -> int:
    _run_config(Path(args.config), Path(args.out), args)
    return 0


DEMO_DEPTHS_CM = (0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.4, 3.0)


def cmd_demo(args) -> int:
    """Run the built-in example and print the dose along +z, averaged over the 3 x 3 voxels
    around the axis, with the standard error of that average over batches."""
    rows: dict[int, list[tuple[float, float]]] = {}
    sel = {}

    def prepare(cfg):
        g = cfg.phantom.geometry
        ix = int(np.argmin(np.abs(g.centers(0))))
        iy = int(np.argmin(np.abs(g.centers(1))))
        for z in DEMO_DEPTHS_CM:
            iz = int(np.argmin(np.abs(g.centers(2) - z)))
            sel[iz] = (slice(iz, iz + 1), slice(iy - 1, iy + 2), slice(ix - 1, ix + 2))

        def on_batch(b, values):
            for iz, s in sel.items():
                prim = values["primary"][s].mean() if "primary" in values else np.nan
                rows.setdefault(iz, []).append((values["dose"][s].mean(), prim))
        return on_batch

    cfg, result = _run_config(config_dir() / "examples" / "demo_slab.toml", Path(args.out), args, prepare=prepare)
    g = result.geometry
    zc = g.centers(2)
    names = cfg.phantom.material_names()
    src = np.asarray(cfg.source.bounding_points()[0])
    ix = int(np.argmin(np.abs(result.geometry.centers(0))))
    print(f"\n{cfg.title}: dose per history along +z from the source")
    print("(mean over the 3 x 3 voxels around the axis; uncertainty = standard error over batches)")
    print(f"{'z (cm)':>7} {'medium':>14} {'D (Gy/hist)':>12} {'unc %':>6} {'D r^2 rel.':>10} {'primary %':>9}")
    ref = None
    for iz, vals in rows.items():
        v = np.array(vals)
        d = v[:, 0].mean()
        u = v[:, 0].std(ddof=1) / np.sqrt(len(v)) / d * 100 if d > 0 else float("nan")
        s = sel[iz]
        zz, yy, xx = np.meshgrid(zc[s[0]], g.centers(1)[s[1]], g.centers(0)[s[2]], indexing="ij")
        inv_r2 = np.mean(1.0 / ((xx - src[0]) ** 2 + (yy - src[1]) ** 2 + (zz - src[2]) ** 2))
        dz2 = d / inv_r2
        ref = dz2 if ref is None else ref
        prim = v[:, 1].mean() / d * 100 if d > 0 else float("nan")
        med = names[cfg.phantom.material_index[iz, ix, ix]]
        print(f"{zc[iz]:7.2f} {med:>14} {d:12.4e} {u:6.2f} {dz2 / ref:10.3f} {prim:9.1f}")
    print("D r^2 rel.: dose / <1/r^2> relative to the first row (1 without attenuation, scatter or bone).")
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


def cmd_validate_tg43(args) -> int:
    from brachymc.geometry.seed import load_builtin_seed, load_seed_model
    from brachymc.materials import default_library
    from brachymc.validation.tg43_mc import TG43RunSettings, run_tg43

    lib = default_library()
    model = load_seed_model(args.seed, lib) if args.seed.endswith(".toml") else load_builtin_seed(args.seed, lib)
    histories = args.histories or (300_000 if args.quick else 20_000_000)
    sk = args.sk_histories or (2_000_000 if args.quick else histories)
    settings = TG43RunSettings(histories=histories, sk_histories=sk, batches=args.batches, seed=args.rng_seed,
                               backend=args.backend or "auto")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = run_tg43(model, settings, progress=not args.no_progress)
    res.settings["quick"] = bool(args.quick)
    path = out / f"tg43_{model.key}.json"
    res.to_json(path)
    print(f"{model.name}: Lambda = {res.lambda_cGy_per_h_per_U:.4f} cGy/h/U (+- {100 * res.lambda_rel_unc:.2f} %), "
          f"S_K = {res.sk_per_history_Gy_cm2:.4e} Gy cm2/history, D(1 cm, 90) +- {100 * res.dose_1cm_90_rel_unc:.2f} %, "
          f"mean energy leaving the capsule {res.mean_energy_leaving_kev:.2f} keV; {res.run_time_s:.0f} s on {res.device}")
    print(f"wrote {path}")
    if not args.no_report:
        from brachymc.validation.report import write_tg43_report

        rep = write_tg43_report(res, out / "report.pdf", reference_dir=args.reference)
        print(f"wrote {rep}")
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

    v = sub.add_parser("validate", help="validation runs")
    vsub = v.add_subparsers(dest="what", required=True)
    t = vsub.add_parser("tg43", help="TG-43 parameters of a seed model in water, and a commissioning report")
    t.add_argument("--seed", required=True, help="built-in seed model key (configs/seeds) or a seed .toml file")
    t.add_argument("--histories", type=int, help="water-run histories (default 2e7; 3e5 with --quick)")
    t.add_argument("--sk-histories", type=int, help="in-vacuo (air-kerma strength) histories")
    t.add_argument("--batches", type=int, default=10)
    t.add_argument("--rng-seed", type=int, default=43)
    t.add_argument("--backend", choices=("numpy", "cupy", "auto"))
    t.add_argument("--out", required=True)
    t.add_argument("--quick", action="store_true", help="CI-sized run")
    t.add_argument("--reference", help="folder with the published reference data (default ../shared/reference)")
    t.add_argument("--no-report", action="store_true", help="write the JSON only")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_validate_tg43)

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
