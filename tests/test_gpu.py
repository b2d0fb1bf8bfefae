"""CuPy backend: the same transport code on a GPU agrees with NumPy within statistics.

Marked ``gpu``; skipped where CuPy or a CUDA device is missing (CI has none).
"""

import numpy as np
import pytest

from brachymc.geometry.dda import trace_segments
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.mc.simulation import RunSettings, run_simulation
from brachymc.mc.transport import TransportSettings
from brachymc.sources.simple import PointSource
from brachymc.sources.spectrum import Spectrum, load_spectrum

pytestmark = pytest.mark.gpu
K = 4.0


def _run(ph, src, backend, seed, n=400_000, **kw):
    st = RunSettings(histories=n, batches=10, seed=seed, backend=backend,
                     transport=TransportSettings(**kw))
    return run_simulation(ph, src, st)


def test_dda_same_on_gpu(cupy_backend):
    import cupy as cp

    g = GridGeometry(shape=(7, 8, 9), spacing=(0.3, 0.2, 0.1), origin=(-1, -1, -1))
    rng = np.random.default_rng(1)
    lo, hi = np.array(g.origin), np.array(g.upper)
    p0, p1 = lo + (hi - lo) * rng.random((500, 3)), lo + (hi - lo) * rng.random((500, 3))
    for (va, la), (vb, lb) in zip(trace_segments(np, p0, p1, g), trace_segments(cp, p0, p1, g)):
        np.testing.assert_array_equal(va, vb)
        np.testing.assert_allclose(la, lb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["water", "slab"])
def test_cupy_agrees_with_numpy(cupy_backend, library, case):
    g = GridGeometry.centered((8, 8, 8), (0.4, 0.4, 0.4))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    if case == "slab":
        ph = ph.with_box(library["cortical_bone"], (-4, -4, 0.8), (4, 4, 1.6))
    src = PointSource((0.0, 0.0, 0.0), load_spectrum("i125_ncrp58"))
    a = _run(ph, src, "numpy", 1, score_primary=True)
    b = _run(ph, src, "cupy", 2, score_primary=True)
    assert b.backend == "cupy"
    for qa, qb in ((a.dose, b.dose), (a.primary, b.primary)):
        sel = (qa.rel_uncertainty < 0.05) & (qb.rel_uncertainty < 0.05)
        z = (qa.mean - qb.mean)[sel] / np.hypot(qa.uncertainty, qb.uncertainty)[sel]
        assert sel.sum() > 100
        assert abs(z.mean()) * np.sqrt(sel.sum()) < 3 * K
        assert 0.6 < z.std() < 1.4
    # energy bookkeeping identical in expectation
    for key in ("deposited", "escaped"):
        da, db = a.batch_energy[key], b.batch_energy[key]
        sem = np.hypot(da.std(ddof=1), db.std(ddof=1)) / np.sqrt(len(da))
        assert abs(da.mean() - db.mean()) < K * sem + 1e-12


def test_cupy_reproducible(cupy_backend, library):
    g = GridGeometry.centered((4, 4, 4), (0.5, 0.5, 0.5))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    src = PointSource((0.0, 0.0, 0.0), Spectrum.monoenergetic(30.0))
    a = _run(ph, src, "cupy", 5, n=50_000)
    b = _run(ph, src, "cupy", 5, n=50_000)
    np.testing.assert_array_equal(a.dose.mean, b.dose.mean)
