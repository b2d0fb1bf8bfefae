"""Shared fixtures. Reference data: the copy shipped in configs/reference (``brachymc._paths.reference_dir``;
``BRACHYMC_REFERENCE_DIR`` points elsewhere), so the suite runs on any clone."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings

# Property tests are derandomized: the suite is reproducible run to run, as the Monte Carlo tests
# are (fixed seeds). Explore with `pytest --hypothesis-profile=explore` (random, more examples).
hypothesis_settings.register_profile("brachymc", derandomize=True, deadline=None)
hypothesis_settings.register_profile("explore", max_examples=2000, deadline=None)
hypothesis_settings.load_profile("brachymc")

from brachymc._paths import reference_dir as shipped_reference_dir
from brachymc.backend import cupy_available, get_backend
from brachymc.materials import default_library

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Physics tables, S_K and compiled kernels are cached in a per-run folder, never in the user's home.

    Under pytest-xdist (``.ci/run`` runs the suite on every core) the workers share one folder:
    each cache entry is written to a temporary file and moved into place (``brachymc.files``,
    ``kernel_build``), so concurrent writers agree, and a table or kernel is built once per run."""
    old = os.environ.get("BRACHYMC_CACHE_DIR")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "physics-cache"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("physics-cache")
    os.environ["BRACHYMC_CACHE_DIR"] = str(folder)
    yield
    if old is None:
        os.environ.pop("BRACHYMC_CACHE_DIR", None)
    else:
        os.environ["BRACHYMC_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    d = shipped_reference_dir()
    if not (d / "tg43u1_6711_params.csv").is_file():
        pytest.fail(f"reference data missing in {d} (configs/reference ships them; BRACHYMC_REFERENCE_DIR "
                    "must name a folder with the same files)")
    return d


def read_reference_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        lines = [ln for ln in fh if not ln.startswith("#")]
    return list(csv.DictReader(lines))


@pytest.fixture(scope="session")
def ci_demo_run(tmp_path_factory):
    """``brachymc demo --mode ci`` run once for the session: (output folder, stdout). Read-only for tests."""
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "brachymc", "demo", "--out", str(out), "--mode", "ci",
                           "--no-progress", "--backend", "numpy"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


@pytest.fixture(scope="session")
def library():
    return default_library()


@pytest.fixture(scope="session")
def numpy_backend():
    return get_backend("numpy")


@pytest.fixture(scope="session")
def cupy_backend():
    if not cupy_available():
        pytest.skip("no CUDA device / CuPy")
    return get_backend("cupy")


def z_score(a: float, b: float, sa: float, sb: float = 0.0) -> float:
    """|a - b| in units of the combined standard uncertainty."""
    return abs(a - b) / np.sqrt(sa * sa + sb * sb)


@pytest.fixture()
def dicompyler_dvhcalc(monkeypatch):
    """dicompyler-core's ``dvhcalc`` (the DVH cross-checks' second reader); skips without it."""
    pytest.importorskip("dicompylercore")
    import warnings

    import pydicom.dicomio
    # dicompyler-core 0.5.6 imports pydicom.dicomio.read_file, removed in pydicom 3 (dcmread is the
    # same function); give it the old name for the duration of the test.
    monkeypatch.setattr(pydicom.dicomio, "read_file", pydicom.dcmread, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from dicompylercore import dvhcalc
    return dvhcalc
