"""What the data layer needs to know about a task type's data, handed in by the task type.

`DatasetSpec` describes the canonical table of one task type (its columns and Arrow types, the raw
fields a table file must have, its native file format, how rows are grouped, compared for leakage
and labelled); `RawTable` is what a table file gives the task type to build canonical columns from.
The data layer never looks a task type up by name: callers pass the spec
(`tlflow.task_types.base.TaskType.dataset`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import datasets
import pandas as pd

from tlflow.config import DataConfig
from tlflow.data.formats.common import as_list

#: Table fields read through `DataConfig.text_columns` (several joined) and `DataConfig.label_column`;
#: every other field is read through `DataConfig.columns` (default: the column of the same name).
TEXT_FIELD, LABEL_FIELD = "text", "label"
STRING, INT = datasets.Value("string"), datasets.Value("int64")
#: Columns every canonical table ends with: the raw file and the row in it.
SOURCE_FEATURES = {"source_file": STRING, "source_row": INT}
#: Prefix of the metadata columns (raw columns named in `evaluate.slices`), carried after the
#: source columns for evaluation slices and never trained on (`without_meta`).
META_PREFIX = "meta_"


def meta_column(raw: str | int) -> str:
    """The canonical name of a raw column carried as metadata: `meta_<column>`."""
    return f"{META_PREFIX}{raw}"


def meta_features(raw_columns: Sequence[str | int]) -> dict[str, datasets.Value]:
    """Arrow types of the metadata columns of `raw_columns` (strings, None when missing)."""
    return {meta_column(c): STRING for c in raw_columns}


def without_meta(split: datasets.Dataset) -> datasets.Dataset:
    """The split without its metadata columns: what tokenization, input examples and dataset
    lineage see."""
    return split.remove_columns([c for c in split.column_names if c.startswith(META_PREFIX)])


def column_key(column: str | int) -> str:
    """Key of a raw column in the readers' column maps (names as they are, indices as strings)."""
    return str(column)


def raw_keys(keys: Sequence[str], cfg: DataConfig) -> list[str]:
    """The raw columns to read for `keys`: a derived column (`DataConfig.derived_columns`) is read
    from its source."""
    sources = {name: column_key(d.source) for name, d in cfg.derived_columns.items()}
    return list(dict.fromkeys(sources.get(k, k) for k in keys))


def derive_columns(columns: dict[str, list], cfg: DataConfig) -> dict[str, list]:
    """`columns` plus each `DataConfig.derived_columns` entry: the first group of its pattern (or
    the whole match) searched in its source value; None where the source is missing or nothing
    matches. A source the file lacks is left to the missing-column errors of the readers."""
    if not cfg.derived_columns:
        return columns
    out = dict(columns)
    for name, derived in cfg.derived_columns.items():
        source = column_key(derived.source)
        if source in columns:
            regex = re.compile(derived.pattern)
            out[name] = [_derived_value(regex, v) for v in columns[source]]
    return out


def _derived_value(regex: re.Pattern, value: object) -> str | None:
    if not isinstance(value, str):
        return None
    match = regex.search(value)
    if match is None:
        return None
    return match.group(1) if regex.groups else match.group(0)


@dataclass(frozen=True)
class RawTable:
    """The raw columns read from one table file (csv, tsv, text, jsonl, parquet), with the config
    that says which raw column holds which field."""

    columns: dict[str, list]
    rows: list[int]
    cfg: DataConfig

    def field(self, name: str) -> list:
        """Raw values of a field (its column per `DataConfig.columns`); all None when the file lacks
        an optional one."""
        return self.columns.get(column_key(self.cfg.columns.get(name, name)), [None] * len(self.rows))

    def list_field(self, name: str) -> list[list[str]]:
        """A list field: JSON lists or space-separated strings."""
        return [as_list(v) for v in self.field(name)]

    def texts(self) -> list[str | None]:
        """The text: `text_columns` (one kept as it is; several stripped and joined with `text_join`)."""
        if not self.rows:
            return []
        return join_texts([self.columns[column_key(c)] for c in self.cfg.text_columns], self.cfg.text_join)

    def labels(self) -> list[str | None]:
        """The label column, stripped and mapped by `label_map` (blank: None)."""
        if not self.rows:
            return []
        return map_labels(self.columns[column_key(self.cfg.label_column)], self.cfg.label_map)


@dataclass(frozen=True)
class DatasetSpec:
    """The canonical data of one task type.

    Attributes:
        name: the task type's name (messages only).
        features: canonical columns and their Arrow types, ending in `SOURCE_FEATURES`.
        from_table: canonical columns (all but source_file/source_row) from a `RawTable`.
        table_fields: fields a table file must have (`TEXT_FIELD`/`LABEL_FIELD` read through
            text_columns/label_column, the others through `DataConfig.columns`), in this order.
        optional_fields: fields a table file may have.
        native_format: the one structured format holding this data ('conll', 'squad') or None.
        group_default: canonical column whose equal values stay in one split when a single file
            is split (None: stratified by label); `DataConfig.group_column` overrides it.
        overlap_columns: columns two rows share when one leaks into another split (several are
            joined with ' ||| ').
        infer_labels: label names from the training split (given as chunks of rows) when none are
            declared; None for data without labels.
    """

    name: str
    features: datasets.Features
    from_table: Callable[[RawTable], dict[str, list]]
    table_fields: tuple[str, ...] = ()
    optional_fields: tuple[str, ...] = ()
    native_format: str | None = None
    group_default: str | None = None
    overlap_columns: tuple[str, ...] = (TEXT_FIELD,)
    infer_labels: Callable[[Iterable[pd.DataFrame]], list[str]] | None = None

    @property
    def columns(self) -> list[str]:
        return list(self.features)


def join_texts(parts: list[list[str | None]], sep: str) -> list[str | None]:
    """One column is kept as it is; several are stripped and joined, skipping empty parts."""
    if len(parts) == 1:
        return list(parts[0])
    out: list[str | None] = []
    for values in zip(*parts):
        if all(v is None for v in values):
            out.append(None)
        else:
            out.append(sep.join(s for s in (v.strip() for v in values if v is not None) if s))
    return out


def map_labels(raw: list[str | None], label_map: dict[str, str]) -> list[str | None]:
    """Strip raw labels, map them by ``label_map``; a blank label is missing (None).

    Values absent from the map stay as they are so the validation suite can report them.
    """
    out: list[str | None] = []
    for value in raw:
        value = value.strip() if value is not None else None
        if not value:
            out.append(None)
        else:
            out.append(label_map.get(value, value))
    return out
