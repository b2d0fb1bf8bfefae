"""Compiled (numba) fit of k seeds with the scan's shape fixed: residuals, analytic Jacobian and
the trust-region loop in one compiled call.

The algorithm is SciPy's ``least_squares(method="trf")`` without bounds and with the exact
trust-region solver (SciPy 1.17 ``_lsq/trf.py: trf_no_bounds`` and ``_lsq/common.py``):
at each accepted point one SVD of the scaled Jacobian, Moré's root-finding for the
Levenberg-Marquardt parameter, the same radius updates and stopping tests (``ftol``, ``xtol``,
``gtol``, ``max_nfev``). :func:`brachymc.seedfinder.fit.fit_seeds` defines the parameters and
residuals (the data, the weak priors on centres and line densities); this module evaluates the
same expressions. Run through SciPy, the fits of the 100-seed timing CT took 9.3 s, of which
5.0 s in the Python callbacks (residuals, Jacobian) and 4.3 s in SciPy's loop (SVD 2.6 s of it,
with its checks); compiled they take 4.4 s (docs/benchmarks.md). The SciPy path stays in
``fit_seeds(..., solver="scipy")`` as the reference the tests compare with.

One departure, for large clusters: a fit of :data:`NORMAL_MIN_SEEDS` or more seeds takes the
subproblem's singular values and vectors from the normal matrix J^T J, assembled from the
Jacobian's nonzero entries (a voxel sees only the seeds near it), instead of an SVD of the whole
Jacobian, whose cost grows as the square of the number of parameters: on a 21-seed component the
SVD was 80 % of the fit's time. The two are the same decomposition in exact arithmetic (tested
against the SVD and against SciPy on an 8-seed chain).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from brachymc.seedfinder._kernel import seed_terms

_EPS = float(np.finfo(float).eps)


@njit(cache=True, nogil=True)
def _bounded(x, lo, hi):
    t = math.tanh(x)
    return lo + (hi - lo) * 0.5 * (t + 1.0), (hi - lo) * 0.5 * (1.0 - t * t)


@njit(cache=True, nogil=True)
def _unpack(x, k, c0, A0, E1, E2, scale_a, reach, la_lo, la_hi, len_lo, len_hi):
    c = np.empty((k, 3))
    dcd = np.empty((k, 3))
    for i in range(k):
        for j in range(3):
            v, d = _bounded(x[3 * i + j], -reach, reach)
            c[i, j] = v + c0[i, j]
            dcd[i, j] = d
    u = np.empty((k, 3))
    nn = np.empty(k)
    for i in range(k):
        a = x[3 * k + 2 * i]
        b = x[3 * k + 2 * i + 1]
        s = 0.0
        for j in range(3):
            u[i, j] = A0[i, j] + a * E1[i, j] + b * E2[i, j]
            s += u[i, j] * u[i, j]
        s = math.sqrt(s)
        nn[i] = s
        for j in range(3):
            u[i, j] /= s
    amp = np.empty(k)
    lad = np.empty(k)
    length = np.empty(k)
    lld = np.empty(k)
    for i in range(k):
        la, d = _bounded(x[5 * k + i], la_lo, la_hi)
        amp[i] = math.exp(la) * scale_a
        lad[i] = d
        L, dl = _bounded(x[6 * k + i], len_lo, len_hi)
        length[i] = L
        lld[i] = dl
    return c, dcd, u, nn, amp, lad, length, lld


@njit(cache=True, nogil=True)
def _residuals(x, k, pts, hu, bg, clip, has_clip, zoff, sigma, c0, A0, E1, E2, scale_a, reach, la_lo, la_hi,
               len_lo, len_hi, prior_sd, r_scale, use_amp, amp_expected, amp_sd, with_priors):
    c, dcd, u, nn, amp, lad, length, lld = _unpack(x, k, c0, A0, E1, E2, scale_a, reach, la_lo, la_hi,
                                                   len_lo, len_hi)
    f = seed_terms(pts, c, u, amp, length, sigma, zoff, False)[0]
    n = pts.shape[0]
    m = n + (3 * k + (k if use_amp else 0) if with_priors else 0)
    r = np.empty(m)
    for p in range(n):
        t = bg[p]
        for i in range(k):
            t += f[i, p]
        if has_clip and t > clip:
            t = clip
        r[p] = t - hu[p]
    if with_priors:
        for i in range(k):
            for j in range(3):
                r[n + 3 * i + j] = r_scale * (c[i, j] - c0[i, j]) / prior_sd[j]
        if use_amp:
            for i in range(k):
                r[n + 3 * k + i] = r_scale * math.log(amp[i] / amp_expected[i]) / amp_sd
    return r


@njit(cache=True, nogil=True)
def _jacobian(x, k, pts, bg, clip, has_clip, zoff, sigma, c0, A0, E1, E2, scale_a, reach, la_lo, la_hi,
              len_lo, len_hi, prior_sd, r_scale, use_amp, amp_sd):
    c, dcd, u, nn, amp, lad, length, lld = _unpack(x, k, c0, A0, E1, E2, scale_a, reach, la_lo, la_hi,
                                                   len_lo, len_hi)
    fk, dc, dw, dl = seed_terms(pts, c, u, amp, length, sigma, zoff, True)
    n = pts.shape[0]
    m = n + 3 * k + (k if use_amp else 0)
    J = np.zeros((m, 7 * k))
    # d u / d (alpha, beta): (e - (u.e) u) / |a0 + alpha e1 + beta e2|, then w = u / sigma
    de = np.empty((k, 2, 3))
    for i in range(k):
        for q in range(2):
            ue = 0.0
            for j in range(3):
                e = E1[i, j] if q == 0 else E2[i, j]
                ue += u[i, j] * e
            for j in range(3):
                e = E1[i, j] if q == 0 else E2[i, j]
                de[i, q, j] = (e - ue * u[i, j]) / nn[i] / sigma[j]
    for p in range(n):
        if has_clip:
            t = bg[p]
            for i in range(k):
                t += fk[i, p]
            if t > clip:
                continue                          # clipped: the model does not move here
        for i in range(k):
            for j in range(3):
                J[p, 3 * i + j] = dc[i, p, j] * dcd[i, j]
            for q in range(2):
                J[p, 3 * k + 2 * i + q] = dw[i, p, 0] * de[i, q, 0] + dw[i, p, 1] * de[i, q, 1] + dw[i, p, 2] * de[i, q, 2]
            J[p, 5 * k + i] = fk[i, p] * lad[i]
            J[p, 6 * k + i] = dl[i, p] * lld[i]
    for i in range(k):
        for j in range(3):
            J[n + 3 * i + j, 3 * i + j] = r_scale * dcd[i, j] / prior_sd[j]
        if use_amp:
            J[n + 3 * k + i, 5 * k + i] = r_scale * lad[i] / amp_sd
    return J


@njit(cache=True, nogil=True)
def _norm(v):
    s = 0.0
    for a in v:
        s += a * a
    return math.sqrt(s)


@njit(cache=True, nogil=True)
def _phi(alpha, suf, s, Delta):
    denom = s ** 2 + alpha
    p_norm = _norm(suf / denom)
    return p_norm - Delta, -np.sum(suf ** 2 / denom ** 3) / p_norm


@njit(cache=True, nogil=True)
def _solve_trust_region(n, m, suf, s, V, Delta, initial_alpha, gn):
    """SciPy's ``solve_lsq_trust_region`` (rtol 0.01, at most 10 iterations) given suf = s * (U^T f)
    and gn = (U^T f) / s (the Gauss-Newton step is -V gn where the Jacobian has full rank; gn is
    not used otherwise); both are computed once per decomposition."""
    full_rank = False
    if m >= n:
        full_rank = s[-1] > _EPS * m * s[0]
    if full_rank:
        p = -V @ gn
        if _norm(p) <= Delta:
            return p, 0.0
    alpha_upper = _norm(suf) / Delta
    alpha_lower = 0.0
    if full_rank:
        phi, phi_prime = _phi(0.0, suf, s, Delta)
        alpha_lower = -phi / phi_prime
    if not full_rank and initial_alpha == 0:
        alpha = max(0.001 * alpha_upper, (alpha_lower * alpha_upper) ** 0.5)
    else:
        alpha = initial_alpha
    for _ in range(10):
        if alpha < alpha_lower or alpha > alpha_upper:
            alpha = max(0.001 * alpha_upper, (alpha_lower * alpha_upper) ** 0.5)
        phi, phi_prime = _phi(alpha, suf, s, Delta)
        if phi < 0:
            alpha_upper = alpha
        ratio = phi / phi_prime
        alpha_lower = max(alpha_lower, alpha - ratio)
        alpha -= (phi + Delta) * ratio / Delta
        if abs(phi) < 0.01 * Delta:
            break
    p = -V @ (suf / (s ** 2 + alpha))
    p *= Delta / _norm(p)
    return p, alpha


#: fits of at least this many seeds take the trust-region subproblem's decomposition from the
#: normal matrix (see :func:`_normal_decomposition`); smaller fits keep SciPy's SVD. Measured on the
#: 21-23-seed component of the 2.5 mm, 90-seed held-out scan (1113 voxels, 147-161 parameters): the
#: SVD took 13.7 ms of the ~17 ms of a step, and a step takes ~4 ms by the normal route (400
#: evaluations in 1.68 s against 6.48 s); below 8 seeds the SVD's m n^2 cost is under a millisecond
#: and the fits stay as SciPy's, bit for bit.
NORMAL_MIN_SEEDS = 8


@njit(cache=True, nogil=True)
def _normal_decomposition(J_h, g_h):
    """(s, V, suf) of the scaled Jacobian from its normal matrix: J_h^T J_h = V diag(s^2) V^T
    (eigen-decomposition, s descending as the SVD's) and suf = s * (U^T f) = V^T g_h, which is all
    the trust-region subproblem uses of the SVD (SciPy's ``solve_lsq_trust_region``).

    The Jacobian of k seeds is sparse (a voxel sees the few seeds near it: ~7 % of the entries of
    the 21-seed fit), so the normal matrix is assembled row by row from each row's nonzero
    columns: O(rows x nonzeros^2) instead of the SVD's O(rows x columns^2). Squaring the scaled
    Jacobian loses the singular values below ~1e-8 of the largest (they come out as noise or 0);
    those directions are the ones the subproblem's damping (alpha > 0) holds, and the full-rank
    test then fails and the damped step is taken, as SciPy does for a rank-deficient Jacobian.
    """
    m, n = J_h.shape
    B = np.zeros((n, n))
    cols = np.empty(n, np.int64)
    for r in range(m):
        q = 0
        for j in range(n):
            if J_h[r, j] != 0.0:
                cols[q] = j
                q += 1
        for a in range(q):
            ja = cols[a]
            va = J_h[r, ja]
            for b in range(a, q):
                B[ja, cols[b]] += va * J_h[r, cols[b]]
    for a in range(n):
        for b in range(a + 1, n):
            B[b, a] = B[a, b]
    lam, W = np.linalg.eigh(B)
    s = np.empty(n)
    V = np.empty((n, n))
    for j in range(n):
        src = n - 1 - j
        s[j] = math.sqrt(max(lam[src], 0.0))
        for i in range(n):
            V[i, j] = W[i, src]
    return s, V, V.T @ g_h


@njit(cache=True, nogil=True)
def fit_fixed_shape(x0, k, pts, hu, bg, clip, has_clip, zoff, sigma, c0, A0, E1, E2, scale_a, reach, la_lo, la_hi,
                    len_lo, len_hi, prior_sd, use_amp, amp_expected, amp_sd, max_nfev, ftol, xtol, gtol,
                    normal=False):
    """The fit of :func:`brachymc.seedfinder.fit.fit_seeds` with the shape fixed: the residuals'
    scale from the start, the Jacobian's column norms at the start (floored) as ``x_scale``,
    then the trust-region loop (module docstring). With ``normal`` the subproblem's
    decomposition comes from the normal matrix (:func:`_normal_decomposition`; for fits of
    :data:`NORMAL_MIN_SEEDS` or more seeds), else from the SVD, as in SciPy. Returns the
    solution, the number of residual evaluations and SciPy's status code (0 max_nfev, 1 gtol,
    2 ftol, 3 xtol, 4 both)."""
    r0 = _residuals(x0, k, pts, hu, bg, clip, has_clip, zoff, sigma, c0, A0, E1, E2, scale_a, reach, la_lo, la_hi,
                    len_lo, len_hi, prior_sd, 1.0, use_amp, amp_expected, amp_sd, False)
    r_scale = math.sqrt(np.dot(r0, r0) / r0.shape[0])
    J = _jacobian(x0, k, pts, bg, clip, has_clip, zoff, sigma, c0, A0, E1, E2, scale_a, reach, la_lo, la_hi,
                  len_lo, len_hi, prior_sd, r_scale, use_amp, amp_sd)
    n = x0.shape[0]
    cn = np.empty(n)
    for j in range(n):
        cn[j] = _norm(J[:, j])
    floor = 1e-2 * max(cn.max(), 1e-12)
    scale = np.empty(n)
    for j in range(n):
        scale[j] = 1.0 / max(cn[j], floor)
    scale_inv = 1.0 / scale

    x = x0.copy()
    f = _residuals(x, k, pts, hu, bg, clip, has_clip, zoff, sigma, c0, A0, E1, E2, scale_a, reach, la_lo, la_hi,
                   len_lo, len_hi, prior_sd, r_scale, use_amp, amp_expected, amp_sd, True)
    m = f.shape[0]
    nfev = 1
    cost = 0.5 * np.dot(f, f)
    g = J.T @ f
    Delta = _norm(x0 * scale_inv)
    if Delta == 0:
        Delta = 1.0
    alpha = 0.0
    status = -1
    while True:
        if np.max(np.abs(g)) < gtol:
            status = 1
        if status != -1 or nfev == max_nfev:
            break
        d = scale
        g_h = d * g
        J_h = J * d
        if normal:
            s, V, suf = _normal_decomposition(J_h, g_h)
            gn = suf / (s * s)
        else:
            U, s, Vt = np.linalg.svd(J_h, full_matrices=False)
            V = np.ascontiguousarray(Vt.T)
            uf = U.T @ f
            suf = s * uf
            gn = uf / s
        actual_reduction = -1.0
        x_new = x
        f_new = f
        cost_new = cost
        while actual_reduction <= 0 and nfev < max_nfev:
            step_h, alpha = _solve_trust_region(n, m, suf, s, V, Delta, alpha, gn)
            Js = J_h @ step_h
            predicted_reduction = -(0.5 * np.dot(Js, Js) + np.dot(step_h, g_h))
            step = d * step_h
            x_new = x + step
            f_new = _residuals(x_new, k, pts, hu, bg, clip, has_clip, zoff, sigma, c0, A0, E1, E2, scale_a, reach,
                               la_lo, la_hi, len_lo, len_hi, prior_sd, r_scale, use_amp, amp_expected, amp_sd, True)
            nfev += 1
            step_h_norm = _norm(step_h)
            if not np.all(np.isfinite(f_new)):
                Delta = 0.25 * step_h_norm
                continue
            cost_new = 0.5 * np.dot(f_new, f_new)
            actual_reduction = cost - cost_new
            # update_tr_radius
            if predicted_reduction > 0:
                ratio = actual_reduction / predicted_reduction
            elif predicted_reduction == 0 and actual_reduction == 0:
                ratio = 1.0
            else:
                ratio = 0.0
            Delta_new = Delta
            if ratio < 0.25:
                Delta_new = 0.25 * step_h_norm
            elif ratio > 0.75 and step_h_norm > 0.95 * Delta:
                Delta_new = Delta * 2.0
            # check_termination
            step_norm = _norm(step)
            ftol_ok = actual_reduction < ftol * cost and ratio > 0.25
            xtol_ok = step_norm < xtol * (xtol + _norm(x))
            if ftol_ok and xtol_ok:
                status = 4
            elif ftol_ok:
                status = 2
            elif xtol_ok:
                status = 3
            if status != -1:
                break
            alpha *= Delta / Delta_new
            Delta = Delta_new
        if actual_reduction > 0:
            x = x_new
            f = f_new
            cost = cost_new
            J = _jacobian(x, k, pts, bg, clip, has_clip, zoff, sigma, c0, A0, E1, E2, scale_a, reach, la_lo, la_hi,
                          len_lo, len_hi, prior_sd, r_scale, use_amp, amp_sd)
            g = J.T @ f
    if status == -1:
        status = 0
    return x, nfev, status
