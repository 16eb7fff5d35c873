"""Whether a fine-tuning budget can teach anything: enough optimizer steps, a validation curve that moved.

One epoch of a small training split is a few dozen steps, too few for a fresh task head to learn
(in one NER case, entity F1 0.014 after the 107 steps of one epoch, 0.417 after three epochs).
`finetune.min_steps` raises the epochs of such a split to the smallest whole number that reaches
it; a validation curve that never rose above its first point is worth a warning whatever the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tlflow.config import FinetuneConfig


@dataclass(frozen=True)
class EpochBudget:
    """The epochs a fine-tuning run trains for and why."""

    configured: float  # finetune.epochs
    epochs: float  # what runs: configured, or raised to reach min_steps
    steps: int  # optimizer steps of `epochs`
    min_steps: int

    @property
    def raised(self) -> bool:
        return self.epochs != self.configured

    def note(self) -> str:
        """One line for the log: what runs, and why when it is not what the config says."""
        if not self.raised:
            return f"fine-tuning {self.epochs:g} epochs ({self.steps} steps)"
        return (f"finetune.epochs raised from {self.configured:g} to {self.epochs:g} ({self.steps} steps) to reach "
                f"finetune.min_steps {self.min_steps}: the training split is small "
                "(set finetune.min_steps: 0 to train exactly finetune.epochs)")


def epoch_budget(cfg: FinetuneConfig, n_examples: int) -> EpochBudget:
    """`cfg.epochs` over `n_examples` training features, raised to the smallest whole number of
    epochs giving at least `cfg.min_steps` optimizer steps when they give fewer (steps per epoch
    as `LoopSettings.for_finetune` counts them)."""
    per_epoch = max(1, math.ceil(n_examples / cfg.batch_size))
    steps = max(1, math.ceil(cfg.epochs * per_epoch))
    if steps >= cfg.min_steps:
        return EpochBudget(cfg.epochs, cfg.epochs, steps, cfg.min_steps)
    epochs = float(math.ceil(cfg.min_steps / per_epoch))
    return EpochBudget(cfg.epochs, epochs, math.ceil(epochs * per_epoch), cfg.min_steps)


def never_improved(values: Sequence[float]) -> bool:
    """Whether a validation curve (higher is better, in step order) of at least two points never
    rose above its first point."""
    return len(values) >= 2 and max(values[1:]) <= values[0]
