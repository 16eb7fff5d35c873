"""Evaluation slices: the test split cut by metadata columns (`evaluate.slices`) and by the task
type's built-in slices (`TaskType.derived_slices`: input length quartiles; entity type; answer
length), each slice scored like the whole split.

A slice is a column and a value (`group=B`, `length=q1`, `entity=PER`); its examples are the rows
of the split holding that value. Its metrics are the task type's metrics of the per-example
additive statistics (`Evaluation.stats`) summed over those rows (`TaskType.metrics_from_sums`):
exactly what the promotion gate computes for the champion on the same rows
(`tlflow.registry.gate.slice_drop_check`), and right for metrics that are not means of a
per-example score (entity F1, ROUGE). fairlearn's `MetricFrame` does the grouping: its y_true and
y_pred are the row indices, each metric a function of the rows of one group; a single-valued column
is one sensitive feature, a multi-valued one (the entity types of a sentence) one boolean feature
per value, of which the `True` group is the slice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from datasets import Dataset
from fairlearn.metrics import MetricFrame, count

from tlflow.data.spec import meta_column
from tlflow.task_types.base import Evaluation, TaskType

#: Value of a metadata column that is blank in the raw file.
MISSING = "(missing)"
#: Per column, the largest slices that get metrics, table rows and bars (all of them are gated).
MAX_SHOWN_VALUES = 30
COUNT = "count"


@dataclass(frozen=True)
class Slice:
    column: str
    value: str
    rows: np.ndarray
    #: count, the primary metric and (classification) recall_<label>; NaN where the slice has no
    #: example of that label.
    metrics: dict[str, float]
    words: tuple[int, int]  # fewest and most words of its inputs (`TaskType.slice_lengths`)

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"


def metric_name(prefix: str, metric: str, column: str, value: str) -> str:
    """`<prefix><metric>__<column>:<value>`: MLflow metric names allow letters, digits, `_ - . / :`
    and spaces but no `=`, so `:` stands for it; other characters of the value become `_`."""
    column, value = (re.sub(r"[^\w.\- ]", "_", part) for part in (column, value))
    return f"{prefix}{metric}__{column}:{value}"


@dataclass(frozen=True)
class SliceReport:
    metric: str
    overall: dict[str, float]
    slices: list[Slice]
    min_size: int  # slices at least this large are gated (promote.min_slice_size)
    #: Slices beyond the MAX_SHOWN_VALUES largest of their column: gated, not logged or shown.
    hidden: dict[str, np.ndarray]

    def indices(self) -> dict[str, np.ndarray]:
        """`column=value` -> rows of every slice: `Evaluation.slices`, what the gate compares."""
        return {**{s.name: s.rows for s in self.slices}, **self.hidden}

    def mlflow_metrics(self, prefix: str = "test_") -> dict[str, float]:
        """`test_<metric>__<column>:<value>` for the shown slices (NaN recalls left out)."""
        return {metric_name(prefix, m, s.column, s.value): v
                for s in self.slices for m, v in s.metrics.items() if not np.isnan(v)}

    def table(self) -> dict[str, list]:
        """Columns of `evaluation/slices.json`: one row per slice."""
        keys = list(self.overall)
        return {
            "slice": [s.name for s in self.slices],
            "column": [s.column for s in self.slices],
            "value": [s.value for s in self.slices],
            "words": [f"{s.words[0]}-{s.words[1]}" for s in self.slices],
            **{k: [None if np.isnan(s.metrics[k]) else s.metrics[k] for s in self.slices] for k in keys},
            f"{self.metric}_vs_overall": [s.metrics[self.metric] - self.overall[self.metric] for s in self.slices],
            "gated": [len(s.rows) >= self.min_size for s in self.slices],
        }

    def markdown(self) -> str:
        """The slice table of the run summary and version description."""
        recalls = [k for k in self.overall if k not in (COUNT, self.metric)]
        head = ["slice", "n", "words", self.metric, "vs overall", *recalls, "gated"]

        def cell(v: float) -> str:
            return "–" if np.isnan(v) else f"{v:.4f}"

        lines = [
            "### Evaluation slices (test split)",
            "",
            f"{self.metric} per slice (overall {self.overall[self.metric]:.4f} on {int(self.overall[COUNT])} "
            f"examples). `length`: quartiles of the input's words (the words column shows each quartile's "
            f"edges). Slices of at least {self.min_size} examples are gated: none may lose more than "
            "`promote.max_slice_drop` against the champion re-scored on the same rows.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for s in self.slices:
            m = s.metrics
            lines.append("| " + " | ".join([
                f"`{s.name}`", str(len(s.rows)), f"{s.words[0]}–{s.words[1]}", cell(m[self.metric]),
                f"{m[self.metric] - self.overall[self.metric]:+.4f}", *(cell(m[k]) for k in recalls),
                "yes" if len(s.rows) >= self.min_size else "no",
            ]) + " |")
        if self.hidden:
            lines += ["", f"{len(self.hidden)} smaller slices not shown (beyond the {MAX_SHOWN_VALUES} largest of "
                      "their column; gated all the same)."]
        return "\n".join(lines)


def slice_columns(task_type: TaskType, split: Dataset, meta_columns: Sequence[str]) -> dict[str, list[list[str]]]:
    """Slice column -> the values of each example (a list: entity types are several per sentence):
    the task type's `derived_slices`, then each metadata column (`meta_<column>`; named
    `meta_<column>` in slices too when a built-in slice has its name)."""
    columns = {name: [v if isinstance(v, list) else [v] for v in values]
               for name, values in task_type.derived_slices(split).items()}
    for raw in meta_columns:
        if meta_column(raw) not in split.column_names:
            raise ValueError(f"the split has no column {meta_column(raw)}: read the data with its evaluate.slices "
                             "(load_labelled_data(..., meta_columns))")
        name = str(raw) if str(raw) not in columns else meta_column(raw)
        columns[name] = [[v if v is not None else MISSING] for v in split[meta_column(raw)]]
    return columns


def slice_rows(task_type: TaskType, split: Dataset, meta_columns: Sequence[str]) -> dict[str, np.ndarray]:
    """`column=value` -> the rows of that slice, for every slice of the split."""
    out: dict[str, np.ndarray] = {}
    for column, values in slice_columns(task_type, split, meta_columns).items():
        for value in sorted({v for vs in values for v in vs}):
            out[f"{column}={value}"] = np.flatnonzero([value in vs for vs in values])
    return out


def _metric_functions(
    task_type: TaskType, split: Dataset, evaluation: Evaluation, label_names: list[str], metric: str
) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """MetricFrame metrics over row indices: count, the primary metric, and recall per label for
    task types that report `recall_<label>` (classification), NaN where the rows have no such label."""

    def value(key: str, rows: np.ndarray, _: np.ndarray) -> float:
        sums = evaluation.stats[np.asarray(rows, dtype=int)].sum(axis=0)
        return float(task_type.metrics_from_sums(sums, label_names)[key])

    def recall(label: str, rows: np.ndarray, pred: np.ndarray) -> float:
        return value(f"recall_{label}", rows, pred) if (gold[np.asarray(rows, dtype=int)] == label).any() else np.nan

    fns: dict[str, Callable] = {COUNT: count, metric: partial(value, metric)}
    labels = [n for n in label_names if f"recall_{n}" in evaluation.metrics]
    if labels and task_type.target_column in split.column_names:
        gold = np.asarray(split[task_type.target_column], dtype=object)
        fns |= {f"recall_{n}": partial(recall, n) for n in labels}
    return fns


def slice_report(
    task_type: TaskType, split: Dataset, evaluation: Evaluation, label_names: list[str], metric: str,
    meta_columns: Sequence[str] = (), min_size: int = 1,
) -> SliceReport:
    """Every slice of `split` (the evaluated test split) with its metrics (see the module)."""
    fns = _metric_functions(task_type, split, evaluation, label_names, metric)
    rows = np.arange(len(split))
    lengths = np.asarray(task_type.slice_lengths(split), dtype=int)
    slices: list[Slice] = []
    hidden: dict[str, np.ndarray] = {}
    overall: dict[str, float] = {}
    for column, values in slice_columns(task_type, split, meta_columns).items():
        if all(len(v) == 1 for v in values):  # one sensitive feature
            frame = MetricFrame(metrics=fns, y_true=rows, y_pred=rows,
                                sensitive_features={column: [v[0] for v in values]})
            groups = {str(g): frame.by_group.loc[g].to_dict() for g in frame.by_group.index}
        else:  # one boolean feature per value
            groups = {}
            for value in sorted({v for vs in values for v in vs}):
                member = np.asarray([value in vs for vs in values])
                frame = MetricFrame(metrics=fns, y_true=rows, y_pred=rows, sensitive_features={column: member})
                groups[value] = frame.by_group.loc[True].to_dict()
        overall = frame.overall.to_dict()
        members = {g: np.flatnonzero([g in vs for vs in values]) for g in groups}
        shown = set(sorted(groups, key=lambda g: -len(members[g]))[:MAX_SHOWN_VALUES])
        for g in sorted(groups):
            idx = members[g]
            if g not in shown:
                hidden[f"{column}={g}"] = idx
                continue
            slices.append(Slice(column, g, idx, {k: float(v) for k, v in groups[g].items()},
                                (int(lengths[idx].min()), int(lengths[idx].max()))))
    return SliceReport(metric, {k: float(v) for k, v in overall.items()}, slices, min_size, hidden)
