"""Find every seed (centre and axis) in a post-implant CT, clusters included.

:func:`find_seeds` runs the steps described in ``docs/seed_finding.md``:

1. scan levels and metal components relative to the local background
   (:mod:`~brachymc.seedfinder.segment`);
2. per component, the summed excess intensity over the local background S (HU mm^3) and its
   intensity moments;
3. the *seed unit* S1: the median S of the components that look like one seed (S within a factor
   1.5 of the median of all components, length no more than one seed's);
4. the scan's image model (segment length, in-plane and axial blur, line density) from free fits
   to up to 25 of those isolated seeds (:func:`~brachymc.seedfinder.fit.calibrate`);
5. per component, k from r = S / S1: fits of k-1, k, k+1 blurred seeds (several starts each);
   the number that minimises a penalised residual (BIC-like, with the count prior r and the
   requirement that every seed carries about one seed's line density) wins;
6. components holding far more metal than ``max_seeds_per_cluster`` seeds, or that no set of
   seeds fits, are *other metal* (screws, rods, clips): reported, never turned into seeds; in
   slices >= 2 mm each cluster's count is then judged again with the uncertainty of its
   background, from a second fill around the fitted seeds (:func:`_recount`);
7. priors (:mod:`~brachymc.seedfinder.priors`): body, ROI, expected count, needle tracks; each
   seed gets a confidence in [0, 1] and the reasons it is doubtful, if any.

Coordinates are DICOM patient coordinates (LPS) in mm; axes are unit vectors with dz >= 0 (a
seed is symmetric, the sign carries no meaning).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from threadpoolctl import threadpool_limits

from brachymc.errors import ConfigError
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.seed import SeedModel
from brachymc.seedfinder._threads import thread_map
from brachymc.seedfinder.appearance import SeedAppearance
from brachymc.seedfinder.fit import (FIT_SOLVERS, THICK_SLICE_MM, Patch, SeedFit, amplitude_from_sum, calibrate,
                                     fit_seeds, principal_axis)
from brachymc.seedfinder.heights import SHARE_SLICE_MM, refine_heights
from brachymc.seedfinder.split import (MIN_SPLIT_LOCAL_R2, MIN_SPLIT_RATIO, Split, amplitude_ratios, count_ratio,
                                       score, split_component)
from brachymc.seedfinder.segment import (STRUCT26, ScanLevels, body_mask, find_components, inpainted_background,
                                         scan_levels, split_off_thick_metal)


class NoMetalError(ConfigError):
    """The CT holds no metal at all (not a post-implant CT, or the wrong series)."""


@dataclass(frozen=True)
class FinderSettings:
    """Settings of the seed finder (HU levels are relative to the local background).

    ``core_excess_hu``: only metal gets this far above its background; ``candidate_excess_hu``:
    the lowest level that still belongs to a seed (in-plane seeds in thick slices);
    ``grow_mm``: how far a component reaches from its core voxels; ``max_seeds_per_cluster``:
    above this many seeds' worth of metal a component is other metal; ``faint_fraction``:
    components with less than this fraction of one seed's intensity are not seeds;
    ``doubtful_below``: seeds with a lower confidence are listed as doubtful; ``roi_margin_mm``:
    seeds farther than this outside the ROI are doubtful; ``calibration_seeds``: the most
    isolated seeds used to calibrate the image model; ``fit_solver``: ``"compiled"`` (the fits'
    loop in numba) or ``"scipy"`` (the same algorithm through ``scipy.optimize.least_squares``,
    the reference; :func:`~brachymc.seedfinder.fit.fit_seeds`); ``random_seed``: the run seed
    of the fits' random starts (each component draws from its own stream, :func:`component_rng`);
    ``workers``: threads that fit components at the same time (``None``: up to 2, as many as
    the machine has cores); the seeds found do not depend on it.
    """

    core_excess_hu: float = 1800.0
    candidate_excess_hu: float = 1000.0
    grow_mm: float = 1.5
    max_seeds_per_cluster: int = 8
    faint_fraction: float = 0.3
    doubtful_below: float = 0.5
    roi_margin_mm: float = 10.0
    calibration_seeds: int = 25
    random_seed: int = 0
    fit_solver: str = "compiled"
    workers: int | None = None


@dataclass(frozen=True)
class FoundSeed:
    """One seed: centre (mm), unit axis, confidence, the cluster it came from and why it is doubtful."""

    position_mm: tuple[float, float, float]
    direction: tuple[float, float, float]
    confidence: float
    cluster: int                      # index into SeedFindResult.clusters
    amplitude_ratio: float            # line density / one seed's
    doubtful: tuple[str, ...] = ()
    track: int | None = None          # needle track index, if on one

    @property
    def is_doubtful(self) -> bool:
        return bool(self.doubtful)


@dataclass(frozen=True)
class Cluster:
    """A metal component judged to hold ``n_seeds`` seeds (1: an isolated seed)."""

    centroid_mm: tuple[float, float, float]
    n_seeds: int
    seed_equivalents: float           # S / S1
    n_voxels: int
    fit_r2: float


@dataclass(frozen=True)
class MetalObject:
    """Metal that is not seeds (screw, rod, clip), or a faint spot too weak to be a seed."""

    centroid_mm: tuple[float, float, float]
    extent_mm: tuple[float, float, float]       # 4 x the principal standard deviations
    seed_equivalents: float
    n_voxels: int
    reason: str


@dataclass(frozen=True)
class SeedFindResult:
    """Everything :func:`find_seeds` found and judged."""

    seeds: tuple[FoundSeed, ...]
    clusters: tuple[Cluster, ...]
    other_metal: tuple[MetalObject, ...]
    faint: tuple[MetalObject, ...]
    appearance: SeedAppearance
    levels: ScanLevels
    expected: int | None = None
    tracks: tuple[tuple[int, ...], ...] = ()
    source: str = ""
    notes: tuple[str, ...] = ()
    timing_s: dict = field(default_factory=dict)
    diagnostics: tuple[dict, ...] = ()          # per component: centroid, S / S1, scores per k, decision

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def positions_mm(self) -> np.ndarray:
        return np.array([s.position_mm for s in self.seeds], float).reshape(-1, 3)

    def directions(self) -> np.ndarray:
        return np.array([s.direction for s in self.seeds], float).reshape(-1, 3)

    def confidences(self) -> np.ndarray:
        return np.array([s.confidence for s in self.seeds], float)

    def doubtful(self) -> list[int]:
        return [i for i, s in enumerate(self.seeds) if s.is_doubtful]

    def clusters_split(self) -> int:
        return sum(1 for c in self.clusters if c.n_seeds > 1)

    def summary(self) -> str:
        """A few lines for the console and the report."""
        n_multi = self.clusters_split()
        held = sum(c.n_seeds for c in self.clusters if c.n_seeds > 1)
        lines = [f"{self.n_seeds} seeds found ({self.appearance.model}) in {len(self.clusters)} metal components"
                 + (f"; {n_multi} clusters split into {held} seeds" if n_multi else "")
                 + (f"; expected {self.expected}" if self.expected is not None else "")]
        if n_multi:
            sizes = sorted((c.n_seeds for c in self.clusters if c.n_seeds > 1), reverse=True)
            lines.append("  cluster sizes: " + ", ".join(str(s) for s in sizes))
        a = self.appearance
        lines.append(f"  image model from {a.calibrated_from} isolated seeds: segment {a.length_mm:.2f} mm, "
                     f"blur sigma {a.sigma_xy_mm:.2f} mm in-plane, {a.sigma_z_mm:.2f} mm axial"
                     + (f"; scan saturates at {self.levels.clip_hu:g} HU" if self.levels.clip_hu is not None else ""))
        if self.tracks:
            lines.append(f"  {len(self.tracks)} needle tracks of >= 3 seeds ({sum(len(t) for t in self.tracks)} seeds)")
        for m in self.other_metal:
            lines.append(f"  other metal (not seeds) at {_fmt(m.centroid_mm)} mm, {m.extent_mm[0]:.0f} x "
                         f"{m.extent_mm[1]:.0f} x {m.extent_mm[2]:.0f} mm: {m.reason}")
        if self.faint:
            lines.append(f"  {len(self.faint)} faint spot(s) below {100 * 0.3:.0f} % of a seed's intensity ignored")
        d = self.doubtful()
        if d:
            lines.append(f"  {len(d)} doubtful seed(s) (kept in the output, confidence < 0.5 or flagged):")
            for i in d:
                s = self.seeds[i]
                lines.append(f"    #{i + 1} at {_fmt(s.position_mm)} mm, confidence {s.confidence:.2f}: "
                             + "; ".join(s.doubtful))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_plan(self, sk_U: float = 0.0, model: str | None = None, reference_date=None, implant_date=None,
                include_doubtful: bool = True):
        """The seeds as a :class:`~brachymc.sources.plan.SeedPlan` (all with strength ``sk_U``)."""
        from brachymc.sources.plan import SeedPlan

        keep = [i for i, s in enumerate(self.seeds) if include_doubtful or not s.is_doubtful]
        if not keep:
            raise ConfigError(f"{self.source}: no seeds to make a plan from")
        pos = self.positions_mm()[keep] / 10.0
        dirs = self.directions()[keep]
        notes = {"seed_finding": self.report_dict(), "format": "seeds found in the CT"}
        return SeedPlan(pos, dirs, np.full(len(keep), float(sk_U)), model=model or self.appearance.model,
                        reference_date=reference_date, implant_date=implant_date or reference_date,
                        orientation="given", source=self.source, notes=notes)

    def report_dict(self) -> dict:
        """JSON-ready facts for summaries and reports."""
        return {
            "method": "found automatically in the CT (brachymc seedfinder)",
            "n_seeds": self.n_seeds, "expected": self.expected,
            "clusters_split": self.clusters_split(),
            "cluster_sizes": sorted((c.n_seeds for c in self.clusters if c.n_seeds > 1), reverse=True),
            "doubtful": [{"seed": i + 1, "position_mm": [round(v, 2) for v in self.seeds[i].position_mm],
                          "confidence": round(self.seeds[i].confidence, 3), "why": list(self.seeds[i].doubtful)}
                         for i in self.doubtful()],
            "other_metal": [{"centroid_mm": [round(v, 1) for v in m.centroid_mm], "reason": m.reason}
                            for m in self.other_metal],
            "image_model": {"segment_mm": self.appearance.length_mm, "sigma_xy_mm": self.appearance.sigma_xy_mm,
                            "sigma_z_mm": self.appearance.sigma_z_mm,
                            "from_isolated_seeds": self.appearance.calibrated_from},
            "needle_tracks": len(self.tracks),
        }


def _fmt(p) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in p) + ")"


def _canonical(u: np.ndarray) -> np.ndarray:
    u = u / np.linalg.norm(u)
    for k in (2, 1, 0):
        if abs(u[k]) > 1e-9:
            return u if u[k] > 0 else -u
    return u


# ----------------------------------------------------------------------------------------------

@dataclass
class _Work:
    comp_index: np.ndarray
    patch: Patch
    S: float
    centroid: np.ndarray
    cov: np.ndarray
    n_core: int
    ratio: float = 0.0
    fit: SeedFit | None = None
    k: int = 0
    kind: str = "seeds"
    reason: str = ""
    score: dict = field(default_factory=dict)
    fits: dict = field(default_factory=dict)
    box: tuple = ()                              # the slices of its box in the CT
    region: tuple = ()                           # (iz, iy, ix) of the patch's voxels in the box
    box_labels: np.ndarray | None = None         # the metal components' voxels in the box
    background_sd: float = 0.0                   # the uncertainty (log) of S from its background (_recount)
    rng: np.random.Generator | None = None       # its own stream of random starts (component_rng)


def component_rng(hu_values: np.ndarray, random_seed: int) -> np.random.Generator:
    """The random stream of one component's fits, keyed by the run seed and by the component's
    own voxel values (sorted, to 0.01 HU): the same component gets the same random starts
    wherever it lies in the CT, in whatever order the components are fitted, whatever other
    metal the scan holds and in whichever thread it is fitted. With one stream shared by all
    components (until stop 32) a change of one cluster's fit moved the starts of every cluster
    fitted after it, and counts elsewhere flipped."""
    q = np.sort(np.round(np.asarray(hu_values, np.float64) * 100.0).astype(np.int64))
    key = int.from_bytes(hashlib.blake2b(q.tobytes(), digest_size=8).digest(), "little")
    return np.random.default_rng([int(random_seed), key])


def resolved_workers(settings: FinderSettings) -> int:
    """The threads :func:`find_seeds` fits components on with ``settings`` (``workers``, or by
    default up to 2, as many as the machine has cores). Raises ConfigError for a bad count."""
    if settings.workers is not None:
        if not isinstance(settings.workers, (int, np.integer)) or settings.workers < 1:
            raise ConfigError(f"seed finder settings: workers must be a whole number >= 1, not {settings.workers!r}")
        return int(settings.workers)
    return max(1, min(2, os.cpu_count() or 1))


def _voxel_mm(ct: CTVolume):
    g = ct.geometry
    return np.array([10.0 * s for s in g.spacing]), np.array([10.0 * o for o in g.origin])


def _patches(hu, comps, voxel, origin, levels, settings, labels):
    dx, dy, dz = voxel
    mx, my, mz = (max(2, int(np.ceil(3.0 / d))) for d in (dx, dy, dz))
    mz = max(1, int(np.ceil(3.0 / dz)))
    nz, ny, nx = hu.shape
    # the hole: metal, its blur tails (the fit's one-voxel margin) and one more voxel in-plane
    disc = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    work = []
    for ci, comp in enumerate(comps, 1):
        lo = comp.index.min(0)
        hi = comp.index.max(0) + 1
        sl = (slice(max(lo[0] - mz, 0), min(hi[0] + mz, nz)), slice(max(lo[1] - my, 0), min(hi[1] + my, ny)),
              slice(max(lo[2] - mx, 0), min(hi[2] + mx, nx)))
        box = hu[sl]
        lab = labels[sl]
        own = lab == ci
        # background: the box with all metal and its blur tails filled in from the surroundings
        hole = ndimage.binary_dilation(lab > 0, structure=STRUCT26)
        hole = ndimage.binary_dilation(hole, structure=disc[None])
        bg, spread = inpainted_background(box, hole, voxel, levels.noise_hu, with_spread=True)
        # the fit sees the component and its blur tails (1 voxel around it), never another component
        region = ndimage.binary_dilation(own, structure=np.ones((3, 3, 3), bool)) & ((labels[sl] == 0) | own)
        iz, iy, ix = np.nonzero(region)
        pts = np.column_stack([origin[0] + (ix + sl[2].start + 0.5) * dx, origin[1] + (iy + sl[1].start + 0.5) * dy,
                               origin[2] + (iz + sl[0].start + 0.5) * dz])
        vals = box[iz, iy, ix].astype(np.float64)
        patch = Patch(points=pts, hu=vals, background=bg[iz, iy, ix], clip=levels.clip_hu, noise_hu=levels.noise_hu,
                      in_component=own[iz, iy, ix], background_spread=spread[iz, iy, ix])
        ex = patch.excess
        if ex.sum() <= 0 or (ex * patch.in_component).sum() <= 0:
            continue
        # a spot below the metal level keeps its own slices' centroid: a piece of bone reaching into
        # the next slice would otherwise be drawn to the slice boundary, where a seed model fits it
        c, cov = patch.moments(z_from_patch=comp.n_core > 0)
        work.append(_Work(comp_index=comp.index, patch=patch, S=float(ex.sum()) * dx * dy * dz, centroid=c, cov=cov,
                          n_core=comp.n_core, box=sl, region=(iz, iy, ix), box_labels=lab > 0))
    return work


def _one_seed_like(w: _Work, app: SeedAppearance) -> bool:
    evals = np.linalg.eigvalsh(w.cov)
    max_len = app.capsule_length_mm + 1.0
    s2 = float(np.max(app.spread ** 2))
    return bool(evals[-1] <= max_len ** 2 / 12.0 + s2 + 1.0
                and evals[-2] <= (app.capsule_diameter_mm + 1.5) ** 2 / 4 + s2)


_amp_ratios = amplitude_ratios


#: a component below the metal level is a seed only if one seed's image model explains this much of
#: its excess (R^2): measured on the 5 mm validation scans, seeds 0.64-0.99, bone 0.60 and below
CORELESS_MIN_R2 = 0.65

#: metal thicker than this (half-width, mm, in-plane) is not a seed: seeds are 0.8 mm across
THICK_METAL_MM = 2.0


def _stacked(w: _Work) -> bool:
    """Whether the component reaches into more than one slice."""
    return len(np.unique(w.comp_index[:, 0])) > 1


def _thickness_mm(hu, w, voxel, level: float) -> float:
    """Largest in-plane distance (mm) from a metal-level voxel of the component to the component's edge
    at that level: about half the width of the thickest metal part (a screw: > 3 mm; seeds: < 1.5 mm)."""
    from scipy import ndimage

    idx = w.comp_index
    lo = idx.min(0) - 1
    box = np.zeros(tuple(idx.max(0) - lo + 2), bool)
    vals = hu[idx[:, 0], idx[:, 1], idx[:, 2]]
    sel = vals > level
    if not sel.any():
        return 0.0
    j = idx[sel] - lo
    box[j[:, 0], j[:, 1], j[:, 2]] = True
    best = 0.0
    for k in range(box.shape[0]):
        if box[k].any():
            best = max(best, float(ndimage.distance_transform_edt(box[k], sampling=(voxel[1], voxel[0])).max()))
    return best


def _weakest_seed_peak(app: SeedAppearance, voxel) -> float:
    """Peak excess (HU, unclipped) of the faintest-looking seed of this scan: lying in-plane, centred
    on a voxel or on a slice boundary, from the calibrated image model."""
    from brachymc.seedfinder.appearance import seeds_image

    dx, dy, dz = voxel
    g = np.arange(-3, 4)
    Z, Y, X = np.meshgrid(g * dz, g * dy, g * dx, indexing="ij")
    pts = np.column_stack([X.ravel(), Y.ravel(), Z.ravel()])
    u = np.array([[1.0, 0.0, 0.0]])
    amp = app.amplitude_of(u)
    peaks = [float(seeds_image(pts, [np.array([0.0, 0.0, off])], u, amp, app.length_mm, app.sigma, 0.0, None,
                               app.z_offsets()).max()) for off in (0.0, 0.5 * dz)]
    return min(peaks)


def _judge(w: _Work, app: SeedAppearance, s1: float, settings: FinderSettings, hu, voxel, levels: ScanLevels,
           coreless_ok: bool, weakest: float, rng, vv: float) -> None:
    """Decide what one component is (seeds, other metal, a faint spot) and fit its seeds: sets
    ``w.ratio``, ``w.kind``, ``w.reason``, ``w.fits``, ``w.score``, ``w.k`` and ``w.fit`` (module
    docstring, steps 5-6)."""
    w.ratio = w.S / s1
    ev = np.linalg.eigvalsh(w.cov)
    extent = tuple(4.0 * float(np.sqrt(max(e, 0.0))) for e in ev[::-1])
    if w.ratio < settings.faint_fraction:
        w.kind, w.reason = "faint", f"{100 * w.ratio:.0f} % of a seed's intensity"
        return
    thick = _thickness_mm(hu, w, voxel, levels.reference_hu + settings.core_excess_hu)
    big = settings.max_seeds_per_cluster
    if w.n_core > 0 and (w.ratio > 3 * big or (w.ratio > big + 0.5 and thick > THICK_METAL_MM)):
        w.kind = "other"
        w.reason = (f"holds {w.ratio:.0f} seeds' worth of metal, {extent[0]:.0f} mm long and {extent[1]:.0f} mm wide"
                    + (f", solid metal {2 * thick:.0f} mm across" if thick > THICK_METAL_MM else "")
                    + ": too large for a cluster of seeds (screw, rod or clip)")
        return
    if w.n_core == 0 and not coreless_ok:
        w.kind = "faint"
        w.reason = (f"below the metal level, which every seed of this scan exceeds (the faintest reach "
                    f"~{weakest:.0f} HU above background): bone or a streak")
        return
    if w.n_core == 0 and w.ratio > 2.5:
        w.kind, w.reason = "faint", "dense but below the metal level and larger than a seed (bone)"
        return
    # a thin conglomerate of more seeds than max_seeds_per_cluster (a dense implant) is split too
    # below the metal level one seed at most: two seed models fit a piece of bone too well
    # (measured: 10 false seeds on the 5 mm scans when coreless components could split)
    kmax = max(big, int(round(w.ratio)) + 2) if w.n_core > 0 else 1
    # first count from the intensity, with the seed unit at the component's own tilt
    u_c = principal_axis(w.cov, app)
    r_tilt = w.S / float(app.unit_of([u_c])[0])
    k0 = int(np.clip(round(r_tilt), 1, kmax))
    if k0 == 1 and _one_seed_like(w, app) and max(w.ratio, r_tilt) < 1.4:
        # in thick slices two seeds lying one above the other in two slices hold about one seed's
        # summed excess (each lying in its slice shows ~0.7 of the median seed's): tried as two
        ks = [1, 2] if (app.slice_mm >= SHARE_SLICE_MM and kmax > 1 and _stacked(w)) else [1]
    else:
        ks = sorted({max(1, k0 - 1), k0, min(kmax, k0 + 1)})
    sp = split_component(w.patch, w.S, app, ks, kmax, rng, vv, centroid=w.centroid, cov=w.cov,
                         solver=settings.fit_solver)
    w.fits, w.score = sp.fits, sp.scores
    w.k = sp.best()
    if not np.isfinite(w.score[w.k]):
        # no split into whole seeds: the fewest seeds that were fitted, weak ones dropped below
        w.k = min(w.fits)
    w.fit = w.fits[w.k]
    if w.ratio > 3.0 and w.fit.r2 < 0.5:
        w.kind = "other"
        w.reason = (f"{w.ratio:.1f} seeds' worth of metal that no set of seeds fits (R2 {w.fit.r2:.2f}): "
                    "not seeds (screw, rod or clip)")
        return
    q = _amp_ratios(w.fit, app)
    if w.n_core == 0:
        # below the metal level: each seed must be seed-like on its own
        strong = (q >= 0.5) & (w.fit.local_r2 >= CORELESS_MIN_R2)
        if not strong.any():
            w.kind = "faint"
            w.reason = (f"below the metal level and not seed-like ({100 * q.max():.0f} % of a seed's intensity, "
                        f"R2 {w.fit.local_r2.max():.2f}): bone or a streak")
            return
    else:
        strong = q >= (settings.faint_fraction if w.fit.k == 1 else MIN_SPLIT_RATIO)
    if not strong.any():
        w.kind = "faint"
        w.reason = f"fits a seed of {100 * float(q.max()):.0f} % of a seed's intensity (bone or a streak)"
        return
    if not strong.all():
        w.fit = _kept(w.fit, strong)
        w.k = int(strong.sum())


def _kept(fit: SeedFit, keep: np.ndarray) -> SeedFit:
    """The fit with only the seeds ``keep`` marks (the weak ones of a split dropped)."""
    return replace(fit, centers=fit.centers[keep], axes=fit.axes[keep], amplitudes=fit.amplitudes[keep],
                   local_r2=fit.local_r2[keep], lengths=None if fit.lengths is None else fit.lengths[keep])


#: slices at least this thick (mm) get a second background under each cluster, and its count is
#: judged again with the background's uncertainty (:func:`_recount`)
RECOUNT_SLICE_MM = 2.0
#: the second background's hole: the metal components and where the first pass's seeds add more
#: than this (HU) to the image
REFILL_MODEL_HU = 100.0
#: where the two backgrounds' summed excesses differ by more than this (half their log ratio: 22 %
#: apart), the seeds are refitted on the second one
RECOUNT_REFIT_SD = 0.1


def _second_background(work: list[_Work], hu, voxel, origin, levels: ScanLevels, app: SeedAppearance) -> dict:
    """For each component of seeds (by ``id``): its summed excess S (HU mm^3) over a second
    background, and that background at its patch's voxels (HU).

    The first background fills a hole of the component voxels and two voxels around them, from the
    ends of lines through it. Where a seed lies in or against bone (a lamina, a pedicle, the corner
    of a vertebral body) that hole reaches past the bone's edges and is filled from soft tissue or
    from a dark streak, and the bone counts as metal (measured against the simulator's metal-free
    image: up to 1.3 seeds' worth in a 2.5 mm cluster, 2.9 at 5 mm). The second hole is only where
    the first pass's seeds (the component's and its neighbours') add more than REFILL_MODEL_HU to
    the image, and the metal components themselves; outside it the background is the image less
    those seeds' faint blur, so the bone beside a seed is seen. It errs the other way where seeds
    crowd: their blur, which the model underestimates, raises the fill."""
    from brachymc.seedfinder.appearance import seed_images

    dx, dy, dz = voxel
    fitted = [w for w in work if w.kind == "seeds" and w.fit is not None]
    if not fitted:
        return {}
    C = np.concatenate([w.fit.centers for w in fitted])
    U = np.concatenate([w.fit.axes for w in fitted])
    A = np.concatenate([w.fit.amplitudes for w in fitted])
    L = np.concatenate([w.fit.lengths if w.fit.lengths is not None else np.full(w.fit.k, app.length_mm)
                        for w in fitted])
    out = {}
    for w in fitted:
        sl = w.box
        box = hu[sl]
        nz, ny, nx = box.shape
        z = origin[2] + (np.arange(sl[0].start, sl[0].start + nz) + 0.5) * dz
        y = origin[1] + (np.arange(sl[1].start, sl[1].start + ny) + 0.5) * dy
        x = origin[0] + (np.arange(sl[2].start, sl[2].start + nx) + 0.5) * dx
        lo, hi = np.array([x[0], y[0], z[0]]) - 8.0, np.array([x[-1], y[-1], z[-1]]) + 8.0
        near = np.all((C >= lo) & (C <= hi), axis=1)
        Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
        pts = np.column_stack([X.ravel(), Y.ravel(), Z.ravel()])
        model = seed_images(pts, C[near], U[near], A[near], L[near], app.sigma,
                            app.z_offsets()).sum(axis=0).reshape(box.shape)
        bg = inpainted_background(box - model, w.box_labels | (model > REFILL_MODEL_HU), voxel, levels.noise_hu)
        iz, iy, ix = w.region
        b = bg[iz, iy, ix]
        out[id(w)] = (float(np.clip(w.patch.hu - b, 0.0, None).sum()) * dx * dy * dz, b)
    return out


def _recount(work: list[_Work], single: list[_Work], hu, voxel, origin, levels: ScanLevels, settings: FinderSettings,
             app: SeedAppearance) -> None:
    """Judge each cluster's count again, knowing how uncertain its background is (slices >=
    RECOUNT_SLICE_MM, where bone next to a seed is most often counted as metal).

    The summed excess over the second background (:func:`_second_background`), scaled by the
    isolated seeds' median ratio of the two, against the first: half their log ratio is added to
    the spread of the intensity count (:func:`~brachymc.seedfinder.split.score`). Where the two
    backgrounds agree nothing changes; where they do not, the intensity count weighs less and the
    image fit decides, among the counts already fitted. The count's central value stays the first
    background's. Seeds whose backgrounds differ by more than RECOUNT_REFIT_SD are then refitted on
    the second one (bone pulls a fitted seed towards it)."""
    second = _second_background(work, hu, voxel, origin, levels, app)
    ratios = [second[id(w)][0] / w.S for w in single if id(w) in second and w.S > 0]
    if not ratios:
        return
    f = float(np.median(ratios))
    for w in work:
        if w.kind != "seeds" or id(w) not in second or second[id(w)][0] <= 0:
            continue
        d = 0.5 * abs(float(np.log(w.S * f / second[id(w)][0])))
        w.background_sd = d
        if len(w.fits) > 1:
            scores = {k: score(fit, w.S, app, background_sd=d) for k, fit in w.fits.items()}
            k = Split(fits=w.fits, scores=scores, min_local_r2=MIN_SPLIT_LOCAL_R2, appearance=app).best()
            if np.isfinite(scores[k]) and k != Split(fits=w.fits, scores=w.score, min_local_r2=MIN_SPLIT_LOCAL_R2,
                                                     appearance=app).best():
                w.k, w.fit, w.score = k, w.fits[k], scores
                q = _amp_ratios(w.fit, app)
                strong = q >= (settings.faint_fraction if w.fit.k == 1 else MIN_SPLIT_RATIO)
                if strong.any() and not strong.all():
                    w.fit = _kept(w.fit, strong)
                    w.k = int(strong.sum())
        if d > RECOUNT_REFIT_SD:
            w.fit = fit_seeds(replace(w.patch, background=second[id(w)][1]), app, w.fit.centers, w.fit.axes,
                              w.fit.amplitudes, solver=settings.fit_solver)[0]


def _segment(hu, voxel, settings: FinderSettings):
    """Scan levels, metal components (solid metal cut off), and the count of large dense regions left out."""
    levels = scan_levels(hu)
    comps, n_big = find_components(hu, voxel, levels, settings.core_excess_hu, settings.candidate_excess_hu,
                                   settings.grow_mm, compact_max_mm3=40.0 * settings.max_seeds_per_cluster)
    comps = split_off_thick_metal(comps, hu, voxel, levels.reference_hu + settings.core_excess_hu, THICK_METAL_MM)
    return levels, comps, n_big


def _component_work(hu, comps, voxel, origin, levels: ScanLevels, settings: FinderSettings) -> list[_Work]:
    """Each component's patch, background and summed excess (step 2)."""
    labels = np.zeros(hu.shape, np.int32)
    for ci, c in enumerate(comps, 1):
        labels[c.index[:, 0], c.index[:, 1], c.index[:, 2]] = ci
    return _patches(hu, comps, voxel, origin, levels, settings, labels)


@dataclass(frozen=True)
class ComponentBackground:
    """One metal component as the finder sees it before any fit: its voxels (indices iz, iy, ix),
    whether it reaches the metal level, and its patch (the component and its blur tails) with the
    local background filled in under the metal (HU); ``summed_excess`` is S (HU mm^3)."""

    index: np.ndarray
    n_core: int
    patch: Patch
    summed_excess: float


def component_backgrounds(ct: CTVolume, settings: FinderSettings = FinderSettings()) -> list[ComponentBackground]:
    """The finder's first steps alone (module docstring, steps 1-2): the metal components of ``ct``
    and the background filled in under each. For checking the background fill against a known
    metal-free image (``brachymc.examples.seed_validation``); :func:`find_seeds` runs the same steps."""
    hu = np.asarray(ct.hu)
    voxel, origin = _voxel_mm(ct)
    levels, comps, _ = _segment(hu, voxel, settings)
    return [ComponentBackground(index=w.comp_index, n_core=w.n_core, patch=w.patch, summed_excess=w.S)
            for w in _component_work(hu, comps, voxel, origin, levels, settings)]


def find_seeds(ct: CTVolume, model: str | SeedModel = "oncoseed_6711", settings: FinderSettings = FinderSettings(),
               expected: int | None = None, roi_mask: np.ndarray | None = None, roi_name: str = "ROI",
               library=None) -> SeedFindResult:
    """Find the seeds in ``ct`` (see the module docstring). Raises :class:`NoMetalError` without metal.

    BLAS runs on one thread inside, so that the same CT gives the same seeds on any machine: with
    OpenBLAS on 2 threads the fits' sums ran in another order (one seed of a 2.5 mm validation
    scan moved 0.04 mm, and the twelve 5 mm scans gave 551 seeds and 32 false with two threads, 552
    and 33 with one). The fits' matrices are small (a few thousand voxels by 7 k parameters), so the threads
    gained no time: run alternately on 2 cores, 100 seeds in 512 x 512 x 100 took 10.1-13.6 s wall
    with one thread and 10.3-16.1 s with two, and 10-13 s of CPU against 17-25 s
    (docs/benchmarks.md). Parallel work is instead one level up: ``settings.workers`` threads
    fit different components at the same time (:mod:`~brachymc.seedfinder._threads`), each
    component with its own random stream (:func:`component_rng`), so the seeds do not depend on
    the number of threads either.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _find_seeds(ct, model, settings, expected, roi_mask, roi_name, library)


def _find_seeds(ct: CTVolume, model: str | SeedModel, settings: FinderSettings, expected: int | None,
                roi_mask: np.ndarray | None, roi_name: str, library) -> SeedFindResult:
    from brachymc.seedfinder import priors

    t0 = time.perf_counter()
    timing = {}
    src = ct.source or "CT"
    if expected is not None and (not isinstance(expected, (int, np.integer)) or expected < 1):
        raise ConfigError(f"{src}: expected seed count must be a whole number >= 1, got {expected!r}")
    if settings.fit_solver not in FIT_SOLVERS:
        raise ConfigError(f"seed finder settings: fit_solver must be 'compiled' or 'scipy', not {settings.fit_solver!r}")
    n_workers = resolved_workers(settings)
    if isinstance(model, str):
        try:
            from brachymc.geometry.seed import load_seed_model, seed_library

            lib = seed_library()
            if model not in lib:
                raise ConfigError(f"unknown seed model {model!r}; built-in: {', '.join(lib)}")
            model = load_seed_model(lib[model], library, check=False)
        except (FileNotFoundError, KeyError, ConfigError) as exc:
            raise ConfigError(f"seed model {model!r}: {exc}") from None
    hu = np.asarray(ct.hu)
    voxel, origin = _voxel_mm(ct)
    vv = float(np.prod(voxel))
    app = SeedAppearance.from_model(model, voxel)
    levels, comps, n_big = _segment(hu, voxel, settings)
    timing["segment"] = time.perf_counter() - t0
    if not comps:
        raise NoMetalError(
            f"{src}: no metal found: the highest value is {levels.max_hu:.0f} HU and no voxel lies "
            f"{settings.core_excess_hu:g} HU above its surroundings (soft tissue at {levels.reference_hu:.0f} HU); "
            "is this the post-implant CT (or the series with the seeds)?")
    work = _component_work(hu, comps, voxel, origin, levels, settings)
    cored = [w for w in work if w.n_core > 0]
    if not cored:
        raise NoMetalError(f"{src}: no metal found: {len(work)} faint dense spot(s) but nothing "
                           f"{settings.core_excess_hu:g} HU above its surroundings (highest {levels.max_hu:.0f} HU)")

    # seed unit: the median summed excess of components that look like one seed
    s_all = np.array([w.S for w in cored])
    s_med = float(np.median(s_all))
    single = [w for w in cored if 0.6 * s_med <= w.S <= 1.5 * s_med and _one_seed_like(w, app)]
    s1 = float(np.median([w.S for w in single])) if single else s_med
    single = [w for w in cored if 0.7 * s1 <= w.S <= 1.35 * s1 and _one_seed_like(w, app)]
    # calibrate the image model on the most typical isolated seeds
    single.sort(key=lambda w: abs(np.log(w.S / s1)))
    app = calibrate([w.patch for w in single[:settings.calibration_seeds]], app, vv, settings.fit_solver)
    amp1 = app.amplitude or amplitude_from_sum(s1 / vv, app, vv)
    if app.amplitude is None:
        app = replace(app, amplitude=amp1)
    if not app.unit_knots:
        app = replace(app, unit_knots=(s1,) * 4)
    timing["calibrate"] = time.perf_counter() - t0 - timing["segment"]

    notes: list[str] = []
    weakest = _weakest_seed_peak(app, voxel)
    coreless_ok = weakest < 1.25 * settings.core_excess_hu
    if len(single) < 3:
        notes.append(f"only {len(single)} isolated seed(s) to calibrate the image model: defaults from the voxel size used")
    for w in work:
        w.rng = component_rng(w.patch.hu[w.patch.in_component], settings.random_seed)
    thread_map(lambda w: _judge(w, app, s1, settings, hu, voxel, levels, coreless_ok, weakest, w.rng, vv),
               work, n_workers, cost=lambda w: len(w.patch.hu))
    if app.slice_mm >= RECOUNT_SLICE_MM:
        _recount(work, single, hu, voxel, origin, levels, settings, app)
    timing["fit"] = time.perf_counter() - t0 - timing["segment"] - timing["calibrate"]

    seeds_work = [w for w in work if w.kind == "seeds"]
    if expected is not None:
        def refit(w, k):
            sp = split_component(w.patch, w.S, app, [k], k, w.rng, vv, centroid=w.centroid, cov=w.cov,
                                 solver=settings.fit_solver) \
                if k not in w.fits else None
            if sp is not None:
                w.fits[k], w.score[k] = sp.fits[k], sp.scores[k]
            return w.fits[k]

        def one_more(w):
            # what one seed more costs in the split's own score (image fit, count, overlap), with the
            # background's uncertainty of the recount
            k = w.fit.k
            more = refit(w, k + 1)
            base = w.fits.get(k, w.fit)
            return (score(more, w.S, app, background_sd=w.background_sd)
                    - score(base, w.S, app, background_sd=w.background_sd)), more

        priors.apply_expected_count(seeds_work, expected, one_more, notes, settings.max_seeds_per_cluster)

    clusters, seeds = [], []
    for w in seeds_work:
        ci = len(clusters)
        # in thick slices a seed lying in the slice takes its height from how its image is shared
        # with the slices beside it (:mod:`~brachymc.seedfinder.heights`)
        w.fit = f = refine_heights(w.patch, app, w.fit)
        clusters.append(Cluster(centroid_mm=tuple(map(float, w.centroid)), n_seeds=f.k,
                                seed_equivalents=float(w.ratio), n_voxels=len(w.comp_index), fit_r2=float(f.r2)))
        ars = _amp_ratios(f, app)
        for j in range(f.k):
            ar = float(ars[j])
            c_amp = float(np.exp(-0.5 * (np.log(max(ar, 1e-3)) / 0.45) ** 2))
            sd_c = np.sqrt(app.unit_sd ** 2 / f.k + 0.05 ** 2)
            c_count = float(np.exp(-0.5 * (np.log(max(count_ratio(f.axes, w.S, app), 1e-6)) / (2.0 * sd_c)) ** 2))
            c_fit = float(np.clip((f.local_r2[j] - 0.3) / 0.5, 0.0, 1.0))
            conf = (c_amp * c_count * c_fit) ** (1.0 / 3.0)
            seeds.append(dict(position_mm=tuple(map(float, f.centers[j])), direction=tuple(map(float, _canonical(f.axes[j]))),
                              confidence=conf, cluster=ci, amplitude_ratio=ar, doubtful=[]))
    other = [MetalObject(tuple(map(float, w.centroid)), tuple(4.0 * float(np.sqrt(max(e, 0))) for e in np.linalg.eigvalsh(w.cov)[::-1]),
                         float(w.ratio), len(w.comp_index), w.reason) for w in work if w.kind == "other"]
    faint = [MetalObject(tuple(map(float, w.centroid)), tuple(4.0 * float(np.sqrt(max(e, 0))) for e in np.linalg.eigvalsh(w.cov)[::-1]),
                         float(w.ratio), len(w.comp_index), w.reason) for w in work if w.kind == "faint"]

    if app.slice_mm >= THICK_SLICE_MM:
        priors.apply_track_prior(seeds, app.slice_mm, notes)

    # seeds are solid: touching seeds fitted a little too close are moved apart
    n_pairs, moved = priors.separate_overlaps(seeds, app.capsule_length_mm, app.capsule_diameter_mm)
    if n_pairs:
        notes.append(f"{n_pairs} pair(s) of touching seeds moved apart by up to {moved:.2f} mm so that their capsules "
                     "do not overlap")
    # priors and flags
    body = body_mask(hu, levels.reference_hu)
    priors.flag_outside_body(seeds, body, voxel, origin, step=4)
    if roi_mask is not None:
        priors.flag_outside_roi(seeds, roi_mask, voxel, origin, settings.roi_margin_mm, roi_name)
    for s in seeds:
        if s["confidence"] < settings.doubtful_below:
            s["doubtful"].insert(0, f"low confidence ({'; '.join(_why_low(s))})")
    if expected is not None:
        priors.flag_beyond_expected(seeds, expected, notes)
    tracks = priors.needle_tracks(seeds, app.slice_mm)
    out = tuple(FoundSeed(position_mm=s["position_mm"], direction=s["direction"], confidence=float(s["confidence"]),
                          cluster=s["cluster"], amplitude_ratio=s["amplitude_ratio"], doubtful=tuple(s["doubtful"]),
                          track=s.get("track")) for s in seeds)
    if n_big:
        notes.append(f"{n_big} large dense region(s) below the metal level (bone) not considered")
    timing["total"] = time.perf_counter() - t0
    diag = tuple({"centroid_mm": [round(float(v), 2) for v in w.centroid], "ratio": round(w.ratio, 3),
                  "n_core": w.n_core, "kind": w.kind, "k": w.k,
                  "scores": {k: round(v, 1) for k, v in w.score.items()},
                  "amplitudes": {k: [round(float(a), 2) for a in _amp_ratios(f, app)] for k, f in w.fits.items()},
                  "r2": {k: round(f.r2, 3) for k, f in w.fits.items()},
                  "local_r2": {k: [round(float(v), 3) for v in f.local_r2] for k, f in w.fits.items()},
                  "centers_mm": {k: np.round(f.centers, 2).tolist() for k, f in w.fits.items()}} for w in work)
    return SeedFindResult(diagnostics=diag, seeds=out, clusters=tuple(clusters), other_metal=tuple(other), faint=tuple(faint),
                          appearance=app, levels=levels, expected=expected, tracks=tracks, source=src,
                          notes=tuple(notes), timing_s=timing)


def _why_low(s: dict) -> list[str]:
    out = []
    ar = s["amplitude_ratio"]
    if ar < 0.6:
        out.append(f"{100 * ar:.0f} % of a seed's line density")
    elif ar > 1.7:
        out.append(f"{ar:.1f} x a seed's line density")
    return out or ["poor fit or ambiguous count"]
