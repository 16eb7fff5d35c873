"""bench/stats.py: paired speed ratios with intervals and TOST equivalence of paired accuracies."""

import math

import numpy as np
import pytest
from stats import paired_ratios, pooled_ratio_summary, ratio_summary, same_method_jobs, tost_paired

pytestmark = [pytest.mark.unit]


def test_ratio_interval_covers_the_true_ratio_and_narrows_with_pairs():
    rng = np.random.default_rng(0)
    base = rng.uniform(50, 80, size=40)
    ours = base * 1.25 * np.exp(rng.normal(0, 0.05, size=40))
    few, many = (ratio_summary(paired_ratios(list(ours[:n]), list(base[:n]))) for n in (5, 40))
    for s in (few, many):
        assert s["low"] < 1.25 < s["high"]
    assert many["high"] - many["low"] < few["high"] - few["low"]
    assert math.isclose(many["geomean"], math.exp(np.mean(np.log(ours / base))))


def test_job_bootstrap_widens_when_jobs_disagree():
    ratios = [1.1, 1.12, 1.11, 1.09, 1.4, 1.42, 1.39, 1.41]
    same = ratio_summary(ratios, ["a"] * 4 + ["b"] * 4)
    assert same["jobs"] == 2
    assert same["job_high"] - same["job_low"] > 0.1  # the two jobs' levels differ by ~0.3
    assert "job_low" not in ratio_summary(ratios, ["a"] * 8)


def test_paired_ratios_reject_mismatched_or_non_positive_values():
    with pytest.raises(ValueError, match="as many"):
        paired_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        paired_ratios([1.0], [0.0])


def test_tost_shows_equivalence_of_close_accuracies_only():
    rng = np.random.default_rng(1)
    b = 85 + rng.normal(0, 0.6, size=10)
    close = tost_paired(list(b + rng.normal(0.05, 0.15, size=10)), list(b), margin=0.5)
    assert close["equivalent"] and -0.5 < close["low"] < close["high"] < 0.5
    shifted = tost_paired(list(b + 0.8 + rng.normal(0, 0.15, size=10)), list(b), margin=0.5)
    assert not shifted["equivalent"] and shifted["low"] > 0.5
    noisy = tost_paired(list(b + rng.normal(0, 2.0, size=10)), list(b), margin=0.5)
    assert not noisy["equivalent"] and noisy["high"] - noisy["low"] > 1.0  # the interval is still reported


def test_tost_needs_two_pairs():
    with pytest.raises(ValueError, match="at least 2"):
        tost_paired([85.0], [85.0], margin=0.5)


def test_same_method_jobs_pool_only_equal_settings_on_the_same_cpu():
    def job(sha, cpu, overridden=None):
        return {"settings_sha256": sha, "machine": {"Model name": cpu}, "settings_overridden": overridden}

    a1, a2, other_cpu, other_settings, overridden = (job("s", "X"), job("s", "X"), job("s", "Y"), job("t", "X"),
                                                     job("s", "X", {"pairs": 1}))
    jobs = [a1, other_cpu, other_settings, overridden, a2]
    assert same_method_jobs(jobs, a2) == [a1, a2]
    assert same_method_jobs(jobs, overridden) == [overridden]
    assert same_method_jobs([{"machine": {}}, a1], {"machine": {}}) == [{"machine": {}}]


def test_jobs_differing_only_in_their_pair_counts_pool_when_the_counts_are_named():
    def job(sha, pairs, overrides, about="a"):
        return {"settings_sha256": sha, "machine": {"Model name": "X"}, "settings_overridden": {},
                "settings": {"about": about, "pairs": pairs, "overrides": overrides}}

    three, two, other_rows = job("s3", 3, ["rows=4800"]), job("s2", 2, ["rows=4800"], "b"), job("s4", 2, ["rows=100"])
    jobs = [three, other_rows, two]
    assert same_method_jobs(jobs, two, counts=("pairs",)) == [three, two]
    assert same_method_jobs(jobs, two) == [two]  # without naming the counts, the settings hash decides


def test_pooled_ratio_summary_counts_pairs_and_jobs():
    jobs = [{"date": "d1", "r": [1.1, 1.2]}, {"date": "d2", "r": [1.3]}, {"date": "d3", "r": []}]
    s = pooled_ratio_summary(jobs, lambda j: j["r"])
    assert s["n"] == 3 and s["jobs"] == 2
    assert s["job_low"] <= s["geomean"] <= s["job_high"]
    assert math.isclose(s["geomean"], (1.1 * 1.2 * 1.3) ** (1 / 3))
