"""Fine-tune a base model with the head of the configured task type (any task type)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tlflow.config import PipelineConfig
from tlflow.modeling.models import build_task_model
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import task_type_for
from tlflow.training.loop import MetricsCallback, TrainResult, finetune
from tlflow.training.methods import prepare_method, trained_model
from tlflow.training.overfitting_gap import gap_metrics, gap_rows


def train_task_model(
    cfg: PipelineConfig,
    features: Mapping[str, Sequence],
    validation: Dataset | None,
    label_names: list[str],
    tokenizer: PreTrainedTokenizerBase,
    encoder: str,
    checkpoint_dir: Path,
    log_metrics: MetricsCallback | None = None,
    progress: bool = True,
    train_rows: Dataset | None = None,
) -> tuple[PreTrainedModel, TrainResult]:
    """Build the task's model on top of `encoder` and fine-tune it on the training features,
    scoring the canonical validation split with the task's metrics (resuming from
    `checkpoint_dir` when it holds a checkpoint).

    With `finetune.method: lora` only the adapters (and a fresh task head) train, and the
    returned model has them merged; with `head` only the task head trains (the base frozen): a
    plain Hugging Face model either way (`tlflow.training.methods`).

    With `train_rows` (the canonical training split) and `finetune.gap_rows`, every evaluation also
    scores a subset of them and logs `gap/train_<metric>` and `gap/<metric>` (`overfitting_gap`).
    `finetune.early_stopping` watches the task's primary metric unless it names another."""
    task = task_type_for(cfg)
    settings = TaskSettings.from_config(cfg)
    model_cfg = cfg.model.model_copy(update={"base": encoder})
    model = build_task_model(model_cfg, task.model_head, label_names, len(tokenizer), cfg.finetune.seed)
    peft_model = prepare_method(model, cfg.finetune)
    finetune_cfg = cfg.finetune
    if finetune_cfg.early_stopping is not None and not finetune_cfg.early_stopping.metric:
        watched = finetune_cfg.early_stopping.model_copy(update={"metric": cfg.task.primary_metric})
        finetune_cfg = finetune_cfg.model_copy(update={"early_stopping": watched})
    on_train = gap_rows(train_rows, validation, finetune_cfg.gap_rows, finetune_cfg.seed) if log_metrics else None
    gap: dict[str, float] = {}

    def validate(m: PreTrainedModel) -> dict[str, float]:
        metrics = task.evaluate(m, tokenizer, validation, label_names, settings).metrics
        if on_train is not None:
            gap.update(gap_metrics(task.evaluate(m, tokenizer, on_train, label_names, settings).metrics, metrics))
        return metrics

    def log(metrics: dict[str, float], step: int) -> None:
        log_metrics(metrics, step)
        if gap and any(k.startswith("val_") for k in metrics):  # beside the validation metrics they go with
            log_metrics(dict(gap), step)
            gap.clear()

    result = finetune(
        model, features, finetune_cfg, tokenizer.pad_token_id, checkpoint_dir,
        evaluate=validate if validation is not None else None, log_metrics=log if log_metrics else None,
        progress=progress,
    )
    return trained_model(model, peft_model), result
