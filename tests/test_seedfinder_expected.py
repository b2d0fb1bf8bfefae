"""The expected-count prior (brachymc.seedfinder.priors.apply_expected_count, flag_beyond_expected).

With fewer seeds found than implanted, one seed more goes, one at a time, to the cluster where it
costs least in the split's own score (``one_more(w)`` gives the rise of the score from the
cluster's k-seed to its k + 1-seed fit), never past ``k_max`` and never where that rise is
infinite (a split with a seed of less than half a seed's intensity); with more, the least
confident are flagged, never dropped. These tests pin that logic on stand-in clusters (the cost of
each further seed is set directly), independent of any image; the finder's own ``one_more`` runs
in tests/test_seedfinder.py (the 5 mm scan with the count given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given, settings, strategies as st

from brachymc.seedfinder.priors import apply_expected_count, flag_beyond_expected


@dataclass
class _Fit:
    k: int


@dataclass
class _Cluster:
    costs: tuple                # the score's rise for the 2nd, 3rd, ... seed: costs[k - 1] for k -> k + 1
    fit: _Fit
    k: int = 0


def _one_more(w):
    k = w.fit.k
    cost = w.costs[k - 1] if k - 1 < len(w.costs) else math.inf
    return cost, _Fit(k + 1)


def _run(costs, ks, expected, k_max=8):
    work = [_Cluster(tuple(c), _Fit(k), k) for c, k in zip(costs, ks)]
    notes: list[str] = []
    apply_expected_count(work, expected, _one_more, notes, k_max)
    return [w.fit.k for w in work], notes


def test_the_cluster_where_one_more_seed_costs_least_gets_it():
    ks, notes = _run([(30.0,), (9.0, 40.0, 50.0), (4.0, 25.0, 60.0)], [1, 2, 2], expected=6)
    assert ks == [1, 2, 3]
    assert notes == ["expected 6 seeds: 1 cluster(s) given one more seed than the fit preferred"]


def test_seeds_are_added_one_at_a_time_until_the_count_is_reached():
    # 2 -> 3 costs 5, then 3 -> 4 costs 8 against the other cluster's 12: the same cluster twice
    ks, _ = _run([(1.0, 5.0, 8.0, 30.0), (1.0, 12.0, 40.0), (20.0,)], [2, 2, 1], expected=7)
    assert ks == [4, 2, 1]
    ks, _ = _run([(1.0, 5.0, 8.0, 30.0), (1.0, 12.0, 40.0), (20.0,)], [2, 2, 1], expected=8)
    assert ks == [4, 3, 1]


def test_a_negative_cost_is_still_a_cost_and_ties_go_to_the_first_cluster():
    ks, _ = _run([(3.0,), (-2.0,), (3.0,)], [1, 1, 1], expected=4)
    assert ks == [1, 2, 1]
    ks, _ = _run([(3.0,), (3.0,)], [1, 1], expected=3)
    assert ks == [2, 1]


def test_no_seed_where_every_split_is_ruled_out():
    ks, notes = _run([(math.inf,), (5.0, math.inf), ()], [1, 2, 1], expected=10)
    assert ks == [1, 2, 1] and notes == []


def test_k_max_is_never_exceeded():
    ks, _ = _run([(1.0,) * 12], [7], expected=20, k_max=8)
    assert ks == [8]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.one_of(st.floats(-20, 80), st.just(math.inf)), max_size=8),
                          st.integers(1, 6)), min_size=1, max_size=12), st.integers(1, 60))
def test_the_count_only_grows_never_past_what_is_expected_nor_into_a_ruled_out_split(clusters, expected):
    costs, ks = zip(*clusters)
    new, _ = _run(list(costs), list(ks), expected)
    assert all(b >= a for a, b in zip(ks, new))
    assert sum(new) <= max(expected, sum(ks))
    for c, a, b in zip(costs, ks, new):
        # every seed added to a cluster had a finite cost
        assert all(k - 1 < len(c) and math.isfinite(c[k - 1]) for k in range(a, b))
    # stops short of the count only when no cluster can take a seed more
    if sum(new) < expected:
        assert all(b >= 8 or b - 1 >= len(c) or not math.isfinite(c[b - 1]) for c, b in zip(costs, new))


def test_more_seeds_than_expected_are_flagged_least_confident_first_and_kept():
    seeds = [dict(confidence=c, doubtful=[]) for c in (0.9, 0.2, 0.7, 0.4)]
    notes: list[str] = []
    flag_beyond_expected(seeds, 2, notes)
    flagged = [i for i, s in enumerate(seeds) if s["doubtful"]]
    assert flagged == [1, 3] and len(seeds) == 4
    assert notes == ["4 seeds found, 2 expected: the 2 least confident are flagged doubtful"]
    seeds = [dict(confidence=0.5, doubtful=[])]
    flag_beyond_expected(seeds, 3, notes)
    assert not seeds[0]["doubtful"] and "2 not found" in notes[-1]
