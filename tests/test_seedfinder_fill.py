"""The background fill's spread (the noise of a filled voxel: ``seedfinder.heights`` weighs a slice
share by it)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

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
