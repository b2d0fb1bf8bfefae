"""The compiled fit (:mod:`brachymc.seedfinder._trf`) against its reference, SciPy's
``least_squares(method="trf")`` on the same residuals (``fit_seeds(..., solver="scipy")``).

The compiled loop is the same algorithm (for fits of 8 or more seeds with the subproblem decomposed from
the normal matrix instead of the SVD): on a well-conditioned fit both take the same steps, so
they end at the same point to rounding. (Where the Jacobian turns singular, a seed's length
pinned at its bound, the two LAPACK calls round its null direction differently and the paths may
part; the finder's validation totals are then measured anew, docs/seed_finding.md.)"""

from dataclasses import replace

import numpy as np
import pytest

from brachymc.seedfinder.appearance import SeedAppearance, seed_images
from brachymc.seedfinder.fit import Patch, fit_seeds

APP = SeedAppearance(model="oncoseed_6711", capsule_length_mm=4.5, capsule_diameter_mm=0.8, marker_length_mm=3.0,
                     length_mm=3.0, sigma_xy_mm=0.6, sigma_z_mm=0.45, amplitude=12000.0, slice_mm=2.5)
SIG = np.array([APP.sigma_xy_mm, APP.sigma_xy_mm, APP.sigma_z_mm])

CASES = {
    "one tilted seed": ([[0.2, -0.3, 0.4]], [[0.6, 0.3, 0.74]]),
    "one seed in the slice": ([[0.0, 0.1, -0.2]], [[0.8, 0.6, 0.0]]),
    "two touching end to end": ([[-2.4, 0.1, 0.0], [2.3, 0.0, 0.3]], [[1.0, 0.05, 0.1], [1.0, -0.1, 0.2]]),
    "two side by side": ([[0.0, -0.6, 0.0], [0.1, 0.7, 0.4]], [[0.3, 0.2, 0.93], [0.35, 0.1, 0.93]]),
    "three in a clump": ([[0.0, 0.0, 0.0], [1.5, 1.2, 0.5], [-1.2, 1.4, -0.6]],
                         [[1.0, 0.0, 0.2], [0.2, 1.0, 0.3], [0.6, 0.6, 0.5]]),
}


def _patch(centers, axes, clip, rng, half_x=8):
    xs = np.arange(-half_x, half_x + 1) * 0.7
    ys = np.arange(-8, 9) * 0.7
    zs = np.arange(-3, 4) * 1.25
    X, Y, Z = np.meshgrid(xs, ys, zs, indexing="ij")
    pts = np.column_stack([X.ravel(), Y.ravel(), Z.ravel()])
    img = seed_images(pts, centers, axes, np.full(len(centers), APP.amplitude), APP.length_mm, SIG,
                      APP.z_offsets()).sum(axis=0)
    hu = 40.0 + img + rng.normal(0.0, 20.0, len(pts))
    if clip is not None:
        hu = np.minimum(hu, clip)
    keep = img > 0.02 * img.max()
    return Patch(points=pts[keep], hu=hu[keep], background=np.full(keep.sum(), 40.0), clip=clip, noise_hu=20.0,
                 in_component=img[keep] > 0.3 * img.max())


def _fit_both(patch, centers, axes, rng):
    """(SciPy's fit, the compiled fit) from the same start off the truth: centres 0.4 mm away,
    axes ~10 deg off, line densities 20 % low."""
    c0 = centers + rng.normal(0.0, 0.4, centers.shape)
    u0 = axes + rng.normal(0.0, 0.15, axes.shape)
    a0 = np.full(len(centers), 0.8 * APP.amplitude)
    return fit_seeds(patch, APP, c0, u0, a0, solver="scipy")[0], fit_seeds(patch, APP, c0, u0, a0)[0]


def _assert_same_fit(got, ref):
    assert got.centers == pytest.approx(ref.centers, abs=1e-6)
    assert np.abs(np.sum(got.axes * ref.axes, axis=1)) == pytest.approx(1.0, abs=1e-9)
    assert got.amplitudes == pytest.approx(ref.amplitudes, rel=1e-6)
    assert got.lengths == pytest.approx(ref.lengths, rel=1e-6)
    assert got.rss == pytest.approx(ref.rss, rel=1e-8)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("clip", [None, 1500.0])
def test_compiled_fit_ends_where_scipy_does(name, clip):
    rng = np.random.default_rng(len(name))
    centers, axes = (np.array(a, float) for a in CASES[name])
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    patch = _patch(centers, axes, clip, rng)
    ref, got = _fit_both(patch, centers, axes, rng)
    _assert_same_fit(got, ref)
    # and both found the seeds (the fit is not merely the same, it is right)
    order = [int(np.argmin(np.linalg.norm(got.centers - c, axis=1))) for c in centers]
    assert sorted(order) == list(range(len(centers)))
    assert np.all(np.linalg.norm(got.centers[order] - centers, axis=1) < 0.3)


def test_without_a_calibrated_line_density_there_are_no_prior_rows_in_either():
    """Before the scan is calibrated (no line density known) the fit has no prior on the line
    densities; both solvers then fit the same residuals without those rows."""
    app = replace(APP, amplitude=None)
    rng = np.random.default_rng(5)
    centers, axes = (np.array(a, float) for a in CASES["two touching end to end"])
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    patch = _patch(centers, axes, None, rng)
    c0 = centers + rng.normal(0.0, 0.3, centers.shape)
    ref, _ = fit_seeds(patch, app, c0, axes, np.full(2, APP.amplitude), solver="scipy")
    got, _ = fit_seeds(patch, app, c0, axes, np.full(2, APP.amplitude))
    assert got.centers == pytest.approx(ref.centers, abs=1e-6)
    assert got.amplitudes == pytest.approx(ref.amplitudes, rel=1e-6)


def test_unknown_solver_is_refused():
    patch = _patch(np.zeros((1, 3)), np.array([[1.0, 0.0, 0.0]]), None, np.random.default_rng(0))
    with pytest.raises(ValueError, match="solver"):
        fit_seeds(patch, APP, np.zeros((1, 3)), [[1.0, 0.0, 0.0]], [APP.amplitude], solver="lm")


def test_normal_decomposition_equals_the_svd():
    """The normal route (fits of NORMAL_MIN_SEEDS or more seeds) gives the trust-region subproblem
    the SVD's singular values, right singular vectors (to their sign) and s * U^T f."""
    from brachymc.seedfinder._trf import _normal_decomposition

    rng = np.random.default_rng(11)
    m, n = 400, 56
    J = rng.normal(size=(m, n)) * (rng.random((m, n)) < 0.12)       # sparse, as a k-seed Jacobian
    J[np.arange(n), np.arange(n)] += 1.0                              # and of full rank
    f = rng.normal(size=m)
    s, V, suf = _normal_decomposition(J, J.T @ f)
    U, s_ref, Vt = np.linalg.svd(J, full_matrices=False)
    assert s == pytest.approx(s_ref, rel=1e-10)
    assert np.abs(np.sum(V * Vt.T, axis=0)) == pytest.approx(1.0, abs=1e-8)
    sign = np.sign(np.sum(V * Vt.T, axis=0))
    assert suf * sign == pytest.approx(s_ref * (U.T @ f), rel=1e-8, abs=1e-10 * np.abs(s_ref * (U.T @ f)).max())


def test_a_chain_of_eight_seeds_ends_where_scipy_does():
    """A fit of 8 seeds takes the normal route (``_trf.NORMAL_MIN_SEEDS``) and ends where SciPy's
    least_squares does, and at the seeds."""
    from brachymc.seedfinder import _trf

    rng = np.random.default_rng(8)
    k = 8
    assert k >= _trf.NORMAL_MIN_SEEDS
    centers = np.column_stack([(np.arange(k) - 3.5) * 5.0, rng.normal(0.0, 0.5, k), rng.normal(0.0, 0.4, k)])
    axes = np.column_stack([np.ones(k), rng.normal(0.0, 0.15, k), rng.normal(0.0, 0.3, k)])
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    patch = _patch(centers, axes, None, rng, half_x=32)
    ref, got = _fit_both(patch, centers, axes, rng)
    _assert_same_fit(got, ref)
    assert np.all(np.linalg.norm(got.centers - centers, axis=1) < 0.3)
