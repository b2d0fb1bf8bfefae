"""Command-line interface: ``brachymc run | demo | simulate | validate | seeds | physics | materials | cache``.

``validate`` has ``tg43``, ``primary``, ``budget``, ``rescore-sk`` and ``report``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


from brachymc import __version__
from brachymc.errors import BrachyMCError


def _add_engine(p: argparse.ArgumentParser, where: str | None = None) -> None:
    of = f"override {where} " if where else ""
    p.add_argument("--engine", choices=("auto", "kernel", "array"),
                   help=f"{of}transport engine: kernel (one C++/CUDA source, CPU or GPU), array (NumPy/CuPy "
                        "reference) or auto (the kernel where it builds)")
    p.add_argument("--threads", type=int, help=f"{of}CPU threads of the kernel engine (0: one per core)")


def _add_run_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--histories", type=int, help="override [run] histories")
    p.add_argument("--batches", type=int, help="override [run] batches")
    p.add_argument("--seed", type=int, help="override [run] seed")
    p.add_argument("--backend", choices=("numpy", "cupy", "auto"), help="override [run] backend")
    _add_engine(p, "[run]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-cache", action="store_true", help="rebuild physics tables instead of using the cache")


def _add_patient_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--histories", type=int, help="override [simulation] histories (upper bound)")
    p.add_argument("--target-uncertainty", type=float, help="override [simulation] target_uncertainty (e.g. 0.02)")
    p.add_argument("--time-budget", type=float, help="override [simulation] time_budget_s (s of transport)")
    p.add_argument("--seed", type=int, help="override [simulation] seed")
    p.add_argument("--backend", choices=("numpy", "cupy", "auto"), help="override [simulation] backend")
    _add_engine(p, "[simulation]")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT/checkpoint.h5")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, help="run batches on a local Dask cluster of N worker processes "
                                                "(one per GPU with dask-cuda and the cupy backend)")
    p.add_argument("--scheduler", help="run batches on an existing Dask cluster (e.g. tls://host:8786)")
    p.add_argument("--tls-ca-file", help="CA file for a TLS scheduler")
    p.add_argument("--tls-cert", help="client certificate for a TLS scheduler")
    p.add_argument("--tls-key", help="client key for a TLS scheduler")


def _check_workers(args) -> None:
    w = getattr(args, "workers", None)
    if w is not None and w < 1:
        raise BrachyMCError(f"--workers: must be a whole number >= 1 (worker processes), got {w}")


def _dask_client(args):
    _check_workers(args)
    if not args.workers and not args.scheduler:
        return None
    from brachymc.pipeline.distributed import make_client

    return make_client(workers=args.workers, scheduler=args.scheduler, backend=args.backend or "numpy",
                       tls_ca_file=args.tls_ca_file, tls_cert=args.tls_cert, tls_key=args.tls_key)


def _run_config(path: Path, out: Path, args, on_batch=None, prepare=None) -> tuple:
    from brachymc.mc.runfile import load_config
    from brachymc.io.dose_h5 import write_dose_h5
    from brachymc.mc.simulation import run_simulation

    cfg = load_config(path, {"histories": args.histories, "batches": args.batches, "seed": args.seed,
                             "backend": args.backend, "engine": args.engine, "threads": args.threads})
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
    eng = result.engine.get("engine", "?") + (f" ({result.engine['build']})" if "build" in result.engine else "")
    print(f"  {result.histories:,} histories in {result.wall_time_s:.1f} s on {result.backend}, {eng} engine: "
          f"{result.histories_per_second:,.0f} histories/s, {result.steps_per_second:,.0f} voxel steps/s",
          file=sys.stderr)
    print(f"  wrote {dose_path}", file=sys.stderr)
    return cfg, result


def cmd_simulate(args) -> int:
    _run_config(Path(args.config), Path(args.out), args)
    return 0


def _print_patient_result(res) -> None:
    s = res.summary
    st = s.get("statistics", {})
    unc = s.get("target_mean_rel_uncertainty")
    print(f"\n{s['n_seeds']} seeds ({s['seed_model']}), {s['histories']:,} histories in {s['batches']} batches, "
          f"{s['transport_time_s']:.1f} s transport on {s['backend']} ({s['histories_per_second']:,.0f} histories/s); "
          f"stopped by {s['stopped_by']}" + (f"; mean uncertainty in the target {100 * unc:.2f} %" if unc else ""))
    if st.get("resumed"):
        print(f"resumed from a checkpoint of {st['checkpoint_batches']} batches"
              + ("; the run had already stopped, nothing more was transported" if st.get("checkpoint_had_stopped")
                 else f"; continued with batch {st['continued_from_batch']}"))
    doses = s.get("doses", {})
    print(f"dose: {s['dose_unit']}" + (f"; prescription {s['prescription_gy']:g} Gy" if s["prescription_gy"] else "")
          + (f"; MC = {doses['mc']['quantity']}, TG-43 = {doses['tg43']['quantity']}" if "mc" in doses else ""))
    if res.metrics:
        print(f"\n{'ROI':<14} {'dose':>11} {'vol cc':>7} {'D90':>8} {'D100':>8} {'Dmean':>8} {'Dmax*':>8} {'D0.1cc':>8} "
              f"{'D2cc':>8} {'V100 %':>7} {'V150 %':>7} {'V200 %':>7}")
        fmt = lambda v, w=8, p=1: f"{v:{w}.{p}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"  # noqa: E731
        for name, m in res.metrics.items():
            for k, label in (("mc", "MC"), ("tg43", "TG-43"), ("tg43_whole", "TG-43 whole")):
                x = m.get(k)
                if not x:
                    continue
                print(f"{name:<14} {label:>11} {fmt(x['volume_cc'], 7, 2)} {fmt(x['D90_Gy'])} {fmt(x['D100_Gy'])} "
                      f"{fmt(x['Dmean_Gy'])} {fmt(x.get('Dmax_Gy'))} {fmt(x.get('D0.1cc_Gy'))} {fmt(x.get('D2cc_Gy'))} "
                      f"{fmt(x.get('V100_percent'), 7)} {fmt(x.get('V150_percent'), 7)} {fmt(x.get('V200_percent'), 7)}")
        sig = [f"{n} D90 {m['mc_unc']['D90_Gy']:.2g} Gy" for n, m in res.metrics.items()
               if (m.get("mc_unc") or {}).get("D90_Gy") is not None]
        if sig:
            print("MC 1-sigma (batch jackknife): " + ", ".join(sig) + "; Dmax*: hottest voxel wholly inside the ROI; "
                  "TG-43 whole: the whole ROI where the grid covers part of it")
    why = {"empty": "empty", "outside_ct": "outside the CT", "excluded": "not selected"}
    skipped = [f"{r['name']} ({why[r['status']]})" for r in s.get("rois", []) if r["status"] in why]
    if skipped:
        print("ROIs without a DVH: " + ", ".join(skipped))
    if res.tissue_ratios:
        print("\nMC / TG-43 (dose-weighted) by tissue: " + ", ".join(
            f"{k} {v['mean_ratio']:.3f}" for k, v in res.tissue_ratios.items()))
    if res.gamma:
        print("gamma pass rates (MC reference): " + ", ".join(
            f"{g['criterion']} {g['mode']} {g['pass_rate_percent']:.1f} %" for g in res.gamma))
    print("\nwrote: " + ", ".join(sorted(Path(p).name for p in res.outputs.values())))


_SIMULATION_OPTIONS = (("histories", "histories"), ("seed", "seed"), ("backend", "backend"), ("engine", "engine"),
                       ("threads", "threads"), ("time_budget_s", "time_budget"),
                       ("target_uncertainty", "target_uncertainty"))


def _run_overrides(cfg, args):
    """The run file's [simulation] with the command-line options, checked as the file's values are."""
    from brachymc.pipeline.config import with_overrides

    return with_overrides(cfg, **{k: getattr(args, a, None) for k, a in _SIMULATION_OPTIONS})


def _check_run_options(args) -> None:
    """The numeric command-line options alone (before anything is written)."""
    from brachymc.pipeline.config import PatientRunConfig, CTInput, PlanInput

    dummy = PatientRunConfig(ct=CTInput(), plan=PlanInput(file=Path(".")))
    _run_overrides(dummy, args)
    _check_workers(args)


def cmd_run(args) -> int:
    from brachymc.pipeline.config import load_run_config
    from brachymc.pipeline.patient import check_output_folder, run_patient

    cfg = _run_overrides(load_run_config(args.config), args)
    check_output_folder(Path(args.out), args.resume)
    _check_workers(args)
    client = _dask_client(args)
    try:
        res = run_patient(cfg, Path(args.out), resume=args.resume, progress=not args.no_progress,
                          echo=lambda m: print(m, file=sys.stderr), client=client)
    finally:
        if client is not None:
            from brachymc.pipeline.distributed import close_client

            close_client(client)
    _print_patient_result(res)
    return 0


def cmd_demo(args) -> int:
    """Generate the built-in spine case, run the whole pipeline on it and print the DVH table."""
    from brachymc.examples.demo import demo_config, write_demo_case
    from brachymc.pipeline.patient import check_output_folder, run_patient

    out = Path(args.out)
    check_output_folder(out, args.resume)
    _check_run_options(args)
    mode = args.mode
    if mode == "auto":
        from brachymc.backend import cupy_available

        mode = "full" if (args.backend in (None, "auto", "cupy") and cupy_available()) else "cpu"
    print(f"brachymc {__version__} demo ({mode} mode): writing the synthetic spine case to {out / 'case'}",
          file=sys.stderr)
    run_file = write_demo_case(out / "case", mode=mode)
    cfg = _run_overrides(demo_config(run_file), args)
    client = _dask_client(args)
    try:
        res = run_patient(cfg, out, resume=args.resume, progress=not args.no_progress,
                          echo=lambda m: print(m, file=sys.stderr), client=client)
    finally:
        if client is not None:
            from brachymc.pipeline.distributed import close_client

            close_client(client)
    _print_patient_result(res)
    return 0


def cmd_physics(args) -> int:
    from brachymc.mc.tables_cache import load_or_build_tables
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


def cmd_cache(args) -> int:
    """``brachymc cache info``: the cache folder and what it holds; ``clear``: remove brachymc's entries."""
    from brachymc._paths import cache_dir
    from brachymc.cache import KINDS, cache_entries, clear_cache, format_size

    folder = cache_dir()
    if args.action == "clear":
        kinds = tuple(args.kind) if args.kind else tuple(KINDS)
        removed = clear_cache(kinds)
        freed = sum(e.size_bytes for e in removed)
        print(f"brachymc cache {folder}: removed {len(removed)} entries ({format_size(freed)}) of "
              f"{', '.join(kinds)}")
        return 0
    entries = cache_entries()
    print(f"brachymc cache: {folder}" + ("" if folder.is_dir() else " (does not exist yet)"))
    print("  (BRACHYMC_CACHE_DIR moves it; `brachymc cache clear [--kind K]` empties it; everything is rebuilt "
          "on demand)")
    for kind, (desc, _) in KINDS.items():
        es = [e for e in entries if e.kind == kind]
        print(f"  {kind:<8} {len(es):4d} entries {format_size(sum(e.size_bytes for e in es)):>10}  {desc}")
    print(f"  {'total':<8} {len(entries):4d} entries {format_size(sum(e.size_bytes for e in entries)):>10}")
    return 0


def cmd_materials(args) -> int:
    from brachymc.materials import default_library

    lib = default_library(args.materials or [], args.egsnrc or [])
    for name in lib:
        m = lib[name]
        also = f"  (also: {', '.join(m.aliases)})" if m.aliases and args.aliases else ""
        print(f"{name:28s} {m.density:9.5g} g/cm3  {m.category:10s} {m.composition_string()}{also}")
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
                               backend=args.backend or "auto", engine=args.engine or "auto",
                               threads=args.threads or 0)
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

        primary = _sibling_primary(out, model.key)
        rep = write_tg43_report(res, out / "report.pdf", reference_dir=args.reference, primary=primary)
        print(f"wrote {rep}" + (" (with the primary-kerma check)" if primary else ""))
    return 0


def _sibling_primary(folder: Path, key: str):
    """The primary-check result DIR/primary_KEY.json, if `brachymc validate primary` wrote one there."""
    from brachymc.validation.primary_check import PrimaryCheckResult

    p = folder / f"primary_{key}.json"
    return PrimaryCheckResult.from_json(p) if p.is_file() else None


def cmd_validate_report(args) -> int:
    from brachymc.validation.primary_check import PrimaryCheckResult
    from brachymc.validation.report import write_tg43_report
    from brachymc.validation.tg43_mc import TG43Result

    src = Path(args.tg43)
    res = TG43Result.from_json(src)
    primary = PrimaryCheckResult.from_json(args.primary) if args.primary else _sibling_primary(src.parent, res.seed)
    out = Path(args.out) if args.out else src.parent / "report.pdf"
    rep = write_tg43_report(res, out, reference_dir=args.reference, primary=primary)
    print(f"wrote {rep}" + (" (with the primary-kerma check)" if primary else ""))
    return 0


def cmd_validate_primary(args) -> int:
    from brachymc.geometry.seed import load_builtin_seed, load_seed_model
    from brachymc.materials import default_library
    from brachymc.validation.primary_check import PrimaryCheckSettings, run_primary_check

    lib = default_library()
    model = load_seed_model(args.seed, lib) if args.seed.endswith(".toml") else load_builtin_seed(args.seed, lib)
    kw = dict(seed=args.rng_seed, backend=args.backend or "numpy", engine=args.engine or "auto",
              threads=args.threads or 0)
    if args.histories:
        kw["histories"] = args.histories
    if args.decays:
        kw["n_decays"] = args.decays
    if args.radii:
        kw["radii_cm"] = tuple(float(x) for x in args.radii.split(","))
    settings = PrimaryCheckSettings.quick(**kw) if args.quick else PrimaryCheckSettings(**kw)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = run_primary_check(model, settings, lib)
    res.settings["quick"] = bool(args.quick)
    path = res.to_json(out / f"primary_{model.key}.json")
    print(f"{model.name}: primary kerma, MC vs ray integration (r +- {settings.r_half_width_cm} cm, "
          f"theta +- {settings.theta_half_width_deg} deg)")
    print(res.markdown())
    print(f"chi2 = {res.chi2:.1f} for {res.n_bins} bins, max |z| = {res.max_abs_z:.2f}; {res.run_time_s:.0f} s")
    print(f"wrote {path}")
    return 0


def cmd_validate_rescore_sk(args) -> int:
    from brachymc.geometry.seed import load_builtin_seed
    from brachymc.materials import default_library
    from brachymc.validation.tg43_mc import TG43Result, rescore_sk

    src = Path(args.tg43)
    res = TG43Result.from_json(src)
    model = load_builtin_seed(args.seed or res.seed, default_library())
    new = rescore_sk(res, model, sk_histories=args.histories, batches=args.batches, seed=args.rng_seed,
                     backend=args.backend or "auto", progress=not args.no_progress)
    for out in [Path(args.out) if args.out else src] + [Path(p) for p in (args.also or [])]:
        new.to_json(out)
        print(f"wrote {out}")
    b = new.settings["sk_rescored"]["before"]
    print(f"{model.name}: S_K per history {b['sk_per_history_Gy_cm2']:.4e} ({b['sk_detector']}) -> "
          f"{new.sk_per_history_Gy_cm2:.4e} Gy cm2 (+- {100 * new.sk_rel_unc:.2f} %, {new.settings['sk_detector']}); "
          f"Lambda {b['lambda_cGy_per_h_per_U']:.4f} -> {new.lambda_cGy_per_h_per_U:.4f} cGy/h/U "
          f"(+- {100 * new.lambda_rel_unc:.2f} %)")
    if not args.no_report:
        from brachymc.validation.report import write_tg43_report

        target = Path(args.out) if args.out else src
        rep = write_tg43_report(new, target.parent / "report.pdf", reference_dir=args.reference,
                                primary=_sibling_primary(target.parent, model.key))
        print(f"wrote {rep}")
    return 0


def cmd_validate_budget(args) -> int:
    from brachymc.geometry.seed import load_builtin_seed, load_seed_model
    from brachymc.materials import default_library
    from brachymc.validation.photon_budget import BudgetSettings, run_photon_budget

    lib = default_library()
    model = load_seed_model(args.seed, lib) if args.seed.endswith(".toml") else load_builtin_seed(args.seed, lib)
    if args.egsnrc_sampling:
        from brachymc.validation.clrp import with_egsnrc_sampling

        model = with_egsnrc_sampling(model)
    kw = dict(seed=args.rng_seed, backend=args.backend or "numpy", detector=args.detector)
    if args.histories:
        kw["histories"] = args.histories
    if args.decays:
        kw["n_decays"] = args.decays
    settings = BudgetSettings.quick(**kw) if args.quick else BudgetSettings(**kw)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = run_photon_budget(model, settings, lib)
    res.settings["quick"] = bool(args.quick)
    res.settings["egsnrc_sampling"] = bool(args.egsnrc_sampling)
    if not args.no_nee:
        from brachymc.validation.sk_check import run_sk_check

        n = args.nee_histories or (400_000 if args.quick else 4_000_000)
        chk = run_sk_check(model, args.detector, histories=n, seed=args.rng_seed + 7, library=lib)
        res.extra["sk_check"] = chk.to_dict()
    suffix = "_egsnrc" if args.egsnrc_sampling else ""
    path = res.to_json(out / f"budget_{model.key}{suffix}.json")
    print(res.markdown())
    if "sk_check" in res.extra:
        c = res.extra["sk_check"]
        print(f"\nS_K scorer vs next-event estimator ({c['detector']['name']}, {c['histories']:.3g} histories): "
              f"{c['scorer']:.5e} (+- {100 * c['scorer_rel_unc']:.2f} %) vs {c['nee']:.5e} (+- {100 * c['nee_rel_unc']:.2f} %), "
              f"z = {c['z']:+.2f}; point on the transverse axis (NEE) {c['nee_point']:.5e} (+- {100 * c['nee_point_rel_unc']:.2f} %)")
    print(f"{res.run_time_s:.0f} s; wrote {path}")
    return 0


def _read_ct_input(path: str):
    """A CT from a DICOM series folder or an .h5/.npz volume (errors name the file)."""
    from brachymc.errors import ConfigError

    p = Path(path)
    if p.is_dir():
        from brachymc.io.dicom_ct import read_ct_series

        return read_ct_series(p)
    if not p.exists():
        raise ConfigError(f"{p}: CT not found (give a DICOM series folder or an .h5/.npz volume)")
    from brachymc.io.volume import read_ct_volume

    return read_ct_volume(p)


def cmd_seeds_find(args) -> int:
    """Find the seeds in a post-implant CT; write CSV / TOML / RT Plan and optionally a QA figure."""
    from datetime import datetime

    from brachymc.errors import ConfigError
    from brachymc.seedfinder import find_seeds
    from brachymc.seedfinder.output import output_format, write_seeds

    out = Path(args.out)
    kind = output_format(out)                       # refuse a bad --out before reading anything
    if args.qa and Path(args.qa).suffix.lower() != ".png":
        raise ConfigError(f"{args.qa}: --qa must be a .png file")
    if args.expected is not None and args.expected < 1:
        raise ConfigError(f"--expected: must be a whole number >= 1, got {args.expected}")
    sk = args.sk_U
    if sk is None and args.activity_mCi is not None:
        from brachymc.sources.strength import apparent_activity_to_sk

        sk = float(apparent_activity_to_sk(args.activity_mCi))
    if sk is not None and not sk >= 0:
        raise ConfigError(f"--sk-U / --activity-mCi: strength must be >= 0, got {sk}")
    if kind != "csv" and sk is None:
        raise ConfigError(f"{out}: a {'TOML plan' if kind == 'toml' else 'DICOM RT Plan'} needs the seeds' strength: "
                          "give --sk-U or --activity-mCi (or write a .csv)")
    ref = None
    if args.reference_date:
        try:
            ref = datetime.fromisoformat(args.reference_date)
        except ValueError:
            raise ConfigError(f"--reference-date: not an ISO date/time: {args.reference_date!r}") from None
    ct = _read_ct_input(args.ct)
    roi_mask, roi_name = None, "ROI"
    if args.roi:
        rs, sep, roi_name = args.roi.rpartition(":")
        if not sep or not rs or not roi_name:
            raise ConfigError(f"--roi: expected RTSTRUCT:NAME, got {args.roi!r}")
        from brachymc.geometry.structures import rasterise
        from brachymc.io.dicom_rtstruct import read_rtstruct

        sset = read_rtstruct(rs, frame_of_reference_uid=ct.frame_of_reference_uid or None)
        roi_mask = rasterise(sset[roi_name], ct.geometry, subsamples=1)
    res = find_seeds(ct, model=args.model, expected=args.expected, roi_mask=roi_mask, roi_name=roi_name)
    write_seeds(out, res, ct, sk_U=sk, model=args.model, reference_date=ref)
    written = [str(out)]
    if args.qa:
        from brachymc.seedfinder.qa import plot_seed_qa

        written.append(str(plot_seed_qa(args.qa, ct, res)))
    print(res.summary())
    print(f"seed search {res.timing_s.get('total', 0.0):.1f} s; wrote " + ", ".join(written))
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

    r = sub.add_parser("run", help="patient dose: CT + seed plan + structures described in a TOML run file")
    r.add_argument("config", help="run file (TOML; see README 'Patient runs')")
    r.add_argument("--out", required=True, help="output folder")
    _add_patient_overrides(r)
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="generate the built-in spine case, run it and print the DVH table")
    d.add_argument("--out", required=True, help="output folder")
    d.add_argument("--mode", choices=("auto", "full", "cpu", "ci"), default="auto",
                   help="full: 1 mm grid to 2 %% in the GTV (GPU); cpu: coarser grid, under 5 min on 2 cores; "
                        "ci: tiny test run; auto: full with a GPU, else cpu")
    _add_patient_overrides(d)
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
    _add_engine(t)
    t.add_argument("--out", required=True)
    t.add_argument("--quick", action="store_true", help="CI-sized run")
    t.add_argument("--reference", help="folder with the published reference data (default: the copy shipped in configs/reference)")
    t.add_argument("--no-report", action="store_true", help="write the JSON only")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_validate_tg43)
    pc = vsub.add_parser("primary", help="independent check: MC primary kerma around a seed vs deterministic "
                                         "ray integration through its solids")
    pc.add_argument("--seed", required=True, help="built-in seed model key (configs/seeds) or a seed .toml file")
    pc.add_argument("--histories", type=int, help="MC histories (default 2e7; 1e6 with --quick)")
    pc.add_argument("--decays", type=int, help="decay positions for the ray integration (default 6000)")
    pc.add_argument("--radii", help="comma-separated radii in cm (default 1,2)")
    pc.add_argument("--rng-seed", type=int, default=2026)
    pc.add_argument("--backend", choices=("numpy", "cupy", "auto"))
    _add_engine(pc)
    pc.add_argument("--out", required=True)
    pc.add_argument("--quick", action="store_true", help="CI-sized run (1 cm; 30, 60, 90 deg)")
    pc.set_defaults(func=cmd_validate_primary)
    bu = vsub.add_parser("budget", help="photon budget of a seed in vacuo (where the photons go, per history) with "
                                        "its ray-integrated primary part and an independent check of the S_K scorer")
    bu.add_argument("--seed", required=True, help="built-in seed model key (configs/seeds) or a seed .toml file")
    bu.add_argument("--histories", type=int, help="MC histories (default 1e7; 2e5 with --quick)")
    bu.add_argument("--decays", type=int, help="decay positions of the ray integration (default 2000)")
    bu.add_argument("--detector", default="wafac", help="S_K detector: wafac (default), clrp_wafac, clrp_point, band")
    bu.add_argument("--egsnrc-sampling", action="store_true",
                    help="place decays as the egs++ shapes of the CLRP model do (brachymc.validation.clrp)")
    bu.add_argument("--no-nee", action="store_true", help="skip the next-event-estimator check of the S_K scorer")
    bu.add_argument("--nee-histories", type=int, help="histories of that check (default 4e6; 4e5 with --quick)")
    bu.add_argument("--rng-seed", type=int, default=1515)
    bu.add_argument("--backend", choices=("numpy", "cupy", "auto"))
    bu.add_argument("--out", required=True)
    bu.add_argument("--quick", action="store_true", help="CI-sized run")
    bu.set_defaults(func=cmd_validate_budget)
    rs = vsub.add_parser("rescore-sk", help="score S_K of a tg43_MODEL.json again in vacuo (current detector) and "
                                            "recompute Lambda from its stored D(1 cm, 90 deg); the water run is kept")
    rs.add_argument("tg43", help="a tg43_MODEL.json written by `brachymc validate tg43`")
    rs.add_argument("--seed", help="seed model key (default: the one in the JSON)")
    rs.add_argument("--histories", type=int, default=20_000_000, help="in-vacuo histories (default 2e7)")
    rs.add_argument("--batches", type=int, default=20)
    rs.add_argument("--rng-seed", type=int, default=4343)
    rs.add_argument("--backend", choices=("numpy", "cupy", "auto"))
    rs.add_argument("--out", help="where to write the result (default: overwrite the input)")
    rs.add_argument("--also", action="append", help="write the same result here too (e.g. configs/tg43/MODEL.brachymc.json)")
    rs.add_argument("--reference", help="folder with the published reference data (default: the copy shipped in configs/reference)")
    rs.add_argument("--no-report", action="store_true")
    rs.add_argument("--no-progress", action="store_true")
    rs.set_defaults(func=cmd_validate_rescore_sk)
    rp = vsub.add_parser("report", help="rebuild the commissioning report from tg43_MODEL.json (and primary_MODEL.json "
                                        "beside it, when present) without rerunning")
    rp.add_argument("tg43", help="a tg43_MODEL.json written by `brachymc validate tg43`")
    rp.add_argument("--primary", help="a primary_MODEL.json (default: the one beside the tg43 JSON, if any)")
    rp.add_argument("--out", help="report path (default: report.pdf beside the tg43 JSON)")
    rp.add_argument("--reference", help="folder with the published reference data (default: the copy shipped in configs/reference)")
    rp.set_defaults(func=cmd_validate_report)

    sd = sub.add_parser("seeds", help="seeds in a post-implant CT")
    ssub = sd.add_subparsers(dest="what", required=True)
    sf = ssub.add_parser("find", help="find every seed (centre and axis), clusters included, in a post-implant CT")
    sf.add_argument("ct", help="DICOM CT series folder, or an .h5/.npz CT volume")
    sf.add_argument("--out", required=True, help="seeds.csv (x_mm,y_mm,z_mm,dx,dy,dz,confidence), plan.toml or "
                                                 "rtplan.dcm (DICOM RT Plan that `brachymc run` reads)")
    sf.add_argument("--model", default="oncoseed_6711", help="seed model (configs/seeds; default oncoseed_6711)")
    sf.add_argument("--expected", type=int, help="number of seeds implanted (a prior: doubtful extras are flagged, "
                                                 "never dropped)")
    sf.add_argument("--roi", help="RTSTRUCT:NAME - seeds more than 10 mm outside this ROI are flagged doubtful")
    sf.add_argument("--qa", help="QA figure (.png): maximum-intensity projections with the seeds numbered")
    sf.add_argument("--sk-U", dest="sk_U", type=float, help="air-kerma strength per seed (U), for .toml/.dcm")
    sf.add_argument("--activity-mCi", dest="activity_mCi", type=float, help="apparent activity per seed (mCi), "
                                                                            "instead of --sk-U")
    sf.add_argument("--reference-date", help="date/time the strength refers to (ISO; default: now)")
    sf.set_defaults(func=cmd_seeds_find)

    c = sub.add_parser("cache", help="show (info) or empty (clear) the cache of physics tables, S_K and kernels")
    c.add_argument("action", choices=("info", "clear"))
    c.add_argument("--kind", action="append", choices=("physics", "sk", "kernels"),
                   help="clear only this kind (repeatable; default all)")
    c.set_defaults(func=cmd_cache)

    m = sub.add_parser("materials", help="list the material library")
    m.add_argument("--materials", action="append", help="extra material TOML file(s)")
    m.add_argument("--egsnrc", action="append", help="EGSnrc media file(s) (egs++ material.dat, .egsinp, .density)")
    m.add_argument("--aliases", action="store_true", help="also list each medium's other names (e.g. egs_brachy's)")
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
    except KeyboardInterrupt as exc:
        ck = getattr(exc, "checkpoint", None)
        if ck is not None:
            print(f"brachymc: interrupted; {exc.batches} batches checkpointed in {ck}: rerun the same command "
                  "with --resume to continue", file=sys.stderr)
        else:
            print("brachymc: interrupted; no output was written for the unfinished run", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
