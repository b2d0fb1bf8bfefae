"""Building the kernel: the GPU branch of the source compiles (nvcc, where installed), a missing C++
compiler gives a clear message and the array engine still runs, and the build cache is keyed by source."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from brachymc.errors import KernelBuildError
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.mc import kernel_build
from brachymc.mc.kernel_params import param_fields
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.transport import TransportSettings, make_transport
from brachymc.backend import get_backend
from brachymc.sources.simple import PointSource
from brachymc.sources.spectrum import Spectrum


def _nvcc() -> str | None:
    return shutil.which("nvcc") or next((str(p) for p in Path("/usr/local").glob("cuda*/bin/nvcc")), None)


def test_params_struct_layout_matches_python():
    lib = kernel_build.cpu_library()
    assert lib.dll.bmc_params_size() == 8 * len(param_fields())


@pytest.mark.skipif(_nvcc() is None, reason="nvcc (CUDA toolkit) not installed here")
def test_gpu_build_of_the_source_compiles(tmp_path):
    """The very source the GPU build hands to NVRTC compiles for Hopper (sm_90), warnings as errors."""
    src = tmp_path / "brachymc_kernel.cu"
    src.write_text(kernel_build.kernel_source())
    cmd = [_nvcc(), "-arch=sm_90", *kernel_build.GPU_OPTIONS, "--Werror", "all-warnings", "-c", str(src),
           "-o", str(tmp_path / "k.o")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


def test_missing_compiler_is_named_and_array_engine_runs(monkeypatch, tmp_path, caplog, library):
    monkeypatch.setenv("CXX", "brachymc-no-such-compiler")
    monkeypatch.setenv("BRACHYMC_CACHE_DIR", str(tmp_path))
    kernel_build.cpu_library.cache_clear()
    try:
        with pytest.raises(KernelBuildError, match="C\\+\\+ compiler.*brachymc-no-such-compiler.*apt-get install g\\+\\+"):
            kernel_build.cpu_library()
        g = GridGeometry.centered((2.0, 2.0, 2.0), (0.5, 0.5, 0.5))
        ph = VoxelPhantom.homogeneous(g, library["water"])
        tables = load_or_build_tables(list(ph.materials))
        be = get_backend("numpy")
        with pytest.raises(KernelBuildError):
            make_transport(ph, tables, be, TransportSettings(engine="kernel"))
        with caplog.at_level(logging.WARNING):
            tr = make_transport(ph, tables, be, TransportSettings(engine="auto"))
        assert tr.engine == "array"
        assert "using the array engine" in caplog.text and "C++ compiler" in caplog.text
        sc = tr.run_batch(PointSource((0.0, 0.0, 0.0), Spectrum.monoenergetic(30.0)), 1000, np.random.SeedSequence(1))
        assert float(sc.kerma.sum()) > 0
    finally:
        kernel_build.cpu_library.cache_clear()


def test_cpu_build_is_cached_by_source(monkeypatch, tmp_path):
    monkeypatch.setenv("BRACHYMC_CACHE_DIR", str(tmp_path))
    kernel_build.cpu_library.cache_clear()
    try:
        lib = kernel_build.cpu_library()
        folders = list((tmp_path / "kernels").iterdir())
        assert len(folders) == 1 and lib.path.parent == folders[0]
        assert (folders[0] / "brachymc_kernel.cpp").read_text() == kernel_build.kernel_source()
        kernel_build.cpu_library.cache_clear()
        assert kernel_build.cpu_library().path == lib.path          # reused, not rebuilt
        assert kernel_build.source_hash() != kernel_build.source_hash("other flags")
    finally:
        kernel_build.cpu_library.cache_clear()
