"""The background fill's spread, and a thick-slice seed's z from the excess beyond it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brachymc.seedfinder.fit import SIGNIFICANT_SPREADS, Patch
from brachymc.seedfinder.segment import inpainted_background


def _box(texture_hu: float, seed: int = 0, noise: float = 5.0):
    """A 3 x 21 x 21 box of soft tissue (40 HU) whose right half is bone (540 HU) with a random
    texture of sd ``texture_hu`` (trabeculae that no straight line follows), a 5 x 5 hole in
    each half."""
    rng = np.random.default_rng(seed)
    img = np.full((3, 21, 21), 40.0) + rng.normal(0.0, noise, (3, 21, 21))
    bone = np.mgrid[0:21, 0:21][1] >= 11
    img[:, bone] += 500.0 + texture_hu * rng.standard_normal((3, int(bone.sum())))
    hole = np.zeros(img.shape, bool)
    hole[:, 8:13, 2:7] = True          # soft tissue
    hole[:, 8:13, 14:19] = True        # bone
    return img, hole


def test_fill_spread_is_the_noise_in_soft_tissue_and_large_in_textured_bone():
    img, hole = _box(texture_hu=200.0)
    bg, spread = inpainted_background(img, hole, (0.8, 0.8, 5.0), noise_hu=5.0, with_spread=True)
    soft = spread[:, 8:13, 2:7]
    bone = spread[:, 8:13, 14:19]
    assert np.all(spread[~hole] == 0.0)
    assert float(np.median(soft)) < 10.0                   # about the noise: the ends of a line agree
    # no line follows the texture: even the best-agreeing of the 8 lines has ends apart by a few
    # noise (measured here: median ~20 HU for a texture of sd 200 HU; beside real bone in a 5 mm
    # validation scan ~200 HU)
    assert float(np.median(bone)) > max(3.0 * 5.0, 4.0 * float(np.median(soft)))
    # the fill itself is what it was before the spread was added
    assert np.array_equal(bg, inpainted_background(img, hole, (0.8, 0.8, 5.0), noise_hu=5.0))


@settings(max_examples=25, deadline=None)
@given(texture=st.floats(0.0, 400.0), seed=st.integers(0, 10_000))
def test_fill_is_an_interpolation_and_its_spread_a_distance(texture, seed):
    """Every filled voxel lies between the image's extremes outside the hole (it interpolates two
    line ends), and its spread is a finite distance >= 0 (0 outside the hole)."""
    img, hole = _box(texture_hu=texture, seed=seed)
    bg, spread = inpainted_background(img, hole, (0.8, 0.8, 5.0), noise_hu=5.0, with_spread=True)
    outside = img[~hole]
    assert np.all(np.isfinite(bg)) and np.all(np.isfinite(spread))
    assert np.all((bg[hole] >= outside.min() - 1e-9) & (bg[hole] <= outside.max() + 1e-9))
    assert np.all(spread >= 0.0) and np.all(spread[~hole] == 0.0)


def test_seed_z_from_the_excess_beyond_the_fill_spread():
    """A seed lying in a 5 mm slice just below its upper boundary spills a little into the slice
    above; the slice below, beside bone, is filled 300 HU too low over the whole patch with a
    spread of 200 HU. The plain intensity centroid is drawn to the slice below, the centroid of
    the excess beyond SIGNIFICANT_SPREADS spreads stays in the seed's slice, above its centre."""
    xs = np.arange(-3, 4) * 0.8
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    prof = np.exp(-0.5 * (X ** 2 / 2.0 ** 2 + Y ** 2 / 0.6 ** 2))
    slices = {-5.0: 300.0 * np.ones_like(prof),         # fill too low beside bone: excess everywhere
              0.0: 1800.0 * prof, 5.0: 250.0 * prof}   # the seed's slice and its spill above
    spread = {-5.0: 200.0, 0.0: 2.0, 5.0: 2.0}
    pts, hu, bgs, sp, own = [], [], [], [], []
    for z, ex in slices.items():
        pts.append(np.column_stack([X.ravel(), Y.ravel(), np.full(X.size, z)]))
        hu.append(40.0 + ex.ravel())
        bgs.append(np.full(X.size, 40.0))
        sp.append(np.full(X.size, spread[z]))
        own.append(np.full(X.size, z == 0.0))
    patch = Patch(points=np.concatenate(pts), hu=np.concatenate(hu), background=np.concatenate(bgs), clip=None,
                  noise_hu=5.0, in_component=np.concatenate(own), background_spread=np.concatenate(sp))
    z_plain = patch.moments(z_from_patch=True)[0][2]
    z_sig = patch.moments(z_from_patch=True, significant=True)[0][2]
    assert z_plain < 0.0                                   # drawn to the slice below
    assert 0.0 < z_sig < 2.5                               # in its own slice, towards the spill
    # without a spread the two are the same
    plain = Patch(points=patch.points, hu=patch.hu, background=patch.background, clip=None, noise_hu=5.0,
                  in_component=patch.in_component)
    assert plain.moments(z_from_patch=True, significant=True)[0][2] == pytest.approx(z_plain)
    assert np.all(patch.significant_excess <= patch.excess)
    assert SIGNIFICANT_SPREADS > 0
