"""The synthetic spine case: deterministic, anatomically plausible numbers, seeds on needles covering the GTV."""

import numpy as np
import pytest

from brachymc.examples.spine import SEED_ACTIVITY_MCI, SEED_LENGTH_MM, SEED_SPACING_MM, describe, make_spine_case


@pytest.fixture(scope="module")
def case():
    return make_spine_case(voxel_mm=(2.0, 2.0, 2.5))


def test_deterministic(case):
    again = make_spine_case(voxel_mm=(2.0, 2.0, 2.5))
    assert np.array_equal(case.ct.hu, again.ct.hu)
    assert np.array_equal(case.seeds_cm, again.seeds_cm)
    other = make_spine_case(voxel_mm=(2.0, 2.0, 2.5), seed=7)
    assert not np.array_equal(case.ct.hu, other.ct.hu)            # noise and streaks follow the seed
    assert np.array_equal(case.seeds_cm, other.seeds_cm)          # the plan does not


def test_seeds_on_needles(case):
    n = len(case.seeds_cm)
    assert 28 <= n <= 40 and 6 <= len(case.needles) <= 8
    assert sorted(i for nd in case.needles for i in nd) == list(range(n))
    for nd in case.needles:
        p = case.seeds_cm[list(nd)]
        d = case.seed_directions[list(nd)]
        assert np.allclose(d, d[0]) and np.isclose(np.linalg.norm(d[0]), 1.0)
        if len(nd) > 1:
            steps = np.diff(p, axis=0)
            assert np.allclose(np.linalg.norm(steps, axis=1), SEED_SPACING_MM / 10, atol=1e-9)   # 7 mm apart
            assert np.allclose(np.abs(steps @ d[0]), SEED_SPACING_MM / 10, atol=1e-9)           # along the needle
    # capsules never touch: centres >= 2 mm apart off-needle (seeds lie in axial planes >= 3 mm apart)
    d = np.linalg.norm(case.seeds_cm[:, None] - case.seeds_cm[None], axis=-1)
    np.fill_diagonal(d, 1.0)
    assert d.min() >= 0.2


def test_seeds_inside_grid_and_away_from_cord(case):
    g = case.ct.geometry
    reach = np.hypot(SEED_LENGTH_MM / 2, 0.4) / 10
    assert np.all(case.seeds_cm - reach > np.array(g.origin)) and np.all(case.seeds_cm + reach < np.array(g.upper))
    iz, iy, ix = np.nonzero(case.masks["SpinalCord"])
    cord = np.stack([g.centers(0)[ix], g.centers(1)[iy], g.centers(2)[iz]], 1)
    dist = np.min(np.linalg.norm(case.seeds_cm[:, None] - cord[None], axis=-1), axis=1)
    assert dist.min() >= 0.3 + SEED_LENGTH_MM / 20


def test_volumes_and_hu(case):
    g = case.ct.geometry
    m, hu = case.masks, case.ct.hu
    gtv_cc = m["GTV"].sum() * g.voxel_volume
    assert 15 <= gtv_cc <= 35
    assert np.all(m["Body"][m["GTV"]]) and not np.any(m["GTV"] & m["SpinalCord"])
    assert 3 <= m["SpinalCord"].sum() * g.voxel_volume <= 10
    # CT numbers of the tissues (median; the noise is 10 HU)
    from brachymc.examples.spine import _anatomy

    z, y, x = np.meshgrid(*(10 * g.centers(a) for a in (2, 1, 0)), indexing="ij")
    raw, _ = _anatomy(x, y, z)
    far = ~m["GTV"]
    for value, lo, hi in ((220.0, 150, 300), (1200.0, 700, 1500), (50.0, 20, 70), (-100.0, -200, -50),
                          (-1000.0, -1024, -990)):
        sel = far & (raw == value) & (hu < 3000)
        assert sel.sum() > 20 and lo <= np.median(hu[sel]) <= hi, value
    assert 20 <= np.median(hu[m["GTV"] & (hu < 1000)]) <= 70


def test_gtv_covered_by_seeds(case):
    g = case.ct.geometry
    iz, iy, ix = np.nonzero(case.masks["GTV"])
    pts = np.stack([g.centers(0)[ix], g.centers(1)[iy], g.centers(2)[iz]], 1)
    dist = np.min(np.linalg.norm(pts[:, None] - case.seeds_cm[None], axis=-1), axis=1)
    assert np.mean(dist <= 1.0) > 0.9


def test_artefacts(case):
    g = case.ct.geometry
    for ix, iy, iz in g.voxel_of(case.seeds_cm):      # the seed's voxel or its neighbour (centre on a face)
        assert case.ct.hu[max(iz - 1, 0):iz + 2, max(iy - 1, 0):iy + 2, max(ix - 1, 0):ix + 2].max() >= 3000
    clean = make_spine_case(voxel_mm=(2.0, 2.0, 2.5), with_artefacts=False)
    assert clean.ct.hu.max() < 3000
    assert "seeds on" in describe(case)


def test_plan_gives_the_clinical_tg43_d90():
    """The built-in plan (0.6 mCi seeds 7 mm apart) gives a TG-43 D90 of the GTV near the clinical
    110 Gy for the permanent implant (consensus 6711 data; 2 mm grid, voxel-centre GTV mask)."""
    from brachymc.dvh import dvh_metrics
    from brachymc.geometry.phantom import GridGeometry
    from brachymc.pipeline.patient import tg43_voxel_mean
    from brachymc.sources.strength import apparent_activity_to_sk, mean_life_hours
    from brachymc.tg43.shipped import load_tg43_dataset

    case = make_spine_case(voxel_mm=(2.0, 2.0, 2.0), with_artefacts=False)
    g, gtv = case.ct.geometry, case.masks["GTV"]
    iz, iy, ix = np.nonzero(gtv)
    lo = np.array([ix.min(), iy.min(), iz.min()]) - 2
    hi = np.array([ix.max(), iy.max(), iz.max()]) + 3
    sub = GridGeometry(shape=tuple(int(v) for v in (hi - lo)[::-1]), spacing=g.spacing,
                       origin=tuple(np.asarray(g.origin) + lo * np.asarray(g.spacing)))
    sk = np.full(len(case.seeds_cm), float(apparent_activity_to_sk(SEED_ACTIVITY_MCI)))
    rate = tg43_voxel_mean(load_tg43_dataset("oncoseed_6711", "tg43u1"), case.seeds_cm, case.seed_directions, sk,
                           sub, "2D", 2)
    dose = np.nan_to_num(rate * 0.01 * mean_life_hours(), nan=0.0)
    m = dvh_metrics(dose, gtv[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]].astype(float), sub.voxel_volume, 110.0)
    assert 100.0 <= m["D90_Gy"] <= 120.0, m["D90_Gy"]
    assert 85.0 <= m["V100_percent"] <= 95.0, m["V100_percent"]
