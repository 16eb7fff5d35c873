"""Statistics of paired benchmark runs: speed ratios with an interval across pairs and jobs, and
accuracy equivalence by a two one-sided test (TOST).

A *pair* is one seed run by two contenders in the same job (same data, same batches, same
machine state as far as the job can make it); pairs of several jobs are pooled, and the
interval then also resamples the jobs, so a job-wide slowdown of the machine widens it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence

import numpy as np
from benchlib import ratio_interval
from scipy import stats as scipy_stats


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-pair ratios `numerators[i] / denominators[i]` (e.g. samples/s of ours over a baseline's)."""
    if len(numerators) != len(denominators):
        raise ValueError(f"paired ratios need as many numerators as denominators: "
                         f"{len(numerators)} vs {len(denominators)}")
    if any(d <= 0 or n <= 0 for n, d in zip(numerators, denominators)):
        raise ValueError("paired ratios need positive values")
    return [n / d for n, d in zip(numerators, denominators)]


def job_bootstrap_ratio(ratios: Sequence[float], jobs: Sequence[str], confidence: float = 0.95,
                        samples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the geometric-mean ratio by a two-level bootstrap: resample the jobs,
    then the pairs within each drawn job (both with replacement)."""
    by_job: dict[str, list[float]] = {}
    for r, j in zip(ratios, jobs, strict=True):
        by_job.setdefault(j, []).append(math.log(r))
    groups = [np.asarray(v) for v in by_job.values()]
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for s in range(samples):
        drawn = [groups[i] for i in rng.integers(0, len(groups), len(groups))]
        means[s] = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in drawn]).mean()
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return math.exp(low), math.exp(high)


def ratio_summary(ratios: Sequence[float], jobs: Sequence[str] | None = None, confidence: float = 0.95) -> dict:
    """Geometric mean, median, range and Student-t interval of per-pair ratios (`benchlib.ratio_interval`);
    with pairs from two or more `jobs`, also the job-and-pair bootstrap interval (`job_low`, `job_high`)."""
    if not ratios:
        raise ValueError("no pairs to summarise")
    out = ratio_interval(list(ratios), confidence)
    if jobs is not None:
        out["jobs"] = len(set(jobs))
        if out["jobs"] >= 2:
            out["job_low"], out["job_high"] = job_bootstrap_ratio(ratios, jobs, confidence)
    return out


def tost_paired(a: Sequence[float], b: Sequence[float], margin: float, alpha: float = 0.05) -> dict:
    """Two one-sided tests that the mean paired difference `a - b` lies within (-margin, +margin).

    `a[i]` and `b[i]` are two contenders' scores on the same test set with the same seed `i`; the
    differences are treated as independent across seeds (Student t, n - 1 degrees of freedom).
    Equivalence is shown when both one-sided p-values are below `alpha`, i.e. when the
    (1 - 2 alpha) interval of the mean difference lies inside the margin. Returns the mean
    difference, its standard error, that interval, both p-values, the larger one (`p`) and
    `equivalent`; the interval is reported whatever the outcome.
    """
    if len(a) != len(b):
        raise ValueError(f"TOST needs paired scores: {len(a)} vs {len(b)}")
    n = len(a)
    if n < 2:
        raise ValueError(f"TOST needs at least 2 pairs, got {n}")
    diffs = [x - y for x, y in zip(a, b)]
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    se, df = sd / math.sqrt(n), n - 1
    half = scipy_stats.t.ppf(1 - alpha, df) * se
    if se > 0:
        p_lower = float(scipy_stats.t.sf((mean + margin) / se, df))  # H0: diff <= -margin
        p_upper = float(scipy_stats.t.cdf((mean - margin) / se, df))  # H0: diff >= +margin
    else:  # identical differences: no spread, the mean alone decides
        p_lower = 0.0 if mean > -margin else 1.0
        p_upper = 0.0 if mean < margin else 1.0
    p = max(p_lower, p_upper)
    return {"n": n, "mean_difference": mean, "sd": sd, "se": se, "margin": margin, "alpha": alpha,
            "interval_confidence": 1 - 2 * alpha, "low": mean - half, "high": mean + half,
            "p_lower": p_lower, "p_upper": p_upper, "p": p, "equivalent": p < alpha}


def same_method_jobs(jobs: Sequence[dict], latest: dict, counts: Sequence[str] = ()) -> list[dict]:
    """The jobs of a results file (a list, oldest first) that measured what `latest` measured, `latest`
    included: the same frozen settings (`settings_sha256`, nothing overridden) on the same CPU model.
    Settings named in `counts` only say how many pairs a job runs: jobs that differ in them alone (and
    in the `about` text) pool too. A job without a settings hash, or with overrides, pools with nothing."""
    def key(job: dict):
        if not job.get("settings_sha256") or job.get("settings_overridden"):
            return None
        if counts:
            kept = {k: v for k, v in job["settings"].items() if k not in ("about", *counts)}
            method = json.dumps(kept, sort_keys=True)
        else:
            method = job["settings_sha256"]
        return method, job.get("machine", {}).get("Model name")

    wanted = key(latest)
    if wanted is None:
        return [latest]
    return [j for j in jobs if j is latest or key(j) == wanted]


def pooled_ratio_summary(jobs: Sequence[dict], ratios_of, confidence: float = 0.95) -> dict:
    """`ratio_summary` over the per-pair ratios `ratios_of(job)` of every job, with the job-and-pair
    bootstrap interval once there are two jobs (`jobs` counts the jobs that gave pairs)."""
    ratios, ids = [], []
    for i, job in enumerate(jobs):
        found = list(ratios_of(job))
        ratios += found
        ids += [str(job.get("date", i))] * len(found)
    return ratio_summary(ratios, ids, confidence)
