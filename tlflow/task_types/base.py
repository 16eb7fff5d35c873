"""The task interface: what every task type defines so the pipeline can run it unchanged.

A task type turns canonical split rows (`tlflow.data.readers.TASK_COLUMNS`) into training
features, predicts in its serving format, and evaluates with its own metrics. Data reading and
the Great Expectations suite per task type live in `tlflow.data.readers` and
`tlflow.data.validation.suite`; the model head in `tlflow.modeling.models.TASK_HEADS`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tlflow.config import PipelineConfig
from tlflow.task_types.metrics import plot_confusion

#: Longest accepted text in a prediction request, per field (longer input is refused, not truncated silently).
MAX_REQUEST_CHARS = 100_000


class RequestError(ValueError):
    """A prediction request that does not match the model's input format (one line, names the field)."""


@dataclass(frozen=True)
class TaskSettings:
    """Everything prediction needs besides the model: stored beside a logged model (task.json)
    so serving preprocesses and post-processes exactly as evaluation did."""

    task: str
    max_length: int
    batch_size: int = 64
    doc_stride: int = 128
    max_answer_length: int = 30
    n_best_size: int = 20
    label_all_subwords: bool = False

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> TaskSettings:
        return cls(
            task=cfg.task.type,
            max_length=cfg.model.max_length,
            batch_size=cfg.evaluate.batch_size,
            doc_stride=cfg.task.doc_stride,
            max_answer_length=cfg.task.max_answer_length,
            n_best_size=cfg.task.n_best_size,
            label_all_subwords=cfg.task.label_all_subwords,
        )

    def save(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> TaskSettings:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass
class Evaluation:
    """Held-out results: metrics (those in `headline` lead the reports), per-example additive
    statistics (what the promotion gate bootstraps), F1 per class or entity type, the worst
    mistakes and, for classification, the confusion matrix."""

    metrics: dict[str, float]
    headline: tuple[str, ...]
    stats: np.ndarray
    class_f1: dict[str, float] = field(default_factory=dict)
    mistakes: list[dict] = field(default_factory=list)
    confusion: np.ndarray | None = None
    label_names: list[str] = field(default_factory=list)

    def confusion_png(self, path: Path, title: str = "") -> Path | None:
        if self.confusion is None:
            return None
        return plot_confusion(self.confusion, self.label_names, path, title)


class TaskType:
    """One task type. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    #: Metrics shown first in reports and stored as model-version tags.
    headline_metrics: ClassVar[tuple[str, ...]]
    #: Columns of a prediction request (one row per example) and their meaning.
    request_columns: ClassVar[dict[str, str]]
    #: Fields of each prediction, in order, and their meaning.
    response_fields: ClassVar[dict[str, str]]

    def metrics_from_sums(self, sums: np.ndarray, label_names: list[str]) -> dict[str, float]:
        """The task's metrics from the column sums of `Evaluation.stats` (of any subset of examples)."""
        raise NotImplementedError

    def corpus_texts(self, split: Dataset) -> list[str]:
        """The split's unlabelled text, for in-domain pretraining."""
        return [t for t in split["text"] if t]

    def train_features(
        self, split: Dataset, label_names: list[str], tokenizer: PreTrainedTokenizerBase, settings: TaskSettings
    ) -> dict[str, list]:
        """Column-wise training features: input_ids plus what the loss needs (see `batching.collate`)."""
        raise NotImplementedError

    def predict(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, requests: pd.DataFrame, settings: TaskSettings
    ) -> list[dict[str, Any]]:
        """One prediction (a dict with `response_fields`) per request row, in order."""
        raise NotImplementedError

    def evaluate(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        split: Dataset,
        label_names: list[str],
        settings: TaskSettings,
        n_mistakes: int = 0,
    ) -> Evaluation:
        """Metrics of `model` on a canonical split (its own tokenizer, labels compared by name, so
        a model trained elsewhere, such as the registered champion, is scored on equal terms)."""
        raise NotImplementedError

    def requests(self, split: Dataset) -> pd.DataFrame:
        """The split's examples as prediction requests (the serving input format)."""
        return split.select_columns(list(self.request_columns)).to_pandas()

    def check_requests(self, requests: pd.DataFrame) -> pd.DataFrame:
        """The request frame with only `request_columns`, or RequestError naming what is wrong."""
        if not isinstance(requests, pd.DataFrame):
            raise RequestError(f"expected a table of requests with columns {', '.join(self.request_columns)}")
        if requests.empty:
            raise RequestError("no requests: the input has no rows")
        missing = [c for c in self.request_columns if c not in requests.columns]
        if missing:
            raise RequestError(
                f"missing field '{missing[0]}' (a {self.name} request has: {', '.join(self.request_columns)})"
            )
        for column in self.request_columns:
            for row, value in enumerate(requests[column].tolist()):
                if not isinstance(value, str) or not value.strip():
                    shown = "empty text" if isinstance(value, str) else f"{type(value).__name__} {value!r}"[:60]
                    raise RequestError(f"row {row}: field '{column}' must be a non-empty string, got {shown}")
                if len(value) > MAX_REQUEST_CHARS:
                    raise RequestError(
                        f"row {row}: field '{column}' has {len(value):,} characters (at most {MAX_REQUEST_CHARS:,})"
                    )
        return requests[list(self.request_columns)].reset_index(drop=True)
