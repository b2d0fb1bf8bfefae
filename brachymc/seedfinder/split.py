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
      + (ln(S / sum_i S1(u_i)) / sd_S(k))^2          (the intensity count)
      + sum_i (ln(A_i / A(u_i)) / sd_A)^2             (each seed a whole seed)

n_eff = n / 4 (the PSF correlates neighbouring voxels); S1(u) and A(u) are one seed's summed
excess and line density at the seed's tilt, and sd_S, sd_A their spreads, all calibrated on the
scan's own isolated seeds (:func:`~brachymc.seedfinder.fit.calibrate`); sd_S(k)^2 =
sd_S^2 / k + 0.05^2 (the seeds' spreads average out; 5 % for what clustering itself changes:
overlapping blur clipped at the scan's maximum). A split whose weakest seed carries less than
half a seed's line density is not allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brachymc.seedfinder.appearance import SeedAppearance, seeds_image
from brachymc.seedfinder.fit import (Patch, SeedFit, amplitude_from_sum, fit_seeds, initial_guesses,
                                     principal_axis)

#: free parameters per seed (centre 3, axis 2, line density, apparent length): the BIC's count
PARAMS_PER_SEED = 7
#: spread of a cluster's summed excess beyond its seeds' own (overlapping blur clipped)
COUNT_SYSTEMATIC_SD = 0.05
#: every seed of a split cluster must carry at least this fraction of one seed's line density
MIN_SPLIT_RATIO = 0.5


def amplitude_ratios(fit: SeedFit, app: SeedAppearance) -> np.ndarray:
    """Each fitted seed's line density over one seed's at its tilt."""
    return fit.amplitudes / app.amplitude_of(fit.axes)


def count_ratio(fit_axes: np.ndarray, S: float, app: SeedAppearance) -> float:
    """The summed excess S over what the seeds of these axes hold together."""
    return float(S / np.sum(app.unit_of(fit_axes)))


def score(fit: SeedFit, S: float, app: SeedAppearance) -> float:
    """Penalised misfit of a k-seed fit (module docstring)."""
    k = fit.k
    n = fit.n_points
    n_eff = max(n / 4.0, 10.0)
    chi = n_eff * np.log(max(fit.rss, 1e-9) / n)
    bic = PARAMS_PER_SEED * k * np.log(n_eff)
    ratios = amplitude_ratios(fit, app)
    if k > 1 and ratios.min() < MIN_SPLIT_RATIO:
        return float("inf")          # a split must give whole seeds, not a seed and a streak
    sd_c = np.sqrt(app.unit_sd ** 2 / k + COUNT_SYSTEMATIC_SD ** 2)
    count = (np.log(max(count_ratio(fit.axes, S, app), 1e-6)) / sd_c) ** 2
    sd_a = max(app.amplitude_sd, 0.08)
    amp = float(np.sum((np.log(np.clip(ratios, 1e-3, None)) / sd_a) ** 2))
    return float(chi + bic + count + amp)


@dataclass
class Split:
    """Fits and scores per k of one component."""

    fits: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)

    def best(self) -> int:
        return min(self.scores, key=self.scores.get)


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


def greedy_starts(patch: Patch, app: SeedAppearance, k: int, split: Split) -> list:
    """Starts for k seeds from the fits of k - 1 (plus a seed at the residual) and k + 1 (minus the
    weakest seeds)."""
    out = []
    lower = split.fits.get(k - 1)
    if lower is not None and k > 1:
        add = _residual_start(patch, app, lower)
        if add is not None:
            c, u = add
            out.append((np.vstack([lower.centers, c]), np.vstack([lower.axes, u])))
    upper = split.fits.get(k + 1)
    if upper is not None:
        order = np.argsort(amplitude_ratios(upper, app))
        for drop in order[:2]:
            keep = np.ones(upper.k, bool)
            keep[drop] = False
            out.append((upper.centers[keep], upper.axes[keep]))
    return out


def fit_k(patch: Patch, S: float, app: SeedAppearance, k: int, rng: np.random.Generator, voxel_volume: float,
          split: Split, n_geometric: int = 2, cov=None, centroid=None) -> SeedFit:
    """Best fit of k seeds to the component (greedy and geometric starts, see the module docstring)."""
    if k == 1:
        c, cv = patch.moments() if cov is None else (centroid, cov)
        u = principal_axis(cv, app)
        a0 = float(app.amplitude_of([u])[0]) if app.amplitude is not None else \
            amplitude_from_sum(float(patch.excess.sum()), app, voxel_volume)
        starts = [(np.atleast_2d(c), np.atleast_2d(u))] + greedy_starts(patch, app, 1, split)
    else:
        starts = greedy_starts(patch, app, k, split)
        geo = initial_guesses(patch, app, k, rng)
        starts += [(cents, axes) for _, cents, axes, _ in geo[:n_geometric]]
    best = None
    for cents, axes in starts:
        amps = app.amplitude_of(axes) if app.amplitude is not None else np.full(len(cents), 1.0)
        fit, _ = fit_seeds(patch, app, cents, axes, amps)
        if best is None or fit.rss < best.rss:
            best = fit
    return best


def split_component(patch: Patch, S: float, app: SeedAppearance, ks, kmax: int, rng, voxel_volume: float,
                    centroid=None, cov=None) -> Split:
    """Fits for the counts ``ks`` (in order), then further counts while the best score sits at an end of
    the range tried (the intensity count depends on the seeds' tilts)."""
    sp = Split()

    def run(k):
        f = fit_k(patch, S, app, k, rng, voxel_volume, sp, cov=cov, centroid=centroid)
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
                      cov=cov, centroid=centroid) if k > 1 else None
            if f is not None and f.rss < old.rss:
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
    return sp
