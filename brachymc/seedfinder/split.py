"""How many seeds a metal component holds, and where: fits of k seeds and the choice of k.

For a component with summed excess S (HU mm^3) the candidates are k seeds fitted by
:func:`~brachymc.seedfinder.fit.fit_seeds`, each k from several starts:

* the geometric starts of :func:`~brachymc.seedfinder.fit.initial_guesses` (side by side, end to
  end, weighted k-means, intensity maxima along the principal axis);
* *greedy* starts from the neighbouring counts: the best k - 1 fit plus one seed where the
  residual intensity is largest (its axis from the residual's local moments), and the best
  k + 1 fit without its weakest seeds. The fits of successive k thus improve on each other
  instead of starting afresh.

k minimises a penalised misfit, ``score`` below: an approximate -2 log posterior of the k-seed
model plus the BIC's penalty for its parameters:

    n_eff ln(RSS / n) + 7 k ln(n_eff)
      + rho(ln(S / sum_i S1(u_i)) / sd_S(k))          (the intensity count)
      + sum_i (ln(Q_i / Q(u_i)) / sd_Q)^2             (each seed a whole seed)
      + sum_pairs (max(0, depth_ij - 0.3 mm) / 0.1 mm)^2  (seeds are solid: capsules do not interpenetrate)

n_eff = n / 4 (the PSF correlates neighbouring voxels); S1(u) and Q(u) are one seed's summed
excess and integrated model intensity (line density x apparent length, Q_i = A_i L_i) at the
seed's tilt, and sd_S, sd_Q their spreads, all calibrated on the
scan's own isolated seeds (:func:`~brachymc.seedfinder.fit.calibrate`); sd_S(k)^2 =
sd_S^2 / k + 0.05^2 (the seeds' spreads average out; 5 % for what clustering itself changes:
overlapping blur clipped at the scan's maximum); rho(z) = -2 ln(exp(-z^2 / 2) + exp(-8)) is z^2
up to 4 sd and levels off beyond: a count that far off is bone or a streak next to the seed
counted as seed (an edge of bone inside the component that the background fill cannot see), and
the fit's own evidence decides. A split whose weakest seed carries less than half a seed's
intensity is not allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brachymc.seedfinder.appearance import SeedAppearance, seeds_image
from brachymc.seedfinder.fit import THICK_SLICE_MM, Patch, SeedFit, fit_seeds, initial_guesses, principal_axis
from brachymc.seedfinder.heights import SHARE_SLICE_MM
from brachymc.seedfinder.priors import _closest_points

#: free parameters per seed (centre 3, axis 2, line density, apparent length): the BIC's count
PARAMS_PER_SEED = 7
#: spread of a cluster's summed excess beyond its seeds' own (overlapping blur clipped)
COUNT_SYSTEMATIC_SD = 0.05
#: the intensity count is an outlier (bone or a streak counted as seed) beyond this many sd: its
#: penalty levels off there (a mixture of the calibrated spread and a flat outlier component)
COUNT_OUTLIER_Z = 4.0
#: capsules of fitted seeds may interpenetrate this much (mm) without penalty, and each further
#: OVERLAP_SD_MM costs as much as one sd of misfit
OVERLAP_TOLERANCE_MM = 0.3
OVERLAP_SD_MM = 0.1
#: every seed of a split cluster must carry at least this fraction of one seed's line density
MIN_SPLIT_RATIO = 0.5
#: a single seed in slices of THICK_SLICE_MM to heights.SHARE_SLICE_MM whose moments tilt it
#: less than this (|u_z|) is also started lying in the slice (measured on the 2.5 mm, 60-seed scan:
#: the axis error's 95th percentile 59 -> 44 deg, GTV D90 +1.06 -> +0.78 %)
IN_PLANE_START_MAX_UZ = 0.9
#: a single seed in those slices whose component has fewer voxels than this above the candidate
#: level (a seed lying on a slice boundary, half its image in each slice) is also started from
#: the moments of its whole patch: its own voxels give it no axis (measured in stop 25: on the
#: 2.5 mm, 100-seed scan 99 -> 100 of 100 found, D90 -1.21 -> -0.22 %, the other 2.5 mm scans
#: unchanged; in 5 mm slices such spots are mostly bone and streaks: 34 -> 56 false seeds there)
WHOLE_PATCH_START_MAX_VOXELS = 4
#: and, in slices >= THICK_SLICE_MM, explain the voxels nearest it this well (local R^2); measured
#: on the 2.5 and 5 mm validation scans: true seeds of split clusters 0.81 and above (1st
#: percentile 0.81-0.86), seeds made of cortical bone next to a seed 0.61-0.63
MIN_SPLIT_LOCAL_R2 = 0.7
#: but one seed fewer only while the fit with one seed fewer still explains the component almost as
#: well (R^2 lower by at most this): a seed made of bone beside a seed explains little of a
#: component (measured on the 2.5 mm screw scan: its removal cost R^2 0.07 and 0.11), a true seed
#: of a cluster a share of it; on a 5 mm held-out scan the rule walked a 5.5-seed cluster down
#: 3 -> 2 -> 1 (R^2 0.81 -> 0.53 -> 0.17), and the single seed's poor fit then had the cluster
#: reported as other metal: 3 seeds lost
MAX_STEP_DOWN_R2_LOSS = 0.2
#: nor into a fit in which a seed carries this many seeds' intensity or more (line density x
#: apparent length over one seed's at its tilt, :func:`amplitude_ratios`): that fit has merged two
#: seeds into one, and the weak seed above it was the second of them (an isolated seed's intensity
#: spreads by 7-22 % sd on the 5 mm scans). Measured in stop 27 on twenty-one 5 mm scans: of eight
#: step-downs against the best score six were wrong, into fits holding seeds of 1.64-2.09 seeds'
#: intensity, and two right (1.22, 1.30); on the 2.5 mm screw scan the two right ones (cortical bone
#: beside a seed) went into single seeds of 1.56 and 1.60 (bone adds to the seed it lies against),
#: which sets the level above them, not at 1.5 (the wrong step-down at 1.64 still happens)
MAX_STEP_DOWN_AMPLITUDE = 1.75


def amplitude_ratios(fit: SeedFit, app: SeedAppearance) -> np.ndarray:
    """Each fitted seed's integrated intensity (line density x apparent length) over one seed's at
    its tilt: how many seeds' worth it is."""
    return fit.intensities / app.intensity_of(fit.axes)


def count_ratio(fit_axes: np.ndarray, S: float, app: SeedAppearance) -> float:
    """The summed excess S over what the seeds of these axes hold together."""
    return float(S / np.sum(app.unit_of(fit_axes)))


def score(fit: SeedFit, S: float, app: SeedAppearance, strict: bool = True, background_sd: float = 0.0) -> float:
    """Penalised misfit of a k-seed fit (module docstring); ``strict``: infinite for a split with a
    seed of less than MIN_SPLIT_RATIO of a seed's intensity (off: to rank fits of one k);
    ``background_sd``: the uncertainty (log) of S from the background under the component, added
    to the count's spread."""
    k = fit.k
    n = fit.n_points
    n_eff = max(n / 4.0, 10.0)
    chi = n_eff * np.log(max(fit.rss, 1e-9) / n)
    bic = PARAMS_PER_SEED * k * np.log(n_eff)
    ratios = amplitude_ratios(fit, app)
    if strict and k > 1 and ratios.min() < MIN_SPLIT_RATIO:
        return float("inf")          # a split must give whole seeds, not a seed and a streak
    sd_c = np.sqrt(app.unit_sd ** 2 / k + COUNT_SYSTEMATIC_SD ** 2 + background_sd ** 2)
    z = np.log(max(count_ratio(fit.axes, S, app), 1e-6)) / sd_c
    count = -2.0 * np.log(np.exp(-0.5 * z * z) + np.exp(-0.5 * COUNT_OUTLIER_Z ** 2))
    sd_a = max(app.intensity_sd, 0.08)
    amp = float(np.sum((np.log(np.clip(ratios, 1e-3, None)) / sd_a) ** 2))
    return float(chi + bic + count + amp + overlap_penalty(fit, app))


def overlap_penalty(fit: SeedFit, app: SeedAppearance) -> float:
    """Seeds are solid: sum over pairs of (depth / OVERLAP_SD)^2, depth the distance by which
    their capsules interpenetrate beyond OVERLAP_TOLERANCE_MM (what a fit of touching seeds may
    get wrong)."""
    if fit.k < 2:
        return 0.0
    r = 0.5 * app.capsule_diameter_mm
    h = 0.5 * app.capsule_length_mm - r
    pen = 0.0
    for i in range(fit.k):
        for j in range(i + 1, fit.k):
            if np.linalg.norm(fit.centers[i] - fit.centers[j]) >= 2 * (h + r):
                continue
            q1, q2 = _closest_points(fit.centers[i], fit.axes[i], fit.centers[j], fit.axes[j], h)
            depth = 2 * r - float(np.linalg.norm(q1 - q2)) - OVERLAP_TOLERANCE_MM
            if depth > 0:
                pen += (depth / OVERLAP_SD_MM) ** 2
    return pen


@dataclass
class Split:
    """Fits and scores per k of one component."""

    fits: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    min_local_r2: float = MIN_SPLIT_LOCAL_R2
    #: the scan's image model, for the seeds' intensities (MAX_STEP_DOWN_AMPLITUDE); None: not checked
    appearance: SeedAppearance | None = None

    def _merged(self, k: int) -> bool:
        """Whether a seed of the k-seed fit carries MAX_STEP_DOWN_AMPLITUDE seeds' intensity or more."""
        if self.appearance is None:
            return False
        return float(np.max(amplitude_ratios(self.fits[k], self.appearance))) >= MAX_STEP_DOWN_AMPLITUDE

    def best(self) -> int:
        """The count of the lowest score; one fewer while its weakest seed does not explain its own
        voxels (local R^2 < MIN_SPLIT_LOCAL_R2) and the count below is allowed. The rule only ever
        lowers the count: a split seed made of bone beside a seed goes, a true seed whose voxels
        are poorly fitted never becomes two; and it stops where one seed fewer would explain the
        component much worse (R^2 lower by more than MAX_STEP_DOWN_R2_LOSS: that seed was metal)
        or where a seed of the fit below carries MAX_STEP_DOWN_AMPLITUDE seeds' intensity (that fit
        merged the weak seed into its neighbour: the weak seed was a seed).
        Off (``min_local_r2 = 0``) in thin slices, where the background fill keeps bone out of the
        seeds and touching seeds share their nearest voxels (measured: 3 true seeds of 100 lost on
        the 1 mm timing scan with the rule on)."""
        k = min(self.scores, key=self.scores.get)
        while (k > 1 and k - 1 in self.scores and np.isfinite(self.scores[k - 1])
               and float(np.min(self.fits[k].local_r2)) < self.min_local_r2
               and self.fits[k - 1].r2 >= self.fits[k].r2 - MAX_STEP_DOWN_R2_LOSS
               and not self._merged(k - 1)):
            k -= 1
        return k


def _residual_start(patch: Patch, app: SeedAppearance, fit: SeedFit):
    """One more seed where the k-seed fit leaves the most intensity unexplained."""
    model = seeds_image(patch.points, fit.centers, fit.axes, fit.amplitudes, app.length_mm, app.sigma,
                        patch.background, patch.clip, app.z_offsets())
    res = patch.hu - model
    if patch.clip is not None:
        # where the data are clipped the residual is a lower bound: unexplained saturated voxels count
        res = np.where((patch.hu >= patch.clip - 0.5) & (model < patch.clip - 0.5), np.maximum(res, 0.0) + 500.0, res)
    w = np.where(res > 0, res, 0.0)
    if patch.in_component is not None:
        w = w * patch.in_component
    if w.sum() <= 0:
        return None
    # the residual's densest seed-sized neighbourhood
    reach = 0.5 * app.capsule_length_mm
    j = int(np.argmax(w))
    d = patch.points - patch.points[j]
    near = np.einsum("ij,ij->i", d, d) <= reach ** 2
    ww = w[near]
    c = ww @ patch.points[near] / ww.sum()
    dd = patch.points[near] - c
    cov = (dd * ww[:, None]).T @ dd / ww.sum()
    u = principal_axis(cov, app)
    return c, u


def _split_seed(fit: SeedFit, i: int, app: SeedAppearance):
    """Starts with seed i of ``fit`` replaced by two: side by side (across its axis, in the plane of
    the axis and the z direction and perpendicular to it) and end to end."""
    c, u = fit.centers[i], fit.axes[i]
    rest_c = np.delete(fit.centers, i, axis=0)
    rest_u = np.delete(fit.axes, i, axis=0)
    e = np.cross(u, [0.0, 0.0, 1.0])
    e = e / np.linalg.norm(e) if np.linalg.norm(e) > 1e-6 else np.array([1.0, 0.0, 0.0])
    f = np.cross(u, e)
    half = 0.5 * app.capsule_diameter_mm + 0.05
    out = []
    for off in (half * e, half * f, (0.5 * app.capsule_length_mm + 0.2) * u):
        out.append((np.vstack([rest_c, c - off, c + off]), np.vstack([rest_u, u, u])))
    return out


def greedy_starts(patch: Patch, app: SeedAppearance, k: int, split: Split) -> list:
    """Starts for k seeds from the fits of k - 1 (plus a seed where the residual is largest, or its
    strongest seed split in two) and of k + 1 (without its weakest seed, or its two closest seeds
    merged)."""
    out = []
    lower = split.fits.get(k - 1)
    if lower is not None and k > 1:
        add = _residual_start(patch, app, lower)
        if add is not None:
            c, u = add
            out.append((np.vstack([lower.centers, c]), np.vstack([lower.axes, u])))
        q = amplitude_ratios(lower, app)
        if q.max() > 1.3:
            out.extend(_split_seed(lower, int(np.argmax(q)), app))
    upper = split.fits.get(k + 1)
    if upper is not None:
        order = np.argsort(amplitude_ratios(upper, app))
        for drop in order[:2]:
            keep = np.ones(upper.k, bool)
            keep[drop] = False
            out.append((upper.centers[keep], upper.axes[keep]))
        if upper.k >= 2:
            d = np.linalg.norm(upper.centers[:, None] - upper.centers[None], axis=2) + np.eye(upper.k) * 1e9
            i, j = np.unravel_index(int(np.argmin(d)), d.shape)
            keep = np.ones(upper.k, bool)
            keep[[i, j]] = False
            uu = upper.axes[i] if upper.axes[i] @ upper.axes[j] >= 0 else -upper.axes[i]
            merged_u = uu + upper.axes[j]
            out.append((np.vstack([upper.centers[keep], 0.5 * (upper.centers[i] + upper.centers[j])]),
                        np.vstack([upper.axes[keep], merged_u / np.linalg.norm(merged_u)])))
    return out


def _slice_starts(patch: Patch, k: int) -> list:
    """In thick slices, seeds stacked along a track through the slices: one seed lying in each of
    the k slices that hold most of the excess, at that slice's centre of intensity, along its
    in-plane principal axis. (Two flat seeds one above the other fill two slices at the same place;
    the geometric starts put them side by side or end to end within the patch's principal axes.)"""
    w = np.clip(patch.excess, 0.0, None)
    z = patch.points[:, 2]
    zs = np.unique(z)
    sums = np.array([w[z == v].sum() for v in zs])
    if np.count_nonzero(sums > 0) < k:
        return []
    cents, axes = [], []
    for v in zs[np.argsort(-sums)[:k]]:
        m = (z == v) & (w > 0)
        p = patch.points[m]
        c = (w[m] @ p) / w[m].sum()
        d = p[:, :2] - c[:2]
        cv = (d * w[m][:, None]).T @ d / w[m].sum()
        u2 = np.linalg.eigh(cv)[1][:, -1]
        cents.append(c)
        axes.append([u2[0], u2[1], 0.0])
    return [(np.array(cents), np.array(axes))]


def _refit(patch, app, cents, axes, solver="compiled"):
    amps = app.amplitude_of(axes) if app.amplitude is not None else np.full(len(cents), 1.0)
    return fit_seeds(patch, app, cents, axes, amps, solver=solver)[0]


def _jumps(patch: Patch, S: float, app: SeedAppearance, fit: SeedFit, n_moves: int, solver: str = "compiled") -> SeedFit:
    """Improve a k-seed fit by moves that keep k: the seed that fits worst (intensity furthest from
    one seed's) is moved to where the residual intensity is largest; kept while the score falls."""
    best, best_s = fit, score(fit, S, app, strict=False)
    for _ in range(n_moves):
        q = amplitude_ratios(best, app)
        worst = int(np.argmax(np.abs(np.log(np.clip(q, 1e-3, None)))))
        keep = np.ones(best.k, bool)
        keep[worst] = False
        rest = SeedFit(centers=best.centers[keep], axes=best.axes[keep], amplitudes=best.amplitudes[keep],
                       rss=best.rss, n_points=best.n_points, r2=best.r2, local_r2=best.local_r2[keep],
                       lengths=None if best.lengths is None else best.lengths[keep])
        add = _residual_start(patch, app, rest)
        if add is None:
            break
        trial = _refit(patch, app, np.vstack([rest.centers, add[0]]), np.vstack([rest.axes, add[1]]), solver)
        ts = score(trial, S, app, strict=False)
        if ts >= best_s - 1e-6:
            break
        best, best_s = trial, ts
    return best


#: seeds tilted this far out of the slice plane and this far from the z axis (|u_z| range) are
#: also fitted with the opposite tilt (the mirror image in z about their centre)
MIRROR_UZ_RANGE = (0.08, 0.95)


def mirror_tilts(patch: Patch, S: float, app: SeedAppearance, fit: SeedFit, solver: str = "compiled") -> SeedFit:
    """Try each tilted seed with its tilt reversed, (u_x, u_y, -u_z), keeping a refit that scores
    better. In slices of a few mm a seed's tilt is seen through how its cross-section moves from
    slice to slice; a fit started on the wrong side of the plane is held there (the mirror image
    explains the same in-plane image and a similar spread in z), so the reversed tilt is a
    separate start, not a step the fit takes by itself."""
    best, best_s = fit, score(fit, S, app, strict=False)
    for i in range(fit.k):
        uz = abs(float(best.axes[i][2]))
        if not MIRROR_UZ_RANGE[0] < uz < MIRROR_UZ_RANGE[1]:
            continue
        axes = best.axes.copy()
        axes[i] = axes[i] * np.array([1.0, 1.0, -1.0])
        trial = _refit(patch, app, best.centers, axes, solver)
        ts = score(trial, S, app, strict=False)
        if ts < best_s - 1e-6:
            best, best_s = trial, ts
    return best


def _whole_patch_start(patch: Patch) -> tuple[np.ndarray, np.ndarray]:
    """Centre (mm) of one seed from the excess of the whole patch, blur tails and the slices
    beside the component included (the component's own voxels weigh the moments otherwise,
    :meth:`~brachymc.seedfinder.fit.Patch.moments`), and its axis lying in the slice, along the
    in-plane principal axis of that excess: a seed whose image is shared by two slices, below
    the candidate level in both but a voxel or two, lies flat on their boundary (a tilted seed
    reaches the metal level in some slice); along z the two slices' spread is the slice profile's."""
    e = patch.excess
    c = (e @ patch.points) / e.sum()
    d = patch.points[:, :2] - c[:2]
    v = np.linalg.eigh((d * e[:, None]).T @ d / e.sum())[1]
    return c, np.array([v[0, -1], v[1, -1], 0.0])


def fit_k(patch: Patch, S: float, app: SeedAppearance, k: int, rng: np.random.Generator, voxel_volume: float,
          split: Split, n_geometric: int = 2, cov=None, centroid=None, n_moves: int = 2,
          solver: str = "compiled") -> SeedFit:
    """Best fit of k seeds to the component (greedy and geometric starts, then moves; the module
    docstring). Fits of one k are ranked by the score without the whole-seed rule."""
    if k == 1:
        c, cv = patch.moments() if cov is None else (centroid, cov)
        u = principal_axis(cv, app)
        starts = [(np.atleast_2d(c), np.atleast_2d(u))] + greedy_starts(patch, app, 1, split)
        if (THICK_SLICE_MM <= app.slice_mm < SHARE_SLICE_MM
                and IN_PLANE_START_MAX_UZ > abs(float(u[2])) > 0.05):
            # in thick slices the moments' tilt is weakly determined and a fit started from it can
            # stay tilted where lying in the slice explains the voxels better: start there too
            # (not where slices are >= SHARE_SLICE_MM thick: measured in stop 20, 51/60 instead of
            # 52/60 found on the 5 mm, 60-seed scan)
            flat = np.array([u[0], u[1], 0.0])
            starts.append((np.atleast_2d(c), np.atleast_2d(flat / np.linalg.norm(flat))))
        if (THICK_SLICE_MM <= app.slice_mm < SHARE_SLICE_MM and patch.in_component is not None
                and int(patch.in_component.sum()) < WHOLE_PATCH_START_MAX_VOXELS):
            start = _whole_patch_start(patch)
            if np.linalg.norm(start[0] - c) > 0.3 or abs(float(start[1] @ u)) < 0.985:
                starts.append((np.atleast_2d(start[0]), np.atleast_2d(start[1])))
    else:
        starts = greedy_starts(patch, app, k, split)
        if app.slice_mm >= SHARE_SLICE_MM:
            starts += _slice_starts(patch, k)
        geo = initial_guesses(patch, app, k, rng)
        starts += [(cents, axes) for _, cents, axes, _ in geo[:n_geometric]]
    best, best_s = None, np.inf
    for cents, axes in starts:
        fit = _refit(patch, app, cents, axes, solver)
        s = score(fit, S, app, strict=False)
        if best is None or s < best_s:
            best, best_s = fit, s
    if k > 1 and n_moves:
        best = _jumps(patch, S, app, best, n_moves, solver)
    return best


def split_component(patch: Patch, S: float, app: SeedAppearance, ks, kmax: int, rng, voxel_volume: float,
                    centroid=None, cov=None, solver: str = "compiled") -> Split:
    """Fits for the counts ``ks`` (in order), then further counts while the best score sits at an end of
    the range tried (the intensity count depends on the seeds' tilts)."""
    sp = Split(min_local_r2=MIN_SPLIT_LOCAL_R2 if app.slice_mm >= THICK_SLICE_MM else 0.0, appearance=app)

    def run(k):
        f = fit_k(patch, S, app, k, rng, voxel_volume, sp, cov=cov, centroid=centroid, solver=solver)
        sp.fits[k] = f
        sp.scores[k] = score(f, S, app)

    for k in ks:
        run(k)
    # refit the counts below with greedy starts from above (a k + 1 fit without its weakest seed
    # can beat the geometric starts)
    for k in sorted(ks)[:-1]:
        if k + 1 in sp.fits:
            old = sp.fits[k]
            f = fit_k(patch, S, app, k, rng, voxel_volume, Split(fits={k + 1: sp.fits[k + 1]}), n_geometric=0,
                      cov=cov, centroid=centroid, solver=solver) if k > 1 else None
            if f is not None and score(f, S, app, strict=False) < score(old, S, app, strict=False):
                sp.fits[k], sp.scores[k] = f, score(f, S, app)
    while len(sp.scores) > 1 or (len(sp.scores) == 1 and kmax > 1 and len(ks) > 1):
        b = sp.best()
        if not np.isfinite(sp.scores[b]):
            break
        if b == max(sp.scores) and b < kmax:
            nxt = b + 1
        elif b == min(sp.scores) and b > 1:
            nxt = b - 1
        else:
            break
        if nxt in sp.scores:
            break
        run(nxt)
    if sp.scores and app.slice_mm >= THICK_SLICE_MM:
        # in thin slices a seed spans several slices and the fit sees the sign of its tilt
        b = sp.best()
        if np.isfinite(sp.scores[b]):
            f = mirror_tilts(patch, S, app, sp.fits[b], solver)
            s = score(f, S, app)
            if np.isfinite(s):          # the refit must still give whole seeds
                sp.fits[b], sp.scores[b] = f, s
    return sp
