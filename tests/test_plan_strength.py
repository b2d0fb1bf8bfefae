"""Seed plans (CSV/TOML), decay and absolute dose conversion."""

from datetime import datetime

import numpy as np
import pytest
from hypothesis import given, strategies as st

from brachymc.errors import ConfigError
from brachymc.sources.plan import read_plan_csv, read_plan_toml
from brachymc.sources.strength import (U_PER_MCI_I125, apparent_activity_to_sk, decay_factor,
                                       dose_rate_per_history_to_gy_per_h, mean_life_hours,
                                       permanent_implant_dose, window_dose)


def test_mean_life_and_decay():
    assert mean_life_hours() == pytest.approx(59.40 * 24 / np.log(2))
    assert mean_life_hours() == pytest.approx(2056.7, abs=0.1)     # egs_brachy's mean life
    assert decay_factor(59.40 * 24) == pytest.approx(0.5, rel=1e-12)


@given(st.floats(0.0, 5000.0), st.floats(0.0, 5000.0))
def test_window_doses_add_up(t1, t2):
    a, b = sorted((t1, t2))
    total = float(permanent_implant_dose(1.0))
    parts = float(window_dose(1.0, 0.0, a) + window_dose(1.0, a, b) + window_dose(1.0, b, 1e9))
    assert parts == pytest.approx(total, rel=1e-9)


def test_absolute_dose_conversion():
    # 1 U emits 1e-2 Gy cm2/h; with s_h = 1e-14 Gy cm2/history that is 1e12 histories per hour
    assert dose_rate_per_history_to_gy_per_h(2e-14, 1e-14, 1.0) == pytest.approx(2e-2)
    # the typical seed: 0.7 mCi -> 0.889 U; D90 ~ 110 Gy needs a few cGy/h initial rate
    assert apparent_activity_to_sk(0.7) == pytest.approx(0.7 * U_PER_MCI_I125)
    assert float(permanent_implant_dose(110.0 / mean_life_hours())) == pytest.approx(110.0)
    with pytest.raises(ConfigError, match="activity"):
        apparent_activity_to_sk(-0.1)


def test_csv_plan(tmp_path):
    f = tmp_path / "plan.csv"
    f.write_text("x_mm,y_mm,z_mm,dx,dy,dz,activity_mCi\n10,20,30,0,0,2,0.7\n-5,0,1.5,1,1,0,0.6\n")
    p = read_plan_csv(f)
    np.testing.assert_allclose(p.positions_cm, [[1, 2, 3], [-0.5, 0, 0.15]])
    np.testing.assert_allclose(p.directions[0], [0, 0, 1])
    np.testing.assert_allclose(np.linalg.norm(p.directions, axis=1), 1.0)
    np.testing.assert_allclose(p.sk_U, [0.7 * 1.27, 0.6 * 1.27])
    g = tmp_path / "neg.csv"
    g.write_text("x_mm,y_mm,z_mm,activity_mCi\n0,0,0,0.7\n1,1,1,-0.2\n")
    with pytest.raises(ConfigError, match=r"neg.csv: line 3 \(seed 2\), column activity_mCi: apparent activity"):
        read_plan_csv(g)
    h = tmp_path / "bad.csv"
    h.write_text("x_mm,y_mm\n1,2\n")
    with pytest.raises(ConfigError, match="bad.csv: missing column"):
        read_plan_csv(h, sk_U=0.5)
    k = tmp_path / "text.csv"
    k.write_text("x_mm,y_mm,z_mm\n1,two,3\n")
    with pytest.raises(ConfigError, match=r"line 2 \(seed 1\), column y_mm"):
        read_plan_csv(k, sk_U=0.5)


def test_csv_plan_direction_columns_and_line_numbers(tmp_path):
    """ux,uy,uz is the other spelling of dx,dy,dz; errors count lines as the file does (comments,
    blank lines and the header included) and name the seed (1-based)."""
    a = tmp_path / "d.csv"
    a.write_text("x_mm,y_mm,z_mm,dx,dy,dz,sk_U\n1,2,3,0,3,4,0.5\n")
    b = tmp_path / "u.csv"
    b.write_text("# exported plan\nx_mm,y_mm,z_mm,ux,uy,uz,sk_U\n\n1,2,3,0,3,4,0.5\n")
    pa, pb = read_plan_csv(a), read_plan_csv(b)
    np.testing.assert_allclose(pb.directions, [[0, 0.6, 0.8]])
    assert np.array_equal(pa.directions, pb.directions) and pb.orientation == "given"
    c = tmp_path / "nan.csv"
    c.write_text("# comment\nx_mm,y_mm,z_mm,ux,uy,uz,sk_U\n0,0,0,0,0,1,0.5\n\n1,nan,3,0,0,1,0.5\n")
    with pytest.raises(ConfigError, match=r"nan.csv: line 5 \(seed 2\), column y_mm: nan is not a finite number"):
        read_plan_csv(c)
    d = tmp_path / "both.csv"
    d.write_text("x_mm,y_mm,z_mm,dx,dy,dz,ux,uy,uz\n0,0,0,0,0,1,0,0,1\n")
    with pytest.raises(ConfigError, match="both dx,dy,dz and ux,uy,uz"):
        read_plan_csv(d, sk_U=1.0)
    e = tmp_path / "zero.csv"
    e.write_text("x_mm,y_mm,z_mm,ux,uy,uz,sk_U\n0,0,0,0,0,0,0.5\n")
    with pytest.raises(ConfigError, match=r"line 2 \(seed 1\): direction must be a finite non-zero vector"):
        read_plan_csv(e)


def test_toml_plan_decay_and_orientation(tmp_path):
    f = tmp_path / "plan.toml"
    f.write_text('model = "oncoseed_6711"\nreference_date = 2026-11-01T12:00:00\nimplant_date = 2027-01-29T12:00:00\n'
                 'orientation = "random"\nrandom_seed = 3\nsk_U = 1.0\n'
                 '[[seed]]\nposition_mm = [0, 0, 0]\n[[seed]]\nposition_mm = [5, 0, 0]\nsk_U = 2.0\n')
    p = read_plan_toml(f)
    assert p.n_seeds == 2 and p.orientation == "random"
    # 89 days later: 2^(-89/59.4)
    np.testing.assert_allclose(p.sk_at_implant(), np.array([1.0, 2.0]) * 2 ** (-89 / 59.40), rtol=1e-12)
    q = read_plan_toml(f)
    np.testing.assert_array_equal(p.directions, q.directions)          # recorded seed -> reproducible
    bad = tmp_path / "bad.toml"
    bad.write_text('[[seed]]\nposition_mm = [0, 0]\n')
    with pytest.raises(ConfigError, match=r"bad.toml: \[\[seed\]\] #1: 'position_mm'"):
        read_plan_toml(bad)
    assert datetime(2026, 11, 1, 12) == p.reference_date
