"""The patient pipeline: CT + plan + structures -> Monte Carlo dose, TG-43 comparison and outputs.

Stages (:func:`run_patient`):

1. **Inputs** (:func:`load_inputs`): CT (DICOM series, HDF5/NPZ volume or EGSnrc ``.egsphant``),
   seed plan (DICOM RT Plan, CSV or TOML), RTSTRUCT. Everything is read and checked before
   anything is written or transported: finite positive numbers, seed centres inside the CT,
   matching frames of reference, known materials, a target the grid resolves.
2. **Calculation grid** (:mod:`brachymc.pipeline.grid`): the CT grid, optionally cropped to the
   seeds' box plus a margin and resampled to coarser voxels (mean HU), padded with the adjacent
   medium where a seed reaches past the CT edge. **ROIs** (:mod:`brachymc.pipeline.rois`): every
   ROI is read, rasterised and classified (empty, outside the CT or the grid, partly covered).
3. **Phantom** (:func:`build_phantom`): HU -> density and medium with the calibration; voxels inside
   the modelled seeds and streak artefacts around them get the surrounding tissue; contour
   overrides.
4. **Transport** of the seeds' photons with every seed modelled (inter-seed effects; or
   superposition), batch statistics, stopping at a target uncertainty in the target volume or a
   time budget, with checkpoints (:mod:`brachymc.pipeline.runner`).
5. **Absolute dose**: dose per history -> Gy with the seeds' air-kerma strengths and S_K per
   history; total dose of a permanent implant (initial dose rate x T1/2 / ln 2) by default.
6. **TG-43** dose of the same seeds on the same grid (and on the ROIs beyond it); comparison
   (ratios, gamma, DVH metrics with their batch uncertainty, :mod:`brachymc.pipeline.metrics`).
7. **Outputs** in ``out``: ``dose.h5``, ``rtdose.dcm``, ``dose.3ddose``, ``dvh.csv``,
   ``dvh.json``, figures, ``report.pdf``, ``summary.json``; each file written atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from brachymc import __version__
from brachymc.backend import get_backend
from brachymc.errors import BrachyMCError, ConfigError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.geometry.seed import SeedModel, load_builtin_seed
from brachymc.geometry.seeded_phantom import SeededVoxelWorld, SeedPlacement, seed_volume_fraction
from brachymc.files import atomic_path
from brachymc.materials import MaterialLibrary
from brachymc.mc.physics import PhysicsSettings
from brachymc.mc.tally import DoseTally, Estimate
from brachymc.mc.transport import TransportSettings, make_transport
from brachymc.pipeline.config import PatientRunConfig, material_library
from brachymc.pipeline.grid import CalculationGrid, calculation_grid, seed_reach_cm
from brachymc.pipeline.notes import Note, as_note
from brachymc.pipeline.rois import RoiSet, evaluate_rois
from brachymc.pipeline.runner import BatchGroups, BatchRunResult, StopRule, checkpoint_summary, run_batches
from brachymc.pipeline.summary import dose_descriptions, json_safe, write_json
from brachymc.sources.plan import SeedPlan, fmt_mm
from brachymc.mc.air_kerma import air_kerma_per_history
from brachymc.tg43.shipped import brachymc_lambda, load_tg43_dataset
from brachymc.sources.seed_source import SeedSetSource
from brachymc.sources.strength import (GY_CM2_PER_H_PER_U, I125_HALF_LIFE_DAYS, decay_factor, mean_life_hours,
                                       window_dose)

log = logging.getLogger(__name__)

#: tissue classes for the MC/TG-43 ratio, by phantom material name
TISSUE_CLASSES = {
    "cortical bone": ("cortical_bone", "bone_cortical", "cortical"),
    "spongiosa/marrow": ("spongiosa", "cancellous", "marrow"),
    "soft tissue": ("soft_tissue", "muscle", "skin", "blood", "cartilage", "tumour", "brain", "spinal_cord"),
    "adipose": ("adipose",),
    "lung/air": ("lung", "air"),
}
#: groups of batches for the jackknife uncertainty of DVH metrics
DVH_BATCH_GROUPS = 10
#: TG-43 point-seed pairs beyond which ROI voxels outside the grid get one point each, not s^3
TG43_BEYOND_PAIRS = 100_000_000


@dataclass
class PatientInputs:
    """Everything read from disk, checked, on the calculation grid."""

    ct: CTVolume | None                    # on the calculation grid (None for egsphant input)
    phantom_in: VoxelPhantom | None        # egsphant input
    geometry: GridGeometry                 # calculation grid
    plan: SeedPlan
    model: SeedModel
    structures: dict                       # ROI name -> fractional mask on the calculation grid (evaluated ROIs)
    structure_set: object | None
    frame_of_reference_uid: str
    patient_id: str
    patient_name: str
    study_instance_uid: str
    plan_uid: str
    notes: list = field(default_factory=list)          # Note (str) items
    grid: CalculationGrid | None = None
    rois: RoiSet = field(default_factory=RoiSet)
    override_masks: dict = field(default_factory=dict)  # [[override]] roi -> mask (None: nothing to override)
    plan_label: str = ""


# ---------------------------------------------------------------------------------------------
# 1. inputs
def _read_plan(cfg: PatientRunConfig, library: MaterialLibrary) -> tuple[SeedPlan, str]:
    pc = cfg.plan
    f = pc.file
    if not f.exists():
        raise ConfigError(f"{cfg.source}: [plan].file {f} does not exist")
    suffix = f.suffix.lower()
    plan_uid = ""
    orientation = pc.orientation
    if suffix in (".dcm", ".dicom") or f.is_dir():
        from brachymc.io.dicom_rtplan import read_rtplan

        plan = read_rtplan(f, model=pc.model, orientation=orientation, axis=pc.axis, random_seed=pc.random_seed)
        plan_uid = str(plan.notes.get("sop_instance_uid", ""))
    elif suffix == ".csv":
        from brachymc.sources.plan import read_plan_csv

        sk = pc.sk_U
        if sk is None and pc.activity_mCi is not None:
            from brachymc.sources.strength import apparent_activity_to_sk

            sk = float(apparent_activity_to_sk(pc.activity_mCi))
        plan = read_plan_csv(f, model=pc.model or "oncoseed_6711", sk_U=sk,
                             orientation=None if orientation == "auto" else orientation, axis=pc.axis,
                             random_seed=pc.random_seed or 0)
    elif suffix == ".toml":
        from brachymc.sources.plan import read_plan_toml

        plan = read_plan_toml(f)
        if pc.model:
            plan = replace(plan, model=pc.model)
    else:
        raise ConfigError(f"{f}: unknown plan format {suffix!r} (DICOM RT Plan .dcm, .csv or .toml)")
    check_plan(plan, str(f))
    return plan, plan_uid


def _plan_from_ct(cfg: PatientRunConfig, ct: CTVolume | None, library: MaterialLibrary, notes: list) -> SeedPlan:
    """``[plan] file = "ct"``: the seeds found in the run's own CT (:mod:`brachymc.seedfinder`)."""
    from brachymc.seedfinder import find_seeds

    pc = cfg.plan
    if ct is None:
        raise ConfigError(f"{cfg.source}: [plan] file = \"ct\" needs a CT with HU ([ct] dicom or volume)")
    sk = pc.sk_U
    if sk is None:
        from brachymc.sources.strength import apparent_activity_to_sk

        sk = float(apparent_activity_to_sk(pc.activity_mCi))
    res = find_seeds(ct, model=pc.model or "oncoseed_6711", expected=pc.expected, library=library)
    plan = res.to_plan(sk_U=sk, model=pc.model or "oncoseed_6711")
    d = res.report_dict()
    text = (f"seeds found automatically in the CT: {res.n_seeds} seeds ({d['clusters_split']} clusters split)"
            + (f", {pc.expected} expected" if pc.expected else "")
            + ("; doubtful: " + "; ".join(f"#{x['seed']} at {tuple(x['position_mm'])} mm ({', '.join(x['why'])})"
                                          for x in d["doubtful"]) if d["doubtful"] else "; none doubtful"))
    notes.append(Note("seeds_from_ct", text, {"seed_finding": d}, level="warning" if d["doubtful"] else "info"))
    notes.extend(Note("other_metal", f"other metal in the CT (not seeds) at {tuple(m['centroid_mm'])} mm: {m['reason']}",
                      m) for m in d["other_metal"])
    plan = replace(plan, source=f"{ct.source} (seeds found in the CT)")
    check_plan(plan, plan.source)
    return plan


def check_plan(plan: SeedPlan, where: str) -> None:
    """Finite positions, finite non-zero directions and positive finite strengths (seeds 1-based, mm)."""
    p = np.asarray(plan.positions_cm, float)
    bad = np.flatnonzero(~np.all(np.isfinite(p), axis=1))
    if bad.size:
        raise ConfigError(f"{where}: seed {bad[0] + 1}: position {fmt_mm(p[bad[0]])} mm is not finite")
    d = np.asarray(plan.directions, float)
    n = np.linalg.norm(d, axis=1)
    bad = np.flatnonzero(~np.isfinite(n) | (n == 0))
    if bad.size:
        raise ConfigError(f"{where}: seed {bad[0] + 1}: direction ({', '.join(f'{float(v):g}' for v in d[bad[0]])}) "
                          "is not a finite non-zero vector")
    sk = np.asarray(plan.sk_U, float)
    bad = np.flatnonzero(~np.isfinite(sk) | ~(sk > 0))
    if bad.size:
        raise ConfigError(f"{where}: seed {bad[0] + 1}: air-kerma strength must be > 0 U, got {float(sk[bad[0]]):g}"
                          + (f" ({bad.size} seeds)" if bad.size > 1 else ""))


def _read_ct(cfg: PatientRunConfig, library: MaterialLibrary):
    c = cfg.ct
    if c.dicom is not None:
        from brachymc.io.dicom_ct import read_ct_series

        if not c.dicom.is_dir():
            raise ConfigError(f"{cfg.source}: [ct].dicom {c.dicom} is not a folder")
        return read_ct_series(c.dicom, c.series_uid), None
    if c.volume is not None:
        from brachymc.io.volume import read_ct_volume

        if not c.volume.is_file():
            raise ConfigError(f"{cfg.source}: [ct].volume {c.volume} does not exist")
        return read_ct_volume(c.volume), None
    from brachymc.io.egsnrc import read_egsphant

    if not c.egsphant.is_file():
        raise ConfigError(f"{cfg.source}: [ct].egsphant {c.egsphant} does not exist")
    return None, read_egsphant(c.egsphant, library)


def load_inputs(cfg: PatientRunConfig, library: MaterialLibrary | None = None) -> PatientInputs:
    """Read and check CT, plan and structures; build the calculation grid. Writes nothing."""
    library = library or material_library(cfg)
    ct, phantom_in = _read_ct(cfg, library)
    plan_notes: list = []
    if cfg.plan.from_ct:
        plan, plan_uid = _plan_from_ct(cfg, ct, library, plan_notes), ""
    else:
        plan, plan_uid = _read_plan(cfg, library)
    try:
        model = load_builtin_seed(plan.model, library)
    except (BrachyMCError, FileNotFoundError, KeyError) as exc:
        raise ConfigError(f"{cfg.plan.file}: seed model {plan.model!r}: {exc}") from None
    frame = ct.frame_of_reference_uid if ct is not None else ""
    plan_frame = str(plan.notes.get("frame_of_reference_uid", "") or "")
    if frame and plan_frame and plan_frame != frame:
        raise ConfigError(f"{cfg.plan.file}: FrameOfReferenceUID {plan_frame} differs from the CT's {frame}")
    ct_file = str(cfg.ct.dicom or cfg.ct.volume or cfg.ct.egsphant)
    grid = calculation_grid(ct, phantom_in, plan.positions_cm, seed_reach_cm(model),
                            crop_margin_mm=cfg.ct.crop_margin_mm, calculation_voxel_mm=cfg.ct.calculation_voxel_mm,
                            source=cfg.source, ct_file=ct_file, plan_file=str(cfg.plan.file))
    notes: list = plan_notes + list(grid.notes)
    ct, phantom_in, geom = grid.ct, grid.phantom, grid.geometry

    rois, sset = RoiSet(), None
    st = cfg.structures
    if st.rtstruct is not None:
        from brachymc.io.dicom_rtstruct import read_rtstruct

        if not st.rtstruct.is_file():
            raise ConfigError(f"{cfg.source}: [structures].rtstruct {st.rtstruct} does not exist")
        sset = read_rtstruct(st.rtstruct, frame_of_reference_uid=frame or None)
        rois = evaluate_rois(sset, geom, grid.ct_geometry, rois=st.rois, exclude=st.exclude, target=st.target,
                             cord=st.cord, also=[o.roi for o in cfg.overrides], subsamples=st.subsamples,
                             source=cfg.source, rtstruct=str(st.rtstruct))
        notes += rois.notes
    override_masks = {}
    for o in cfg.overrides:
        r = rois.find(o.roi)
        if r is None:
            raise ConfigError(f"{cfg.source}: [[override]] roi {o.roi!r} is not in the structure set "
                              f"({', '.join(rois.rois) or 'no RTSTRUCT given'})")
        library[o.material]      # unknown material -> MaterialError naming it
        m = r.mask if r.mask is not None and np.any(r.mask >= 0.5) else None
        override_masks[o.roi] = m
        if m is None:
            notes.append(Note("override_empty", f"[[override]] roi {o.roi!r}: the ROI has no voxel on the calculation "
                              "grid; nothing overridden", {"roi": r.name}, level="warning"))
    if st.target is None and cfg.simulation.target_uncertainty is not None and st.rtstruct is not None:
        notes.append(Note("no_target", "no [structures].target: the run stops at the history limit or the time "
                          "budget, not at a target uncertainty", level="warning"))
    structures = {n: r.mask for n, r in rois.on_grid().items()}
    return PatientInputs(
        ct=ct, phantom_in=phantom_in, geometry=geom, plan=plan, model=model, structures=structures,
        structure_set=sset, frame_of_reference_uid=frame,
        patient_id=getattr(ct, "patient_id", "") if ct is not None else "",
        patient_name=getattr(ct, "patient_name", "") if ct is not None else "",
        study_instance_uid=getattr(ct, "study_instance_uid", "") if ct is not None else "",
        plan_uid=plan_uid, notes=notes, grid=grid, rois=rois, override_masks=override_masks,
        plan_label=str(plan.notes.get("plan_label", "") or ""))


def _structure(inputs: PatientInputs, name: str | None) -> np.ndarray | None:
    r = inputs.rois.find(name)
    return r.mask if r is not None and r.on_grid else None


# ---------------------------------------------------------------------------------------------
# 3. phantom
def placements_of(plan: SeedPlan) -> tuple[SeedPlacement, ...]:
    return tuple(SeedPlacement(tuple(map(float, p)), tuple(map(float, d)))
                 for p, d in zip(plan.positions_cm, plan.directions))


def build_phantom(cfg: PatientRunConfig, inputs: PatientInputs, library: MaterialLibrary):
    """Voxel phantom of the calculation grid and the conversion report (None for egsphant input)."""
    if inputs.phantom_in is not None:
        return inputs.phantom_in, None
    from brachymc.geometry.hu import ArtefactCorrection, Override, ct_to_phantom, load_calibration

    cal = load_calibration(cfg.calibration.name, library)
    occ = seed_volume_fraction(inputs.geometry, inputs.model, inputs.plan.positions_cm, inputs.plan.directions,
                               n=20_000)
    seed_mask = occ > 0
    artefact = None
    if cfg.calibration.artefact_radius_mm > 0:
        artefact = ArtefactCorrection(radius_cm=cfg.calibration.artefact_radius_mm / 10.0,
                                      hu_threshold_high=cfg.calibration.artefact_hu_high,
                                      hu_threshold_low=cfg.calibration.artefact_hu_low)
    overrides = [Override(mask=inputs.override_masks[o.roi] >= 0.5, material=o.material, density=o.density,
                          label=f"ROI {o.roi}") for o in cfg.overrides if inputs.override_masks.get(o.roi) is not None]
    return ct_to_phantom(inputs.ct, cal, library, overrides=overrides, seed_mask=seed_mask, artefact=artefact,
                         seed_centers_cm=inputs.plan.positions_cm)


# ---------------------------------------------------------------------------------------------
def _fingerprint(cfg: PatientRunConfig, inputs: PatientInputs, phantom: VoxelPhantom,
                 groups: BatchGroups | None = None) -> str:
    """What a checkpoint must match: phantom, seeds, strengths, the settings that shape a batch and
    the voxels whose batch groups are kept."""
    h = hashlib.sha256()
    if groups is not None:
        h.update(groups.index_host.tobytes())
    for a in (phantom.material_index, phantom.density, inputs.plan.positions_cm, inputs.plan.directions,
              inputs.plan.sk_at_implant()):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps([m.name for m in phantom.materials]).encode())
    s = cfg.simulation
    h.update(json.dumps({"model": inputs.model.key, "seed": s.seed, "batch": s.batch_histories, "mode": s.mode,
                         "water": cfg.dose.dose_to_water, "grid": asdict(inputs.geometry),
                         "version": __version__}, default=str, sort_keys=True).encode())
    return h.hexdigest()[:32]


@dataclass
class PatientResult:
    """Doses (Gy, of the configured kind) on the calculation grid and everything about the run."""

    geometry: GridGeometry
    dose_gy: np.ndarray                 # Dm,m; 0 inside seeds
    dose_unc_gy: np.ndarray             # absolute standard error
    dose_water_gy: np.ndarray | None
    tg43_gy: np.ndarray
    seed_mask: np.ndarray               # voxels not scored (inside seeds)
    phantom: VoxelPhantom
    structures: dict
    metrics: dict                       # ROI -> {"mc": ..., "tg43": ...}
    gamma: list
    tissue_ratios: dict
    run: BatchRunResult
    summary: dict
    outputs: dict


def _dose_factor(cfg: PatientRunConfig, sk_total_U: float, sk_per_history: float) -> tuple[float, str]:
    """Gy per (Gy/history) for the configured dose kind; and its unit label."""
    rate0 = sk_total_U * GY_CM2_PER_H_PER_U / sk_per_history       # Gy/h per (Gy/history), at implant
    d = cfg.dose
    if d.kind == "permanent":
        return rate0 * mean_life_hours(I125_HALF_LIFE_DAYS), "Gy (total dose of the permanent implant)"
    if d.kind == "rate":
        return rate0 * float(decay_factor(d.rate_at_h)), f"Gy/h (dose rate {d.rate_at_h:g} h after implant)"
    return float(window_dose(rate0, d.start_h, d.end_h)), f"Gy (dose from {d.start_h:g} h to {d.end_h:g} h)"


def _tissue_classes(phantom: VoxelPhantom, scored: np.ndarray, inputs: PatientInputs, cfg: PatientRunConfig):
    names = [m.name.lower() for m in phantom.materials]
    out: dict[str, np.ndarray] = {}
    for cls, keys in TISSUE_CLASSES.items():
        ids = [i for i, n in enumerate(names) if any(k in n for k in keys)]
        if ids:
            w = np.isin(phantom.material_index, ids) & scored
            if w.any():
                out[cls] = w.astype(np.float32)
    for name in (inputs.rois.target, inputs.rois.cord):      # named as in the structure set
        m = _structure(inputs, name)
        if m is not None and name not in out:
            out[name] = (m * scored).astype(np.float32)
    return out


def tg43_voxel_mean(dataset, positions_cm, directions, sk_U, geometry: GridGeometry, formalism: str = "2D",
                    subsamples: int = 2) -> np.ndarray:
    """TG-43 dose rate (cGy/h) averaged over each voxel on ``subsamples``^3 regular points.

    Points within the TG-43 engine's minimum distance of a seed are left out of their voxel's
    mean; a voxel with none left is NaN. ``subsamples = 1`` gives the point dose at voxel centres.
    Averaging matters near seeds: over a voxel of side h at distance r, 1/r^2 varies by ~h^2/(4 r^2).
    """
    from brachymc.tg43.dose import dose_rate_on_grid

    s = int(subsamples)
    sp = np.asarray(geometry.spacing)
    offs = ((np.arange(s) + 0.5) / s - 0.5)
    shifts = [np.array([ox, oy, oz]) for ox in offs for oy in offs for oz in offs]

    def one(shift):
        origin = np.asarray(geometry.origin) + sp * shift
        return dose_rate_on_grid(dataset, positions_cm, directions, sk_U, tuple(origin), geometry.spacing,
                                 geometry.shape, formalism)

    # the s^3 sub-grids are independent: NumPy releases the GIL in the heavy loops, so threads
    # overlap them; they are summed in a fixed order (the result does not depend on the threads)
    import os
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(shifts), os.cpu_count() or 1))) as pool:
        parts = list(pool.map(one, shifts))
    acc = np.zeros(geometry.shape)
    cnt = np.zeros(geometry.shape)
    for r in parts:
        ok = np.isfinite(r)
        acc += np.where(ok, r, 0.0)
        cnt += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan)


def check_output_folder(out: Path, resume: bool) -> None:
    """``--out`` must be a folder (or not exist yet); ``--resume`` needs its checkpoint; a checkpoint
    left by an interrupted run is never overwritten silently."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a folder; name a folder for the outputs")
    ckpt = out / "checkpoint.h5"
    if resume and not ckpt.is_file():
        raise ConfigError(f"--resume: nothing to resume in {out} (no checkpoint.h5: it exists only while a run is "
                          "unfinished and is removed when the outputs are written); run without --resume")
    if ckpt.exists() and not resume:
        raise ConfigError(f"{ckpt} exists from an earlier run: pass --resume to continue it or remove it")


def _tg43_beyond(inputs: PatientInputs, ds, sk_now, cfg: PatientRunConfig, gy_per_cgy_h: float):
    """TG-43 dose (Gy) at the voxels of ROIs beyond the calculation grid; and notes."""
    from brachymc.tg43.dose import dose_rate_at_points

    out, notes = {}, []
    todo = {n: r for n, r in inputs.rois.with_dvh().items() if r.outside_points_cm is not None}
    if not todo:
        return out, notes
    n_pts = sum(len(r.outside_points_cm) for r in todo.values())
    s = int(cfg.tg43.subsamples)
    if n_pts * inputs.plan.n_seeds * s ** 3 > TG43_BEYOND_PAIRS:
        s = 1
        notes.append(Note("tg43_beyond_points", f"TG-43 beyond the calculation grid: one point per voxel "
                          f"({n_pts:,} voxels of ROIs outside the grid)", {"voxels": n_pts}))
    sp = np.asarray(inputs.geometry.spacing)
    offs = (np.arange(s) + 0.5) / s - 0.5
    shifts = [np.array([a, b, c]) * sp for a in offs for b in offs for c in offs]
    for name, r in todo.items():
        acc = np.zeros(len(r.outside_points_cm))
        cnt = np.zeros(len(r.outside_points_cm))
        for sh in shifts:
            v = dose_rate_at_points(ds, inputs.plan.positions_cm, inputs.plan.directions, sk_now,
                                    r.outside_points_cm + sh, cfg.tg43.formalism)
            ok = np.isfinite(v)
            acc += np.where(ok, v, 0.0)
            cnt += ok
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan) * gy_per_cgy_h
    return out, notes


def run_patient(cfg: PatientRunConfig, out: str | Path, resume: bool = False, progress: bool = True,
                library: MaterialLibrary | None = None, on_batch=None, echo=print, client=None,
                clock=time.perf_counter) -> PatientResult:
    """Run the whole pipeline (see the module docstring) and write the outputs to ``out``.

    Everything that can fail on the inputs fails before the first batch is transported, and
    nothing is written to ``out`` before then. ``client``: a Dask ``distributed.Client``; batches
    then run on its workers (:mod:`brachymc.pipeline.distributed`) with the same result as
    in-process. ``clock``: seconds counter of the time budget (tests pass a deterministic one).
    """
    t_start = time.perf_counter()
    stages: dict[str, float] = {}          # wall time of each stage (s), for the summary
    mark = [t_start]

    def lap(name: str) -> None:
        now = time.perf_counter()
        stages[name] = round(now - mark[0], 3)
        mark[0] = now

    library = library or material_library(cfg)
    out = Path(out)
    check_output_folder(out, resume)
    inputs = load_inputs(cfg, library)
    phantom, conv = build_phantom(cfg, inputs, library)
    lap("inputs")
    if cfg.dose.dose_to_water and "water" not in phantom.material_names():
        phantom = VoxelPhantom(phantom.geometry, phantom.materials + (library["water"],), phantom.material_index,
                               phantom.density)
    s = cfg.simulation
    backend = get_backend(s.backend)
    ds = load_tg43_dataset(inputs.model.key, cfg.tg43.dataset)
    own_lambda = brachymc_lambda(inputs.model.key)
    world = SeededVoxelWorld(phantom, inputs.model, placements_of(inputs.plan), library, backend, mode=s.mode,
                             volume_samples=100_000)
    from brachymc.mc.tables_cache import load_or_build_tables

    ts = TransportSettings(bank_size=s.bank_size, score_water=cfg.dose.dose_to_water,
                           engine=s.engine, threads=s.threads)
    tables = load_or_build_tables(list(world.materials), PhysicsSettings(cutoff_kev=ts.cutoff_kev))
    transport = make_transport(world, tables, backend, ts)
    sk_now = inputs.plan.sk_at_implant()
    source = SeedSetSource(inputs.model, placements_of(inputs.plan), weights=tuple(sk_now))
    sk_hist = air_kerma_per_history(inputs.model, s.sk_source, backend=s.backend)
    quantities = ("dose",) + (("dose_water",) if cfg.dose.dose_to_water else ())
    tally = DoseTally(backend, phantom.geometry.shape, world.score_volume, quantities)
    scored = ~world.mask
    target = _structure(inputs, inputs.rois.target)
    target_region = None if target is None else (target >= 0.5) & scored
    if target_region is not None and not target_region.any():
        raise ConfigError(f"{cfg.structures.rtstruct}: the target {inputs.rois.target!r} has no calculation voxel at "
                          "least half inside it outside the seeds; use smaller [ct].calculation_voxel_mm")
    tu = s.target_uncertainty if target_region is not None else None
    if s.target_uncertainty is not None and tu is None and not any(getattr(n, "code", "") == "no_target"
                                                                   for n in inputs.notes):
        inputs.notes.append(Note("no_target", "no target structure: the run stops at the history limit or the time "
                                 "budget, not at a target uncertainty", level="warning"))
    union = np.zeros(phantom.geometry.n_voxels, dtype=bool)
    for r in inputs.rois.on_grid().values():
        union |= (r.mask * scored).reshape(-1) > 0
    groups = (BatchGroups(backend, phantom.geometry.shape, world.score_volume, np.flatnonzero(union),
                          DVH_BATCH_GROUPS) if union.any() else None)
    min_hist = s.min_batches * s.batch_histories
    if s.histories < min_hist:
        inputs.notes.append(Note("histories_raised", f"[simulation] histories = {s.histories:,} is less than min_batches "
                                 f"x batch_histories: the run transports at least {min_hist:,}",
                                 {"histories": s.histories, "minimum": min_hist}, level="warning"))
    rule = StopRule(max_histories=max(s.histories, min_hist),
                    batch_histories=s.batch_histories, min_batches=s.min_batches, target_rel_unc=tu,
                    time_budget_s=s.time_budget_s, checkpoint_every_s=s.checkpoint_every_s)
    fp = _fingerprint(cfg, inputs, phantom, groups)
    ckpt = out / "checkpoint.h5"
    g = phantom.geometry
    engine = transport.describe()
    echo(f"brachymc run: {inputs.plan.n_seeds} seeds ({inputs.model.key}), grid {g.shape[2]} x {g.shape[1]} x "
         f"{g.shape[0]} voxels of {' x '.join(f'{10 * v:g}' for v in g.spacing)} mm, backend {backend.name}, "
         f"{engine['engine']} engine" + (f" ({engine['build']})" if "build" in engine else ""))
    for n in inputs.notes:
        if getattr(n, "level", "info") == "warning":
            echo(f"  note: {n}")
    if resume:
        info = checkpoint_summary(ckpt)
        if info["stopped_by"]:
            echo(f"  resuming {ckpt}: {info['batches']} batches ({info['histories']:,} histories) done and the run had "
                 f"stopped ({info['stopped_by']}); no more transport, writing the outputs")
        else:
            echo(f"  resuming {ckpt}: {info['batches']} batches ({info['histories']:,} histories) done; continuing "
                 f"with batch {info['batches'] + 1}")
    executor = None
    if client is not None:
        from brachymc.pipeline.distributed import BatchProblem, DaskExecutor
        from brachymc.pipeline.runner import default_quantities

        problem = BatchProblem(key=fp, phantom=phantom, transport=ts, backend=backend.name, model=inputs.model,
                               placements=placements_of(inputs.plan), weights=tuple(sk_now), mode=s.mode,
                               volume_samples=100_000, quantities=default_quantities(tally))
        executor = DaskExecutor(client, problem, s.batch_histories, s.seed)
        echo(f"  batches on Dask: {len(client.scheduler_info().get('workers', {}))} workers")
    out.mkdir(parents=True, exist_ok=True)
    lap("setup")
    run = run_batches(transport, source, tally, rule, s.seed, target_region=target_region,
                      checkpoint=ckpt, resume=resume, fingerprint=fp, progress=progress, on_batch=on_batch,
                      executor=executor, groups=groups, clock=clock)
    lap("transport")

    # ---- absolute dose
    factor, unit = _dose_factor(cfg, float(sk_now.sum()), sk_hist.value)
    est = tally.estimate("dose")
    dose = np.where(scored, est.mean * factor, 0.0)
    unc = np.where(scored, est.uncertainty * factor, 0.0)
    dose_w = None
    if cfg.dose.dose_to_water:
        dose_w = np.where(scored, tally.estimate("dose_water").mean * factor, 0.0)
    # ---- TG-43 on the same grid: voxel means of s^3 points (NaN where no point is outside the seeds)
    rate_cgy_h = tg43_voxel_mean(ds, inputs.plan.positions_cm, inputs.plan.directions, sk_now, g,
                                 cfg.tg43.formalism, cfg.tg43.subsamples)
    tg_factor, _ = _dose_factor(cfg, 1.0, GY_CM2_PER_H_PER_U)       # Gy per (Gy/h initial rate)
    tg43 = np.where(scored, rate_cgy_h * 0.01 * tg_factor, np.nan)
    tg43_beyond, beyond_notes = _tg43_beyond(inputs, ds, sk_now, cfg, 0.01 * tg_factor)
    inputs.notes.extend(beyond_notes)
    lap("tg43")

    # ---- comparison
    from brachymc.compare import gamma_pass_rates, ratio_by_tissue
    from brachymc.pipeline.metrics import roi_dvh_curves, roi_metrics

    # a prescription (Gy) applies to total or window doses, not to a dose rate
    rx = cfg.dose.prescription_gy if cfg.dose.kind != "rate" else None
    if cfg.dose.kind == "rate" and cfg.dose.prescription_gy:
        inputs.notes.append(Note("rate_no_prescription", "dose kind 'rate': the prescription is not applied to dose "
                                 "rates (no V100, isodoses relative to the maximum)"))
    loo = [d * factor for d in groups.leave_one_out()] if groups is not None else None
    metrics, metric_notes = roi_metrics(inputs.rois, dose, tg43, scored, g.voxel_volume, rx, loo_doses=loo,
                                        loo_index=groups.index_host if groups is not None else None,
                                        tg43_beyond=tg43_beyond)
    inputs.notes.extend(metric_notes)
    curves = roi_dvh_curves(inputs.rois, dose, tg43, scored, g.voxel_volume, tg43_beyond)
    classes = _tissue_classes(phantom, scored, inputs, cfg)
    rel_unc = np.where(dose > 0, unc / np.where(dose > 0, dose, 1.0), np.nan)
    ratios = ratio_by_tissue(dose, tg43, classes, min_dose_gy=(0.1 * rx if rx else None), mc_rel_unc=rel_unc,
                             voxel_cc=g.voxel_volume) if classes else {}
    gam = []
    if cfg.tg43.gamma:
        # global criteria relative to the prescription (the maximum dose sits next to a seed)
        gam = gamma_pass_rates(dose, tg43, g, mask=~scored, random_subset=cfg.tg43.gamma_max_points, seed=s.seed,
                               normalisation_gy=rx)

    # ---- summary
    target_unc = None
    if target_region is not None and target_region.any():
        rel = est.rel_uncertainty[target_region]
        target_unc = float(np.nanmean(np.where(np.isfinite(rel), rel, 1.0)))
    lap("comparison")
    summary = _summary(cfg, inputs, phantom, conv, backend, run, sk_now, sk_hist, unit, rx, target_unc, tu, ds,
                       own_lambda, metrics, gam, ratios)
    summary["transport"] = engine
    summary["stage_times_s"] = stages
    outputs = write_outputs(cfg, out, inputs, phantom, dose, unc, dose_w, tg43, ~scored, est, factor, summary, curves)
    lap("outputs")
    summary["outputs"] = sorted(Path(p).name for p in outputs.values()) + ["summary.json"]
    summary["total_time_s"] = time.perf_counter() - t_start
    write_json(out / "summary.json", summary)
    ckpt.unlink(missing_ok=True)      # the run is complete: outputs hold everything
    return PatientResult(g, dose, unc, dose_w, tg43, ~scored, phantom, inputs.structures, metrics, gam, ratios, run,
                         json_safe(summary), outputs)


def _summary(cfg, inputs: PatientInputs, phantom, conv, backend, run: BatchRunResult, sk_now, sk_hist, unit, rx,
             target_unc, tu, ds, own_lambda, metrics, gam, ratios) -> dict:
    s = cfg.simulation
    plan = inputs.plan
    resumed = {"resumed": run.resumed_from > 0, "checkpoint_batches": run.resumed_from,
               "continued_from_batch": (run.resumed_from + 1) if run.resumed_from and not run.resumed_after_stop
               else None, "checkpoint_had_stopped": run.resumed_after_stop}
    ct_table = ({**{o.label: {"material": o.material, "voxels": o.voxels, "changed": o.changed}
                    for o in conv.overrides},
                 "seed voxels": {"material": "surrounding tissue", "voxels": conv.seed_voxels},
                 "streak voxels": {"material": "surrounding tissue", "voxels": conv.artefact_voxels}}
                if conv is not None else {})
    return {
        "software": {"name": "brachymc", "version": __version__},
        "version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.source, "device": backend.device_name if hasattr(backend, "device_name") else backend.name,
        "host": platform.node(), "backend": backend.name,
        "patient": {"id": inputs.patient_id, "name": inputs.patient_name,
                    "study_instance_uid": inputs.study_instance_uid,
                    "frame_of_reference_uid": inputs.frame_of_reference_uid},
        "plan": {"file": str(cfg.plan.file), "label": inputs.plan_label, "uid": inputs.plan_uid,
                 "n_seeds": plan.n_seeds, "seed_model": inputs.model.key, "seed_model_name": inputs.model.name,
                 "sk_total_U_at_implant": float(sk_now.sum()),
                 "sk_per_seed_U_at_implant": [float(sk_now.min()), float(sk_now.max())],
                 "reference_date": plan.reference_date, "implant_date": plan.implant_date,
                 "orientation": plan.orientation},
        "doses": dose_descriptions(dose_to_water=cfg.dose.dose_to_water, tg43_dataset=ds,
                                   tg43_kind=cfg.tg43.dataset, formalism=cfg.tg43.formalism, own_lambda=own_lambda,
                                   model_name=inputs.model.name, dose_unit=unit),
        "grid": inputs.grid.describe() if inputs.grid is not None else {},
        "statistics": {"histories": run.histories, "batches": run.batches, "batch_histories": s.batch_histories,
                       "stopped_by": run.stopped_by, "target_roi": inputs.rois.target,
                       "target_mean_rel_uncertainty": target_unc, "target_uncertainty_goal": tu,
                       "time_budget_s": s.time_budget_s, "history_limit": max(s.histories, s.min_batches *
                                                                               s.batch_histories),
                       "transport_time_s": run.wall_time_s, "seed": s.seed,
                       "dvh_uncertainty": f"delete-a-group jackknife over {DVH_BATCH_GROUPS} groups of batches",
                       **resumed},
        "rois": inputs.rois.to_json(), "target": inputs.rois.target, "cord": inputs.rois.cord,
        "n_seeds": plan.n_seeds, "seed_model": inputs.model.key,
        "sk_total_U_at_implant": float(sk_now.sum()), "sk_per_history_Gy_cm2": sk_hist.value,
        "sk_per_history_rel_unc": sk_hist.rel_unc, "sk_provenance": sk_hist.provenance,
        "dose_kind": cfg.dose.kind, "dose_unit": unit, "prescription_gy": rx,
        "histories": run.histories, "batches": run.batches, "seed": s.seed, "stopped_by": run.stopped_by,
        "transport_time_s": run.wall_time_s, "histories_per_second": run.histories / max(run.wall_time_s, 1e-9),
        "target_mean_rel_uncertainty": target_unc, "target_uncertainty_goal": tu, "mode": s.mode,
        "grid_shape_zyx": list(phantom.geometry.shape), "voxel_mm": [10 * v for v in phantom.geometry.spacing],
        "tg43_dataset": ds.source,
        "calibration": cfg.calibration.name if conv is not None else "egsphant media",
        "conversion": conv.summary() if conv is not None else "",
        "notes": [as_note(n).to_json() for n in inputs.notes],
        "ct_corrections_table": ct_table,
        "ct_corrections": ("; ".join(
            [f"{o.label} -> {o.material}: {o.voxels} voxels ({o.changed} changed)" for o in conv.overrides]
            + [f"seed voxels reassigned: {conv.seed_voxels}",
               f"streak voxels reassigned: {conv.artefact_voxels} (bright {conv.artefact_bright}, "
               f"dark {conv.artefact_dark})"]) if conv is not None else "egsphant input: none"),
        "plan_notes": {k: str(v) for k, v in plan.notes.items()},
        "seeds_from": "found automatically in the CT" if "seed_finding" in plan.notes else plan.source,
        "seed_finding": plan.notes.get("seed_finding"),
        "metrics": metrics, "gamma": gam, "tissue_ratios": ratios, "resumed_from_batches": run.resumed_from,
    }


# ---------------------------------------------------------------------------------------------
# 7. outputs
def write_dvh_files(out: Path, curves: dict, metrics: dict) -> tuple[Path, Path]:
    """``dvh.csv`` (cumulative DVH per ROI and calculation; LF line ends; each ROI binned at 1/1000 of
    its own highest dose) and ``dvh.json`` (metrics and curves).

    Calculations: ``mc`` and ``tg43`` over the ROI's voxels on the calculation grid outside the
    seeds; ``tg43_whole_roi`` over the whole ROI in the CT, where the grid covers only part of it.
    """
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["roi", "calculation", "dose_Gy", "volume_cc", "volume_percent"])
    for name, c in curves.items():
        for k, h in c.items():
            for d, v, p in zip(h.dose, h.volume_cc, h.volume_percent):
                wr.writerow([name, k, f"{d:.6g}", f"{v:.6g}", f"{p:.6g}"])
    p_csv, p_json = out / "dvh.csv", out / "dvh.json"
    with atomic_path(p_csv) as tmp:
        tmp.write_bytes(buf.getvalue().encode())
    write_json(p_json, {"metrics": metrics, "curves": {
        n: {k: {"dose_Gy": h.dose, "volume_cc": h.volume_cc, "total_cc": h.total_cc,
                "bin_Gy": float(h.dose[1] - h.dose[0]) if len(h.dose) > 1 else None} for k, h in c.items()}
        for n, c in curves.items()}})
    return p_csv, p_json


def write_patient_h5(path: Path, cfg: PatientRunConfig, inputs: PatientInputs, phantom: VoxelPhantom, dose, unc,
                     dose_w, tg43, mask, est: Estimate, factor: float, summary: dict) -> Path:
    """``dose.h5`` of a patient run (layout in docs/architecture.md)."""
    kw = dict(compression="gzip", compression_opts=4, shuffle=True)
    g = phantom.geometry
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("dose", data=dose, **kw).attrs["units"] = summary["dose_unit"]
        f["dose"].attrs["quantity"] = "Dm,m"
        f.create_dataset("dose_uncertainty", data=unc, **kw).attrs["units"] = summary["dose_unit"]
        f.create_dataset("dose_rel_uncertainty", data=est.rel_uncertainty.astype(np.float32), **kw)
        f.create_dataset("dose_per_history", data=est.mean, **kw).attrs["units"] = "Gy/history"
        if dose_w is not None:
            f.create_dataset("dose_water", data=dose_w, **kw).attrs["units"] = summary["dose_unit"]
            f["dose_water"].attrs["quantity"] = "Dw,m"
        f.create_dataset("tg43", data=tg43, **kw).attrs["units"] = summary["dose_unit"]
        f["tg43"].attrs["quantity"] = "Dw,w (TG-43)"
        from brachymc.compare import dose_difference_map, dose_ratio_map

        f.create_dataset("mc_over_tg43", data=dose_ratio_map(dose, tg43).astype(np.float32), **kw).attrs[
            "note"] = "MC / TG-43; NaN inside seeds and where TG-43 < 5 % of its maximum"
        f.create_dataset("mc_minus_tg43", data=dose_difference_map(dose, tg43), **kw).attrs["units"] = \
            summary["dose_unit"]
        f.create_dataset("seed_mask", data=mask, **kw)
        gg = f.create_group("geometry")
        gg.attrs["shape_zyx"] = np.asarray(g.shape)
        gg.attrs["spacing_cm"] = np.asarray(g.spacing)
        gg.attrs["origin_cm"] = np.asarray(g.origin)
        gg.attrs["axis_order"] = "arrays are [iz, iy, ix]; origin is the low corner of voxel (0,0,0); DICOM LPS"
        gg.create_dataset("material_index", data=phantom.material_index, **kw)
        gg.create_dataset("density", data=phantom.density, **kw).attrs["units"] = "g/cm3"
        if inputs.ct is not None:
            gg.create_dataset("hu", data=inputs.ct.hu.astype(np.float32), **kw)
        gg.attrs["materials"] = json.dumps([m.name for m in phantom.materials])
        sg = f.create_group("structures")
        for n, m in inputs.structures.items():
            ds = sg.create_dataset(n.replace("/", "_"), data=m.astype(np.float32), **kw)
            r = inputs.rois.rois.get(n)
            if r is not None:
                ds.attrs["roi_name"] = n
                ds.attrs["status"] = r.status
                ds.attrs["color_rgb"] = np.asarray(r.color)
                ds.attrs["covered_fraction"] = r.covered_fraction if r.covered_fraction is not None else np.nan
        pg = f.create_group("seeds")
        pg.create_dataset("positions_cm", data=inputs.plan.positions_cm)
        pg.create_dataset("directions", data=inputs.plan.directions)
        pg.create_dataset("sk_U_at_implant", data=inputs.plan.sk_at_implant())
        pg.attrs["model"] = inputs.model.key
        f.attrs["gy_per_gy_per_history"] = factor
        f.attrs["dose_quantity"] = "Dm,m (dose to medium in medium, kerma approximation)"
        f.attrs["summary"] = json.dumps(json_safe(summary), allow_nan=False)
        f.attrs["config_file"] = cfg.source
        f.attrs["config"] = json.dumps(asdict(cfg), default=str)
    return path


def write_outputs(cfg: PatientRunConfig, out: Path, inputs: PatientInputs, phantom: VoxelPhantom, dose, unc, dose_w,
                  tg43, mask, est: Estimate, factor: float, summary: dict, curves: dict | None = None) -> dict:
    g = phantom.geometry
    tg43_finite = np.nan_to_num(tg43, nan=0.0)
    paths = {"dose_h5": write_patient_h5(out / "dose.h5", cfg, inputs, phantom, dose, unc, dose_w, tg43, mask, est,
                                         factor, summary)}
    if curves:
        paths["dvh_csv"], paths["dvh_json"] = write_dvh_files(out, curves, summary["metrics"])
    if cfg.output.rtdose and cfg.dose.kind != "rate":
        from brachymc.io.dicom_export import write_dose_set
        from brachymc.io.dicom_rtdose import DicomReference

        # patient, study and frame as in the CT; doses reference the input RT Plan, or an RT Plan of
        # the seeds written beside them (CSV/TOML plans)
        ref = DicomReference(patient_id=inputs.patient_id, patient_name=inputs.patient_name,
                             study_instance_uid=inputs.study_instance_uid,
                             frame_of_reference_uid=inputs.frame_of_reference_uid,
                             referenced_plan_uid=inputs.plan_uid,
                             attributes=dict(getattr(inputs.ct, "dicom_attributes", None) or {}))
        doses = {"rtdose": (dose, "brachymc Monte Carlo dose (Dm,m)")}
        if dose_w is not None:
            doses["rtdose_water"] = (dose_w, "brachymc Monte Carlo dose to water in medium (Dw,m)")
        doses["rtdose_tg43"] = (np.nan_to_num(tg43, nan=0.0), "brachymc TG-43 dose (0 inside seeds)")
        paths.update(write_dose_set(out, g, ref, doses, plan=None if inputs.plan_uid else inputs.plan))
    if cfg.output.threeddose:
        from brachymc.io.egsnrc import write_3ddose

        rel = np.where(dose > 0, unc / np.where(dose > 0, dose, 1.0), 0.0)
        paths["3ddose"] = write_3ddose(out / "dose.3ddose", dose, rel, g)
    if cfg.output.figures or cfg.output.report:
        paths.update(_figures_and_report(cfg, out, inputs, dose, tg43_finite, ~mask, summary, curves or {}))
    return {k: str(v) for k, v in paths.items()}


def _figures_and_report(cfg, out: Path, inputs: PatientInputs, dose, tg43, scored, summary, curves) -> dict:
    from brachymc.report import patient as rp

    g = inputs.geometry
    rx = (cfg.dose.prescription_gy if cfg.dose.kind != "rate" else None) or \
        float(np.percentile(dose[dose > 0], 99)) / 1.5
    hu = inputs.ct.hu if inputs.ct is not None else np.zeros(g.shape)
    target = _structure(inputs, inputs.rois.target)
    if target is not None and target.sum() > 0:
        iz, iy, ix = np.nonzero(target >= 0.5)
        center = (g.centers(0)[int(np.median(ix))], g.centers(1)[int(np.median(iy))], g.centers(2)[int(np.median(iz))])
    else:
        center = tuple(np.median(inputs.plan.positions_cm, axis=0))
    colours = {n: tuple(c / 255.0 for c in r.color) for n, r in inputs.rois.rois.items()}
    weights = {n: (m * scored).astype(np.float32) for n, m in inputs.structures.items()}
    figures = {}
    figures["fig_slices"] = rp.plot_slices(out / "slices.png", hu, g, dose, rx, weights, inputs.plan.positions_cm,
                                           center, colours=colours,
                                           title="Monte Carlo dose (Dm,m) with isodoses, ROIs and seeds")
    figures["fig_difference"] = rp.plot_difference(out / "mc_vs_tg43.png", hu, g, dose, tg43, center,
                                                   prescription_gy=rx)
    if curves:
        figures["fig_dvh"] = rp.plot_dvh(out / "dvh.png", {n: (c.get("mc"), c.get("tg43"), c.get("tg43_whole_roi"))
                                                           for n, c in curves.items()}, rx, colours=colours)
    paths = dict(figures)
    if cfg.output.report:
        paths["report"] = rp.write_patient_report(out / "report.pdf", json_safe(summary),
                                                  figures=[figures[k] for k in ("fig_slices", "fig_dvh",
                                                                                "fig_difference") if k in figures])
    return paths
