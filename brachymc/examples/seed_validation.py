"""Validation of the seed finder on simulated post-implant CTs: ``python -m brachymc.examples.seed_validation``.

For each case (slice thickness, pixel size, number of seeds, clusters, an optional pedicle
screw) the CT is simulated with :mod:`brachymc.examples.postimplant_ct`, the seeds are found with
:func:`brachymc.seedfinder.find_seeds` and scored (:mod:`brachymc.seedfinder.scoring`): detection
rate, false positives, RMS position error in-plane and axial, median and 95th-percentile axis
error. The dose consequence is the TG-43 dose (consensus 6711 data, 1 mm grid, 2^3 points per
voxel) of the found seeds against the true seeds: GTV D90 and spinal-cord D0.1cc.
``--mc CASE`` adds a Monte Carlo comparison for one case through ``brachymc run`` (true seeds
as a CSV plan vs ``[plan] file = "ct"``). ``--timing`` times the finder on a 512 x 512 x 100 CT
with 100 seeds. Results go to a JSON file and a Markdown page.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    slice_mm: float
    pixel_mm: float
    n_seeds: int
    pairs: int = 2
    chains: int = 2
    clumps: int = 2
    screw: bool = False
    seed: int = 1


CASES = (
    Case("1mm-0.6px-30", 1.0, 0.6, 30, 2, 1, 1, seed=11),
    Case("1mm-0.8px-40", 1.0, 0.8, 40, 2, 2, 2, seed=12),
    Case("2.5mm-0.7px-60", 2.5, 0.7, 60, 3, 2, 2, seed=21),
    Case("2.5mm-1.0px-100", 2.5, 1.0, 100, 4, 3, 3, seed=22),
    Case("2.5mm-0.8px-30-screw", 2.5, 0.8, 30, 2, 1, 1, screw=True, seed=23),
    Case("5mm-0.8px-40", 5.0, 0.8, 40, 2, 2, 2, seed=31),
    Case("5mm-0.9px-60", 5.0, 0.9, 60, 3, 2, 2, seed=32),
)

#: scans of the same kinds with other random implants and noise, kept out of the finder's
#: development: h41-h44 were first run in stop 21 before any change of that stop; h43 then showed
#: the weak-seed rule walking a cluster down to one seed (``split.MAX_STEP_DOWN_R2_LOSS``), and
#: the 5 mm ones with h45 measured a z from the excess beyond the fill's spread (since replaced);
#: h46-h49 informed no choice (h48, h49 first run after both); h50-h53 (stop 22) were first run
#: after the slice-share heights (``seedfinder.heights``) had been measured on the other 5 mm
#: scans, and only confirmed it
HELD_OUT = (
    Case("5mm-0.8px-40-h41", 5.0, 0.8, 40, 2, 2, 2, seed=41),
    Case("5mm-0.9px-60-h42", 5.0, 0.9, 60, 3, 2, 2, seed=42),
    Case("5mm-1.0px-50-h43", 5.0, 1.0, 50, 3, 2, 2, seed=43),
    Case("2.5mm-0.9px-60-h44", 2.5, 0.9, 60, 3, 2, 2, seed=44),
    Case("5mm-0.8px-50-h45", 5.0, 0.8, 50, 3, 2, 2, seed=45),
    Case("2.5mm-0.7px-80-h46", 2.5, 0.7, 80, 3, 3, 2, seed=46),
    Case("1mm-0.7px-50-h47", 1.0, 0.7, 50, 3, 2, 2, seed=47),
    Case("5mm-0.9px-50-h48", 5.0, 0.9, 50, 3, 2, 2, seed=48),
    Case("5mm-0.8px-60-h49", 5.0, 0.8, 60, 3, 2, 2, seed=49),
    Case("5mm-0.8px-50-h50", 5.0, 0.8, 50, 3, 2, 2, seed=50),
    Case("5mm-0.9px-40-h51", 5.0, 0.9, 40, 2, 2, 2, seed=51),
    Case("5mm-1.0px-60-h52", 5.0, 1.0, 60, 3, 2, 2, seed=52),
    Case("5mm-0.7px-50-h53", 5.0, 0.7, 50, 3, 2, 2, seed=53),
    # made in stop 31 and first run with the finder unchanged since stop 27; one variant of the
    # split score (not adopted) was then run on them and informed nothing else
    Case("5mm-0.8px-50-h69", 5.0, 0.8, 50, 3, 2, 2, seed=69),
    Case("5mm-0.9px-60-h70", 5.0, 0.9, 60, 3, 2, 2, seed=70),
    Case("5mm-1.0px-50-h71", 5.0, 1.0, 50, 3, 2, 2, seed=71),
    Case("5mm-0.7px-40-h72", 5.0, 0.7, 40, 2, 2, 2, seed=72),
    Case("5mm-0.8px-60-h73", 5.0, 0.8, 60, 3, 2, 2, seed=73),
    Case("5mm-0.9px-40-h74", 5.0, 0.9, 40, 2, 2, 2, seed=74),
    Case("2.5mm-0.8px-70-h75", 2.5, 0.8, 70, 3, 2, 2, seed=75),
    Case("2.5mm-1.0px-90-h76", 2.5, 1.0, 90, 4, 3, 3, seed=76),
)


def _scan(case: Case):
    from brachymc.examples.postimplant_ct import ScanSettings

    return ScanSettings(slice_mm=case.slice_mm, pixel_mm=case.pixel_mm, recon_center_mm=(5.0, 32.0),
                        recon_fov_mm=(120.0, 100.0), z_range_mm=(-20.0, 20.0), seed=case.seed)


def simulate(case: Case, keep_anatomy: bool = False):
    from brachymc.examples.postimplant_ct import make_implant, simulate_postimplant_ct

    implant = make_implant(case.n_seeds, np.random.default_rng(case.seed), pairs=case.pairs, chains=case.chains,
                           clumps=case.clumps, screw=case.screw)
    return simulate_postimplant_ct(implant, _scan(case), keep_anatomy=keep_anatomy)


def background_error(sim) -> dict:
    """The finder's background fill (``brachymc.seedfinder.finder.component_backgrounds``) against the
    truth, the metal-free noiseless image of the same scan (``sim.anatomy_hu``). Per metal component
    that holds at least one true seed and no other metal (a true excess of no more than 3 seeds
    beyond its seeds: a seed in a screw's blooming is left out): the summed excess S over the
    filled background minus S over the true background, in seeds (the median true S of the
    components holding one seed). A positive error is anatomy (bone) counted as metal, a negative
    one metal counted as background."""
    from brachymc.seedfinder.finder import component_backgrounds

    if sim.anatomy_hu is None:
        raise ValueError("background_error needs a simulation with keep_anatomy=True")
    comps = [c for c in component_backgrounds(sim.ct) if c.n_core > 0]
    g = sim.ct.geometry
    voxel, origin = 10.0 * np.array(g.spacing), 10.0 * np.array(g.origin)
    labels = np.zeros(sim.ct.hu.shape, np.int32)
    for i, c in enumerate(comps, 1):
        labels[c.index[:, 0], c.index[:, 1], c.index[:, 2]] = i
    n_true = np.zeros(len(comps) + 1, int)
    for iz, iy, ix in np.floor((sim.seeds_mm - origin) / voxel).astype(int)[:, ::-1]:
        nb = labels[max(iz - 1, 0):iz + 2, max(iy - 1, 0):iy + 2, max(ix - 1, 0):ix + 2]
        hit = np.unique(nb[nb > 0])
        if len(hit):
            n_true[hit[0]] += 1
    A = sim.anatomy_hu
    S, St, n = [], [], []
    for i, c in enumerate(comps, 1):
        if n_true[i] == 0:
            continue                                  # a screw, or bone
        jx, jy, jz = np.floor((c.patch.points - origin) / voxel).astype(int).T
        S.append(c.summed_excess)
        St.append(float(np.clip(c.patch.hu - A[jz, jy, jx], 0.0, None).sum()) * float(np.prod(voxel)))
        n.append(int(n_true[i]))
    S, St, n = np.array(S), np.array(St), np.array(n)
    s1 = float(np.median(St[n == 1]))
    metal = St / s1 > n + 3.0                         # a seed in the blooming of a screw: other metal
    S, St, n = S[~metal], St[~metal], n[~metal]
    err = (S - St) / s1
    worst = np.argsort(-np.abs(err))[:3]
    return {"n_components": int(len(err)), "seed_unit_hu_mm3": s1, "mean": float(err.mean()), "sd": float(err.std()),
            "max": float(err.max()), "min": float(err.min()), "over_half_seed": int(np.sum(np.abs(err) > 0.5)),
            "worst": [{"error_seeds": round(float(err[i]), 2), "true_seeds": int(n[i])} for i in worst]}


def coreless_fits(sim, res) -> dict:
    """The single-seed fits of the components below the metal level (no core voxel), against the
    truth: the basis of ``brachymc.seedfinder.finder.CORELESS_MIN_R2``. A fit centred within 1.5 mm
    in-plane of a true seed is *on a seed*, one 3 mm or more from every seed is *off* (bone, a
    streak); local R^2 of each, and how many of each kind the finder kept as seeds."""
    from brachymc.seedfinder.finder import CORELESS_MIN_R2

    on, off, n_between = [], [], 0
    kept_on = kept_off = 0
    T = np.asarray(sim.seeds_mm)[:, :2]
    for d in res.diagnostics:
        if d["n_core"] != 0 or 1 not in d.get("local_r2", {}):
            continue
        c = np.asarray(d["centers_mm"][1][0])
        r2 = float(d["local_r2"][1][0])
        dxy = float(np.min(np.linalg.norm(T - c[:2], axis=1)))
        seed = d["kind"] == "seeds"
        if dxy <= 1.5:
            on.append(r2)
            kept_on += seed
        elif dxy >= 3.0:
            off.append(r2)
            kept_off += seed
        else:
            n_between += 1
    return {"threshold": CORELESS_MIN_R2, "n_on_seed": len(on), "n_off_seed": len(off), "n_between": n_between,
            "min_r2_on_seed": min(on) if on else None, "max_r2_off_seed": max(off) if off else None,
            "kept_on_seed": int(kept_on), "kept_off_seed": int(kept_off)}


def tg43_metrics(positions_mm, directions, sk_U: float = 0.889) -> dict:
    """GTV D90 and cord D0.1cc (Gy, permanent implant) of TG-43 doses on a 1 mm grid of the spine case."""
    from brachymc.dvh import dose_at_percent, dose_at_volume
    from brachymc.examples.spine import _anatomy, _gtv
    from brachymc.geometry.phantom import GridGeometry
    from brachymc.pipeline.patient import tg43_voxel_mean
    from brachymc.sources.strength import I125_HALF_LIFE_DAYS, mean_life_hours
    from brachymc.tg43.shipped import load_tg43_dataset

    g = GridGeometry(shape=(44, 70, 80), spacing=(0.1, 0.1, 0.1), origin=(-3.2, -0.8, -2.2))
    xc, yc, zc = (10 * g.centers(a) for a in range(3))
    z, y, x = np.meshgrid(zc, yc, xc, indexing="ij")
    gtv = _gtv(x, y, z)
    cord = _anatomy(x, y, z)[1]["SpinalCord"]
    ds = load_tg43_dataset("oncoseed_6711", "tg43u1")
    p = np.asarray(positions_mm, float) / 10.0
    rate = tg43_voxel_mean(ds, p, np.asarray(directions, float), np.full(len(p), sk_U), g, "2D", 2)
    dose = np.nan_to_num(rate) * 0.01 * mean_life_hours(I125_HALF_LIFE_DAYS)      # Gy
    v = g.voxel_volume
    return {"gtv_d90_gy": float(dose_at_percent(dose, gtv.astype(float), v, 90.0)),
            "cord_d01cc_gy": float(dose_at_volume(dose, cord.astype(float), v, 0.1))}


def run_case(case: Case) -> dict:
    from brachymc.seedfinder import find_seeds, score_seeds

    t0 = time.perf_counter()
    sim = simulate(case, keep_anatomy=True)
    t_sim = time.perf_counter() - t0
    res = find_seeds(sim.ct)
    sc = score_seeds(sim.seeds_mm, sim.directions, res.positions_mm(), res.directions())
    true_d = tg43_metrics(sim.seeds_mm, sim.directions)
    found_d = tg43_metrics(res.positions_mm(), res.directions())
    labels = np.array(sim.implant.labels)
    missed = [str(labels[i]) for i in range(sim.implant.n_seeds) if i not in sc.matched_true]
    out = {"case": asdict(case), "score": sc.as_dict(), "missed_by_kind": {k: missed.count(k) for k in set(missed)},
           "n_doubtful": len(res.doubtful()), "clusters_split": res.clusters_split(),
           "other_metal": len(res.other_metal), "noise_hu": sim.notes["noise_hu"], "finder_s": res.timing_s["total"],
           "simulation_s": t_sim, "tg43_true": true_d, "tg43_found": found_d,
           "gtv_d90_diff_percent": 100 * (found_d["gtv_d90_gy"] / true_d["gtv_d90_gy"] - 1),
           "cord_d01cc_diff_percent": 100 * (found_d["cord_d01cc_gy"] / true_d["cord_d01cc_gy"] - 1)}
    print(f"{case.name}: found {sc.n_matched}/{sc.n_true} (+{sc.n_found - sc.n_matched} false), "
          f"rms {sc.rms_inplane_mm:.2f}/{sc.rms_axial_mm:.2f} mm, axis {sc.axis_median_deg:.1f}/{sc.axis_p95_deg:.1f} deg, "
          f"D90 {out['gtv_d90_diff_percent']:+.2f} %, cord {out['cord_d01cc_diff_percent']:+.2f} %, "
          f"{res.timing_s['total']:.1f} s", flush=True)
    out["background_error"] = background_error(sim)
    out["coreless_fits"] = coreless_fits(sim, res)
    out["with_expected"] = expected_count_case(sim, true_d)
    e = out["with_expected"]
    print(f"{case.name} with expected = {sc.n_true}: found {e['score']['n_matched']}/{sc.n_true} "
          f"(+{e['score']['n_found'] - e['score']['n_matched']} false, {e['n_beyond_expected']} flagged beyond the "
          f"count), D90 {e['gtv_d90_diff_percent']:+.2f} %", flush=True)
    return out


def expected_count_case(sim, true_d: dict) -> dict:
    """The same CT with the implanted count given (``find_seeds(..., expected=N)``, ``brachymc seeds
    find --expected N``, ``[plan] expected = N``): the count is known from the implant record, so
    this is how a physicist would normally run the finder. Scored like the plain run; the dose
    includes every found seed (the ones flagged beyond the count too, as ``[plan] file = "ct"``
    does) and, separately, the found seeds without those flagged beyond the count."""
    from brachymc.seedfinder import find_seeds, score_seeds

    n = int(sim.implant.n_seeds)
    res = find_seeds(sim.ct, expected=n)
    P, U = res.positions_mm(), res.directions()
    sc = score_seeds(sim.seeds_mm, sim.directions, P, U)
    beyond = [i for i, s in enumerate(res.seeds) if any(d.startswith("beyond the expected") for d in s.doubtful)]
    keep = np.setdiff1d(np.arange(len(P)), beyond)
    found_d = tg43_metrics(P, U)
    kept_d = tg43_metrics(P[keep], U[keep]) if beyond else found_d
    return {"score": sc.as_dict(), "n_beyond_expected": len(beyond),
            "false_among_beyond": sum(1 for i in beyond if i not in sc.matched_found),
            "notes": list(res.notes),
            "gtv_d90_diff_percent": 100 * (found_d["gtv_d90_gy"] / true_d["gtv_d90_gy"] - 1),
            "cord_d01cc_diff_percent": 100 * (found_d["cord_d01cc_gy"] / true_d["cord_d01cc_gy"] - 1),
            "gtv_d90_diff_percent_without_beyond": 100 * (kept_d["gtv_d90_gy"] / true_d["gtv_d90_gy"] - 1)}


def timing_ct(n_seeds: int = 100, seed: int = 41):
    """The simulated 512 x 512 x 100 CT (0.5 mm pixels, 1 mm slices) with ``n_seeds`` seeds in
    pairs, chains and clumps that the finder's speed is measured on (also
    ``benchmarks/bench_seedfinder.py``)."""
    from brachymc.examples.postimplant_ct import ScanSettings, make_implant, simulate_postimplant_ct

    implant = make_implant(n_seeds, np.random.default_rng(seed), pairs=4, chains=3, clumps=3)
    scan = ScanSettings(slice_mm=1.0, pixel_mm=0.5, recon_center_mm=(0.0, 0.0), recon_fov_mm=(256.0, 256.0),
                        z_range_mm=(-50.0, 50.0), seed=seed, roi_margin_mm=15.0)
    return simulate_postimplant_ct(implant, scan)


def timing_case(n_seeds: int = 100, seed: int = 41) -> dict:
    """The finder on the timing CT (:func:`timing_ct`)."""
    from brachymc.seedfinder import FinderSettings, find_seeds, score_seeds
    from brachymc.seedfinder.finder import resolved_workers

    t0 = time.perf_counter()
    sim = timing_ct(n_seeds, seed)
    t_sim = time.perf_counter() - t0
    c0, w0 = time.process_time(), time.perf_counter()
    res = find_seeds(sim.ct)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    sc = score_seeds(sim.seeds_mm, sim.directions, res.positions_mm(), res.directions())
    out = {"shape_zyx": list(sim.ct.hu.shape), "n_seeds": sim.implant.n_seeds, "wall_s": wall, "cpu_s": cpu,
           "stages_s": res.timing_s, "cores": os.cpu_count(), "simulation_s": t_sim, "score": sc.as_dict(),
           "load_average": os.getloadavg()[0], "threads": resolved_workers(FinderSettings())}
    print(f"timing: {sim.ct.hu.shape} with {sim.implant.n_seeds} seeds: {wall:.1f} s wall, {cpu:.1f} s CPU; "
          f"found {sc.n_matched}/{sc.n_true}", flush=True)
    return out


def warm_up() -> float:
    """Compile the finder's numba kernels (cached on disk after the first run) on a small simulated
    scan, so that no case's finder time includes the one-off compilation (~9 s on 2 cores with an
    empty cache). Returns the seconds it took."""
    from brachymc.seedfinder import find_seeds

    t0 = time.perf_counter()
    find_seeds(simulate(Case("warm-up", 2.5, 1.0, 8, 1, 1, 1, seed=1)).ct)
    return time.perf_counter() - t0


def mc_case(case: Case, folder: Path, histories: int) -> dict:
    """MC (``brachymc run``) GTV D90 and cord D0.1cc of the true seeds vs the seeds found in the CT."""
    from brachymc.io.dicom_ct import write_ct_series
    from brachymc.io.dicom_rtstruct import Structure, contours_from_mask, write_rtstruct
    from brachymc.pipeline.config import load_run_config
    from brachymc.pipeline.patient import run_patient

    sim = simulate(case)
    folder.mkdir(parents=True, exist_ok=True)
    paths = write_ct_series(folder / "ct", sim.ct, frame_uid=None)
    import pydicom

    frame = str(pydicom.dcmread(paths[0], stop_before_pixels=True).FrameOfReferenceUID)
    study = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    structs = [Structure(name=n, number=i + 1, contours=contours_from_mask(sim.masks[n], sim.ct.geometry))
               for i, n in enumerate(("GTV", "SpinalCord"))]
    write_rtstruct(folder / "rtstruct.dcm", structs, paths, frame_of_reference_uid=frame, patient_id=sim.ct.patient_id,
                   patient_name=sim.ct.patient_name, study_instance_uid=study)
    rows = ["x_mm,y_mm,z_mm,dx,dy,dz"] + [",".join(f"{v:.4f}" for v in (*p, *d))
                                          for p, d in zip(sim.seeds_mm, sim.directions)]
    (folder / "true.csv").write_text("\n".join(rows) + "\n")
    base = f"""[ct]
dicom = "ct"
calculation_voxel_mm = [2.0, 2.0, 2.0]
crop_margin_mm = 20
[calibration]
artefact_radius_mm = 6
[[override]]
roi = "GTV"
material = "soft_tissue"
[plan]
file = "{{plan}}"
sk_U = 0.889
orientation = "given"
[structures]
rtstruct = "rtstruct.dcm"
target = "GTV"
cord = "SpinalCord"
[dose]
prescription_gy = 110
[simulation]
histories = {histories}
batch_histories = {max(histories // 10, 1000)}
target_uncertainty = 0
seed = 7
backend = "numpy"
[tg43]
gamma = false
[output]
rtdose = false
threeddose = false
figures = false
report = false
"""
    out = {}
    for label, plan in (("true", "true.csv"), ("found", "ct")):
        run = folder / f"run_{label}.toml"
        run.write_text(base.replace("{plan}", plan))
        res = run_patient(load_run_config(run), folder / f"out_{label}", progress=False, echo=lambda m: None)
        m = res.metrics
        out[label] = {"gtv_d90_gy": m["GTV"]["mc"]["D90_Gy"], "cord_d01cc_gy": m["SpinalCord"]["mc"]["D0.1cc_Gy"],
                      "gtv_d90_tg43_gy": m["GTV"]["tg43"]["D90_Gy"], "n_seeds": res.summary["n_seeds"],
                      "target_unc": res.summary["target_mean_rel_uncertainty"]}
    out["gtv_d90_diff_percent"] = 100 * (out["found"]["gtv_d90_gy"] / out["true"]["gtv_d90_gy"] - 1)
    out["cord_d01cc_diff_percent"] = 100 * (out["found"]["cord_d01cc_gy"] / out["true"]["cord_d01cc_gy"] - 1)
    out["case"] = case.name
    out["histories"] = histories
    print(f"MC {case.name}: D90 {out['gtv_d90_diff_percent']:+.2f} %, cord {out['cord_d01cc_diff_percent']:+.2f} %",
          flush=True)
    return out


TARGETS = {"detection_thin": 0.99, "detection_5mm": 0.97, "fp": 0.01, "rms_inplane_mm": 0.5, "rms_axial_mm": 1.0,
           "axis_median_deg": 10.0, "gtv_d90_percent": 1.0, "time_s": 10.0}


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _results_table(cases: list, with_expected: bool = False) -> list[str]:
    """The per-case result table (Markdown lines); ``with_expected``: a column with the GTV D90 of
    the run given the implanted count."""
    head = ("| case | slice mm | pixel mm | seeds | found | false pos. | detection | FP rate | RMS in-plane mm | "
            "RMS axial mm | axis median deg | axis p95 deg | GTV D90 found/true | cord D0.1cc found/true | finder s |")
    rule = "|---" * 15 + "|"
    if with_expected:
        head += " GTV D90 with the count |"
        rule += "---|"
    lines = [head, rule]
    for r in cases:
        c, sc = r["case"], r["score"]
        row = (f"| {c['name']} | {c['slice_mm']:g} | {c['pixel_mm']:g} | {sc['n_true']} | {sc['n_matched']} | "
               f"{sc['n_found'] - sc['n_matched']} | {100 * sc['detection_rate']:.1f} % | "
               f"{100 * sc['false_positive_rate']:.1f} % | {sc['rms_inplane_mm']:.2f} | {sc['rms_axial_mm']:.2f} | "
               f"{sc['axis_median_deg']:.1f} | {sc['axis_p95_deg']:.1f} | {r['gtv_d90_diff_percent']:+.2f} % | "
               f"{r['cord_d01cc_diff_percent']:+.2f} % | {r['finder_s']:.1f} |")
        if with_expected:
            row += f" {r['with_expected']['gtv_d90_diff_percent']:+.2f} % |"
        lines.append(row)
    return lines


def _missed_by_kind(cases: list) -> str:
    return "Missed seeds by kind: " + "; ".join(
        f"{r['case']['name']}: " + (", ".join(f"{v} {k}" for k, v in sorted(r["missed_by_kind"].items())) or "none")
        for r in cases)


def environment() -> dict:
    """The Python and library versions of a run. The 5 mm counts depend on them at the level of one
    seed per scan: marginal choices of a cluster's count flip with floating-point differences (in
    stop 27 a new environment, NumPy 2.4.6, SciPy 1.17.1, numba 0.68.1, moved the twelve 5 mm
    scans of this page from 552 found and 34 false to 549 and 36 with the same code)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "machine": platform.machine(), "cpu_simd": _cpu_simd()}
    for name in ("numpy", "scipy", "numba", "llvmlite"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _cpu_simd() -> str | None:
    """The widest vector instruction set the processor offers (``avx512f``, ``avx2``, ``avx``,
    ``sse4_2``), read from ``/proc/cpuinfo``; None where that cannot be read. numba compiles the
    finder's kernels for the processor it runs on, so sums can round differently on another one."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return None
    return next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), None)


def _environment_line(results: dict) -> list[str]:
    env = results.get("environment")
    if not env:
        return []
    libs = ", ".join(f"{k} {v}" for k, v in env.items() if k not in ("python", "machine", "cpu_simd") and v)
    cpu = f", {env['cpu_simd']}" if env.get("cpu_simd") else ""
    return [f"Run with Python {env['python']} ({env['machine']}{cpu}), {libs}. At 5 mm a scan's counts can move "
            "by a seed with the library versions and the processor (`environment()` in "
            "`brachymc.examples.seed_validation`; in stop 31 the same code and libraries on a processor with AVX2 and "
            "no AVX-512 found 831 of the 920 seeds of eighteen 5 mm scans, against 827 in stop 30).", ""]


def markdown(results: dict) -> str:
    """The validation page (docs/validation/seed_finding.md) from the results."""
    t = TARGETS
    lines = ["# Seed finding on simulated post-implant CTs", "",
             "Generated by `python -m brachymc.examples.seed_validation --timing --mc 1mm-0.8px-40 "
             "--mc-histories 3000000 --json docs/validation/seed_finding.json --md docs/validation/seed_finding.md` "
             "(method: [../seed_finding.md](../seed_finding.md)). Each CT is simulated by "
             "`brachymc.examples.postimplant_ct` (spine anatomy, true-size 6711 seeds, 120 kVp "
             "polychromatic projections, Poisson noise, water beam-hardening correction, slice-profile averaging, "
             "FBP, 12-bit clip at 3071 HU) over a 120 x 100 mm field and z -20..20 mm; seeds in the GTV with "
             "touching pairs, end-to-end chains of 3 (0.1-0.9 mm gaps), 3-seed clumps, random orientations and "
             "needle tracks 5.5-10 mm apart. Matching: one-to-one within 2.5 mm (Hungarian). Dose: TG-43 "
             "(consensus 6711 data, 0.889 U per seed, permanent implant) on a 1 mm grid, found seeds vs true "
             "seeds, all found seeds included (doubtful ones too, as `[plan] file = \"ct\"` does).", "",
             ] + _environment_line(results) + _results_table(results["cases"])
    lines += ["", _missed_by_kind(results["cases"]), ""]
    if "warm_up_s" in results:
        lines += [f"The finder's numba kernels were compiled before the first case (warm-up "
                  f"{results['warm_up_s']:.1f} s), so each case's time is the finder's own.", ""]
    elif results["cases"]:
        lines += [f"The first case's finder time ({results['cases'][0]['case']['name']}) includes the one-off "
                  "compilation of the finder's numba kernels (this run had an empty numba cache and no warm-up; "
                  "since stop 28 the run warms up first).", ""]
    if all("background_error" in r for r in results["cases"]):
        lines += ["## Background fill against the metal-free image", "",
                  "The simulator also gives the same scan without metal and without noise, the true background. "
                  "For each metal component holding a seed (and no other metal): the summed excess over the finder's filled-in "
                  "background (S, what the count is made from) minus the summed excess over the true background, "
                  "in seeds (the median true S of the components holding one seed). Positive: anatomy (bone) "
                  "counted as metal; negative: metal's blur counted as background. A count is wrong once the "
                  "error reaches about half a seed.", "",
                  "| case | components | mean (seeds) | sd | largest | smallest | beyond +-0.5 seed | worst (true seeds in it) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["cases"]:
            b = r["background_error"]
            worst = ", ".join(f"{w['error_seeds']:+.2f} ({w['true_seeds']})" for w in b["worst"])
            lines.append(f"| {r['case']['name']} | {b['n_components']} | {b['mean']:+.3f} | {b['sd']:.3f} | "
                         f"{b['max']:+.2f} | {b['min']:+.2f} | {b['over_half_seed']} | {worst} |")
        lines.append("")
    scans = results["cases"] + results.get("held_out", [])
    if any(r.get("coreless_fits", {}).get("n_on_seed", 0) + r.get("coreless_fits", {}).get("n_off_seed", 0)
           for r in scans):
        thr = next(r["coreless_fits"]["threshold"] for r in scans if "coreless_fits" in r)
        lines += ["## Components below the metal level", "",
                  "A seed lying in a thick slice can stay below the metal level; such a component is a seed only "
                  f"if one seed's image model explains its voxels with a local R^2 >= {thr:g} (method, step 3). "
                  "Its single-seed fits against the truth: *on a seed* when centred within 1.5 mm in-plane of a "
                  "true seed, *off* when 3 mm or more from every seed (bone, a streak). Scans whose faintest seeds "
                  "reach the metal level consider no such component.", "",
                  "| case | on a seed | lowest R^2 on a seed | kept | off every seed | highest R^2 off | kept | "
                  "in between |", "|---|---|---|---|---|---|---|---|"]
        for r in scans:
            f = r.get("coreless_fits")
            if not f or not (f["n_on_seed"] + f["n_off_seed"]):
                continue
            lo = "-" if f["min_r2_on_seed"] is None else f"{f['min_r2_on_seed']:.3f}"
            hi = "-" if f["max_r2_off_seed"] is None else f"{f['max_r2_off_seed']:.3f}"
            lines.append(f"| {r['case']['name']} | {f['n_on_seed']} | {lo} | {f['kept_on_seed']} | {f['n_off_seed']} | "
                         f"{hi} | {f['kept_off_seed']} | {f['n_between']} |")
        lines.append("")
    if all("with_expected" in r for r in results["cases"]):
        lines += ["## With the implanted count given", "",
                  "The same CTs with `expected = N` (`brachymc seeds find --expected N`, `[plan] expected = N`), "
                  "N the count from the implant record. With fewer seeds than expected, one seed more goes, one at "
                  "a time, to the cluster where it raises the split's own score least (image misfit, intensity "
                  "count, overlaps: the score that chose the count); with more, the least confident are flagged "
                  "doubtful, never dropped. The targets below are judged on the plain run above, without the "
                  "count. (Until stop 26 the seed went to the cluster with the most summed excess beyond its "
                  "count; on the fifteen 5 mm scans with the count given that found 696 of 760 with 68 false, "
                  "mean |GTV D90 error| 3.70 %; the split score 699 with 68 false, 2.75 %.)", "",
                  "| case | seeds | found | false pos. | detection | flagged beyond the count (false among them) | "
                  "GTV D90 found/true | without the flagged | cord D0.1cc found/true |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in results["cases"]:
            e = r["with_expected"]
            sc = e["score"]
            lines.append(f"| {r['case']['name']} | {sc['n_true']} | {sc['n_matched']} | {sc['n_found'] - sc['n_matched']} | "
                         f"{100 * sc['detection_rate']:.1f} % | {e['n_beyond_expected']} ({e['false_among_beyond']}) | "
                         f"{e['gtv_d90_diff_percent']:+.2f} % | {e['gtv_d90_diff_percent_without_beyond']:+.2f} % | "
                         f"{e['cord_d01cc_diff_percent']:+.2f} % |")
        lines.append("")
    held = results.get("held_out")
    if held:
        lines += ["## Held-out scans", "",
                  "Scans of the same kinds (`HELD_OUT` in `brachymc.examples.seed_validation`) with other random "
                  "implants and noise, never used to choose a method or a level: the cases above have been "
                  "looked at for many rounds, and the finder is tuned to them more than its levels' comments "
                  "say. h41-h44 were first run in stop 21 before any change of that stop. Two changes of that "
                  "stop then came from them: h43 showed a cluster of 5.5 seeds' worth walked down to one seed "
                  "by the weak-seed rule and reported as other metal (3 seeds lost), which "
                  "`split.MAX_STEP_DOWN_R2_LOSS` now stops, and the 5 mm scans h41-h43 and h45 measured a "
                  "z of flat seeds from the excess beyond the fill's spread (3 seeds more, 3 false fewer; "
                  "replaced in stop 22). h46-h49 informed no choice; h48 and h49 were first run after both "
                  "changes. In stop 22 the heights of flat seeds from their slice shares "
                  "(`seedfinder.heights`) were measured on the validation scans and h41-h49 (5 mm: 364 -> 367 "
                  "of 410 found, 26 -> 23 false), then h50-h53 were made and first run, once before and once "
                  "after it (176 -> 179 of 200, 13 -> 10 false), and informed nothing else. In stop 23 the "
                  "pieces of a component beyond its cores' reach made components of their own and the "
                  "stacked-seed fits (`docs/seed_finding.md`, steps 3 and 9) were measured on all twelve 5 mm "
                  "scans, validation and held-out (546 -> 551 of 610 found, 33 -> 32 false), so every 5 mm "
                  "scan here has now informed a change; three 5 mm scans made for the check and run once "
                  "before and once after it (seeds 54-56, not on this page) gave 132 -> 133 of 150 found, "
                  "11 -> 13 false. In stop 24 the finder's BLAS went from OpenBLAS' threads to one thread; "
                  "by floating-point differences alone that moved h43 from 42 to 43 found (2 -> 3 false) "
                  "and removed one of h46's two false seeds, and changed no other count. In stop 25 the fits' "
                  "trust-region loop was compiled (the same algorithm; the paths part only where a fit's Jacobian "
                  "turns singular): that moved h43 from 43 to 42 found and h52 from 51 to 52 (one false seed more), "
                  "and no other count; the start of single seeds from their whole patch (2-4 mm slices only) "
                  "changed nothing on h44 and h46. h69-h76 were made in stop 31 and first run with the finder "
                  "unchanged since stop 27 (one variant of the split score was then run on them, not adopted). "
                  "In stop 32 each component got its own random stream of starts (for the fits on two threads): "
                  "that moved h45 from 48 to 47 found (0 -> 1 false) and h70 from 49 to 50 (4 -> 3 false), and no "
                  "other held-out count. In stop 33 the fits of 8 or more seeds took their trust-region "
                  "subproblem from the normal matrix instead of an SVD (the same decomposition, faster): that "
                  "removed one of h46's two false seeds and changed no other held-out count. "
                  "These numbers are the better guide to a new scan than the cases above.",
                  ""] + _results_table(held, with_expected=True)
        lines += ["", _missed_by_kind(held), ""]
    lines += ["## Against the targets", "", "| target | value | reached |", "|---|---|---|"]
    for r in results["cases"]:
        c, sc = r["case"], r["score"]
        thin = c["slice_mm"] <= 2.5
        det_t = t["detection_thin"] if thin else t["detection_5mm"]
        lines.append(f"| {c['name']}: detection >= {100 * det_t:g} % | {100 * sc['detection_rate']:.1f} % | "
                     f"{_mark(sc['detection_rate'] >= det_t)} |")
        if thin:
            lines.append(f"| {c['name']}: false positives <= 1 % | {100 * sc['false_positive_rate']:.1f} % | "
                         f"{_mark(sc['false_positive_rate'] <= t['fp'])} |")
        lines.append(f"| {c['name']}: RMS <= 0.5 mm in-plane, <= 1 mm axial | {sc['rms_inplane_mm']:.2f} / "
                     f"{sc['rms_axial_mm']:.2f} mm | {_mark(sc['rms_inplane_mm'] <= 0.5 and sc['rms_axial_mm'] <= 1.0)} |")
        lines.append(f"| {c['name']}: median axis error <= 10 deg | {sc['axis_median_deg']:.1f} deg | "
                     f"{_mark(sc['axis_median_deg'] <= 10.0)} |")
        lines.append(f"| {c['name']}: GTV D90 within 1 % (TG-43) | {r['gtv_d90_diff_percent']:+.2f} % | "
                     f"{_mark(abs(r['gtv_d90_diff_percent']) <= 1.0)} |")
    tm = results.get("timing")
    if tm:
        lines.append(f"| <= 10 s for 100 seeds in 512 x 512 x 100 on 2 cores | {tm['wall_s']:.1f} s wall "
                     f"({tm['cpu_s']:.1f} s CPU) | {_mark(tm['wall_s'] <= 10.0)} |")
        lines += ["", "## Timing", "",
                  f"CT {tm['shape_zyx'][2]} x {tm['shape_zyx'][1]} x {tm['shape_zyx'][0]} voxels (0.5 mm pixels, 1 mm "
                  f"slices), {tm['n_seeds']} seeds: {tm['wall_s']:.1f} s wall, {tm['cpu_s']:.1f} s CPU on a "
                  f"{tm['cores']}-core machine, the finder on {tm.get('threads', 1)} thread(s) (load average "
                  f"{tm['load_average']:.1f} while measured, of which the finder itself is up to {tm.get('threads', 1)}: "
                  + ("other jobs shared the cores" if tm["load_average"] > tm.get("threads", 1) + 0.3
                     else "no other job ran")
                  + "; repeated timings: docs/benchmarks.md); stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in tm["stages_s"].items())
                  + f". Found {tm['score']['n_matched']} of {tm['score']['n_true']} "
                  f"({tm['score']['n_found'] - tm['score']['n_matched']} false positives), RMS "
                  f"{tm['score']['rms_inplane_mm']:.2f} / {tm['score']['rms_axial_mm']:.2f} mm."]
    mc = results.get("mc")
    if mc:
        lines += ["", "## Monte Carlo dose consequence", "",
                  f"Case {mc['case']} through `brachymc run` (2 mm calculation voxels, GTV as soft tissue, "
                  f"{mc['histories']:,} histories per run, same random seed): true seeds as a CSV plan vs "
                  "`[plan] file = \"ct\"`.", "",
                  "| | seeds | GTV D90 MC (Gy) | cord D0.1cc MC (Gy) | GTV D90 TG-43 (Gy) | mean GTV uncertainty |",
                  "|---|---|---|---|---|---|"]
        for k in ("true", "found"):
            m = mc[k]
            lines.append(f"| {k} | {m['n_seeds']} | {m['gtv_d90_gy']:.1f} | {m['cord_d01cc_gy']:.1f} | "
                         f"{m['gtv_d90_tg43_gy']:.1f} | {100 * (m['target_unc'] or 0):.1f} % |")
        tg = 100 * (mc["found"]["gtv_d90_tg43_gy"] / mc["true"]["gtv_d90_tg43_gy"] - 1)
        lines += ["", f"Found / true: GTV D90 {mc['gtv_d90_diff_percent']:+.2f} %, cord D0.1cc "
                      f"{mc['cord_d01cc_diff_percent']:+.2f} % (MC); TG-43 D90 on the same grid {tg:+.2f} %. Each MC "
                      f"run has a mean relative uncertainty of {100 * mc['true']['target_unc']:.1f} % per GTV voxel, "
                      "and the two runs' seeds differ, so their random streams are not correlated: the MC difference "
                      "is within its statistical uncertainty, and the TG-43 difference (no noise) is the better "
                      "measure of the seed-position effect."]
    by_name = {r["case"]["name"]: r for r in results["cases"]}
    thin = [by_name[n]["gtv_d90_diff_percent"] for n in ("2.5mm-0.7px-60", "2.5mm-1.0px-100", "2.5mm-0.8px-30-screw")
            if n in by_name]
    thin_d90 = ("and so does" if all(abs(v) <= t["gtv_d90_percent"] for v in thin) else "but not always") + \
        " the GTV D90 (" + ", ".join(f"{v:+.2f} %" for v in thin)

    def thin_ok(r):
        sc = r["score"]
        return (sc["detection_rate"] >= t["detection_thin"] and sc["false_positive_rate"] <= t["fp"]
                and sc["rms_inplane_mm"] <= 0.5 and sc["rms_axial_mm"] <= 1.0 and sc["axis_median_deg"] <= 10.0)

    thin_cases = [r for r in results["cases"] if r["case"]["slice_mm"] == 2.5]
    n_ok = sum(thin_ok(r) for r in thin_cases)
    thin_met = "on every scan" if n_ok == len(thin_cases) else f"on {n_ok} of the {len(thin_cases)} scans"
    thin_held = [r for r in results.get("held_out", []) if r["case"]["slice_mm"] == 2.5]
    held_line = ""
    if thin_held:
        n_miss = sum(not thin_ok(r) for r in thin_held)
        held_line = (" The held-out 2.5 mm scans: " + "; ".join(
            f"{r['case']['name']} {r['score']['n_matched']}/{r['score']['n_true']} found, "
            f"{r['score']['n_found'] - r['score']['n_matched']} false" for r in thin_held)
            + (f". {n_miss} of them miss{'es' if n_miss == 1 else ''} a target. Each false seed examined there "
               "is bone beside a seed, bone that fills the seed's slice but not the slices next to it: the "
               "background fill takes soft tissue under the seed and the bone counts as one seed more (method "
               "page, stop 31)."
               if n_miss else "."))
    lines += ["", "## Reading the results", "",
              "* 1 mm slices: every target is reached. The background filled in along lines whose ends agree "
              "(the bone's level on the bone's side of a seed, soft tissue's on the other) keeps the cortical "
              "bone next to a seed out of its count; with the first finder's block-median background such "
              "clusters split into one seed too many. Each false or missed seed changes the GTV D90 by about "
              "100 / n %, so the dose target (1 %) needs the count exactly right.",
              "* 2.5 mm slices: detection (>= 99 %), false positives (<= 1 %), positions and the median axis error "
              f"meet the targets {thin_met}, {thin_d90} on the 60-seed, "
              "100-seed and screw scans). The axes come from the needle tracks, found one "
              "straight line at a time (parallel needles a few mm apart stay separate tracks), from refitting each "
              "tilted seed from its mirror image in z, and, for a single seed in 2-4 mm slices, from a second start"
              " lying in the slice (the 95th-percentile axis error on the 60-seed scan 59 -> 44 deg, its D90 +1.06 "
              "-> +0.78 %). A split seed must explain its own voxels (local R^2 >= 0.7): that removed the two false"
              " seeds made of cortical bone on the screw scan. Each cluster's count is judged again with the "
              "uncertainty of its background (a second fill around the fitted seeds, method step 9): that removed "
              "the false seed made of a lamina on the 60-seed scan, whose first background, filled across a dark "
              "streak, counted the bone as metal (4.3 seeds' worth for 3 seeds; the table above measures such "
              "errors against the metal-free image). When its D90 was +0.78 % (stop 22) what was left came from the seeds' heights"
              " and axes: with only the found z (true x, y and axes) it is +0.51 %, with only the found axes +0.45 "
              "% (seeds lying near the slice plane, whose tilt the slices hardly show). Until stop 25 one seed of "
              "the 100-seed scan was missed (D90 -1.21 %): it lies flat on a slice boundary, half its image in "
              "each slice, and its component held one voxel above the candidate level, whose moments gave the fit"
              " no axis (it ended upright, R^2 0.41, not seed-like). A single seed whose component holds fewer "
              "than 4 such voxels is now also started from its whole patch, lying in the slice (method, step 9):"
              " 100/100 found, D90 -0.22 %, and no other 2.5 mm scan changed, the held-out ones included. Since "
              "stop 32 each component draws its own random starts (method, step 9) and a seed of a 6-seed clump "
              "of the 100-seed scan is missed (99/100, D90 -1.01 %; found with the count given): the score, not "
              "the search, prefers 5 seeds there, as measured with stop 26's per-component streams."
              + held_line,
              "* 5 mm slices: the targets are not reached. Seeds lying in the slice are 2-3 x fainter than seeds "
              "along z (non-linear partial volume) and their z is known only to the flat top of the slice profile "
              "(a uniform error over +-1.9 mm has an RMS of 1.1 mm): a seed lying in the slice takes its height "
              "from how its image is shared with the slices beside it (method, step 9), since its fitted z is "
              "drift and an intensity centroid is drawn to bone in the next slice; most false and missed seeds are "
              "a seed placed a slice too high or low inside a cluster whose seeds were fitted tilted, or chains "
              "and pairs in one slice merged. Needle tracks give the seeds on them their direction (a seed inside "
              "one slice shows no tilt of its own).",
              "* Repeatability: every scan gives the same seeds bit for bit on every run (the fits use SciPy's "
              "trust-region `trf`; MINPACK's Levenberg-Marquardt read memory it had not written, and the 5 mm, "
              "0.8 mm pixel scan varied by a seed between runs: see the method page's limits).",
              "* The pedicle screw is always reported as other metal and never gives a seed.",
              ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="seed_validation.json")
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--mc", help="case name for the Monte Carlo comparison")
    ap.add_argument("--mc-histories", type=int, default=2_000_000)
    ap.add_argument("--mc-folder", default="seed_validation_mc")
    ap.add_argument("--md", help="write the Markdown page here")
    ap.add_argument("--from-json", help="only render --md from an earlier --json")
    ap.add_argument("--no-held-out", action="store_true", help="skip the held-out scans")
    args = ap.parse_args(argv)
    if args.from_json:
        Path(args.md).write_text(markdown(json.loads(Path(args.from_json).read_text())))
        print(f"wrote {args.md}")
        return 0
    names = set(args.cases.split(",")) if args.cases else None
    t_warm = warm_up()
    results = {"environment": environment(), "warm_up_s": t_warm,
               "cases": [run_case(c) for c in CASES if names is None or c.name in names]}
    if not args.no_held_out:
        results["held_out"] = [run_case(c) for c in HELD_OUT if names is None or c.name in names]
    if args.timing:
        results["timing"] = timing_case()
    if args.mc:
        case = next(c for c in CASES if c.name == args.mc)
        results["mc"] = mc_case(case, Path(args.mc_folder), args.mc_histories)
    Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {args.json}")
    if args.md:
        Path(args.md).write_text(markdown(json.loads(Path(args.json).read_text())))
        print(f"wrote {args.md}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
