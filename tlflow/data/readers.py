"""Read the labelled data of any task type into a canonical `datasets.DatasetDict`.

What a task type's data looks like comes in as a `DatasetSpec` (`tlflow.data.spec`), given by the
task type; this module never looks at task-type names. Every raw file (csv, tsv, delimited text,
jsonl, parquet, or the task type's native format: conll, SQuAD JSON) becomes a table with the
spec's canonical columns, always ending in:

* ``source_file`` (str): the path as given in the config;
* ``source_row`` (int): 1-based line of the row in the raw file (header counted), the 1-based row
  index for parquet, the line of a sentence's first token (conll), or the 1-based question number
  (SQuAD JSON). Rows of a csv with quoted line breaks keep the line they start on.

followed by one ``meta_<column>`` (str, None when blank) per raw column named in `meta_columns`
(the config's ``evaluate.slices``): metadata that defines evaluation slices, never trained on
(`tlflow.data.spec.without_meta` drops it before tokenization, input examples and lineage).

Reading never judges content (blank texts, unknown labels, duplicates): the validation suite
reports those with ``source_file``/``source_row``. Files that cannot be read at all raise
`DataError` with a one-line message naming the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from tlflow.config import DataConfig
from tlflow.data.formats.common import DataError, check_no_nul, decode_text, to_str
from tlflow.data.spec import LABEL_FIELD, TEXT_FIELD, DatasetSpec, RawTable, column_key, meta_column, meta_features
from tlflow.data.splits import split_rows, stratified_sample, stratified_split
from tlflow.data.text import normalize_text

__all__ = ["CARVED_VALIDATION_FRACTION", "SPLITS", "DataError", "LoadedData", "decode_text", "load_labelled_data",
           "overlap_keys", "read_table"]

SPLITS = ("train", "validation", "test")
CARVED_VALIDATION_FRACTION = 0.1
#: Structured formats, each the native format of at most one task type.
NATIVE_FORMATS = ("conll", "squad")
TABLE_FORMATS = ("csv", "tsv", "text", "jsonl", "parquet")


@dataclass
class LoadedData:
    """The canonical splits of one labelled dataset and what was done to get them."""

    splits: datasets.DatasetDict
    label_names: list[str]
    dropped_overlap: int = 0
    files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading one file


def read_table(path: str | Path, cfg: DataConfig, spec: DatasetSpec, meta_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read one raw file into a DataFrame with the canonical columns of `spec` (and the
    `meta_columns`, raw columns carried as ``meta_<column>``).

    ``cfg`` gives format, separator, header, encoding, the columns to read and the label map.
    An empty file (or one with only a header) gives an empty frame; the caller decides whether
    that is an error. Raises `DataError` for a missing file (or a directory), undecodable bytes,
    a NUL byte in a cell, a column named twice in the header, a row with the
    wrong number of fields, bad JSON, missing columns and a structured format that does not hold
    this kind of data, and for a column of `meta_columns` the file lacks.
    """
    source = str(path)
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{source}: is a directory, not a data file")
    if not path.is_file():
        raise DataError(f"{source}: file not found")
    if cfg.format in NATIVE_FORMATS and cfg.format == spec.native_format:
        return _read_native(source, cfg, spec, meta_columns)
    required, optional = _table_keys(cfg, spec)
    optional += [column_key(c) for c in meta_columns if column_key(c) not in required + optional]
    names: list[str] | None
    if cfg.format in NATIVE_FORMATS:  # another task's structured format, read as a table of its fields
        columns, rows = _structured_as_table(source, cfg, required)
        names = list(columns)
    elif cfg.format == "parquet":
        from tlflow.data.formats.parquet import read_parquet

        names, columns, rows = read_parquet(path, source, required, optional)
    else:
        text = decode_text(path.read_bytes(), source, cfg.encoding)
        if cfg.format == "jsonl":
            from tlflow.data.formats.jsonl import read_jsonl

            names, columns, rows = read_jsonl(text, source, required, optional)
        else:
            from tlflow.data.formats.delimited import read_delimited

            names, columns, rows = read_delimited(text, source, cfg.format, cfg.separator, cfg.header, required, optional)
    check_no_nul(source, columns, rows, "row" if cfg.format in ("parquet", "squad") else "line")
    meta = {c: _meta_values(source, c, columns, names, len(rows)) for c in meta_columns}
    table = RawTable(columns, rows, cfg)
    canonical = spec.from_table(table)
    frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in canonical.items()})
    frame["source_file"] = pd.Series([source] * len(rows), dtype=object)
    frame["source_row"] = pd.Series(rows, dtype="int64")
    kept = list(spec.columns)
    if cfg.group_column and cfg.group_column not in frame.columns:
        # grouping by a raw field the task does not keep (e.g. the article title): carried until
        # the split is cut, never part of the canonical splits
        frame[cfg.group_column] = pd.Series(table.field(cfg.group_column), dtype=object)
        kept.append(cfg.group_column)
    for column, values in meta.items():
        frame[meta_column(column)] = pd.Series(values, dtype=object)
        kept.append(meta_column(column))
    return frame[kept]


def _meta_values(source: str, column: str | int, columns: dict[str, list], names: Sequence[str] | None,
                 n: int) -> list[str | None]:
    """The raw values of a metadata column as stripped text (blank: None); `DataError` naming the
    file and the column when the file (with rows) has no such column."""
    key = column_key(column)
    if key not in columns:
        if not n:
            return []
        known = ", ".join(repr(c) for c in names) if names else "no header: 0-based column indices"
        raise DataError(f"{source}: no column '{key}' for the evaluation slices in evaluate.slices (columns: {known})")
    values = [to_str(v) for v in columns[key]]
    return [v.strip() if v is not None and v.strip() else None for v in values]


def _structured_as_table(source: str, cfg: DataConfig, required: list[str]) -> tuple[dict[str, list], list[int]]:
    """A structured format (conll, SQuAD JSON) read for a task type whose native format it is not:
    its fields as raw columns, so `data.columns` and templates can use them. SQuAD gives id, title,
    question, context, answer_text and answer_start (the first answer) per question; conll gives
    tokens and tags (space-separated) per sentence."""
    if cfg.format == "squad":
        from tlflow.data.formats.squad import read_squad_json

        frame = read_squad_json(source, cfg.encoding)
        columns = {name: frame[name].tolist() for name in ("id", "title", "question", "context")}
        columns["answer_text"] = [texts[0] if len(texts) else None for texts in frame["answer_texts"]]
        columns["answer_start"] = [int(starts[0]) if len(starts) else None for starts in frame["answer_starts"]]
    else:
        from tlflow.data.formats.conll import read_conll

        frame = read_conll(source, cfg.encoding, 0, -1, cfg.separator)
        columns = {name: [" ".join(values) for values in frame[name]] for name in ("tokens", "tags")}
    missing = [key for key in required if key not in columns]
    if missing:
        raise DataError(f"{source}: {cfg.format} data has no field '{missing[0]}' (fields: {', '.join(columns)})")
    return columns, [int(r) for r in frame["source_row"]]


def _read_native(source: str, cfg: DataConfig, spec: DatasetSpec, meta_columns: Sequence[str]) -> pd.DataFrame:
    """A structured format (conll, SQuAD JSON) that is the spec's native one; metadata columns
    are its fields (SQuAD: id, title; conll: tokens, tags, text)."""
    if cfg.format == "conll":
        from tlflow.data.formats.conll import read_conll

        token_index = int(cfg.columns.get("tokens", 0))
        tag_index = int(cfg.columns.get("tags", -1))
        frame = read_conll(source, cfg.encoding, token_index, tag_index, cfg.separator)
    else:
        from tlflow.data.formats.squad import read_squad_json

        frame = read_squad_json(source, cfg.encoding)
    fields = {name: frame[name].tolist() for name in frame.columns if name not in ("source_file", "source_row")}
    out = frame[spec.columns].reset_index(drop=True)
    for column in meta_columns:
        out[meta_column(column)] = pd.Series(_meta_values(source, column, fields, list(fields), len(out)), dtype=object)
    return out


def _table_keys(cfg: DataConfig, spec: DatasetSpec) -> tuple[list[str], list[str]]:
    """Raw column keys a table must have, and those it may have."""
    required: list[str] = []
    for name in spec.table_fields:
        if name == TEXT_FIELD:
            required += [column_key(c) for c in cfg.text_columns]
        elif name == LABEL_FIELD:
            required.append(column_key(cfg.label_column))
        else:
            required.append(column_key(cfg.columns.get(name, name)))
    optional = [column_key(cfg.columns.get(name, name)) for name in spec.optional_fields]
    return list(dict.fromkeys(required)), optional


# --------------------------------------------------------------------------- whole dataset


def overlap_keys(df: pd.DataFrame, columns: Sequence[str]) -> list[str | None]:
    """What two rows share when one leaks into another split: the values of `columns` (several
    joined with ' ||| '), normalised; None when one of them is missing or blank."""
    if len(columns) == 1:
        values = df[columns[0]].tolist()
    else:
        values = [" ||| ".join(parts) if all(isinstance(p, str) for p in parts) else None
                  for parts in zip(*(df[c].tolist() for c in columns))]
    return [normalize_text(v) if isinstance(v, str) and v.strip() else None for v in values]


def _drop_overlap(train: pd.DataFrame, others: list[pd.DataFrame], columns: Sequence[str]) -> tuple[pd.DataFrame, int]:
    held_out = {k for df in others for k in overlap_keys(df, columns) if k is not None}
    leaked = np.fromiter((k is not None and k in held_out for k in overlap_keys(train, columns)), dtype=bool,
                         count=len(train))
    return train[~leaked].reset_index(drop=True), int(leaked.sum())


def _label_names(cfg: DataConfig, train: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """Declared label names, or those the spec infers from the training split (none without labels)."""
    if cfg.label_names or spec.infer_labels is None:
        return list(cfg.label_names)
    return spec.infer_labels(train)


def load_labelled_data(cfg: DataConfig, spec: DatasetSpec, meta_columns: Sequence[str] = ()) -> LoadedData:
    """Read every file of ``cfg`` and return the canonical train/validation/test splits of `spec`,
    with a ``meta_<column>`` column per raw column of `meta_columns` (evaluation slices).

    Steps, in order:

    1. ``cfg.files`` are read one per split; or ``cfg.file`` is read and cut with ``cfg.split``:
       by `grouped_split` when ``cfg.group_column`` (default: ``spec.group_default``) is
       set, otherwise by `stratified_split` (per label; one group without labels).
    2. Without a validation split ('validation' absent from ``cfg.files``, or
       ``cfg.split.validation == 0``), 10 % of train is carved out as validation, the same way,
       seeded by ``cfg.seed``.
    3. ``cfg.drop_train_overlap``: training rows whose `overlap_keys` (``spec.overlap_columns``) equals that of any
       validation/test row are dropped and counted in ``dropped_overlap``.
    4. ``cfg.max_train_rows`` / ``cfg.max_eval_rows``: `stratified_sample` of train /
       validation and test, seeded by ``cfg.seed``.

    ``label_names`` is ``cfg.label_names``, or taken from train when empty (`_label_names`).
    Raises `DataError` when a file cannot be read or a split ends up with no rows.
    """
    group = cfg.group_column or spec.group_default
    frames: dict[str, pd.DataFrame] = {}
    origin: dict[str, str] = {}
    if cfg.files:
        for split in SPLITS:
            if split in cfg.files:
                frames[split] = read_table(cfg.files[split], cfg, spec, meta_columns)
                origin[split] = cfg.files[split]
                if frames[split].empty:
                    raise DataError(f"{cfg.files[split]}: {split} split is empty (0 rows)")
    else:
        whole = read_table(cfg.file, cfg, spec, meta_columns)
        if whole.empty:
            raise DataError(f"{cfg.file}: no rows to split into train/validation/test (0 rows)")
        if group:
            wanted = {"train": cfg.split.train, "validation": cfg.split.validation, "test": cfg.split.test}
            frames = split_rows(whole, {k: v for k, v in wanted.items() if v}, group, cfg.split.seed)
        else:
            frames = stratified_split(whole, cfg.split)
        origin = {split: cfg.file for split in SPLITS}
    if "validation" not in frames:
        share = {"train": 1 - CARVED_VALIDATION_FRACTION, "validation": CARVED_VALIDATION_FRACTION}
        carved = split_rows(frames["train"], share, group, cfg.seed)
        frames["train"], frames["validation"] = carved["train"], carved["validation"]
        origin["validation"] = origin["train"]
    dropped = 0
    if cfg.drop_train_overlap:
        frames["train"], dropped = _drop_overlap(frames["train"], [frames["validation"], frames["test"]], spec.overlap_columns)
    if cfg.max_train_rows:
        frames["train"] = stratified_sample(frames["train"], cfg.max_train_rows, cfg.seed)
    if cfg.max_eval_rows:
        for split in ("validation", "test"):
            frames[split] = stratified_sample(frames[split], cfg.max_eval_rows, cfg.seed)
    for split in SPLITS:
        if frames[split].empty:
            raise DataError(f"{origin[split]}: {split} split is empty (0 rows) after splitting/filtering")
    features = datasets.Features({**spec.features, **meta_features(meta_columns)})
    splits = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_pandas(frames[split][list(features)], features=features, preserve_index=False)
            for split in SPLITS
        }
    )
    return LoadedData(
        splits=splits, label_names=_label_names(cfg, frames["train"], spec), dropped_overlap=dropped, files=cfg.paths()
    )
