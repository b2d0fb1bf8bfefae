"""The fused voxel step's array twin (``fused="emulate"``) plus the deferred seed-voxel path reproduce
the plain array transport: same histories (voxel steps) and the same doses to rounding. The CUDA
kernel itself is compared with this twin in tests/test_gpu.py (needs a GPU)."""

import numpy as np
import pytest

from brachymc.backend import get_backend
from brachymc.errors import ConfigError
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.geometry.seed import load_builtin_seed
from brachymc.geometry.seeded_phantom import SeededVoxelWorld, SeedPlacement
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.transport import Transport, TransportSettings
from brachymc.sources.seed_source import SeedSetSource
from brachymc.sources.simple import PointSource
from brachymc.sources.spectrum import load_spectrum


def _pair(world_factory, source, fused_kw, n=30_000, seed=3):
    out = []
    for fused in (False, "emulate"):
        world = world_factory()
        be = world._backend if hasattr(world, "_backend") else get_backend("numpy")
        tr = Transport(world, load_or_build_tables(list(world.materials)), be, TransportSettings(fused=fused, **fused_kw))
        sc = tr.run_batch(source, n, np.random.default_rng(seed))
        out.append(sc)
    return out


def test_twin_equals_array_transport_plain_voxels(library):
    be = get_backend("numpy")
    g = GridGeometry.centered((4, 4, 4), (0.25, 0.25, 0.25))
    ph = VoxelPhantom.homogeneous(g, library["water"]).with_box(library["cortical_bone"], (0.5, -2, -2), (1.5, 2, 2))
    src = PointSource((0.03, -0.01, 0.02), load_spectrum("i125_ncrp58"))
    a, b = _pair(lambda: ph, src, {"score_primary": True})
    assert a.steps == b.steps
    np.testing.assert_allclose(b.kerma, a.kerma, rtol=1e-12, atol=0)
    np.testing.assert_allclose(b.primary, a.primary, rtol=1e-12, atol=0)
    assert float(b.escaped_energy) == pytest.approx(float(a.escaped_energy), rel=1e-12)


def test_twin_with_deferred_seed_voxels(library):
    """Two seeds (inter-seed effects), dose to water scored: steps in seed voxels take the array path."""
    be = get_backend("numpy")
    g = GridGeometry.centered((3, 3, 3), (0.2, 0.2, 0.2))
    model = load_builtin_seed("oncoseed_6711", library)
    pl = (SeedPlacement((0.0, 0.0, 0.0)), SeedPlacement((0.3, 0.1, 0.5), (0.0, 1.0, 1.0)))
    ph = VoxelPhantom.homogeneous(g, library["water"]).with_box(library["cortical_bone"], (0.6, -1.5, -1.5),
                                                                 (1.5, 1.5, 1.5))
    make = lambda: SeededVoxelWorld(ph, model, pl, library, be, volume_samples=20_000)  # noqa: E731
    a, b = _pair(make, SeedSetSource(model, pl), {"score_water": False, "score_primary": True}, n=20_000)
    assert a.steps == b.steps
    np.testing.assert_allclose(b.kerma, a.kerma, rtol=1e-12, atol=0)
    np.testing.assert_allclose(b.primary, a.primary, rtol=1e-12, atol=0)


def test_twin_scores_dose_to_water(library):
    be = get_backend("numpy")
    g = GridGeometry.centered((3, 3, 3), (0.3, 0.3, 0.3))
    ph = VoxelPhantom.homogeneous(g, library["water"]).with_box(library["cortical_bone"], (0.3, -1.5, -1.5),
                                                                 (1.5, 1.5, 1.5))
    src = PointSource((0.0, 0.0, 0.0), load_spectrum("i125_ncrp58"))
    a, b = _pair(lambda: ph, src, {"score_water": True})
    np.testing.assert_allclose(b.water, a.water, rtol=1e-12, atol=0)


def test_fused_kernel_needs_cupy(library):
    g = GridGeometry.centered((1, 1, 1), (0.5, 0.5, 0.5))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    with pytest.raises(ConfigError, match="cupy"):
        Transport(ph, load_or_build_tables([library["water"]]), get_backend("numpy"), TransportSettings(fused=True))
    with pytest.raises(ConfigError, match="fused"):
        TransportSettings(fused="yes")


@pytest.mark.parametrize("problem", ["seed-water", "grid100"])
def test_benchmark_problems_with_the_twin(problem, tmp_path):
    """benchmarks/run.py --fused emulate follows the same histories as the array transport."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    res = {}
    for flag in ([], ["--fused", "emulate"]):
        out = tmp_path / f"{len(flag)}.json"
        subprocess.run([sys.executable, str(script), "--problem", problem, "--backend", "numpy", "--ci",
                        "--json", str(out)] + flag, check=True, capture_output=True, timeout=600)
        res[len(flag)] = json.loads(out.read_text())[0]
    assert res[0]["voxel_steps"] == res[2]["voxel_steps"]
    assert res[0]["rel_unc_reached"] == pytest.approx(res[2]["rel_unc_reached"], rel=1e-9)
