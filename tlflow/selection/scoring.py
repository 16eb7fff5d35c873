"""A trial's validation score, taken from the metrics its training run logs, and its pruning."""

from __future__ import annotations

import optuna


class TrialScore:
    """Receives every metric a training run logs (`finetune_model`'s `on_metrics`): each
    `val_<metric>` is reported to the Optuna trial at its evaluation's number (1, 2, ...: comparable
    across batch sizes) and may prune it (`optuna.TrialPruned` ends the training); `score` is the
    value of the weights the run ends with (the best evaluation's under early stopping, else the last)."""

    def __init__(self, metric: str, trial: optuna.Trial | None = None) -> None:
        self.metric, self.trial = metric, trial
        self.evaluations = 0
        self.last: float | None = None
        self.best: float | None = None

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        if f"best_val_{self.metric}" in metrics:
            self.best = metrics[f"best_val_{self.metric}"]
        if f"val_{self.metric}" not in metrics:
            return
        self.evaluations += 1
        self.last = metrics[f"val_{self.metric}"]
        if self.trial is not None:
            self.trial.report(self.last, self.evaluations)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"pruned at evaluation {self.evaluations} (step {step}): "
                                         f"val_{self.metric} {self.last:.4f}")

    @property
    def score(self) -> float | None:
        return self.best if self.best is not None else self.last
