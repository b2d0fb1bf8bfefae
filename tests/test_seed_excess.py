"""The study of how much of a seed's intensity the finder sees (brachymc.examples.seed_excess)."""

from __future__ import annotations

import numpy as np

from brachymc.examples.seed_excess import measure, table


def test_seed_excess_study_measures_true_and_found_intensity():
    rows = measure(slice_mm=5.0, n_scans=2)
    assert len(rows) == 18
    ok = [r for r in rows if r.usable]
    assert len(ok) >= 14
    ref = np.median([r.true_excess for r in ok if r.uz >= 0.45])
    # a seed's true excess (CT minus the metal-free image) hardly depends on how it lies: the
    # partial-volume non-linearity and the 3071 HU clip change it by less than 30 % at 5 mm
    assert all(0.6 < r.true_excess / ref < 1.3 for r in ok)
    # for tilted seeds the finder's patch and fill see nearly all of it: the fill errs by ~20 HU
    # over ~70 voxels of 3.2 mm^3 (~7 % of a seed's excess)
    tilted = [r.finder_s / r.true_excess for r in ok if r.uz >= 0.45]
    assert len(tilted) >= 5 and all(0.85 < q < 1.1 for q in tilted)
    lines = table(rows)
    assert lines[0].startswith("18 seeds") and len(lines) == 4 + len({(r.uz, r.height) for r in ok})
