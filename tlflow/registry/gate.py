"""The promotion gate, as pure functions over per-example statistics.

Both models are scored on the same frozen evaluation split in the same run. Each example
contributes a row of additive statistics (e.g. correct, true positives, predictions and gold
counts per class), and a task's metrics are a function of their column sums, so a paired
bootstrap is cheap: one resample of example indices is a weight vector applied to both models'
statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

#: Column sums of per-example statistics -> metrics.
MetricsFromSums = Callable[[np.ndarray], dict[str, float]]

CHECK_FLOOR = "floor"
CHECK_DELTA = "min_delta"
CHECK_BOOTSTRAP = "bootstrap"
CHECK_CLASS_DROP = "max_class_drop"
CHECK_SLICE_DROP = "max_slice_drop"
CHECK_COUNTERFACTUAL = "max_counterfactual_gap"


@dataclass(frozen=True)
class Scores:
    """What the gate needs of one model on the evaluation split."""

    stats: np.ndarray  # examples x statistics, additive over examples
    metrics: MetricsFromSums
    class_f1: dict[str, float] = field(default_factory=dict)  # per class / entity type
    #: Evaluation slices ("column=value") -> indices of their examples (rows of `stats`); both models
    #: are scored on the same split, so the new model's slices select the champion's rows too.
    slices: dict[str, np.ndarray] = field(default_factory=dict)
    #: Counterfactual gaps of the model itself (EEC audit): name -> (gap, interval low, interval high).
    counterfactual_gaps: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def value(self, metric: str) -> float:
        return self.metrics(self.stats.sum(axis=0))[metric]

    def slice_value(self, name: str, metric: str) -> float:
        return self.rows_value(self.slices[name], metric)

    def rows_value(self, rows: np.ndarray, metric: str) -> float:
        """`metric` over the examples `rows` (another model's slice: both scored on the same split)."""
        return self.metrics(self.stats[rows].sum(axis=0))[metric]


@dataclass(frozen=True)
class GateSettings:
    metric: str
    min_delta: float = 0.0
    confidence: float = 0.95
    bootstrap_samples: int = 1000
    max_class_drop: float = 0.05
    floors: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    max_slice_drop: float = 0.05
    min_slice_size: int = 100
    max_counterfactual_gap: float | None = None  # None: the audit is reported, not gated


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str  # the numbers, one line


@dataclass(frozen=True)
class Decision:
    """Outcome of the gate: which alias the challenger gets, every check with its numbers."""

    alias: str  # "champion" or "challenger"
    metric: str
    new_score: float
    champion_score: float | None
    champion_version: str | None
    checks: tuple[Check, ...]
    interval: tuple[float, float] | None = None  # bootstrap interval of new - champion

    @property
    def promoted(self) -> bool:
        return self.alias == "champion"

    @property
    def reason(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        if failed:
            return "; ".join(f"{c.name} failed: {c.detail}" for c in failed)
        if self.champion_version is None:
            return "no champion yet" + (f"; {self.checks[0].detail}" if self.checks else "")
        return f"{self.metric} {self.new_score:.4f} beats champion v{self.champion_version} {self.champion_score:.4f}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["promoted"], out["reason"] = self.promoted, self.reason
        return out


def paired_bootstrap(
    new: Scores, old: Scores, metric: str, samples: int, confidence: float, seed: int = 0
) -> tuple[float, float, float]:
    """(share of resamples where new beats old, lower, upper) percentile interval of new - old.

    Resamples the examples with replacement, the same indices for both models.
    """
    n = len(new.stats)
    if n != len(old.stats):
        raise ValueError(f"paired bootstrap needs the same examples: {n} vs {len(old.stats)}")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)
    new_sums, old_sums = weights @ new.stats, weights @ old.stats
    diffs = np.array([new.metrics(a)[metric] - old.metrics(b)[metric] for a, b in zip(new_sums, old_sums)])
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return float((diffs > 0).mean()), float(low), float(high)


def floor_checks(scores: Scores, floors: dict[str, float]) -> list[Check]:
    values = scores.metrics(scores.stats.sum(axis=0))
    checks = []
    for metric, floor in sorted(floors.items()):
        if metric not in values:
            checks.append(Check(CHECK_FLOOR, False, f"no metric '{metric}' (has: {', '.join(sorted(values))})"))
            continue
        checks.append(Check(CHECK_FLOOR, values[metric] >= floor, f"{metric} {values[metric]:.4f} >= {floor:g}"))
    return checks


def counterfactual_checks(scores: Scores, max_gap: float | None) -> list[Check]:
    """The model's largest counterfactual gap (the end of its interval farthest from 0) is at most
    `max_gap`; no check when `max_gap` is None, a failed one when the audit did not run."""
    if max_gap is None:
        return []
    if not scores.counterfactual_gaps:
        return [Check(CHECK_COUNTERFACTUAL, False, "no counterfactual audit ran (configure fairness.eec)")]
    bounds = {k: max(abs(low), abs(high)) for k, (_, low, high) in scores.counterfactual_gaps.items()}
    worst = max(bounds, key=bounds.get)
    gap, low, high = scores.counterfactual_gaps[worst]
    return [Check(
        CHECK_COUNTERFACTUAL, bounds[worst] <= max_gap,
        f"largest gap {worst}: {gap:+.4f} [{low:+.4f}, {high:+.4f}], bound {bounds[worst]:.4f} (allowed {max_gap:g})",
    )]


def slice_drop_check(new: Scores, champion: Scores, metric: str, max_drop: float, min_size: int) -> Check:
    """No slice with at least `min_size` examples loses more than `max_drop` of `metric`; the
    slices are the new model's (`new.slices`), the champion is scored on the same rows."""
    gated = {k: idx for k, idx in new.slices.items() if len(idx) >= min_size}
    if not gated:
        return Check(CHECK_SLICE_DROP, True, f"no slice with >= {min_size} examples ({len(new.slices)} smaller)")
    if len(champion.stats) != len(new.stats):
        return Check(CHECK_SLICE_DROP, False, f"the champion was scored on {len(champion.stats)} examples, "
                     f"the new model on {len(new.stats)}: slices cannot be compared")
    drops = {k: champion.rows_value(idx, metric) - new.rows_value(idx, metric) for k, idx in gated.items()}
    worst = max(drops, key=drops.get)
    return Check(
        CHECK_SLICE_DROP, drops[worst] <= max_drop,
        f"largest {metric} drop of {len(gated)} slices (>= {min_size} examples) {worst} (n={len(gated[worst])}): "
        f"{champion.rows_value(gated[worst], metric):.4f} -> {new.rows_value(gated[worst], metric):.4f} "
        f"({-drops[worst]:+.4f}, allowed -{max_drop:g})",
    )


def decide(
    new: Scores, champion: Scores | None, champion_version: str | None, settings: GateSettings
) -> Decision:
    """Promote (alias champion) only when every check passes:

    * floors: each configured metric of the new model is at least its floor;
    * min_delta: the primary metric improves on the champion's by at least `min_delta`;
    * bootstrap: the lower end of the paired-bootstrap interval of the improvement, at
      `confidence`, is above 0 (the improvement is not noise);
    * max_class_drop: no class (or entity type) loses more than `max_class_drop` F1;
    * max_slice_drop: no evaluation slice with at least `min_slice_size` examples loses more than
      `max_slice_drop` of the primary metric;
    * max_counterfactual_gap: the new model's counterfactual gaps stay within the bound (when set).

    Without a champion only the floors and the counterfactual bound apply. A tie never promotes.
    """
    metric = settings.metric
    new_score = new.value(metric)
    checks = floor_checks(new, settings.floors) + counterfactual_checks(new, settings.max_counterfactual_gap)
    if champion is None or champion_version is None:
        if not checks:
            checks = [Check(CHECK_FLOOR, True, "no floors configured")]
        alias = "champion" if all(c.passed for c in checks) else "challenger"
        return Decision(alias, metric, new_score, None, None, tuple(checks))
    old_score = champion.value(metric)
    delta = new_score - old_score
    checks.append(Check(
        CHECK_DELTA, delta > 0 and delta >= settings.min_delta,
        f"{metric} {new_score:.4f} - {old_score:.4f} = {delta:+.4f} (need > 0 and >= {settings.min_delta:g})",
    ))
    share, low, high = paired_bootstrap(new, champion, metric, settings.bootstrap_samples, settings.confidence,
                                        settings.seed)
    checks.append(Check(
        CHECK_BOOTSTRAP, low > 0,
        f"{settings.confidence:.0%} interval of the gain [{low:+.4f}, {high:+.4f}] over {settings.bootstrap_samples} "
        f"paired resamples of {len(new.stats)} examples; new better in {share:.1%}",
    ))
    drops = {k: champion.class_f1[k] - new.class_f1.get(k, 0.0) for k in champion.class_f1}
    worst = max(drops, key=drops.get) if drops else None
    checks.append(Check(
        CHECK_CLASS_DROP,
        worst is None or drops[worst] <= settings.max_class_drop,
        "no per-class scores" if worst is None else
        f"largest F1 drop {worst}: {champion.class_f1[worst]:.4f} -> {new.class_f1.get(worst, 0.0):.4f} "
        f"({-drops[worst]:+.4f}, allowed -{settings.max_class_drop:g})",
    ))
    checks.append(slice_drop_check(new, champion, metric, settings.max_slice_drop, settings.min_slice_size))
    alias = "champion" if all(c.passed for c in checks) else "challenger"
    return Decision(alias, metric, new_score, old_score, champion_version, tuple(checks), (low, high))
