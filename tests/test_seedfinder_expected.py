"""The expected-count prior (brachymc.seedfinder.priors.apply_expected_count, flag_beyond_expected).

With fewer seeds found than implanted, the clusters whose summed excess argues most for one more
seed get it, one at a time, never past ``k_max`` and never where the excess is less than a
quarter seed beyond the fitted count; with more, the least confident are flagged, never dropped.
These tests pin that logic on stand-in clusters (the count each cluster's intensity gives is set
directly), independent of any image.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings, strategies as st

from brachymc.seedfinder.priors import apply_expected_count, flag_beyond_expected


@dataclass
class _Fit:
    k: int


@dataclass
class _Cluster:
    intensity_count: float      # the cluster's summed excess in seeds of its fitted tilts
    fit: _Fit
    k: int = 0


def _run(counts, ks, expected, k_max=8):
    work = [_Cluster(c, _Fit(k), k) for c, k in zip(counts, ks)]
    notes: list[str] = []
    apply_expected_count(work, expected, lambda w, k: _Fit(k), lambda w: w.intensity_count, notes, k_max)
    return [w.fit.k for w in work], notes


def test_the_cluster_with_the_most_unexplained_intensity_gets_the_missing_seed():
    ks, notes = _run([1.1, 2.9, 2.4], [1, 2, 2], expected=6)
    assert ks == [1, 3, 2]
    assert notes == ["expected 6 seeds: 1 cluster(s) given one more seed than the fit preferred"]


def test_seeds_are_added_one_at_a_time_until_the_count_is_reached():
    # 3.8 - 2 = 1.8 first, then 3.8 - 3 = 0.8 against 2.7 - 2 = 0.7: the same cluster twice
    ks, _ = _run([3.8, 2.7, 1.0], [2, 2, 1], expected=7)
    assert ks == [4, 2, 1]
    ks, _ = _run([3.8, 2.7, 1.0], [2, 2, 1], expected=8)
    assert ks == [4, 3, 1]


def test_no_seed_without_a_quarter_seed_of_unexplained_intensity():
    ks, notes = _run([1.2, 2.1, 0.9], [1, 2, 1], expected=10)
    assert ks == [1, 2, 1] and notes == []


def test_k_max_is_never_exceeded():
    ks, _ = _run([12.0], [7], expected=20, k_max=8)
    assert ks == [8]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.3, 8.0), st.integers(1, 6)), min_size=1, max_size=12), st.integers(1, 60))
def test_the_count_only_grows_and_never_past_what_is_expected(clusters, expected):
    counts, ks = zip(*clusters)
    new, _ = _run(list(counts), list(ks), expected)
    assert all(b >= a for a, b in zip(ks, new))
    assert sum(new) <= max(expected, sum(ks))
    assert all(b - a <= max(0, c - a) + 1 for a, b, c in zip(ks, new, counts))


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
