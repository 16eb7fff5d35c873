"""The promotion gate, as pure functions over per-example statistics.

Both models are scored on the same frozen evaluation split in the same run. Each example
contributes a row of additive statistics (e.g. correct, true positives, predictions and gold
counts per class), and a task's metrics are a function of their column sums, so a paired
bootstrap is cheap: one resample of example indices is a weight vector applied to both models'
statistics. The same additivity scores a model on a subset of the split (`Scores.subset`): the
rows the champion was not trained on, when its training rows overlap the test split.
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
CHECK_BASELINE = "trivial_baseline"
CHECK_CHAMPION_OVERLAP = "champion_train_overlap"


@dataclass(frozen=True)
class Baseline:
    """A trivial predictor scored on the same evaluation split: what a model that learned nothing
    gets (majority class, all-O tags, the empty answer, the zero-shot base model)."""

    name: str  # what it predicts, e.g. "majority class 'positive'"
    stats: np.ndarray  # examples x statistics, the same columns as the model's


@dataclass(frozen=True)
class TrainedRows:
    """The rows of the evaluation split a model was trained on (from its training-row fingerprint,
    `tlflow.registry.fingerprint`)."""

    rows: np.ndarray | None  # row indices; None: the model has no fingerprint (registered before them)


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
    #: The task's trivial predictor on the same rows (the new model must beat it when no floors are set).
    baseline: Baseline | None = None
    #: Rows of the split this model was trained on (read for the champion); None: not looked up.
    trained_rows: TrainedRows | None = None

    def value(self, metric: str) -> float:
        return self.metrics(self.stats.sum(axis=0))[metric]

    def slice_value(self, name: str, metric: str) -> float:
        return self.rows_value(self.slices[name], metric)

    def rows_value(self, rows: np.ndarray, metric: str) -> float:
        """`metric` over the examples `rows` (another model's slice: both scored on the same split)."""
        return self.metrics(self.stats[rows].sum(axis=0))[metric]

    def subset(self, rows: np.ndarray) -> Scores:
        """These scores on the examples `rows` only (sorted indices): statistics, per-class F1 (where
        the metrics name it `f1_<class>`), slices renumbered, the baseline on the same rows."""
        position = np.full(len(self.stats), -1)
        position[rows] = np.arange(len(rows))
        stats = self.stats[rows]
        metrics = self.metrics(stats.sum(axis=0))
        class_f1 = {k: metrics.get(f"f1_{k}", v) for k, v in self.class_f1.items()}
        slices = {k: position[idx][position[idx] >= 0] for k, idx in self.slices.items()}
        baseline = Baseline(self.baseline.name, self.baseline.stats[rows]) if self.baseline else None
        return Scores(stats, self.metrics, class_f1, slices, self.counterfactual_gaps, baseline)


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
    trivial_baseline: bool = True  # without floors, the new model must beat `Scores.baseline`
    max_champion_train_overlap: float = 0.0  # share of the test split the champion may have trained on
    on_champion_train_overlap: str = "rescore"  # above it: "rescore" on the other rows, or "fail"


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
    #: What the reader must know beside the checks: the rows the comparison used, warnings.
    notes: tuple[str, ...] = ()

    @property
    def promoted(self) -> bool:
        return self.alias == "champion"

    @property
    def reason(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        if failed:
            outcome = "; ".join(f"{c.name} failed: {c.detail}" for c in failed)
        elif self.champion_version is None:
            outcome = "no champion yet" + (f"; {self.checks[0].detail}" if self.checks else "")
        else:
            outcome = (f"{self.metric} {self.new_score:.4f} beats champion v{self.champion_version} "
                       f"{self.champion_score:.4f}")
        return "; ".join((outcome, *self.notes))

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


def _worst_change(metric: str, drop: float) -> str:
    """How to name the least favourable change of `metric` among classes or slices: a drop only
    when it is one (a positive `drop`); when every one held or gained, the smallest gain."""
    return f"largest {metric} drop" if drop > 0 else f"no {metric} drop, smallest gain"


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
        f"{_worst_change(metric, drops[worst])} of {len(gated)} slices (>= {min_size} examples) {worst} "
        f"(n={len(gated[worst])}): "
        f"{champion.rows_value(gated[worst], metric):.4f} -> {new.rows_value(gated[worst], metric):.4f} "
        f"({-drops[worst]:+.4f}, allowed -{max_drop:g})",
    )


def baseline_checks(new: Scores, settings: GateSettings) -> list[Check]:
    """With no floors configured: the new model beats its trivial baseline on the primary metric
    (lower end of the paired-bootstrap interval of the gain above 0, as against a champion); no
    check when floors are set, the check is off, or the task type has no baseline."""
    if settings.floors or not settings.trivial_baseline or new.baseline is None:
        return []
    metric, trivial = settings.metric, Scores(new.baseline.stats, new.metrics)
    share, low, high = paired_bootstrap(new, trivial, metric, settings.bootstrap_samples, settings.confidence,
                                        settings.seed)
    return [Check(
        CHECK_BASELINE, low > 0,
        f"{metric} {new.value(metric):.4f} vs {new.baseline.name} {trivial.value(metric):.4f}: "
        f"{settings.confidence:.0%} interval of the gain [{low:+.4f}, {high:+.4f}] over "
        f"{settings.bootstrap_samples} paired resamples of {len(new.stats)} examples",
    )]


def zero_f1_notes(scores: Scores) -> list[str]:
    """A warning naming the classes (or entity types) the model never gets right (F1 0)."""
    zero = sorted(k for k, v in scores.class_f1.items() if v == 0)
    return [f"warning: F1 0 for {', '.join(zero)}"] if zero else []


def champion_overlap(
    new: Scores, champion: Scores, version: str, settings: GateSettings
) -> tuple[Scores, Scores, list[Check], list[str]]:
    """The two models as the comparison sees them, given the test rows the champion was trained on
    (`champion.trained_rows`): unchanged up to `max_champion_train_overlap` (a note when some
    overlap); above it both restricted to the other rows with a note ("rescore"), or a failed check
    ("fail", or no row left). A champion without a fingerprint is compared as it is, with a note."""
    trained = champion.trained_rows
    if trained is None:
        return new, champion, [], []
    if trained.rows is None:
        return new, champion, [], [f"champion v{version} has no training-row fingerprint (registered before they "
                                    "were kept): whether it was trained on test rows is unknown"]
    n, rows = len(new.stats), np.unique(trained.rows)
    if not len(rows):
        return new, champion, [], []
    share, allowed = len(rows) / n, settings.max_champion_train_overlap
    found = (f"{len(rows):,} of {n:,} test rows ({share:.1%}) were in champion v{version}'s training rows "
             f"(allowed {allowed:.1%})")
    if share <= allowed:
        return new, champion, [], [f"{found}: compared on all rows"]
    if settings.on_champion_train_overlap == "fail" or len(rows) == n:
        why = "no test row is left to compare on" if len(rows) == n else \
            "comparison refused (promote.on_champion_train_overlap: fail)"
        return new, champion, [Check(CHECK_CHAMPION_OVERLAP, False, f"{found}: {why}")], []
    keep = np.setdiff1d(np.arange(n), rows)
    note = f"compared on the {len(keep):,} test rows champion v{version} was not trained on ({found})"
    return new.subset(keep), champion.subset(keep), [Check(CHECK_CHAMPION_OVERLAP, True, found)], [note]


def decide(
    new: Scores, champion: Scores | None, champion_version: str | None, settings: GateSettings
) -> Decision:
    """Promote (alias champion) only when every check passes:

    * floors: each configured metric of the new model is at least its floor;
    * trivial_baseline: with no floors, the new model beats its trivial baseline (`Scores.baseline`)
      by the paired bootstrap;
    * champion_train_overlap: the champion was trained on at most `max_champion_train_overlap` of the
      test rows, or (above it, "rescore") every comparison below uses the other rows only;
    * min_delta: the primary metric improves on the champion's by at least `min_delta`;
    * bootstrap: the lower end of the paired-bootstrap interval of the improvement, at
      `confidence`, is above 0 (the improvement is not noise);
    * max_class_drop: no class (or entity type) loses more than `max_class_drop` F1;
    * max_slice_drop: no evaluation slice with at least `min_slice_size` examples loses more than
      `max_slice_drop` of the primary metric;
    * max_counterfactual_gap: the new model's counterfactual gaps stay within the bound (when set).

    Without a champion only the floors (or the trivial baseline) and the counterfactual bound
    apply. A tie never promotes. Notes (the rows compared, classes with F1 0) join the reason.
    """
    metric = settings.metric
    checks = (floor_checks(new, settings.floors) + baseline_checks(new, settings)
              + counterfactual_checks(new, settings.max_counterfactual_gap))
    warnings = zero_f1_notes(new)
    if champion is None or champion_version is None:
        if not checks:
            checks = [Check(CHECK_FLOOR, True, "no floors configured")]
        alias = "champion" if all(c.passed for c in checks) else "challenger"
        return Decision(alias, metric, new.value(metric), None, None, tuple(checks), notes=tuple(warnings))
    new, champion, overlap_checks, notes = champion_overlap(new, champion, champion_version, settings)
    checks += overlap_checks
    new_score, old_score = new.value(metric), champion.value(metric)
    if not all(c.passed for c in overlap_checks):
        return Decision("challenger", metric, new_score, old_score, champion_version, tuple(checks),
                        notes=tuple(notes + warnings))
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
        f"{_worst_change('F1', drops[worst])} {worst}: {champion.class_f1[worst]:.4f} -> "
        f"{new.class_f1.get(worst, 0.0):.4f} "
        f"({-drops[worst]:+.4f}, allowed -{settings.max_class_drop:g})",
    ))
    checks.append(slice_drop_check(new, champion, metric, settings.max_slice_drop, settings.min_slice_size))
    alias = "champion" if all(c.passed for c in checks) else "challenger"
    return Decision(alias, metric, new_score, old_score, champion_version, tuple(checks), (low, high),
                    tuple(notes + warnings))
