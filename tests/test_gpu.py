"""On a GPU: the array engine on CuPy agrees with NumPy within statistics, and the kernel engine's
GPU build follows the CPU build's histories (same Philox keys) and agrees with the array engine.

Marked ``gpu``; skipped where CuPy or a CUDA device is missing (CI has none). ``benchmarks/gpu_check.sh``
runs them on a lent GPU.
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


def _run(ph, src, backend, seed, n=400_000, engine="array", **kw):
    st = RunSettings(histories=n, batches=10, seed=seed, backend=backend,
                     transport=TransportSettings(engine=engine, **kw))
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


def _seeded_problem(library, backend):
    from brachymc.geometry.seed import load_builtin_seed
    from brachymc.geometry.seeded_phantom import SeededVoxelWorld, SeedPlacement
    from brachymc.sources.seed_source import SeedSetSource

    model = load_builtin_seed("oncoseed_6711", library)
    g = GridGeometry.centered((2.0, 2.0, 2.0), (0.1, 0.1, 0.1))
    ph = VoxelPhantom.homogeneous(g, library["water"]).with_box(library["cortical_bone"], (-1, -1, 0.5), (1, 1, 0.7))
    pl = (SeedPlacement((0.0, 0.0, 0.0)), SeedPlacement((0.3, 0.1, -0.2), (1.0, 0.0, 0.0)),
          SeedPlacement((-0.3, 0.2, 0.3), (0.0, 1.0, 1.0)))
    world = SeededVoxelWorld(ph, model, pl, library, backend, volume_samples=20_000)
    return world, SeedSetSource(model, pl)


def test_kernel_gpu_build_equals_cpu_build(cupy_backend, numpy_backend, library):
    """The same histories on both builds (same Philox key): every voxel within 1e-5 (relative to the
    voxel's dose) of the CPU build. Differences come only from the order of the double-precision
    atomic adds on the GPU (and would show as ~1e-15), unless a history takes another branch."""
    from brachymc.mc.tables_cache import load_or_build_tables
    from brachymc.mc.transport import make_transport

    out = {}
    for be in (numpy_backend, cupy_backend):
        world, src = _seeded_problem(library, be)
        tr = make_transport(world, load_or_build_tables(list(world.materials)), be,
                            TransportSettings(engine="kernel", score_primary=True, score_water=False))
        assert tr.engine == "kernel"
        sc = tr.run_batch(src, 200_000, np.random.SeedSequence(77))
        out[be.name] = (be.asnumpy(sc.kerma), be.asnumpy(sc.primary), sc.steps, float(sc.escaped_energy))
    (kc, pc, sc_, ec), (kg, pg, sg, eg) = out["numpy"], out["cupy"]
    assert sg == sc_, "the GPU build took a different number of steps: some history branched differently"
    np.testing.assert_allclose(kg, kc, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(pg, pc, rtol=1e-5, atol=1e-30)
    assert eg == pytest.approx(ec, rel=1e-12)


@pytest.mark.parametrize("case", ["water", "slab"])
def test_kernel_gpu_agrees_with_array_engine(cupy_backend, library, case):
    g = GridGeometry.centered((3.2, 3.2, 3.2), (0.4, 0.4, 0.4))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    if case == "slab":
        ph = ph.with_box(library["cortical_bone"], (-4, -4, 0.8), (4, 4, 1.6))
    src = PointSource((0.0, 0.0, 0.0), load_spectrum("i125_ncrp58"))
    a = _run(ph, src, "numpy", 1, engine="array")
    b = _run(ph, src, "cupy", 2, engine="kernel")
    sel = (a.dose.rel_uncertainty < 0.05) & (b.dose.rel_uncertainty < 0.05)
    z = (a.dose.mean - b.dose.mean)[sel] / np.hypot(a.dose.uncertainty, b.dose.uncertainty)[sel]
    assert sel.sum() > 100
    assert abs(z.mean()) * np.sqrt(sel.sum()) < 3 * K
    assert 0.6 < z.std() < 1.4
