import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from brachymc.backend import cupy_available, get_backend
from brachymc.constants import KEV_PER_G_TO_GY
from brachymc.errors import BackendError
from brachymc.mc.tally import DoseTally


def test_backend_resolution():
    assert get_backend("numpy").name == "numpy"
    assert get_backend("auto").name == ("cupy" if cupy_available() else "numpy")
    with pytest.raises(BackendError, match="unknown backend"):
        get_backend("torch")
    if not cupy_available():
        with pytest.raises(BackendError, match="gpu"):
            get_backend("cupy")


def test_scatter_add_accumulates_repeats():
    be = get_backend("numpy")
    t = np.zeros(4)
    be.scatter_add(t, np.array([0, 0, 3, 0]), np.array([1.0, 2.0, 5.0, 0.5]))
    np.testing.assert_array_equal(t, [3.5, 0, 0, 5.0])


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(1, 50), st.floats(0.001, 2.0))
def test_batch_statistics(n_batches, per_batch, volume):
    """Mean and standard error of the mean equal the textbook batch formulas."""
    be = get_backend("numpy")
    rng = np.random.default_rng(n_batches * 1000 + per_batch)
    raws = rng.gamma(2.0, 1.0, size=(n_batches, 6))
    tally = DoseTally(be, (1, 2, 3), volume)
    for r in raws:
        tally.add_batch({"dose": r.copy()}, per_batch)
    est = tally.estimate()
    x = raws * KEV_PER_G_TO_GY / (volume * per_batch)
    np.testing.assert_allclose(est.mean.ravel(), x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(est.uncertainty.ravel(), x.std(axis=0, ddof=1) / np.sqrt(n_batches), rtol=1e-6)
    assert tally.n_histories == n_batches * per_batch


def test_rel_uncertainty_nan_where_no_dose():
    be = get_backend("numpy")
    tally = DoseTally(be, (1, 1, 2), 1.0)
    tally.add_batch({"dose": np.array([1.0, 0.0])}, 1)
    tally.add_batch({"dose": np.array([3.0, 0.0])}, 1)
    rel = tally.estimate().rel_uncertainty.ravel()
    assert rel[0] == pytest.approx(0.5) and np.isnan(rel[1])


def test_auto_bank_size(numpy_backend):
    from brachymc.mc.transport import auto_bank_size

    assert auto_bank_size(numpy_backend) == 1 << 16

    class FakeGPU:
        def free_memory_bytes(self):
            return 40 * 2**30          # 40 GiB free

    n = auto_bank_size(FakeGPU())
    assert n & (n - 1) == 0 and 1 << 16 <= n <= 1 << 24
    assert n == 1 << 24                # 20 GiB / 320 B = 67 M photons -> capped at 2^24
