"""The patient pipeline: CT + plan + structures -> Monte Carlo dose, TG-43 comparison and outputs.

Stages (:func:`run_patient`):

1. **Inputs** (:func:`load_inputs`): CT (DICOM series, HDF5/NPZ volume or EGSnrc ``.egsphant``),
   seed plan (DICOM RT Plan, CSV or TOML), RTSTRUCT. Everything is read and checked before
   anything is written: seeds inside the CT, matching frames of reference, known materials.
2. **Calculation grid**: the CT grid, optionally cropped to the seeds' box plus a margin and
   resampled to coarser voxels (mean HU).
3. **Phantom** (:func:`build_phantom`): HU -> density and medium with the calibration; voxels inside
   the modelled seeds and streak artefacts around them get the surrounding tissue; contour
   overrides.
4. **Transport** of the seeds' photons with every seed modelled (inter-seed effects; or
   superposition), batch statistics, stopping at a target uncertainty in the target volume or a
   time budget, with checkpoints (:mod:`brachymc.pipeline.runner`).
5. **Absolute dose**: dose per history -> Gy with the seeds' air-kerma strengths and S_K per
   history; total dose of a permanent implant (initial dose rate x T1/2 / ln 2) by default.
6. **TG-43** dose of the same seeds on the same grid; comparison (ratios, gamma, DVH).
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
from brachymc.errors import BrachyMCError, ConfigError, GeometryError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.geometry.seed import SeedModel, load_builtin_seed
from brachymc.geometry.seeded_phantom import SeededVoxelWorld, SeedPlacement, seed_volume_fraction
from brachymc.files import atomic_path
from brachymc.materials import MaterialLibrary, default_library
from brachymc.mc.physics import PhysicsSettings
from brachymc.mc.tally import DoseTally, Estimate
from brachymc.mc.transport import TransportSettings, make_transport
from brachymc.pipeline.config import PatientRunConfig
from brachymc.pipeline.runner import BatchRunResult, StopRule, run_batches
from brachymc.sources.plan import SeedPlan
from brachymc.mc.air_kerma import air_kerma_per_history
from brachymc.tg43.shipped import load_tg43_dataset
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


@dataclass
class PatientInputs:
    """Everything read from disk, checked, on the calculation grid."""

    ct: CTVolume | None                    # on the calculation grid (None for egsphant input)
    phantom_in: VoxelPhantom | None        # egsphant input
    geometry: GridGeometry                 # calculation grid
    plan: SeedPlan
    model: SeedModel
    structures: dict                       # name -> fractional mask on the calculation grid
    structure_set: object | None
    frame_of_reference_uid: str
    patient_id: str
    patient_name: str
    study_instance_uid: str
    plan_uid: str
    notes: list = field(default_factory=list)


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
    if not np.any(plan.sk_U > 0):
        raise ConfigError(f"{f}: every seed has zero air-kerma strength")
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
    notes.append(f"seeds found automatically in the CT: {res.n_seeds} seeds ({d['clusters_split']} clusters split)"
                 + (f", {pc.expected} expected" if pc.expected else "")
                 + (f"; doubtful: " + "; ".join(f"#{x['seed']} at {tuple(x['position_mm'])} mm ({', '.join(x['why'])})"
                                                for x in d["doubtful"]) if d["doubtful"] else "; none doubtful"))
    notes.extend(f"other metal in the CT (not seeds) at {tuple(m['centroid_mm'])} mm: {m['reason']}"
                 for m in d["other_metal"])
    return replace(plan, source=f"{ct.source} (seeds found in the CT)")


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


def _crop_box(geometry: GridGeometry, lo_cm: np.ndarray, hi_cm: np.ndarray) -> tuple[slice, slice, slice]:
    """Index slices (z, y, x) of the voxels meeting the box [lo, hi] (cm)."""
    o, s = np.array(geometry.origin), np.array(geometry.spacing)
    n = np.array([geometry.nx, geometry.ny, geometry.nz])
    i0 = np.clip(np.floor((lo_cm - o) / s).astype(int), 0, n - 1)
    i1 = np.clip(np.ceil((hi_cm - o) / s).astype(int), i0 + 1, n)
    return slice(int(i0[2]), int(i1[2])), slice(int(i0[1]), int(i1[1])), slice(int(i0[0]), int(i1[0]))


def _sub_geometry(g: GridGeometry, sl) -> GridGeometry:
    z, y, x = sl
    return GridGeometry(shape=(int(z.stop - z.start), int(y.stop - y.start), int(x.stop - x.start)),
                        spacing=g.spacing,
                        origin=(float(g.origin[0] + x.start * g.spacing[0]), float(g.origin[1] + y.start * g.spacing[1]),
                                float(g.origin[2] + z.start * g.spacing[2])))


def check_seeds_inside(plan: SeedPlan, model: SeedModel, geometry: GridGeometry, where: str) -> None:
    """Every seed must lie entirely inside the grid; the error names the seeds that do not."""
    zlo, zhi, rs = model.bounds()
    reach = float(np.sqrt(max(zlo * zlo, zhi * zhi) + rs * rs))
    lo, hi = np.array(geometry.origin), np.array(geometry.upper)
    p = plan.positions_cm
    bad = np.flatnonzero(np.any(p - reach < lo, axis=1) | np.any(p + reach > hi, axis=1))
    if bad.size:
        first = ", ".join(f"#{i + 1} at {tuple(np.round(10 * p[i], 1))} mm" for i in bad[:5])
        raise GeometryError(
            f"{where}: {bad.size} seed(s) outside the CT volume ({first}{' ...' if bad.size > 5 else ''}); CT spans "
            f"x {10 * lo[0]:.1f}..{10 * hi[0]:.1f}, y {10 * lo[1]:.1f}..{10 * hi[1]:.1f}, "
            f"z {10 * lo[2]:.1f}..{10 * hi[2]:.1f} mm (DICOM patient coordinates)")


def load_inputs(cfg: PatientRunConfig, library: MaterialLibrary | None = None) -> PatientInputs:
    """Read and check CT, plan and structures; build the calculation grid. Writes nothing."""
    library = library or default_library()
    notes: list[str] = []
    ct, phantom_in = _read_ct(cfg, library)
    if cfg.plan.from_ct:
        plan, plan_uid = _plan_from_ct(cfg, ct, library, notes), ""
    else:
        plan, plan_uid = _read_plan(cfg, library)
    try:
        model = load_builtin_seed(plan.model, library)
    except (BrachyMCError, FileNotFoundError, KeyError) as exc:
        raise ConfigError(f"{cfg.plan.file}: seed model {plan.model!r}: {exc}") from None
    full_geom = ct.geometry if ct is not None else phantom_in.geometry
    check_seeds_inside(plan, model, full_geom, f"{cfg.plan.file}")
    frame = ct.frame_of_reference_uid if ct is not None else ""
    plan_frame = str(plan.notes.get("frame_of_reference_uid", "") or "")
    if frame and plan_frame and plan_frame != frame:
        raise ConfigError(f"{cfg.plan.file}: FrameOfReferenceUID {plan_frame} differs from the CT's {frame}")

    # calculation grid: crop, then resample
    geom = full_geom
    if cfg.ct.crop_margin_mm is not None:
        m = cfg.ct.crop_margin_mm / 10.0
        sl = _crop_box(full_geom, plan.positions_cm.min(0) - m, plan.positions_cm.max(0) + m)
        geom = _sub_geometry(full_geom, sl)
        if ct is not None:
            ct = replace(ct, hu=np.ascontiguousarray(ct.hu[sl]), geometry=geom)
        else:
            phantom_in = VoxelPhantom(geom, phantom_in.materials, np.ascontiguousarray(phantom_in.material_index[sl]),
                                      np.ascontiguousarray(phantom_in.density[sl]))
        notes.append(f"calculation grid cropped to the seeds +/- {cfg.ct.crop_margin_mm:g} mm: {geom.shape} voxels")
    if cfg.ct.calculation_voxel_mm is not None:
        if ct is None:
            raise ConfigError(f"{cfg.source}: [ct].calculation_voxel_mm needs a CT (HU) input, not an egsphant phantom")
        from brachymc.geometry.resample import resample_ct

        ct = resample_ct(ct, tuple(v / 10.0 for v in cfg.ct.calculation_voxel_mm))
        geom = ct.geometry
        notes.append(f"CT resampled to {cfg.ct.calculation_voxel_mm} mm voxels (mean HU): {geom.shape}")
    check_seeds_inside(plan, model, geom, f"{cfg.plan.file} (calculation grid)")

    structures: dict[str, np.ndarray] = {}
    sset = None
    if cfg.structures.rtstruct is not None:
        from brachymc.geometry.structures import structure_masks
        from brachymc.io.dicom_rtstruct import read_rtstruct

        if not cfg.structures.rtstruct.is_file():
            raise ConfigError(f"{cfg.source}: [structures].rtstruct {cfg.structures.rtstruct} does not exist")
        sset = read_rtstruct(cfg.structures.rtstruct, frame_of_reference_uid=frame or None)
        structures = structure_masks(sset, geom, subsamples=cfg.structures.subsamples)
        names = {n.lower(): n for n in structures}
        for what, name in (("target", cfg.structures.target), ("cord", cfg.structures.cord)):
            if name and name.lower() not in names:
                raise ConfigError(f"{cfg.structures.rtstruct}: no ROI named {name!r} ([structures].{what}); "
                                  f"ROIs: {', '.join(structures) or 'none'}")
    for o in cfg.overrides:
        if o.roi.lower() not in {n.lower() for n in structures}:
            raise ConfigError(f"{cfg.source}: [[override]] roi {o.roi!r} is not in the structure set "
                              f"({', '.join(structures) or 'no RTSTRUCT given'})")
        library[o.material]      # unknown material -> MaterialError naming it
    return PatientInputs(
        ct=ct, phantom_in=phantom_in, geometry=geom, plan=plan, model=model, structures=structures,
        structure_set=sset, frame_of_reference_uid=frame,
        patient_id=getattr(ct, "patient_id", "") if ct is not None else "",
        patient_name=getattr(ct, "patient_name", "") if ct is not None else "",
        study_instance_uid=getattr(ct, "study_instance_uid", "") if ct is not None else "",
        plan_uid=plan_uid, notes=notes)


def _structure(inputs: PatientInputs, name: str | None) -> np.ndarray | None:
    if not name:
        return None
    for k, v in inputs.structures.items():
        if k.lower() == name.lower():
            return v
    return None


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
    overrides = [Override(mask=_structure(inputs, o.roi) >= 0.5, material=o.material, density=o.density,
                          label=f"ROI {o.roi}") for o in cfg.overrides]
    return ct_to_phantom(inputs.ct, cal, library, overrides=overrides, seed_mask=seed_mask, artefact=artefact,
                         seed_centers_cm=inputs.plan.positions_cm)


# ---------------------------------------------------------------------------------------------
def _fingerprint(cfg: PatientRunConfig, inputs: PatientInputs, phantom: VoxelPhantom) -> str:
    """What a checkpoint must match: phantom, seeds, strengths and the settings that shape a batch."""
    h = hashlib.sha256()
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
    for label, name in (("GTV", cfg.structures.target), ("spinal cord", cfg.structures.cord)):
        m = _structure(inputs, name)
        if m is not None:
            out[label] = (m * scored).astype(np.float32)
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


def run_patient(cfg: PatientRunConfig, out: str | Path, resume: bool = False, progress: bool = True,
                library: MaterialLibrary | None = None, on_batch=None, echo=print, client=None) -> PatientResult:
    """Run the whole pipeline (see the module docstring) and write the outputs to ``out``.

    ``client``: a Dask ``distributed.Client``; batches then run on its workers
    (:mod:`brachymc.pipeline.distributed`) with the same result as in-process.
    """
    t_start = time.perf_counter()
    library = library or default_library()
    out = Path(out)
    inputs = load_inputs(cfg, library)
    phantom, conv = build_phantom(cfg, inputs, library)
    if cfg.dose.dose_to_water and "water" not in phantom.material_names():
        phantom = VoxelPhantom(phantom.geometry, phantom.materials + (library["water"],), phantom.material_index,
                               phantom.density)
    s = cfg.simulation
    backend = get_backend(s.backend)
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
    target = _structure(inputs, cfg.structures.target)
    scored = ~world.mask
    target_region = None if target is None else (target >= 0.5) & scored
    tu = s.target_uncertainty if target_region is not None and target_region.any() else None
    if s.target_uncertainty is not None and tu is None:
        inputs.notes.append("no target structure: the run stops at the history limit or the time budget")
    rule = StopRule(max_histories=max(s.histories, s.min_batches * s.batch_histories),
                    batch_histories=s.batch_histories, min_batches=s.min_batches, target_rel_unc=tu,
                    time_budget_s=s.time_budget_s, checkpoint_every_s=s.checkpoint_every_s)
    fp = _fingerprint(cfg, inputs, phantom)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.h5"
    if ckpt.exists() and not resume:
        raise ConfigError(f"{ckpt} exists from an earlier run: pass --resume to continue it or remove it")
    echo(f"brachymc run: {inputs.plan.n_seeds} seeds ({inputs.model.key}), grid {phantom.geometry.shape} "
         f"voxels of {tuple(round(10 * v, 3) for v in phantom.geometry.spacing)} mm, backend {backend.name}")
    executor = None
    if client is not None:
        from brachymc.pipeline.distributed import BatchProblem, DaskExecutor
        from brachymc.pipeline.runner import default_quantities

        problem = BatchProblem(key=fp, phantom=phantom, transport=ts, backend=backend.name, model=inputs.model,
                               placements=placements_of(inputs.plan), weights=tuple(sk_now), mode=s.mode,
                               volume_samples=100_000, quantities=default_quantities(tally))
        executor = DaskExecutor(client, problem, s.batch_histories, s.seed)
        echo(f"  batches on Dask: {len(client.scheduler_info().get('workers', {}))} workers")
    run = run_batches(transport, source, tally, rule, s.seed, target_region=target_region if tu else None,
                      checkpoint=ckpt, resume=resume, fingerprint=fp, progress=progress, on_batch=on_batch,
                      executor=executor)

    # ---- absolute dose
    factor, unit = _dose_factor(cfg, float(sk_now.sum()), sk_hist.value)
    est = tally.estimate("dose")
    dose = np.where(scored, est.mean * factor, 0.0)
    unc = np.where(scored, est.uncertainty * factor, 0.0)
    dose_w = None
    if cfg.dose.dose_to_water:
        dose_w = np.where(scored, tally.estimate("dose_water").mean * factor, 0.0)
    # ---- TG-43 on the same grid: voxel means of s^3 points (NaN where no point is outside the seeds)
    ds = load_tg43_dataset(inputs.model.key, cfg.tg43.dataset)
    g = phantom.geometry
    rate_cgy_h = tg43_voxel_mean(ds, inputs.plan.positions_cm, inputs.plan.directions, sk_now, g,
                                 cfg.tg43.formalism, cfg.tg43.subsamples)
    tg_factor, _ = _dose_factor(cfg, 1.0, GY_CM2_PER_H_PER_U)       # Gy per (Gy/h initial rate)
    tg43 = np.where(scored, rate_cgy_h * 0.01 * tg_factor, np.nan)

    # ---- comparison
    from brachymc.compare import dvh_comparison, gamma_pass_rates, ratio_by_tissue

    # a prescription (Gy) applies to total or window doses, not to a dose rate
    rx = cfg.dose.prescription_gy if cfg.dose.kind != "rate" else None
    if cfg.dose.kind == "rate" and cfg.dose.prescription_gy:
        inputs.notes.append("dose kind 'rate': the prescription is not applied to dose rates (no V100, isodoses "
                            "relative to the maximum)")
    weights = {n: (m * scored).astype(np.float32) for n, m in inputs.structures.items()}
    metrics = dvh_comparison(dose, tg43, weights, g.voxel_volume, rx) if weights else {}
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
    summary = {
        "version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.source, "device": backend.device_name if hasattr(backend, "device_name") else backend.name,
        "host": platform.node(), "backend": backend.name, "n_seeds": inputs.plan.n_seeds, "seed_model": inputs.model.key,
        "sk_total_U_at_implant": float(sk_now.sum()), "sk_per_history_Gy_cm2": sk_hist.value,
        "sk_per_history_rel_unc": sk_hist.rel_unc, "sk_provenance": sk_hist.provenance,
        "dose_kind": cfg.dose.kind, "dose_unit": unit, "prescription_gy": rx,
        "histories": run.histories, "batches": run.batches, "seed": s.seed, "stopped_by": run.stopped_by,
        "transport_time_s": run.wall_time_s, "histories_per_second": run.histories / max(run.wall_time_s, 1e-9),
        "target_mean_rel_uncertainty": target_unc, "target_uncertainty_goal": tu, "mode": s.mode,
        "grid_shape_zyx": list(g.shape), "voxel_mm": [10 * v for v in g.spacing], "tg43_dataset": ds.source,
        "calibration": cfg.calibration.name if conv is not None else "egsphant media",
        "conversion": conv.summary() if conv is not None else "", "notes": inputs.notes,
        "ct_corrections_table": ({**{o.label: {"material": o.material, "voxels": o.voxels, "changed": o.changed}
                                     for o in conv.overrides},
                                  "seed voxels": {"material": "surrounding tissue", "voxels": conv.seed_voxels},
                                  "streak voxels": {"material": "surrounding tissue", "voxels": conv.artefact_voxels}}
                                 if conv is not None else {}),
        "ct_corrections": ("; ".join(
            [f"{o.label} -> {o.material}: {o.voxels} voxels ({o.changed} changed)" for o in conv.overrides]
            + [f"seed voxels reassigned: {conv.seed_voxels}",
               f"streak voxels reassigned: {conv.artefact_voxels} (bright {conv.artefact_bright}, "
               f"dark {conv.artefact_dark})"]) if conv is not None else "egsphant input: none"),
        "plan_notes": {k: str(v) for k, v in inputs.plan.notes.items()},
        "seeds_from": "found automatically in the CT" if "seed_finding" in inputs.plan.notes else inputs.plan.source,
        "seed_finding": inputs.plan.notes.get("seed_finding"),
        "metrics": metrics, "gamma": gam, "tissue_ratios": ratios, "resumed_from_batches": run.resumed_from,
    }
    outputs = write_outputs(cfg, out, inputs, phantom, dose, unc, dose_w, tg43, ~scored, est, factor, summary)
    summary["total_time_s"] = time.perf_counter() - t_start
    _write_json(out / "summary.json", summary)
    ckpt.unlink(missing_ok=True)      # the run is complete: outputs hold everything
    return PatientResult(g, dose, unc, dose_w, tg43, ~scored, phantom, inputs.structures, metrics, gam, ratios, run,
                         summary, outputs)


# ---------------------------------------------------------------------------------------------
# 7. outputs
def _write_json(path: Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def write_dvh_files(out: Path, dose: np.ndarray, tg43: np.ndarray, weights: dict, voxel_cc: float,
                    metrics: dict) -> tuple[Path, Path]:
    """``dvh.csv`` (cumulative DVH per ROI, MC and TG-43) and ``dvh.json`` (metrics and curves)."""
    from brachymc.dvh import cumulative_dvh

    curves = {}
    dmax = max(float(np.max(dose)), float(np.max(tg43)), 1e-12)
    bin_gy = dmax / 1000.0
    for name, w in weights.items():
        if not np.any(w > 0):
            continue
        curves[name] = {k: cumulative_dvh(name, d, w, voxel_cc, bin_gy) for k, d in (("mc", dose), ("tg43", tg43))}
    buf = io.StringIO()
    wr = csv.writer(buf)
    wr.writerow(["roi", "calculation", "dose_Gy", "volume_cc", "volume_percent"])
    for name, c in curves.items():
        for k, h in c.items():
            for d, v, p in zip(h.dose, h.volume_cc, h.volume_percent):
                wr.writerow([name, k, f"{d:.6g}", f"{v:.6g}", f"{p:.6g}"])
    p_csv, p_json = out / "dvh.csv", out / "dvh.json"
    with atomic_path(p_csv) as tmp:
        tmp.write_text(buf.getvalue())
    _write_json(p_json, {"metrics": metrics, "curves": {
        n: {k: {"dose_Gy": h.dose, "volume_cc": h.volume_cc, "total_cc": h.total_cc} for k, h in c.items()}
        for n, c in curves.items()}})
    return p_csv, p_json


def write_patient_h5(path: Path, cfg: PatientRunConfig, inputs: PatientInputs, phantom: VoxelPhantom, dose, unc,
                     dose_w, tg43, mask, est: Estimate, factor: float, summary: dict) -> Path:
    """``dose.h5`` of a patient run (layout in docs/architecture.md)."""
    kw = dict(compression="gzip", compression_opts=4, shuffle=True)
    g = phantom.geometry
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("dose", data=dose, **kw).attrs["units"] = summary["dose_unit"]
        f.create_dataset("dose_uncertainty", data=unc, **kw).attrs["units"] = summary["dose_unit"]
        f.create_dataset("dose_rel_uncertainty", data=est.rel_uncertainty.astype(np.float32), **kw)
        f.create_dataset("dose_per_history", data=est.mean, **kw).attrs["units"] = "Gy/history"
        if dose_w is not None:
            f.create_dataset("dose_water", data=dose_w, **kw).attrs["units"] = summary["dose_unit"]
        f.create_dataset("tg43", data=tg43, **kw).attrs["units"] = summary["dose_unit"]
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
            sg.create_dataset(n, data=m.astype(np.float32), **kw)
        pg = f.create_group("seeds")
        pg.create_dataset("positions_cm", data=inputs.plan.positions_cm)
        pg.create_dataset("directions", data=inputs.plan.directions)
        pg.create_dataset("sk_U_at_implant", data=inputs.plan.sk_at_implant())
        pg.attrs["model"] = inputs.model.key
        f.attrs["gy_per_gy_per_history"] = factor
        f.attrs["dose_quantity"] = "Dm,m (dose to medium in medium, kerma approximation)"
        f.attrs["summary"] = json.dumps(summary, default=str)
        f.attrs["config_file"] = cfg.source
        f.attrs["config"] = json.dumps(asdict(cfg), default=str)
    return path


def write_outputs(cfg: PatientRunConfig, out: Path, inputs: PatientInputs, phantom: VoxelPhantom, dose, unc, dose_w,
                  tg43, mask, est: Estimate, factor: float, summary: dict) -> dict:
    g = phantom.geometry
    tg43_finite = np.nan_to_num(tg43, nan=0.0)
    paths = {"dose_h5": write_patient_h5(out / "dose.h5", cfg, inputs, phantom, dose, unc, dose_w, tg43, mask, est,
                                         factor, summary)}
    weights = {n: (m * ~mask).astype(np.float32) for n, m in inputs.structures.items()}
    if weights:
        paths["dvh_csv"], paths["dvh_json"] = write_dvh_files(out, dose, tg43_finite, weights, g.voxel_volume,
                                                               summary["metrics"])
    if cfg.output.rtdose and cfg.dose.kind != "rate":
        from brachymc.io.dicom_rtdose import DicomReference, write_rtdose

        ref = DicomReference(patient_id=inputs.patient_id, patient_name=inputs.patient_name,
                             study_instance_uid=inputs.study_instance_uid,
                             frame_of_reference_uid=inputs.frame_of_reference_uid,
                             referenced_plan_uid=inputs.plan_uid)
        paths["rtdose"] = write_rtdose(out / "rtdose.dcm", dose, g, ref)
        if dose_w is not None:
            paths["rtdose_water"] = write_rtdose(out / "rtdose_water.dcm", dose_w, g, ref,
                                                 comment="brachymc Monte Carlo dose to water in medium (Dw,m)")
        paths["rtdose_tg43"] = write_rtdose(out / "rtdose_tg43.dcm", np.nan_to_num(tg43, nan=0.0), g, ref,
                                            comment="brachymc TG-43 dose (0 inside seeds)")
    if cfg.output.threeddose:
        from brachymc.io.egsnrc import write_3ddose

        rel = np.where(dose > 0, unc / np.where(dose > 0, dose, 1.0), 0.0)
        paths["3ddose"] = write_3ddose(out / "dose.3ddose", dose, rel, g)
    if cfg.output.figures or cfg.output.report:
        paths.update(_figures_and_report(cfg, out, inputs, dose, tg43_finite, weights, summary))
    return {k: str(v) for k, v in paths.items()}


def _figures_and_report(cfg, out: Path, inputs: PatientInputs, dose, tg43, weights, summary) -> dict:
    from brachymc.dvh import cumulative_dvh
    from brachymc.report import patient as rp

    g = inputs.geometry
    rx = (cfg.dose.prescription_gy if cfg.dose.kind != "rate" else None) or \
        float(np.percentile(dose[dose > 0], 99)) / 1.5
    hu = inputs.ct.hu if inputs.ct is not None else np.zeros(g.shape)
    target = _structure(inputs, cfg.structures.target)
    if target is not None and target.sum() > 0:
        iz, iy, ix = np.nonzero(target >= 0.5)
        center = (g.centers(0)[int(np.median(ix))], g.centers(1)[int(np.median(iy))], g.centers(2)[int(np.median(iz))])
    else:
        center = tuple(np.median(inputs.plan.positions_cm, axis=0))
    paths = {}
    paths["fig_slices"] = rp.plot_slices(out / "slices.png", hu, g, dose, rx, weights, inputs.plan.positions_cm, center)
    paths["fig_difference"] = rp.plot_difference(out / "mc_vs_tg43.png", hu, g, dose, tg43, center, prescription_gy=rx)
    if weights:
        dmax = max(float(dose.max()), float(tg43.max()), 1e-12)
        dv = {n: (cumulative_dvh(n, dose, w, g.voxel_volume, dmax / 500), cumulative_dvh(n, tg43, w, g.voxel_volume,
                                                                                        dmax / 500))
              for n, w in weights.items() if np.any(w > 0)}
        paths["fig_dvh"] = rp.plot_dvh(out / "dvh.png", dv, rx)
    if cfg.output.report:
        settings = {k: summary[k] for k in ("histories", "batches", "seed", "backend", "device", "transport_time_s",
                                            "target_mean_rel_uncertainty", "calibration", "seed_model", "dose_unit",
                                            "n_seeds", "sk_total_U_at_implant", "stopped_by", "mode")}
        if summary.get("seed_finding"):
            sf = summary["seed_finding"]
            settings["seeds"] = (f"found automatically in the CT: {sf['n_seeds']} seeds, {sf['clusters_split']} clusters "
                                 f"split, {len(sf['doubtful'])} doubtful"
                                 + "".join(f"; #{x['seed']} at {tuple(x['position_mm'])} mm" for x in sf["doubtful"]))
        paths["report"] = rp.write_summary_pdf(
            out / "report.pdf", title=f"brachymc patient dose — {inputs.patient_id or 'patient'}",
            metrics_table=summary.get("ct_corrections_table") or None, metrics_heading="CT corrections (HU -> media)",
            comparison=summary["metrics"],
            gamma=summary["gamma"], tissue_ratios=summary["tissue_ratios"], settings=settings,
            figures=[p for k, p in paths.items() if k.startswith("fig_")])
    return paths
