"""What the training loop needs to know, whichever stage (fine-tuning, pretraining) runs it."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from tlflow.config import FinetuneConfig, PretrainConfig
from tlflow.config.schema import DifferentialPrivacyConfig, EarlyStoppingConfig

#: The loop's step speed-ups pretraining has always used (its config has no switch for them).
PRETRAIN_SPEEDUPS = ("kept_embedding_grad", "fast_dropout")
#: Validations of a fine-tuning run when `finetune.eval_every_steps` is 0 (at least once per epoch):
#: a validation curve rather than a single point; on the SST-2 demo they cost under 10 % of training.
EVALUATIONS_PER_RUN = 4


@dataclass(frozen=True)
class LoopSettings:
    """Step budget, optimizer and schedule, cadences, the opt-in speed-ups (names of
    `tlflow.training.speedups`; none by default) and differential privacy (fine-tuning only)."""

    total_steps: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    checkpoint_every_steps: int
    seed: int
    max_grad_norm: float = 1.0
    group_by_length: bool = True
    eval_every_steps: int = 0
    log_every_steps: int = 20
    threads: int = 0
    speedups: tuple[str, ...] = ()
    privacy: DifferentialPrivacyConfig | None = None  # DP-SGD (tlflow.training.private); None: ordinary
    early_stopping: EarlyStoppingConfig | None = None  # its metric resolved; None: the whole budget

    @classmethod
    def for_finetune(cls, cfg: FinetuneConfig, n_examples: int) -> LoopSettings:
        """Steps from `epochs` (fractions allowed) over `n_examples`; `finetune.speedups`;
        `finetune.early_stopping` (its `metric` must be set: `train_task_model` resolves it)."""
        steps_per_epoch = math.ceil(n_examples / cfg.batch_size)
        total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
        return cls(
            total_steps=total_steps,
            eval_every_steps=cfg.eval_every_steps or default_eval_every(cfg, total_steps, steps_per_epoch),
            speedups=tuple(cfg.speedups),
            privacy=cfg.privacy,
            early_stopping=cfg.early_stopping,
            **cfg.model_dump(include={
                "batch_size", "learning_rate", "weight_decay", "warmup_ratio", "checkpoint_every_steps", "seed",
                "max_grad_norm", "group_by_length", "log_every_steps", "threads",
            }),
        )

    @classmethod
    def for_pretrain(cls, cfg: PretrainConfig) -> LoopSettings:
        """`max_steps` steps; held-out scoring at the end; about ten log points."""
        return cls(
            total_steps=cfg.max_steps,
            eval_every_steps=cfg.max_steps,
            log_every_steps=max(1, min(20, cfg.max_steps // 10)),
            speedups=PRETRAIN_SPEEDUPS,
            **cfg.model_dump(include={
                "batch_size", "learning_rate", "weight_decay", "warmup_ratio", "checkpoint_every_steps", "seed",
            }),
        )


def default_eval_every(cfg: FinetuneConfig, total_steps: int, steps_per_epoch: int) -> int:
    """Steps between validations when `eval_every_steps` is 0: `EVALUATIONS_PER_RUN` times a run and at
    least once per epoch; with early stopping once per epoch (its `patience` counts epochs then)."""
    if cfg.early_stopping is not None:
        return steps_per_epoch
    return max(1, min(steps_per_epoch, math.ceil(total_steps / EVALUATIONS_PER_RUN)))


def set_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0: every core this process may run on)."""
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n
