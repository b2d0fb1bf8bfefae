"""A seed's height in a thick slice from how its image is shared between slices
(:mod:`brachymc.seedfinder.heights`)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brachymc.seedfinder.appearance import SeedAppearance, seed_images
from brachymc.seedfinder.fit import Patch, SeedFit
from brachymc.seedfinder.heights import SHARE_SLICE_MM, height_from_shares, refine_heights, slice_shares

APP = SeedAppearance(model="oncoseed_6711", capsule_length_mm=4.5, capsule_diameter_mm=0.8, marker_length_mm=3.0,
                     length_mm=3.0, sigma_xy_mm=0.6, sigma_z_mm=0.45, amplitude=2000.0, slice_mm=5.0)
SLICES = (-5.0, 0.0, 5.0)          # slice centres (mm): boundaries at -2.5 and +2.5
NOISE = 20.0


def _grid():
    xs = np.arange(-5, 6) * 0.8
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    return np.concatenate([np.column_stack([X.ravel(), Y.ravel(), np.full(X.size, z)]) for z in SLICES])


def _patch(centers, axes, extra=None, seed=0, spread=None):
    """A patch of the three slices: the seeds' images by the model, image noise, and ``extra``
    (HU per voxel: bone or a badly filled background)."""
    pts = _grid()
    centers, axes = np.atleast_2d(centers), np.atleast_2d(axes)
    img = seed_images(pts, centers, axes, np.full(len(centers), APP.amplitude), APP.length_mm,
                      np.array([APP.sigma_xy_mm, APP.sigma_xy_mm, APP.sigma_z_mm]), APP.z_offsets()).sum(axis=0)
    rng = np.random.default_rng(seed)
    hu = 40.0 + img + rng.normal(0.0, NOISE, len(pts)) + (0.0 if extra is None else extra)
    return Patch(points=pts, hu=hu, background=np.full(len(pts), 40.0), clip=None, noise_hu=NOISE,
                 in_component=img > 0.3 * img.max(), background_spread=spread)


def _fit(centers, axes, z_fit=None):
    centers = np.array(np.atleast_2d(centers), float)
    if z_fit is not None:
        centers[:, 2] = z_fit
    k = len(centers)
    return SeedFit(centers=centers, axes=np.atleast_2d(axes), amplitudes=np.full(k, APP.amplitude), rss=0.0,
                   n_points=1, r2=1.0, local_r2=np.ones(k), lengths=np.full(k, APP.length_mm))


FLAT = np.array([1.0, 0.0, 0.0])


def test_a_seed_near_a_boundary_takes_the_height_of_its_spill_not_of_the_bone_beside_it():
    """A flat seed 0.3 mm below the upper boundary of its slice spills its image into the slice
    above; the slice below holds bone beside it (an edge of 600 HU over half the patch, not the
    seed's shape). The intensity centroid is drawn below the slice centre; the shares put the
    seed within 0.3 mm of its height, from a fit left at the slice centre."""
    h = 2.2
    pts = _grid()
    bone = np.where((pts[:, 2] == -5.0) & (pts[:, 1] > 0.5), 600.0, 0.0)
    patch = _patch([0.0, 0.0, h], FLAT, extra=bone)
    m = slice_shares(patch, APP, _fit([0.0, 0.0, h], FLAT, z_fit=0.0), 0)
    assert list(m.z_mm) == list(SLICES)
    assert m.shares[1] == pytest.approx(1.0) and 0.1 < m.shares[2] < 0.6     # its own slice, and the spill
    assert not m.usable[0]                                                    # the bone does not look like it
    assert patch.moments()[0][2] < 0.0                                    # the centroid: drawn to the bone
    z = height_from_shares(patch, APP, _fit([0.0, 0.0, h], FLAT, z_fit=0.0), 0)
    assert z == pytest.approx(h, abs=0.3)


def test_a_seed_inside_its_slice_gets_the_middle_of_the_heights_the_image_allows():
    """Wholly inside the slice the image cannot tell the height: the estimate is near the slice
    centre wherever the fit had left the seed (least squares has no gradient there)."""
    patch = _patch([0.0, 0.0, 0.6], FLAT)
    for z_fit in (-1.5, 0.6, 1.8):
        z = height_from_shares(patch, APP, _fit([0.0, 0.0, 0.6], FLAT, z_fit=z_fit), 0)
        assert abs(z) < 0.6


def test_each_seed_of_a_cluster_gets_its_own_height():
    """Two parallel seeds 2.4 mm apart side by side: one at the slice centre, one 0.2 mm above the
    lower boundary; each is measured with the other's image subtracted."""
    centers = np.array([[0.0, -1.2, 0.0], [0.0, 1.2, -2.3]])
    axes = np.array([FLAT, FLAT])
    patch = _patch(centers, axes, seed=3)
    out = refine_heights(patch, APP, _fit(centers, axes, z_fit=[0.0, -1.0]))
    assert abs(out.centers[0, 2]) < 0.6
    assert out.centers[1, 2] == pytest.approx(-2.3, abs=0.3)
    np.testing.assert_array_equal(out.centers[:, :2], centers[:, :2])     # only the heights move


def test_tilted_seeds_and_thin_slices_are_left_alone():
    centers = np.array([[0.0, 0.0, 1.0]])
    tilted = np.array([[0.8, 0.0, 0.6]])
    patch = _patch(centers, tilted)
    fit = _fit(centers, tilted)
    assert refine_heights(patch, APP, fit) is not fit
    np.testing.assert_array_equal(refine_heights(patch, APP, fit).centers, fit.centers)
    thin = SeedAppearance(**{**APP.__dict__, "slice_mm": 0.5 * SHARE_SLICE_MM})
    flat_fit = _fit(centers, FLAT)
    assert refine_heights(patch, thin, flat_fit) is flat_fit


@settings(max_examples=30, deadline=None)
@given(h=st.floats(-2.45, 2.45), seed=st.integers(0, 10_000), z_fit=st.floats(-2.0, 2.0))
def test_height_is_within_the_slice_and_exact_where_the_image_shows_it(h, seed, z_fit):
    """For any height of a flat seed in its slice and any start: the estimate stays within the
    slice (and the grid's margin); within 0.3 mm of a boundary, where the seed's image reaches the
    next slice well above the noise, it is within 0.3 mm; elsewhere it is the slice centre or, where
    the spill is just visible, the seed's height (measured here: the image shows it from ~0.4 mm
    of the boundary on), never farther than the half-width of the slice's flat part."""
    patch = _patch([0.0, 0.0, h], FLAT, seed=seed)
    z = height_from_shares(patch, APP, _fit([0.0, 0.0, h], FLAT, z_fit=z_fit), 0)
    assert -3.0 <= z <= 3.0
    if abs(h) > 2.2:
        assert z == pytest.approx(h, abs=0.3)
    else:
        assert abs(z) < 0.3 or abs(z - h) < 0.3
