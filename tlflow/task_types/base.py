"""The task interface: what every task type defines so the pipeline can run it unchanged.

A task type owns everything about its task: its canonical data (columns, table fields, native
file format, grouping, leakage key, label scheme: `dataset_spec`, handed to `tlflow.data.readers`),
its data checks (`data_checks`, handed to `tlflow.data.validation.suite`), its model head (handed
to `tlflow.modeling.models`), its outputs, options and primary metrics; and it turns canonical
split rows into training features, predicts in its serving format and evaluates with its own
metrics. The layers below never look a task type up by name. One folder per task type; the
registry (`tlflow.task_types.registry`) lists them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import datasets
import numpy as np
import pandas as pd
from datasets import Dataset
from pydantic import BaseModel, ConfigDict, ValidationError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tlflow.config import ConfigError, PipelineConfig, TaskConfig
from tlflow.data.pii.fields import TextFields
from tlflow.data.spec import DatasetSpec, RawTable
from tlflow.data.validation.checks import TaskChecks
from tlflow.errors import TlflowError
from tlflow.task_types.metrics import plot_confusion

#: Longest accepted text in a prediction request, per field (longer input is refused, not truncated silently).
MAX_REQUEST_CHARS = 100_000


def quartile_labels(values: list[float]) -> list[str]:
    """q1..q4 per value: q1 up to the first quartile (inclusive), q2 up to the median, q3 up to the
    third quartile, q4 above (numpy's linear quantiles; ties keep equal values in one quartile)."""
    if not values:
        return []
    edges = np.quantile(np.asarray(values, dtype=float), [0.25, 0.5, 0.75])
    return [f"q{int(i) + 1}" for i in np.searchsorted(edges, values, side="left")]


class RequestError(TlflowError, ValueError):
    """A prediction request that does not match the model's input format (one line, names the field)."""


@dataclass(frozen=True)
class TaskSettings:
    """Everything prediction needs besides the model: stored beside a logged model (task.json)
    so serving preprocesses and post-processes exactly as evaluation did.

    The task types' options are stored under their own names (doc_stride ... label_all_subwords,
    which keeps the task.json of earlier models loadable); a field the task type has no option
    for keeps its default. Options of a task type that are not among those fields are kept in
    `options` (name -> value, JSON values), so serving uses them exactly as evaluation did; a
    task.json written before `options` existed loads with it empty.
    """

    task: str
    max_length: int
    batch_size: int = 64
    doc_stride: int = 128
    max_answer_length: int = 30
    n_best_size: int = 20
    label_all_subwords: bool = False
    #: Inference speed-ups serving applies when loading (names from `tlflow.training.speedups`,
    #: e.g. "cls_only"); written from `finetune.speedups` when the model is logged. Empty: plain.
    inference_speedups: tuple[str, ...] = ()
    #: The task type's other options (not among the fields above), e.g. generation settings.
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> TaskSettings:
        from tlflow.task_types.registry import get_task_type  # the registry imports this module

        task_type = get_task_type(cfg.task.type)
        stored = {f.name for f in fields(cls)} - {"options"}
        dumped = task_type.options(cfg.task).model_dump(mode="json")
        return cls(
            task=task_type.name,
            max_length=cfg.model.max_length,
            batch_size=cfg.evaluate.batch_size,
            options={k: v for k, v in dumped.items() if k not in stored},
            **{k: v for k, v in dumped.items() if k in stored},
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
    #: Example rows to read beside the metrics where "mistake" has no meaning (text generation: the
    #: worst and a seeded random few, with a `kind` column); logged as `evaluation/samples.json`.
    samples: list[dict] = field(default_factory=list)
    confusion: np.ndarray | None = None
    label_names: list[str] = field(default_factory=list)
    #: The same metrics of the base model before fine-tuning (task types with
    #: `TaskType.zero_shot_baseline`), filled by the evaluate stage; empty otherwise.
    baseline: dict[str, float] = field(default_factory=dict)
    #: The base model's per-example statistics beside `baseline` (the gate's trivial baseline).
    baseline_stats: np.ndarray | None = None
    #: Evaluation slices ("column=value") -> indices of their examples (rows of `stats`), filled by
    #: the evaluate stage; the promotion gate's max_slice_drop compares the champion on the same rows.
    slices: dict[str, np.ndarray] = field(default_factory=dict)
    #: Counterfactual gaps of this model (fairness audit): name -> (gap, interval low, interval high).
    counterfactual_gaps: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    #: Markdown sections (slice table, fairness audit) appended to the run summary and version description.
    report_sections: list[str] = field(default_factory=list)

    def confusion_png(self, path: Path, title: str = "") -> Path | None:
        if self.confusion is None:
            return None
        return plot_confusion(self.confusion, self.label_names, path, title)


#: Keys every `task` section held before options moved to the task types, with their values then;
#: a config logged that way (e.g. beside a registered version) still loads where the task type has
#: no such option, as long as the key keeps that value.
LEGACY_OPTION_DEFAULTS = {"doc_stride": 128, "max_answer_length": 30, "n_best_size": 20, "label_all_subwords": False}


class NoOptions(BaseModel):
    """Options of a task type that has none (any key under `task` besides type and
    primary_metric is an error)."""

    model_config = ConfigDict(extra="forbid")


class TaskType:
    """One task type. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    #: Canonical columns of its splits and their Arrow types, ending in `tlflow.data.spec.SOURCE_FEATURES`.
    features: ClassVar[datasets.Features]
    #: Fields a table file (csv, tsv, text, jsonl, parquet) must have, and may have (`DatasetSpec`).
    table_fields: ClassVar[tuple[str, ...]] = ()
    optional_table_fields: ClassVar[tuple[str, ...]] = ()
    #: The structured file format that holds this task's data ('conll', 'squad'), None when only tables do.
    native_format: ClassVar[str | None] = None
    #: Canonical column whose equal values stay in one split when a single file is split (None: by label).
    group_default: ClassVar[str | None] = None
    #: Columns two rows share when one leaks into another split (the leakage check's key).
    overlap_columns: ClassVar[tuple[str, ...]] = ("text",)
    #: Free-text columns the PII scan reads and redaction rewrites (`tlflow.data.pii`).
    text_fields: ClassVar[TextFields] = TextFields()
    #: Whether examples carry labels from a label set (declared, or inferred from train: `infer_label_names`).
    has_label_names: ClassVar[bool] = True
    #: Metrics that may decide promotion; the first is the default `task.primary_metric`.
    primary_metrics: ClassVar[tuple[str, ...]]
    #: (Auto class for a pretrained base, BERT class for a random init) of the model head.
    model_head: ClassVar[tuple[type[PreTrainedModel], type[PreTrainedModel]]]
    #: Outputs of the model, in the order an exported (ONNX) graph returns them.
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    #: Canonical column recorded as the target of the MLflow dataset lineage (None: no target).
    target_column: ClassVar[str | None] = None
    #: The task type's own options: extra keys of the config's `task` section, with defaults.
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: Metrics shown first in reports and stored as model-version tags.
    headline_metrics: ClassVar[tuple[str, ...]]
    #: Columns of a prediction request (one row per example) and their meaning.
    request_columns: ClassVar[dict[str, str]]
    #: Fields of each prediction, in order, and their meaning.
    response_fields: ClassVar[dict[str, str]]
    #: Whether the evaluate stage also scores the base model as it is (before fine-tuning) and logs
    #: its metrics as `zeroshot_<metric>` beside the fine-tuned ones (a base that can already do
    #: the task, e.g. a causal LM prompted to generate; a fresh classification head cannot).
    zero_shot_baseline: ClassVar[bool] = False
    #: Whether `probabilities(model, tokenizer, frame, settings)` gives each single text's (`text` column)
    #: label probabilities (model label order): what the counterfactual fairness audit predicts with.
    text_probabilities: ClassVar[bool] = False
    #: Whether `finetune.privacy` (DP-SGD, `tlflow.training.private`) may train this task's model: its
    #: loss is a mean over examples of per-example terms (a token-averaged loss couples the examples
    #: of a batch) and its trainable layers are ones Opacus computes per-example gradients for.
    private_training: ClassVar[bool] = False

    # ----------------------------------------------------------------------------- data and config

    def from_table(self, table: RawTable) -> dict[str, list]:
        """Canonical columns (all but source_file/source_row) of the rows of one table file."""
        raise NotImplementedError

    def infer_label_names(self, train: Iterable[pd.DataFrame]) -> list[str]:
        """Label names in id order from the training split (chunks of its rows), when the config
        declares none."""
        raise NotImplementedError

    def configured(self, cfg: PipelineConfig) -> TaskType:
        """This task type for reading and checking the data of `cfg` (where that depends on its
        options or model, e.g. a prompt template or the tokenizer); the task type itself when
        nothing does. Stages get it through `registry.task_type_for(cfg)`."""
        return self

    def dataset_spec(self) -> DatasetSpec:
        """What `tlflow.data.readers` needs to read this task's data."""
        return DatasetSpec(
            name=self.name,
            features=self.features,
            from_table=self.from_table,
            table_fields=self.table_fields,
            optional_fields=self.optional_table_fields,
            native_format=self.native_format,
            group_default=self.group_default,
            overlap_columns=self.overlap_columns,
            infer_labels=self.infer_label_names if self.has_label_names else None,
        )

    def data_checks(self) -> TaskChecks:
        """This task's part of the data-quality suite (beyond the checks every task type shares)."""
        return TaskChecks(overlap_columns=self.overlap_columns)

    def options(self, task_cfg: TaskConfig) -> BaseModel:
        """The validated `Options` from the extra keys of the config's `task` section; ConfigError
        (one line) for an unknown key or a bad value."""
        extra = dict(task_cfg.model_extra or {})
        for key, value in LEGACY_OPTION_DEFAULTS.items():
            if key in extra and key not in self.Options.model_fields and extra[key] == value:
                del extra[key]
        try:
            return self.Options.model_validate(extra)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            known = ", ".join(self.Options.model_fields) or "none"
            raise ConfigError(
                f"task.{key}: {first['msg'].removeprefix('Value error, ')} ({self.name} options: {known})"
            ) from None

    # ----------------------------------------------------------------------------- model

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
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, requests: pd.DataFrame, settings: TaskSettings,
        params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """One prediction (a dict with `response_fields`) per request row, in order.

        `params`: per-request parameters (MLflow `params`), already passed through `check_params`;
        only task types with `request_params` take them (the others keep the four-argument form:
        `tlflow.serving.TaskModel` passes `params` only when there are some)."""
        raise NotImplementedError

    def request_params(self, settings: TaskSettings) -> dict[str, Any]:
        """Per-request parameters a prediction accepts, name -> default (from `settings`): the
        params schema of the logged model's signature. Empty: the task type takes none."""
        return {}

    def check_params(self, params: dict[str, Any] | None, settings: TaskSettings) -> dict[str, Any]:
        """`params` when every key is one of `request_params`; RequestError naming an unknown one."""
        params = dict(params or {})
        known = self.request_params(settings)
        for key in params:
            if key not in known:
                takes = f"one of: {', '.join(known)}" if known else "none"
                raise RequestError(f"unknown parameter '{key}' (a {self.name} request takes {takes})")
        return params

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

    def trivial_baseline(self, split: Dataset, train: Dataset, label_names: list[str]) -> tuple[str, np.ndarray] | None:
        """What a model that learned nothing predicts, scored on `split`: (what it predicts, per-example
        statistics like `Evaluation.stats`), e.g. the majority class of `train`; None when the task
        type has none (the promotion gate then needs floors to judge a first model)."""
        return None

    # ----------------------------------------------------------------------------- evaluation slices

    def slice_lengths(self, split: Dataset) -> list[int]:
        """Words of each example's input (its `request_columns` in the split, summed): what the
        built-in `length` slices cut into quartiles."""
        columns = [c for c in self.request_columns if c in split.column_names]
        return [sum(len(v.split()) for v in values if v) for values in zip(*(split[c] for c in columns))]

    def derived_slices(self, split: Dataset) -> dict[str, list[str | list[str]]]:
        """Built-in evaluation slices: column -> the value of each example, or its list of values
        where an example belongs to several slices of the column (the entity types of a sentence).
        Every task type has `length` (q1..q4: quartiles of `slice_lengths`); task types add theirs."""
        return {"length": quartile_labels(self.slice_lengths(split))}

    def requests(self, split: Dataset) -> pd.DataFrame:
        """The split's examples as prediction requests (the serving input format)."""
        return split.select_columns(list(self.request_columns)).to_pandas()

    def check_requests(self, requests: pd.DataFrame, columns: dict[str, str] | None = None) -> pd.DataFrame:
        """The request frame with only `request_columns` (or `columns`, where they depend on the
        settings), or RequestError naming what is wrong."""
        columns = self.request_columns if columns is None else columns
        if not isinstance(requests, pd.DataFrame):
            raise RequestError(f"expected a table of requests with columns {', '.join(columns)}")
        if requests.empty:
            raise RequestError("no requests: the input has no rows")
        missing = [c for c in columns if c not in requests.columns]
        if missing:
            raise RequestError(
                f"missing field '{missing[0]}' (a {self.name} request has: {', '.join(columns)})"
            )
        for column in columns:
            for row, value in enumerate(requests[column].tolist()):
                if not isinstance(value, str) or not value.strip():
                    shown = "empty text" if isinstance(value, str) else f"{type(value).__name__} {value!r}"[:60]
                    raise RequestError(f"row {row}: field '{column}' must be a non-empty string, got {shown}")
                if len(value) > MAX_REQUEST_CHARS:
                    raise RequestError(
                        f"row {row}: field '{column}' has {len(value):,} characters (at most {MAX_REQUEST_CHARS:,})"
                    )
        return requests[list(columns)].reset_index(drop=True)
