"""Least-squares fits of k blurred seed models to the voxels of one metal component.

Parameters per seed: centre (3, mm), axis (two angles in a chart around its starting axis, so
there are no poles) and line density A (HU mm^2); per scan: segment length L and PSF widths
(sigma_xy, sigma_z), fixed at the values :func:`calibrate` estimated from the scan's isolated
seeds (where it fits them freely). The background is the component's local background and the
model is clipped where the scan saturates. Trust-region least squares (SciPy's ``trf``
algorithm: analytic Jacobian with the shape fixed, compiled in :mod:`brachymc.seedfinder._trf`;
numerical Jacobian through ``scipy.optimize.least_squares`` where the shape is free) minimises
the sum of squared HU residuals over the component's voxels, with weak priors on the centres
and line densities.

Starting points for k > 1 come from weighted k-means of the voxel coordinates (several starts:
splits along the principal axis, and k-means++), each cluster's principal axis giving the seed
axis; the fit with the smallest residual wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from brachymc.geometry.seed import orthonormal_frame
from brachymc.seedfinder import _trf
from brachymc.seedfinder.appearance import TILT_KNOTS, SeedAppearance, seed_images, seeds_image, seeds_image_grad


@dataclass(frozen=True)
class Patch:
    """The voxels of one component and its blur tails: coordinates (n, 3) mm, HU, the local
    background of each voxel (HU), whether it belongs to the component itself (above the
    candidate level), the clip level, the image noise and, where the background was filled in,
    the spread of that fill (HU, :func:`~brachymc.seedfinder.segment.inpainted_background`)."""

    points: np.ndarray
    hu: np.ndarray
    background: np.ndarray
    clip: float | None
    noise_hu: float
    in_component: np.ndarray | None = None
    background_spread: np.ndarray | None = None

    @property
    def excess(self) -> np.ndarray:
        e = self.hu - self.background
        return np.where(e > 0, e, 0.0)

    @property
    def background_level(self) -> float:
        return float(np.median(self.background))

    def moments(self, z_from_patch: bool = True):
        """Intensity-weighted centroid (mm) and covariance (mm^2) of the component's excess; with
        ``z_from_patch`` the centroid's z from the whole patch (with the slices above and below: a
        seed near a slice boundary reaches into the next slice below the candidate level)."""
        w = self.excess if self.in_component is None else self.excess * self.in_component
        tot = float(w.sum())
        c = (w @ self.points) / tot
        d = self.points - c
        cov = (d * w[:, None]).T @ d / tot
        if z_from_patch and self.in_component is not None:
            e = self.excess
            c = np.array([c[0], c[1], float(e @ self.points[:, 2]) / float(e.sum())])
        return c, cov


@dataclass(frozen=True)
class SeedFit:
    """Fitted seeds of one component."""

    centers: np.ndarray          # (k, 3) mm
    axes: np.ndarray             # (k, 3) unit
    amplitudes: np.ndarray       # (k,) HU mm^2
    rss: float                   # sum of squared residuals (HU^2)
    n_points: int
    r2: float                    # 1 - rss / sum((hu - background)^2)
    local_r2: np.ndarray         # (k,) the same, over the voxels nearest each seed
    lengths: np.ndarray | None = None   # (k,) apparent segment lengths (mm)

    @property
    def intensities(self) -> np.ndarray:
        """Each seed's integrated model intensity A x L (HU mm^3): line density and apparent length
        trade against each other in a fit, their product much less."""
        L = self.lengths if self.lengths is not None else np.ones(len(self.amplitudes))
        return self.amplitudes * L

    @property
    def k(self) -> int:
        return len(self.centers)


def _unit(v):
    return v / np.linalg.norm(v)


def _frames(axes0: np.ndarray):
    return [orthonormal_frame(a) for a in axes0]


def _bounded(x, lo, hi):
    """Map an unbounded parameter onto (lo, hi) smoothly (and its derivative)."""
    t = np.tanh(x)
    return lo + (hi - lo) * 0.5 * (t + 1.0), (hi - lo) * 0.5 * (1.0 - t * t)


#: how far (mm) a fitted centre may move from its start, and the range of line densities
CENTER_REACH_MM = 4.0
#: sd of the weak prior holding a centre's z near its start, as a fraction of the slice thickness
#: (at least 1 mm); 0.2 was tried on the 5 mm scans and was not better (docs/seed_finding.md)
Z_PRIOR_FRACTION = 0.35
LOG_AMP_RANGE = (np.log(0.02), np.log(30.0))
#: the solvers of :func:`fit_seeds` (``FinderSettings.fit_solver``)
FIT_SOLVERS = ("compiled", "scipy")


def fit_seeds(patch: Patch, app: SeedAppearance, centers0, axes0, amps0, free_shape: bool = False,
              max_nfev: int = 400, solver: str = "compiled") -> tuple[SeedFit, SeedAppearance]:
    """Refine k seeds (and with ``free_shape`` L, sigma_xy, sigma_z) by least squares.

    Trust-region least squares (``least_squares(method="trf")``, unbounded: the parameters are
    mapped smoothly onto their ranges by tanh): centres within 4 mm of their start, line densities within 0.02-30 x the starting
    median, shape parameters within physical bounds; axes in a chart (alpha, beta) around the
    starting axis a0: u = (a0 + alpha e1 + beta e2) / |...|. The Jacobian is analytic except for
    the shape parameters. Not ``method="lm"``: SciPy's MINPACK (1.17) gave results that depended
    on the contents of memory it had not written (the same fit of the same voxels ended differently
    after other allocations, and with ``MALLOC_PERTURB_`` set to different bytes), so a CT gave a
    seed more or less from one run to the next; ``trf`` repeats bit for bit.

    ``solver="compiled"`` (the default where the shape is fixed) runs the same algorithm and the
    same residuals compiled (:mod:`brachymc.seedfinder._trf`; the finder's fit stage on the
    100-seed timing CT 11.0 -> 5.6 s); ``"scipy"`` is the reference it is tested against. A free shape always goes through SciPy.
    """
    if solver not in FIT_SOLVERS:
        raise ValueError(f"solver must be 'compiled' or 'scipy', not {solver!r}")
    centers0 = np.atleast_2d(np.asarray(centers0, float))
    axes0 = np.array([_unit(np.asarray(a, float)) for a in np.atleast_2d(axes0)])
    amps0 = np.maximum(np.atleast_1d(np.asarray(amps0, float)), 1e-3)
    k = len(centers0)
    origin = patch.points.mean(axis=0)
    pts = patch.points - origin
    c0 = centers0 - origin
    fr = _frames(axes0)
    E1 = np.array([f[0] for f in fr])
    E2 = np.array([f[1] for f in fr])
    A0 = np.array([f[2] for f in fr])
    scale_a = float(np.median(amps0))
    la0 = np.clip(np.log(amps0 / scale_a), LOG_AMP_RANGE[0] + 0.1, LOG_AMP_RANGE[1] - 0.1)
    shape_lo = np.array([0.5 * app.marker_length_mm, 0.25, 0.25])
    shape_hi = np.array([1.3 * app.capsule_length_mm, 3.0, 4.0])
    shape0 = np.clip(np.array([app.length_mm, app.sigma_xy_mm, app.sigma_z_mm]), shape_lo * 1.05, shape_hi * 0.95)
    zoff = app.z_offsets()
    len_range = (0.8 * app.length_mm, min(1.25 * app.length_mm, app.capsule_length_mm))

    def _inv(v, lo, hi):
        return np.arctanh(np.clip(2.0 * (v - lo) / (hi - lo) - 1.0, -0.999, 0.999))

    def unpack(x):
        dc, dcd = _bounded(x[:3 * k], -CENTER_REACH_MM, CENTER_REACH_MM)
        c = dc.reshape(k, 3) + c0
        ab = x[3 * k:5 * k].reshape(k, 2)
        u = A0 + ab[:, :1] * E1 + ab[:, 1:] * E2
        u = u / np.linalg.norm(u, axis=1, keepdims=True)
        la, lad = _bounded(x[5 * k:6 * k], *LOG_AMP_RANGE)
        amp = np.exp(la) * scale_a
        if free_shape:
            length, sxy, sz = _bounded(x[6 * k:6 * k + 3], shape_lo, shape_hi)[0]
            lld = None
        else:
            # each seed's apparent length may differ a little from the scan's (in thick slices the
            # partial-volume non-linearity shortens seeds lying in the slice): otherwise a fit
            # tilts such a seed out of the plane to shorten it
            length, lld = _bounded(x[6 * k:7 * k], *len_range)
            sxy, sz = app.sigma_xy_mm, app.sigma_z_mm
        return c, u, amp, length, np.array([sxy, sxy, sz]), dcd.reshape(k, 3), lad, ab, lld

    # weak prior on the centres (their start: moments or k-means), as rows of residuals scaled by
    # the starting misfit: where the image cannot tell (a seed lying inside a thick slice), the
    # centre stays where the intensity puts it instead of drifting along a flat direction
    prior_sd = np.array([2.0, 2.0, max(Z_PRIOR_FRACTION * app.slice_mm, 1.0)])

    def data_resid(x):
        c, u, amp, length, sig = unpack(x)[:5]
        return seeds_image(pts, c, u, amp, length, sig, patch.background, patch.clip, zoff) - patch.hu

    r_scale = 1.0

    # and on each line density: about one seed's at its tilt (once the scan is calibrated), so
    # that two touching seeds share the intensity instead of one taking it all
    use_amp_prior = app.amplitude is not None and not free_shape
    amp_sd = max(app.amplitude_sd, 0.1)

    amp_expected = app.amplitude_of(axes0) if use_amp_prior else None

    def amp_prior(u, amp):
        # the expected density at the starting tilt: a prior that moved with the axis would pull
        # the axis towards the tilt whose density matches
        if not use_amp_prior:
            return np.zeros(0)
        return r_scale * np.log(amp / amp_expected) / amp_sd

    def resid(x):
        c, u, amp = unpack(x)[:3]
        prior = (r_scale * (c - c0) / prior_sd).ravel()
        return np.concatenate([data_resid(x), prior, amp_prior(u, amp)])

    def jac(x):
        c, u, amp, length, sig, dcd, lad, ab, lld = unpack(x)
        _, fk, dc, dw, dl = seeds_image_grad(pts, c, u, amp, length, sig, patch.background, patch.clip, zoff)
        J = np.zeros((len(pts) + 3 * k + (k if use_amp_prior else 0), 7 * k))
        J[:len(pts), 6 * k:7 * k] = (dl * lld[:, None]).T
        for i in range(k):
            n_raw = A0[i] + ab[i, 0] * E1[i] + ab[i, 1] * E2[i]
            nn = float(np.linalg.norm(n_raw))
            J[:len(pts), 3 * i:3 * i + 3] = dc[i] * dcd[i][None, :]
            for j, e in enumerate((E1[i], E2[i])):
                J[:len(pts), 3 * k + 2 * i + j] = dw[i] @ ((e - (u[i] @ e) * u[i]) / nn / sig)
            J[:len(pts), 5 * k + i] = fk[i] * lad[i]
            for j in range(3):
                J[len(pts) + 3 * i + j, 3 * i + j] = r_scale * dcd[i][j] / prior_sd[j]
            if use_amp_prior:
                J[len(pts) + 3 * k + i, 5 * k + i] = r_scale * lad[i] / amp_sd
        return J

    x0 = np.concatenate([np.zeros(5 * k), _inv(la0, *LOG_AMP_RANGE)]
                        + ([_inv(shape0, shape_lo, shape_hi)] if free_shape
                           else [_inv(np.full(k, app.length_mm), *len_range)]))
    if free_shape or solver == "scipy":
        r0 = data_resid(x0)
        r_scale = float(np.sqrt(r0 @ r0 / len(r0)))
        if free_shape:
            xs = 1.0
        else:
            # the Jacobian's column norms at the start (MINPACK's scaling), floored: a parameter the
            # image does not see at the start (the tilt of a seed centred in a slice) must not get an
            # unbounded step
            cn = np.linalg.norm(jac(x0), axis=0)
            xs = 1.0 / np.maximum(cn, 1e-2 * max(float(cn.max()), 1e-12))
        x_fit = least_squares(resid, x0, jac="2-point" if free_shape else jac, method="trf", x_scale=xs,
                              max_nfev=max_nfev, diff_step=1e-4, ftol=1e-5, xtol=1e-5).x
    else:
        # the same residuals, scale and loop, compiled (r_scale and x_scale computed there)
        x_fit = _trf.fit_fixed_shape(
            x0, k, np.ascontiguousarray(pts), np.ascontiguousarray(patch.hu, dtype=np.float64),
            np.ascontiguousarray(np.broadcast_to(np.asarray(patch.background, np.float64), (len(pts),))),
            0.0 if patch.clip is None else float(patch.clip), patch.clip is not None,
            np.ascontiguousarray(np.atleast_1d(zoff), dtype=np.float64),
            np.array([app.sigma_xy_mm, app.sigma_xy_mm, app.sigma_z_mm], float), np.ascontiguousarray(c0),
            np.ascontiguousarray(A0), np.ascontiguousarray(E1), np.ascontiguousarray(E2), scale_a,
            CENTER_REACH_MM, float(LOG_AMP_RANGE[0]), float(LOG_AMP_RANGE[1]), float(len_range[0]),
            float(len_range[1]), prior_sd, use_amp_prior,
            np.ascontiguousarray(amp_expected, dtype=np.float64) if use_amp_prior else np.ones(k),
            float(amp_sd), int(max_nfev), 1e-5, 1e-5, 1e-8, k >= _trf.NORMAL_MIN_SEEDS)[0]
    c, u, amp, length, sig = unpack(x_fit)[:5]
    r = data_resid(x_fit)
    rss = float(r @ r)
    e = patch.hu - patch.background
    tot = float(e @ e)
    # per-seed local R^2 over the voxels closest to each seed
    if k > 1:
        dist = np.stack([np.linalg.norm(pts - ci, axis=1) for ci in c], axis=1)
        own = np.argmin(dist, axis=1)
    else:
        own = np.zeros(len(pts), int)
    local = np.array([1.0 - float(r[own == i] @ r[own == i]) / max(float(e[own == i] @ e[own == i]), 1e-9)
                      for i in range(k)])
    fit = SeedFit(lengths=np.broadcast_to(np.asarray(length, float), (k,)).copy(), centers=c + origin, axes=u,
                  amplitudes=amp, rss=rss, n_points=len(pts),
                  r2=1.0 - rss / max(tot, 1e-9), local_r2=local)
    if free_shape:
        app = replace(app, length_mm=float(length), sigma_xy_mm=float(sig[0]), sigma_z_mm=float(sig[2]))
    return fit, app


def principal_axis(cov: np.ndarray, app: SeedAppearance) -> np.ndarray:
    """Seed axis from an intensity covariance, with the PSF's own spread removed first."""
    c = cov - np.diag(app.spread ** 2)
    w, v = np.linalg.eigh(c)
    return v[:, -1]


def amplitude_from_sum(total_excess: float, app: SeedAppearance, voxel_volume: float) -> float:
    """Line density A (HU mm^2) of a seed whose summed excess is ``total_excess`` (HU, over voxels)."""
    return total_excess * voxel_volume / max(app.length_mm, 1e-6)


def weighted_kmeans(points: np.ndarray, weights: np.ndarray, k: int, init: np.ndarray, iters: int = 30):
    """Lloyd's algorithm with weights; returns centres (k, 3), labels and the weighted within-SS."""
    c = init.copy()
    for _ in range(iters):
        d2 = ((points[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        lab = np.argmin(d2, axis=1)
        new = c.copy()
        for i in range(k):
            m = lab == i
            if np.any(m) and weights[m].sum() > 0:
                new[i] = (weights[m] @ points[m]) / weights[m].sum()
        if np.allclose(new, c, atol=1e-4):
            c = new
            break
        c = new
    d2 = ((points[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    lab = np.argmin(d2, axis=1)
    ss = float((weights * d2[np.arange(len(points)), lab]).sum())
    return c, lab, ss


def _amplitudes_for(patch: Patch, app: SeedAppearance, centers, axes) -> tuple[np.ndarray, float]:
    """Line densities that best fit fixed seed geometries (non-negative linear least squares on the
    unclipped voxels) and the residual sum of squares of the clipped model with them."""
    from scipy.optimize import nnls

    pts = patch.points
    zo = app.z_offsets()
    basis = seed_images(pts, centers, axes, np.ones(len(centers)), app.length_mm, app.sigma, zo).T
    y = patch.hu - patch.background
    ok = np.ones(len(y), bool) if patch.clip is None else patch.hu < patch.clip - 1.0
    if ok.sum() < basis.shape[1] + 3:
        ok = np.ones(len(y), bool)
    amps, _ = nnls(basis[ok], y[ok])
    amps = np.maximum(amps, 1e-3 * max(float(amps.max()), 1.0))
    model = seeds_image(pts, centers, axes, amps, app.length_mm, app.sigma, patch.background, patch.clip, zo)
    r = model - patch.hu
    return amps, float(r @ r)


def initial_guesses(patch: Patch, app: SeedAppearance, k: int, rng: np.random.Generator, n_random: int = 3):
    """Starting (rss0, centres, axes, amplitudes) for k seeds, best first.

    Starts: k parallel seeds side by side across the second principal axis (touching pairs), k
    seeds end to end along the principal axis (chains), and weighted k-means of the voxels from
    quantile splits along both principal axes and from k-means++ (clumps), each cluster's
    principal axis giving its seed's axis. Each start's line densities come from a linear fit
    (:func:`_amplitudes_for`), which also ranks the starts.
    """
    w = patch.excess
    pts = patch.points
    c0, cov = patch.moments()
    evals, evecs = np.linalg.eigh(cov - np.diag(app.spread ** 2))
    u1, u2 = evecs[:, -1], evecs[:, -2]
    starts = []
    # side by side: spacing from the spread across the axis
    spread = float(np.sqrt(max(evals[-2] - (app.capsule_diameter_mm / 4) ** 2, 0.0)))
    step = max(app.capsule_diameter_mm, 2.0 * spread / max(np.sqrt((k * k - 1) / 3.0), 1.0))
    offs = (np.arange(k) - (k - 1) / 2.0)
    starts.append((c0 + np.outer(offs * step, u2), np.tile(u1, (k, 1))))
    # end to end
    starts.append((c0 + np.outer(offs * (app.capsule_length_mm + 0.4), u1), np.tile(u1, (k, 1))))
    # intensity maxima along the principal axis (chains of seeds along a needle track)
    tt = (pts - c0) @ u1
    h = 0.25
    edges = np.arange(tt.min() - 1.0, tt.max() + 1.0 + h, h)
    prof, _ = np.histogram(tt, edges, weights=w)
    from scipy.ndimage import gaussian_filter1d

    prof = gaussian_filter1d(prof, 0.6 / h)
    mids = 0.5 * (edges[1:] + edges[:-1])
    peaks = [i for i in range(1, len(prof) - 1) if prof[i] >= prof[i - 1] and prof[i] > prof[i + 1]]
    peaks.sort(key=lambda i: -prof[i])
    chosen = []
    for i in peaks:
        if all(abs(mids[i] - mids[j]) >= 0.6 * app.capsule_length_mm for j in chosen):
            chosen.append(i)
        if len(chosen) == k:
            break
    if len(chosen) == k:
        cents = []
        for i in chosen:
            m = np.abs(tt - mids[i]) < 0.5 * app.length_mm
            cents.append((w[m] @ pts[m]) / w[m].sum() if w[m].sum() > 0 else c0 + mids[i] * u1)
        starts.append((np.array(cents), np.tile(u1, (k, 1))))
    inits = []
    for u in (u1, u2):
        tt = (pts - c0) @ u
        order = np.argsort(tt)
        cw = np.cumsum(w[order]) / w.sum()
        qs = (np.arange(k) + 0.5) / k
        inits.append(np.array([pts[order[min(np.searchsorted(cw, q), len(order) - 1)]] for q in qs]))
    p = w / w.sum()
    for _ in range(n_random):
        cs = [pts[rng.choice(len(pts), p=p)]]
        for _ in range(1, k):
            d2 = np.min(((pts[:, None, :] - np.array(cs)[None]) ** 2).sum(-1), axis=1) * w
            cs.append(pts[rng.choice(len(pts), p=(d2 / d2.sum()) if d2.sum() > 0 else p)])
        inits.append(np.array(cs))
    for init in inits:
        cents, lab, ss = weighted_kmeans(pts, w, k, init)
        axes = []
        for i in range(k):
            m = lab == i
            if m.sum() >= 4 and w[m].sum() > 0:
                d = pts[m] - cents[i]
                cv = (d * w[m][:, None]).T @ d / w[m].sum()
                axes.append(principal_axis(cv, app))
            else:
                axes.append(u1)
        starts.append((cents, np.array(axes)))
    out = []
    for cents, axes in starts:
        if any(np.allclose(np.sort(cents, axis=0), np.sort(o[1], axis=0), atol=0.2) for o in out):
            continue
        amps, rss0 = _amplitudes_for(patch, app, cents, axes)
        out.append((rss0, cents, axes, amps))
    out.sort(key=lambda t: t[0])
    return out


#: slices at least this thick (mm) hide most seeds inside one slice's flat top (sigma_z by profile likelihood)
THICK_SLICE_MM = 2.0


def tilt_curve(uz: np.ndarray, values: np.ndarray, min_points: int = 4) -> tuple[tuple[float, ...], float]:
    """Robust smooth curve of positive ``values`` against |u_z|: piecewise linear in log(value)
    between :data:`~brachymc.seedfinder.appearance.TILT_KNOTS`, fitted by iteratively reweighted
    least squares (Huber weights) with a penalty on its curvature (second differences), so that a
    tilt range with few seeds is bridged by a straight line. Returns the values at the knots and
    the robust spread (1.4826 MAD, log) of the points about the curve; with fewer than
    ``min_points`` points one value (the median) everywhere."""
    uz = np.abs(np.asarray(uz, float))
    y = np.log(np.asarray(values, float))
    kn = np.asarray(TILT_KNOTS)
    if len(y) < min_points:
        med = float(np.median(y)) if len(y) else 0.0
        sd = float(1.4826 * np.median(np.abs(y - med))) if len(y) >= 3 else 0.3
        return tuple([float(np.exp(med))] * len(kn)), float(np.clip(sd, 0.05, 0.5))
    # hat-function basis
    B = np.zeros((len(uz), len(kn)))
    j = np.clip(np.searchsorted(kn, uz, side="right") - 1, 0, len(kn) - 2)
    t = (uz - kn[j]) / (kn[j + 1] - kn[j])
    B[np.arange(len(uz)), j] = 1.0 - t
    B[np.arange(len(uz)), j + 1] = t
    D = np.zeros((len(kn) - 2, len(kn)))
    for r in range(len(kn) - 2):               # second differences on the (unequal) knot grid
        h0, h1 = kn[r + 1] - kn[r], kn[r + 2] - kn[r + 1]
        D[r, r], D[r, r + 1], D[r, r + 2] = 1.0 / h0, -(1.0 / h0 + 1.0 / h1), 1.0 / h1
    # a data-poor curve is a straight line: the penalty weighs like a few seeds per knot
    lam = 0.02 * len(y)
    w = np.ones(len(y))
    beta = np.full(len(kn), float(np.median(y)))
    for _ in range(20):
        A = B.T @ (B * w[:, None]) + lam * D.T @ D + 1e-9 * np.eye(len(kn))
        beta_new = np.linalg.solve(A, B.T @ (w * y))
        r = y - B @ beta_new
        sd = max(1.4826 * float(np.median(np.abs(r))), 0.03)
        a = np.abs(r) / (1.345 * sd)
        w = np.where(a <= 1.0, 1.0, 1.0 / np.maximum(a, 1e-12))
        if np.allclose(beta_new, beta, atol=1e-6):
            beta = beta_new
            break
        beta = beta_new
    r = y - B @ beta
    sd = 1.4826 * float(np.median(np.abs(r))) * np.sqrt(len(y) / max(len(y) - 2, 1))
    return tuple(float(v) for v in np.exp(beta)), float(np.clip(sd, 0.05, 0.5))


def calibrate(patches: list[Patch], app: SeedAppearance, voxel_volume: float, solver: str = "compiled") -> SeedAppearance:
    """Scan-specific L, sigma_xy, sigma_z, line density and seed unit from isolated seeds.

    Free fits (shape too) to each isolated seed; those with R^2 >= 0.8 count. The segment length
    L is the median over the seeds lying within 60 deg of the slice plane (|u_z| < 0.5; along z the
    slice profile hides the length), sigma_xy the median of all, sigma_z the median of the seeds
    lying nearly in-plane (for tilted seeds the tilt and the axial blur trade against each other).
    With that common shape each seed is refitted; its line density A, integrated model intensity
    A x L (line density and apparent length trade against each other, their product much less)
    and summed excess S against its tilt give robust curves in |u_z| (:func:`tilt_curve`: in thick slices the partial-volume
    non-linearity makes a seed along z look denser than one lying in the slice) and their
    spreads, which set how strictly the cluster splitting holds each seed to one seed's worth.
    """
    if not patches:
        return app
    fits = []
    for p in patches:
        c, cov = p.moments()
        u = principal_axis(cov, app)
        a0 = amplitude_from_sum(float(p.excess.sum()), app, voxel_volume)
        fit, a = fit_seeds(p, app, [c], [u], [a0], free_shape=True, max_nfev=300)
        if fit.r2 >= 0.8:
            fits.append((p, fit, a))
    if len(fits) < 2:
        return app
    uz0 = np.array([abs(float(f.axes[0][2])) for _, f, _ in fits])
    lengths = np.array([a.length_mm for _, _, a in fits])
    sxy = np.array([a.sigma_xy_mm for _, _, a in fits])
    sz = np.array([a.sigma_z_mm for _, _, a in fits])
    flat_l = uz0 < 0.5
    shaped = replace(app, length_mm=float(np.median(lengths[flat_l] if flat_l.sum() >= 3 else lengths)),
                     sigma_xy_mm=float(np.median(sxy)), sigma_z_mm=float(np.median(sz)))
    if app.slice_mm >= THICK_SLICE_MM:
        # thick slices: most seeds lie inside one slice's flat top, where sigma_z does not change
        # their image and each free fit leaves it anywhere; the seeds that reach a slice boundary
        # do tell, so sigma_z is the value that fits all of them best together (profile likelihood)
        grid = np.array([0.2, 0.3, 0.4, 0.55, 0.75, 1.0]) * max(1.0, app.slice_mm / 2.5)
        total = []
        for sgz in grid:
            trial = replace(shaped, sigma_z_mm=float(sgz))
            total.append(sum(np.log(fit_seeds(p, trial, f.centers, f.axes, f.amplitudes, max_nfev=100, solver=solver)[0].rss)
                             for p, f, _ in fits))
        i = int(np.argmin(total))
        if 0 < i < len(grid) - 1:                 # parabola through the minimum and its neighbours
            y0, y1, y2 = total[i - 1], total[i], total[i + 1]
            den = y0 - 2 * y1 + y2
            t = 0.5 * (y0 - y2) / den if den > 0 else 0.0
            sgz = float(grid[i] + np.clip(t, -1, 1) * (grid[i + 1] - grid[i] if t > 0 else grid[i] - grid[i - 1]))
        else:
            sgz = float(grid[i])
        shaped = replace(shaped, sigma_z_mm=sgz)
    else:
        flat = uz0 < 0.35
        shaped = replace(shaped, sigma_z_mm=float(np.median(sz[flat] if flat.sum() >= 3 else sz)))
    # line densities with the common shape (free shapes trade density against width where the
    # scan saturates)
    amps, uz, sums, qs = [], [], [], []
    for p, f, _ in fits:
        fit, _ = fit_seeds(p, shaped, f.centers, f.axes, f.amplitudes, solver=solver)
        amps.append(float(fit.amplitudes[0]))
        qs.append(float(fit.intensities[0]))
        uz.append(abs(float(fit.axes[0][2])))
        sums.append(float(p.excess.sum()) * voxel_volume)
    amps, uz, sums = np.array(amps), np.array(uz), np.array(sums)
    a_knots, a_sd = tilt_curve(uz, amps)
    s_knots, s_sd = tilt_curve(uz, sums)
    q_knots, q_sd = tilt_curve(uz, np.array(qs))
    return replace(shaped, amplitude=a_knots[0], amplitude_knots=a_knots, amplitude_sd=a_sd, intensity_knots=q_knots,
                   intensity_sd=q_sd, unit_knots=s_knots,
                   unit_sd=s_sd, calibrated_from=len(fits))
