"""Properties of the exact voxel stepping (hypothesis) and a brute-force cross-check."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from brachymc.geometry.dda import trace_segments
from brachymc.geometry.phantom import GridGeometry

dims = st.integers(1, 12)
spacing = st.floats(0.05, 1.0)
# end points strictly inside the grid: a segment ending exactly on the outer boundary at a grazing
# angle may leave the grid a rounding error early (its direction is computed from p1 - p0)
frac = st.floats(1e-3, 1.0 - 1e-3)


@st.composite
def grid_and_segment(draw):
    shape = (draw(dims), draw(dims), draw(dims))
    sp = (draw(spacing), draw(spacing), draw(spacing))
    origin = tuple(draw(st.floats(-5, 5)) for _ in range(3))
    g = GridGeometry(shape=shape, spacing=sp, origin=origin)
    ext = np.array([g.nx, g.ny, g.nz]) * np.array(sp)
    p0 = np.array(origin) + ext * np.array([draw(frac) for _ in range(3)])
    p1 = np.array(origin) + ext * np.array([draw(frac) for _ in range(3)])
    return g, p0, p1


def _unflat(idx, g):
    ix = idx % g.nx
    iy = (idx // g.nx) % g.ny
    iz = idx // (g.nx * g.ny)
    return np.stack([ix, iy, iz], axis=1)


@settings(max_examples=300, deadline=None)
@given(grid_and_segment())
def test_lengths_sum_to_segment_and_voxels_face_connected(case):
    g, p0, p1 = case
    (vox, lengths), = trace_segments(np, p0[None], p1[None], g)
    seg = float(np.linalg.norm(p1 - p0))
    assert np.all(lengths >= 0)
    assert lengths.sum() == pytest.approx(seg, rel=1e-9, abs=1e-9)
    assert np.all((vox >= 0) & (vox < g.n_voxels))
    if len(vox) > 1:
        steps = np.abs(np.diff(_unflat(vox, g), axis=0)).sum(axis=1)
        assert np.all(steps == 1), "consecutive voxels must share a face"


@settings(max_examples=60, deadline=None)
@given(grid_and_segment())
def test_lengths_match_brute_force_sampling(case):
    """Chord lengths agree with dense point sampling along the segment."""
    g, p0, p1 = case
    seg = float(np.linalg.norm(p1 - p0))
    assume(seg > 1e-3)
    (vox, lengths), = trace_segments(np, p0[None], p1[None], g)
    n = 20000
    t = (np.arange(n) + 0.5) / n
    pts = p0[None] + t[:, None] * (p1 - p0)[None]
    iv = np.clip(np.floor((pts - np.array(g.origin)) / np.array(g.spacing)).astype(int), 0,
                 np.array([g.nx, g.ny, g.nz]) - 1)
    flat = (iv[:, 2] * g.ny + iv[:, 1]) * g.nx + iv[:, 0]
    brute = np.bincount(flat, minlength=g.n_voxels) * seg / n
    exact = np.bincount(vox, weights=lengths, minlength=g.n_voxels)
    # each crossing can misplace at most one sample of length seg/n
    assert np.abs(brute - exact).max() <= 2.0 * seg / n + 1e-12


def test_many_segments_in_one_call():
    g = GridGeometry(shape=(5, 6, 7), spacing=(0.3, 0.2, 0.1), origin=(-1, -1, -1))
    rng = np.random.default_rng(3)
    lo, hi = np.array(g.origin), np.array(g.upper)
    p0 = lo + (hi - lo) * rng.random((200, 3))
    p1 = lo + (hi - lo) * rng.random((200, 3))
    out = trace_segments(np, p0, p1, g)
    for (vox, lengths), a, b in zip(out, p0, p1):
        assert lengths.sum() == pytest.approx(np.linalg.norm(b - a), rel=1e-12)


def test_axis_parallel_and_large_grid():
    """Rays along an axis, and a 512 x 512 x 300 grid (int64 flat indices)."""
    g = GridGeometry(shape=(300, 512, 512), spacing=(0.1, 0.1, 0.2), origin=(0, 0, 0))
    p0 = np.array([[0.05, 0.05, 0.0], [51.15, 51.15, 0.1]])
    p1 = np.array([[51.2, 0.05, 0.0], [51.15, 51.15, 59.9]])
    (v0, l0), (v1, l1) = trace_segments(np, p0, p1, g)
    assert len(v0) == 512 and l0.sum() == pytest.approx(51.15)
    assert v1.max() == (299 * 512 + 511) * 512 + 511 and len(v1) == 300
    assert l1.sum() == pytest.approx(59.8)
