"""Optimizer, schedule and the second half of a training step, shared by the loop and the benchmarks."""

from __future__ import annotations

import torch
from transformers import get_linear_schedule_with_warmup

from tlflow.training.settings import LoopSettings
from tlflow.training.speedups import GradZeroer


def make_optimizer(model: torch.nn.Module, settings: LoopSettings) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and LayerNorm weights (as in BERT)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=settings.learning_rate, fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, settings: LoopSettings) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_ratio` of the steps, then linear decay to 0."""
    total = settings.total_steps
    return get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total), total)


def backward_and_step(
    model: torch.nn.Module,
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    grads: GradZeroer,
    max_grad_norm: float,
) -> None:
    """The second half of a training step: backward, gradient clipping, optimizer and schedule
    step; `grads` (what `tlflow.training.speedups.training_speedups` yields) clips and zeroes the
    gradients."""
    loss.backward()
    grads.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    grads.zero_grad(optimizer)
