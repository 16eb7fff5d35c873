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
) -> tuple[PreTrainedModel, TrainResult]:
    """Build the task's model on top of `encoder` and fine-tune it on the training features,
    scoring the canonical validation split with the task's metrics (resuming from
    `checkpoint_dir` when it holds a checkpoint).

    With `finetune.method: lora` only the adapters (and a fresh task head) train, and the
    returned model has them merged; with `head` only the task head trains (the base frozen): a
    plain Hugging Face model either way (`tlflow.training.methods`)."""
    task = task_type_for(cfg)
    settings = TaskSettings.from_config(cfg)
    model_cfg = cfg.model.model_copy(update={"base": encoder})
    model = build_task_model(model_cfg, task.model_head, label_names, len(tokenizer), cfg.finetune.seed)
    peft_model = prepare_method(model, cfg.finetune)

    def validate(m: PreTrainedModel) -> dict[str, float]:
        return task.evaluate(m, tokenizer, validation, label_names, settings).metrics

    result = finetune(
        model, features, cfg.finetune, tokenizer.pad_token_id, checkpoint_dir,
        evaluate=validate if validation is not None else None, log_metrics=log_metrics, progress=progress,
    )
    return trained_model(model, peft_model), result
