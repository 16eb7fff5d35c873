"""Text classification: fine-tune a sequence classifier, evaluate it, score any model on a split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tlflow.config import PipelineConfig
from tlflow.inference import predict_logits
from tlflow.metrics import classification_metrics, confusion, misclassified_rows, plot_confusion, softmax
from tlflow.models import build_classifier
from tlflow.train import MetricsCallback, TrainResult, finetune

#: Pipeline task name of MLflow's transformers flavor for this task type.
HF_TASK = "text-classification"


@dataclass
class Evaluation:
    """Held-out results: metrics, confusion matrix and the most confident mistakes."""

    metrics: dict[str, float]
    confusion: np.ndarray
    misclassified: list[dict]
    label_names: list[str]

    def confusion_png(self, path: Path, title: str = "") -> Path:
        return plot_confusion(self.confusion, self.label_names, path, title)


def predict_labels(model: PreTrainedModel, input_ids: list[list[int]], pad_id: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Predicted label ids and their softmax confidence."""
    probs = softmax(predict_logits(model, input_ids, pad_id, batch_size))
    return probs.argmax(-1), probs.max(-1)


def evaluate_split(
    model: PreTrainedModel, split: Dataset, label_names: list[str], pad_id: int, batch_size: int, n_mistakes: int = 0
) -> Evaluation:
    """Metrics of `model` on a tokenized split (columns input_ids, labels, text)."""
    y_true = np.asarray(split["labels"])
    y_pred, conf = predict_labels(model, split["input_ids"], pad_id, batch_size)
    mistakes = misclassified_rows(list(split["text"]), y_true, y_pred, conf, label_names, n_mistakes) if n_mistakes else []
    return Evaluation(
        metrics=classification_metrics(y_true, y_pred, label_names),
        confusion=confusion(y_true, y_pred, len(label_names)),
        misclassified=mistakes,
        label_names=label_names,
    )


def train_classifier(
    cfg: PipelineConfig,
    splits: DatasetDict,
    label_names: list[str],
    tokenizer: PreTrainedTokenizerBase,
    encoder: str,
    checkpoint_dir: Path,
    log_metrics: MetricsCallback | None = None,
    progress: bool = True,
) -> tuple[PreTrainedModel, TrainResult]:
    """Build the classifier on top of `encoder` and fine-tune it on the tokenized train split,
    validating on the validation split (resuming from `checkpoint_dir` when it holds a checkpoint)."""
    model_cfg = cfg.model.model_copy(update={"base": encoder})
    model = build_classifier(model_cfg, label_names, len(tokenizer), cfg.finetune.seed)
    train = splits["train"]
    validation = splits.get("validation")

    def validate(m: PreTrainedModel) -> dict[str, float]:
        return evaluate_split(m, validation, label_names, tokenizer.pad_token_id, cfg.evaluate.batch_size).metrics

    result = finetune(
        model,
        train["input_ids"],
        train["labels"],
        cfg.finetune,
        tokenizer.pad_token_id,
        checkpoint_dir,
        evaluate=validate if validation is not None else None,
        log_metrics=log_metrics,
        progress=progress,
    )
    return model, result


def score_foreign_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    true_names: list[str],
    label_names: list[str],
    max_length: int,
    batch_size: int,
) -> dict[str, float]:
    """Score a model from elsewhere (e.g. the registered champion) on the same examples.

    The model's own tokenizer is used and its predictions are compared by label *name*, so a model
    with another label order is scored correctly; a name outside `label_names` counts as wrong.
    """
    input_ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    pred_ids, _ = predict_labels(model, input_ids, tokenizer.pad_token_id, batch_size)
    id2label = model.config.id2label
    index = {name: i for i, name in enumerate(label_names)}
    y_pred = np.asarray([index.get(id2label[int(p)], -1) for p in pred_ids])
    y_true = np.asarray([index[name] for name in true_names])
    return classification_metrics(y_true, y_pred, label_names)
