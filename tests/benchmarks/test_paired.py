"""Paired differences against the best baseline: the tables' verdicts."""

from __future__ import annotations

import pytest
from scipy import stats

from pairsift.benchmarks.paired import against_best, paired_difference


def test_the_interval_is_the_t_interval_of_the_per_seed_differences() -> None:
    ours = {0: 0.84, 1: 0.83, 2: 0.86, 3: 0.82, 4: 0.85}
    theirs = {0: 0.80, 1: 0.81, 2: 0.80, 3: 0.79, 4: 0.83, 9: 0.1}  # seed 9: not paired
    found = paired_difference(ours, theirs, "gmm")
    diffs = [0.04, 0.02, 0.06, 0.03, 0.02]
    low, high = stats.t.interval(0.95, 4, loc=sum(diffs) / 5, scale=stats.sem(diffs))
    assert found is not None and found.seeds == 5
    assert (found.mean, found.low, found.high) == pytest.approx((sum(diffs) / 5, low, high))
    assert "excludes 0" in found.text() and "gmm" in found.text()


def test_the_best_baseline_is_the_fair_one_of_highest_mean() -> None:
    per_method = {"pairsift": {0: 0.8, 1: 0.9}, "gmm": {0: 0.7, 1: 0.75},
                  "clip_score": {0: 0.6, 1: 0.65}, "oracle": {0: 1.0, 1: 1.0}}
    found = against_best(per_method)
    assert found is not None and found.baseline == "gmm"  # the oracle is no baseline
    mixed = paired_difference({0: 0.8, 1: 0.7}, {0: 0.7, 1: 0.8}, "x")
    assert mixed is not None and "includes 0" in mixed.text()
    assert paired_difference({0: 1.0}, {0: 0.5}, "x") is None  # one seed: no interval
