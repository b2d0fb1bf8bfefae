"""Building the transport kernel: one CUDA C++ source, two builds.

``brachymc/mc/kernels/transport.cu`` and the headers it includes are the kernel engine. They are
joined into one translation unit (:func:`kernel_source`) and compiled

* for a GPU by NVRTC through CuPy (:func:`gpu_module`; ``cupy.RawModule``, no nvcc at run time),
  with fused multiply-adds off so that the GPU evaluates every expression as the CPU does;
* for a CPU by the system C++ compiler with OpenMP (:func:`cpu_library`), as a shared library loaded
  with :mod:`ctypes`.

The CPU build happens on first use and is cached by a hash of the source, the compiler (its path
and version) and the flags, under ``<cache>/kernels/`` (``brachymc cache info``; see
:func:`brachymc._paths.cache_dir`), as CuPy caches its kernels: nothing is compiled at install
time, so editable installs, wheels and a shared home directory on a cluster all work, and a
changed source is rebuilt automatically. ``-march=native`` is used only when the cache key also
holds the processor model (``BRACHYMC_KERNEL_PORTABLE=1`` turns it off, e.g. for a cache shared by
different nodes); ``BRACHYMC_KERNEL_CXXFLAGS`` adds flags (e.g. ``-g`` to profile).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from brachymc._paths import cache_dir
from brachymc.errors import KernelBuildError

log = logging.getLogger(__name__)

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
ENTRY = "transport.cu"
#: flags that make the CPU build evaluate floating point as the GPU build does
CPU_FLAGS = ("-O3", "-std=c++14", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math", "-fno-math-errno")
#: NVRTC options of the GPU build (IEEE division and square root are NVRTC's defaults)
GPU_OPTIONS = ("--std=c++14", "--fmad=false")
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)
_lock = threading.Lock()


def kernel_source() -> str:
    """The kernel as one translation unit: ``transport.cu`` with its local headers inlined once each."""
    seen: set[str] = set()

    def expand(name: str) -> str:
        if name in seen:
            return ""
        seen.add(name)
        path = KERNEL_DIR / name
        if not path.is_file():
            raise KernelBuildError(f"{path}: kernel header not found (broken installation)")
        text = path.read_text().replace("#pragma once\n", "")
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return expand(ENTRY)


def source_hash(extra: str = "") -> str:
    return hashlib.sha256((kernel_source() + "\0" + extra).encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------- CPU
def find_compiler() -> str:
    """Path of the C++ compiler: ``$CXX``, else the first of c++, g++, clang++ on the PATH."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise KernelBuildError(
        "the kernel engine's CPU build needs a C++ compiler and none was found (looked for "
        f"{', '.join(names)}{' from $CXX' if os.environ.get('CXX') else ' on the PATH'}); install one "
        "(Debian/Ubuntu: apt-get install g++) or use the array engine (engine = \"array\")")


def _compiler_version(cxx: str) -> str:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") or line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _native_flags() -> tuple[str, ...]:
    extra = tuple(os.environ.get("BRACHYMC_KERNEL_CXXFLAGS", "").split())   # e.g. "-g" for profiling
    if os.environ.get("BRACHYMC_KERNEL_PORTABLE"):
        return extra
    return (("-march=native",) if platform.machine() in ("x86_64", "AMD64") else ("-mcpu=native",)) + extra


def _try_compile(cxx: str, src: Path, out: Path, flags: tuple[str, ...]) -> str | None:
    cmd = [cxx, *flags, str(src), "-o", str(out)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{' '.join(cmd)}: {exc}"
    if res.returncode != 0:
        return f"{' '.join(cmd)}\n{res.stderr[-4000:]}"
    return None


@lru_cache(maxsize=None)
def cpu_library() -> "KernelLibrary":
    """The CPU build of the kernel (compiled on first use, then taken from the cache)."""
    with _lock:
        cxx = find_compiler()
        version = _compiler_version(cxx)
        native = _native_flags()
        variants = [("openmp", CPU_FLAGS + native + ("-fopenmp",)), ("serial", CPU_FLAGS + native)]
        errors = []
        for kind, flags in variants:
            key = source_hash("|".join([cxx, version, *flags, _cpu_model() if native else platform.machine()]))
            folder = cache_dir() / "kernels" / f"cpu-{key}"
            lib = folder / "libbrachymc_kernel.so"
            if not lib.is_file():
                folder.mkdir(parents=True, exist_ok=True)
                # the source stays beside the library (debuggers and profilers read it)
                src = folder / "brachymc_kernel.cpp"
                if not src.is_file() or src.read_text() != kernel_source():
                    src_tmp = folder / f".src-{os.getpid()}-{threading.get_ident()}.cpp"
                    src_tmp.write_text(kernel_source())
                    os.replace(src_tmp, src)
                with tempfile.TemporaryDirectory(dir=folder) as tmp:
                    built = Path(tmp) / lib.name
                    err = _try_compile(cxx, src, built, flags)
                    if err is not None:
                        errors.append(err)
                        continue
                    os.replace(built, lib)            # atomic: concurrent builders agree
                log.info("built the CPU transport kernel (%s, %s): %s", kind, version, lib)
            if kind == "serial":
                log.warning("the C++ compiler %s has no OpenMP: the CPU kernel runs on one thread", cxx)
            loaded = KernelLibrary(ctypes.CDLL(str(lib)), lib, kind == "openmp", cxx, version)
            from brachymc.mc.kernel_params import param_fields

            if loaded.dll.bmc_params_size() != 8 * len(param_fields()):
                raise KernelBuildError(f"{lib}: the kernel's parameter block ({loaded.dll.bmc_params_size()} bytes) does "
                                       f"not match params.h ({8 * len(param_fields())} bytes); clear the cache "
                                       "(brachymc cache clear --kind kernels)")
            return loaded
        raise KernelBuildError("the kernel engine's CPU build failed:\n" + "\n".join(errors))


class KernelLibrary:
    """The loaded CPU build and its entry points (ctypes)."""

    def __init__(self, dll, path: Path, openmp: bool, compiler: str, version: str):
        self.dll, self.path, self.openmp, self.compiler, self.compiler_version = dll, path, openmp, compiler, version
        vp = ctypes.c_void_p
        dll.bmc_params_size.restype = ctypes.c_longlong
        dll.bmc_nacc.restype = ctypes.c_longlong
        dll.bmc_run_cpu.argtypes = [vp, ctypes.c_int, ctypes.c_int]
        dll.bmc_run_cpu.restype = ctypes.c_int
        dll.bmc_test_philox.argtypes = [vp, vp, vp]
        dll.bmc_test_uniform.argtypes = [ctypes.c_longlong] * 4 + [vp]
        dll.bmc_test_math.argtypes = [ctypes.c_int, ctypes.c_longlong, vp, vp]
        dll.bmc_test_seed.argtypes = [vp, ctypes.c_longlong, vp, vp, vp, vp, vp, vp]
        dll.bmc_test_seed_next.argtypes = [vp, ctypes.c_longlong, vp, vp, vp, vp, vp]
        dll.bmc_test_source.argtypes = [vp, ctypes.c_longlong, vp]
        dll.bmc_test_energy_position.argtypes = [vp, ctypes.c_longlong, vp, vp, vp]
        dll.bmc_test_interactions.argtypes = [vp, ctypes.c_int, ctypes.c_longlong, vp, vp, vp]

    def run(self, params_address: int, threads: int, reduce: bool = True) -> int:
        """Run the kernel on the host parameter block at ``params_address``; returns threads used.
        ``reduce``: add the threads' private tallies into the outputs (the last launch of a batch)."""
        return int(self.dll.bmc_run_cpu(ctypes.c_void_p(params_address), int(threads), int(bool(reduce))))


# ----------------------------------------------------------------------------------------- GPU
def gpu_options() -> tuple[str, ...]:
    """NVRTC options: ``GPU_OPTIONS``, plus ``-DBMC_MIN_BLOCKS=N`` from ``BRACHYMC_GPU_MIN_BLOCKS`` (a
    register cap for occupancy experiments; see kernels/portability.h)."""
    n = os.environ.get("BRACHYMC_GPU_MIN_BLOCKS", "").strip()
    return GPU_OPTIONS + ((f"-DBMC_MIN_BLOCKS={int(n)}",) if n.isdigit() and int(n) > 0 else ())


@lru_cache(maxsize=None)
def gpu_module():
    """The GPU build: a ``cupy.RawModule`` compiled by NVRTC (CuPy caches the binary on disk)."""
    try:
        import cupy
    except ImportError as exc:
        raise KernelBuildError("the kernel engine's GPU build needs CuPy (pip install 'brachymc[gpu]')") from exc
    try:
        return cupy.RawModule(code=kernel_source(), options=gpu_options(), name_expressions=None)
    except Exception as exc:  # CompileException, CUDA driver errors
        raise KernelBuildError(f"the kernel engine's GPU build failed: {exc}") from exc


def available(backend_name: str) -> str | None:
    """None when the kernel builds for ``backend_name`` here, else the reason it does not."""
    try:
        if backend_name == "cupy":
            gpu_module().get_function("bmc_transport")
        else:
            cpu_library()
        return None
    except KernelBuildError as exc:
        return str(exc)


__all__ = ["kernel_source", "source_hash", "cpu_library", "gpu_module", "available", "find_compiler",
           "KernelLibrary", "CPU_FLAGS", "GPU_OPTIONS"]
