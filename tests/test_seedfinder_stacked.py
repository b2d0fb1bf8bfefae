"""Seeds one above the other in thick slices: a seed below the metal level that touches a seed of
the next slice is its own component (:func:`brachymc.seedfinder.segment.find_components`), and
k seeds are also started one per slice (:func:`brachymc.seedfinder.split._slice_starts`)."""

import numpy as np
import pytest

from brachymc.seedfinder.appearance import SeedAppearance, seed_images
from brachymc.seedfinder.fit import Patch, fit_seeds
from brachymc.seedfinder.segment import ScanLevels, find_components
from brachymc.seedfinder.split import _slice_starts

LEVELS = ScanLevels(reference_hu=40.0, clip_hu=None, noise_hu=20.0, max_hu=2540.0)


def _volume(piece_slice: int, piece_x: slice) -> np.ndarray:
    """A metal seed (2500 HU, above the metal level) in slice 3, and a fainter piece (peak 1640 HU,
    below it) that touches it corner to corner or through a bridge of candidate voxels."""
    hu = np.full((8, 30, 30), 40.0)
    hu[3, 10:13, 10:12] = 2500.0
    hu[piece_slice, 7:10, piece_x] = 1340.0
    hu[piece_slice, 8, piece_x.start + 1] = 1640.0
    return hu


def _components(hu, dz):
    comps, _ = find_components(hu, (0.8, 0.8, dz), LEVELS, core_excess_hu=1800.0, candidate_excess_hu=1000.0,
                               grow_mm=1.5, compact_max_mm3=320.0)
    return comps


def test_a_faint_seed_in_the_next_thick_slice_is_its_own_component():
    """In 5 mm slices the faint piece in slice 4, touching the metal seed of slice 3 only corner
    to corner and beyond the cores' reach, peaks on its own: a second component, without a core,
    holding all of the piece."""
    comps = _components(_volume(4, slice(7, 10)), 5.0)
    assert len(comps) == 2
    cored = [c for c in comps if c.n_core > 0]
    faint = [c for c in comps if c.n_core == 0]
    assert len(cored) == 1 and len(faint) == 1
    assert set(map(tuple, faint[0].index)) == {(4, y, x) for y in range(7, 10) for x in range(7, 10)}
    assert faint[0].peak_hu == pytest.approx(1640.0)
    assert set(cored[0].index[:, 0]) == {3}


def test_in_thin_slices_the_piece_beyond_reach_is_left_out_as_before():
    """At 2.5 mm a seed lying in the slice reaches the metal level: the piece stays part of no
    component (the cores keep only what lies within grow_mm)."""
    comps = _components(_volume(4, slice(7, 10)), 2.5)
    assert len(comps) == 1 and comps[0].n_core > 0
    assert 4 not in set(comps[0].index[:, 0])


def test_a_piece_in_a_slice_with_cores_stays_out():
    """A dense piece in the metal seed's own slice, joined to it by a bridge of candidate voxels,
    is bone beside the seed: not a component of its own, however thick the slices."""
    hu = np.full((8, 30, 30), 40.0)
    hu[3, 10:13, 10:12] = 2500.0
    hu[3, 10:13, 12:14] = 1340.0              # the bridge
    hu[3, 10:13, 14:17] = 1340.0
    hu[3, 11, 15] = 1640.0                    # the piece's own peak
    comps = _components(hu, 5.0)
    assert len(comps) == 1 and comps[0].n_core > 0


# line density such that a seed lying in a 5 mm slice peaks ~1500 HU above background, as on the
# simulated 5 mm scans
APP = SeedAppearance(model="oncoseed_6711", capsule_length_mm=4.5, capsule_diameter_mm=0.8, marker_length_mm=3.0,
                     length_mm=3.0, sigma_xy_mm=0.6, sigma_z_mm=0.45, amplitude=12000.0, slice_mm=5.0)


def _stacked_patch(slices=(-10.0, -5.0, 0.0, 5.0)):
    """Two flat seeds one above the other, in slices centred at -5 and 0 mm, along different
    in-plane directions, as the image model draws them, with image noise (20 HU)."""
    xs = np.arange(-6, 7) * 0.8
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    pts = np.concatenate([np.column_stack([X.ravel(), Y.ravel(), np.full(X.size, z)]) for z in slices])
    centers = np.array([[0.3, -0.2, -4.6], [-0.2, 0.4, 0.8]])
    axes = np.array([[0.6, 0.8, 0.0], [1.0, 0.0, 0.0]])
    img = seed_images(pts, centers, axes, np.full(2, APP.amplitude), APP.length_mm,
                      np.array([APP.sigma_xy_mm, APP.sigma_xy_mm, APP.sigma_z_mm]), APP.z_offsets()).sum(axis=0)
    hu = 40.0 + img + np.random.default_rng(3).normal(0.0, 20.0, len(pts))
    return Patch(points=pts, hu=hu, background=np.full(len(pts), 40.0), clip=None, noise_hu=20.0,
                 in_component=img > 0.3 * img.max()), centers, axes


def test_slice_starts_put_one_seed_in_each_slice_and_the_fit_finds_both():
    patch, centers, axes = _stacked_patch()
    (start_c, start_u), = _slice_starts(patch, 2)
    order = np.argsort(start_c[:, 2])
    start_c, start_u = start_c[order], start_u[order]
    assert start_c[:, 2] == pytest.approx([-5.0, 0.0])            # the slice centres
    assert np.all(np.linalg.norm(start_c[:, :2] - centers[:, :2], axis=1) < 0.3)
    assert np.all(start_u[:, 2] == 0.0)
    assert np.all(np.abs(np.sum(start_u * axes, axis=1)) > 0.98)  # each along its seed
    fit, _ = fit_seeds(patch, APP, start_c, start_u, np.full(2, APP.amplitude))
    got = fit.centers[np.argsort(fit.centers[:, 2])]
    assert np.all(np.linalg.norm(got[:, :2] - centers[:, :2], axis=1) < 0.2)
    assert np.all(np.abs(got[:, 2] - centers[:, 2]) < 2.5)       # each in its own slice
    assert fit.r2 > 0.95


def test_no_slice_start_for_more_seeds_than_slices_with_excess():
    patch, _, _ = _stacked_patch(slices=(-5.0, 0.0))
    assert len(_slice_starts(patch, 2)) == 1
    assert _slice_starts(patch, 3) == []
