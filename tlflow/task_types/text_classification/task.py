"""Single-text classification: one label per text (sentence pairs subclass it: `sentence_pair`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import datasets
import numpy as np
import pandas as pd
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tlflow.data.spec import LABEL_FIELD, SOURCE_FEATURES, STRING, TEXT_FIELD, RawTable
from tlflow.data.validation.checks import TaskChecks
from tlflow.modeling.inference import forward_outputs
from tlflow.task_types.base import Evaluation, TaskSettings, TaskType
from tlflow.task_types.metrics import (
    classification_from_sums,
    classification_stats,
    confusion,
    misclassified_rows,
    softmax,
)


class TextClassification(TaskType):
    name = "text-classification"
    headline_metrics = ("accuracy", "macro_f1")
    request_columns = {"text": "the text to classify"}
    response_fields = {"label": "predicted label name", "score": "its softmax probability"}
    features = datasets.Features({"text": STRING, "label": STRING, **SOURCE_FEATURES})
    table_fields = (TEXT_FIELD, LABEL_FIELD)
    primary_metrics = ("accuracy", "macro_f1", "f1")
    model_head = (AutoModelForSequenceClassification, BertForSequenceClassification)
    target_column = "label"
    text_probabilities = True
    private_training = True  # one cross-entropy term per example (sentence pairs too)

    def from_table(self, table: RawTable) -> dict[str, list]:
        return {"text": table.texts(), "label": table.labels()}

    def infer_label_names(self, train: Iterable[pd.DataFrame]) -> list[str]:
        """The sorted distinct labels of the training split."""
        return sorted({v for chunk in train for v in chunk["label"] if v is not None})

    def data_checks(self) -> TaskChecks:
        return TaskChecks(labelled=True, overlap_columns=self.overlap_columns)

    def encode(self, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame | Dataset, max_length: int) -> dict:
        """Token ids (and segment ids for pairs), truncated to `max_length`, unpadded."""
        return dict(tokenizer(list(frame["text"]), truncation=True, max_length=max_length,
                              return_token_type_ids=False, return_attention_mask=False))

    def train_features(self, split, label_names, tokenizer, settings) -> dict[str, list]:
        index = {name: i for i, name in enumerate(label_names)}
        features = self.encode(tokenizer, split, settings.max_length)
        features["labels"] = [index[name] for name in split["label"]]
        return features

    def probabilities(self, model: PreTrainedModel, tokenizer, frame, settings: TaskSettings) -> np.ndarray:
        features = self.encode(tokenizer, frame, settings.max_length)
        logits = forward_outputs(model, features, tokenizer.pad_token_id, settings.batch_size)["logits"]
        return softmax(np.stack(logits))

    def predict(self, model, tokenizer, requests, settings) -> list[dict[str, Any]]:
        probs = self.probabilities(model, tokenizer, self.check_requests(requests), settings)
        id2label = model.config.id2label
        return [{"label": id2label[int(p.argmax())], "score": float(p.max())} for p in probs]

    def evaluate(self, model, tokenizer, split, label_names, settings, n_mistakes=0) -> Evaluation:
        probs = self.probabilities(model, tokenizer, split, settings)
        # Compared by name: a model with another label order (or unknown labels: wrong) is scored fairly.
        index = {name: i for i, name in enumerate(label_names)}
        id2label = model.config.id2label
        y_pred = np.asarray([index.get(id2label[int(i)], -1) for i in probs.argmax(-1)])
        y_true = np.asarray([index[name] for name in split["label"]])
        mistakes = misclassified_rows(self.shown_texts(split), y_true, y_pred, probs.max(-1), label_names, n_mistakes)
        stats = classification_stats(y_true, y_pred, len(label_names))
        metrics = self.metrics_from_sums(stats.sum(axis=0), label_names)
        return Evaluation(
            metrics=metrics,
            headline=self.headline(label_names),
            stats=stats,
            class_f1={name: metrics[f"f1_{name}"] for name in label_names},
            mistakes=mistakes if n_mistakes else [],
            confusion=confusion(y_true, y_pred, len(label_names)),
            label_names=label_names,
        )

    def metrics_from_sums(self, sums, label_names) -> dict[str, float]:
        return classification_from_sums(sums, label_names)

    def trivial_baseline(self, split, train, label_names) -> tuple[str, np.ndarray]:
        """The majority class of the training split for every example (ties: the first in label order)."""
        counts = Counter(train["label"])
        majority = max(label_names, key=lambda name: counts.get(name, 0))
        index = {name: i for i, name in enumerate(label_names)}
        y_true = np.asarray([index[name] for name in split["label"]])
        stats = classification_stats(y_true, np.full(len(y_true), index[majority]), len(label_names))
        return f"majority class '{majority}'", stats

    def headline(self, label_names: list[str]) -> tuple[str, ...]:
        return self.headline_metrics + (("f1",) if len(label_names) == 2 else ())

    def shown_texts(self, split) -> list[str]:
        return list(split["text"])
