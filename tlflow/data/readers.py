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
reports those with ``source_file``/``source_row``; only under ``data.invalid_rows: drop`` are rows
with a blank required field and lines that cannot be parsed left out, each listed as an
`InvalidRow`. Files that cannot be read at all raise `DataError` with a one-line message naming the
file, the line and the field, and the likely fix when there is one. Compressed files (gz, bz2, xz,
zip with one member) are decompressed as they are read.

Memory does not grow with the rows' Python objects: csv, tsv and delimited text are decoded a
block at a time and parsed `CHUNK_ROWS` rows at a time (`read_table_chunks`); every chunk goes to a
memory-mapped Arrow file (`tlflow.data.row_store`), and splitting, sampling and the overlap drop
look only at each row's key columns (label, group, split value, file and line). jsonl, regex,
parquet, conll and SQuAD JSON files are parsed whole, then written the same way.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from tlflow.config import DataConfig
from tlflow.data.formats.common import BadLines, DataError, check_no_nul, decode_text, to_str
from tlflow.data.formats.compression import compression_of, iter_text, read_bytes, read_text
from tlflow.data.invalid import UNPARSEABLE, InvalidRow, row_problems
from tlflow.data.row_store import POSITION, KeyColumns, RowFile, frames_of, removed_on_error, take_rows
from tlflow.data.spec import (
    LABEL_FIELD,
    TEXT_FIELD,
    DatasetSpec,
    RawTable,
    column_key,
    derive_columns,
    meta_column,
    meta_features,
    raw_keys,
)
from tlflow.data.splits import split_by_column, split_rows, stratified_sample, stratified_split
from tlflow.data.text import normalize_text

__all__ = ["CARVED_VALIDATION_FRACTION", "SPLITS", "DataError", "InvalidRow", "LoadedData", "decode_text",
           "load_labelled_data", "overlap_keys", "read_table"]

SPLITS = ("train", "validation", "test")
CARVED_VALIDATION_FRACTION = 0.1
#: Structured formats, each the native format of at most one task type.
NATIVE_FORMATS = ("conll", "squad")
TABLE_FORMATS = ("csv", "tsv", "text", "regex", "jsonl", "parquet")
#: Table formats read in chunks (`read_table_chunks`).
DELIMITED_FORMATS = ("csv", "tsv", "text")
#: Rows parsed (and held as Python objects) at a time while reading a delimited file.
CHUNK_ROWS = 10_000
#: Column carrying the raw value of `DataConfig.split_column` until the rows are split.
SPLIT_VALUE = "__split__"


@dataclass
class LoadedData:
    """The canonical splits of one labelled dataset and what was done to get them.

    Attributes:
        splits: the rows the pipeline uses (after ``max_train_rows``/``max_eval_rows``).
        label_names: declared, or inferred from the whole training split.
        dropped_overlap: training rows dropped by ``drop_train_overlap``.
        files: every raw file read.
        invalid: rows left out by ``invalid_rows: drop``, in reading order.
        whole: the splits before ``max_train_rows``/``max_eval_rows`` (what validation checks);
            None when no rows were sampled away (then `splits` is the whole data).
    """

    splits: datasets.DatasetDict
    label_names: list[str]
    dropped_overlap: int = 0
    files: list[str] = field(default_factory=list)
    invalid: list[InvalidRow] = field(default_factory=list)
    whole: datasets.DatasetDict | None = None

    @property
    def validated(self) -> datasets.DatasetDict:
        """The splits validation checks: the whole data, before sampling."""
        return self.whole if self.whole is not None else self.splits

    def with_validation_in_train(self) -> LoadedData:
        """These data with the validation rows appended to the training split and no validation split
        (``data.train_on_validation``: what a final run trains on; `validated` is unchanged)."""
        train = datasets.concatenate_datasets([self.splits["train"], self.splits["validation"]])
        splits = datasets.DatasetDict({"train": train, "test": self.splits["test"]})
        return LoadedData(splits, self.label_names, self.dropped_overlap, self.files, self.invalid, self.validated)


# --------------------------------------------------------------------------- reading one file


def read_table(path: str | Path, cfg: DataConfig, spec: DatasetSpec, meta_columns: Sequence[str] = (),
               invalid: list[InvalidRow] | None = None) -> pd.DataFrame:
    """Read one raw file into a DataFrame with the canonical columns of `spec` (and the
    `meta_columns`, raw columns carried as ``meta_<column>``).

    ``cfg`` gives format, separator, header, encoding, compression, the columns to read (derived
    ones included) and the label map. An empty file (or one with only a header) gives an empty
    frame; the caller decides whether that is an error. Under ``cfg.invalid_rows == 'drop'`` lines
    that cannot be parsed and rows with a blank field of the spec are left out and appended to
    `invalid`. Raises `DataError` for a missing file (or a directory), undecodable bytes, a
    compressed or binary file read as text, a NUL byte in a cell, a column named twice in the
    header, a row with the wrong number of fields (under 'fail'), bad JSON, missing columns and a
    structured format that does not hold this kind of data, and for a column of `meta_columns`
    the file lacks.
    """
    frames = list(read_table_chunks(path, cfg, spec, meta_columns, invalid))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def read_table_chunks(path: str | Path, cfg: DataConfig, spec: DatasetSpec, meta_columns: Sequence[str] = (),
                      invalid: list[InvalidRow] | None = None, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """`read_table` in chunks: csv, tsv and delimited text are read and decoded a block at a time
    (`iter_text`) and parsed `chunk_rows` rows at a time (`iter_delimited`), so only one chunk's
    rows are held at once; the other formats come as one frame. At least one frame (empty for a
    file without rows); `invalid` gets the file's left-out rows in line order."""
    source = str(path)
    path = _data_file(path)
    bad: BadLines | None = [] if cfg.invalid_rows == "drop" else None
    if cfg.format in NATIVE_FORMATS and cfg.format == spec.native_format:
        frames: Iterator[pd.DataFrame] = iter([_read_native(source, cfg, spec, meta_columns)])
    else:
        required, optional = _table_keys(cfg, spec)
        optional += [column_key(c) for c in meta_columns if column_key(c) not in required + optional]
        parts = _column_chunks(path, source, cfg, raw_keys(required, cfg), raw_keys(optional, cfg), bad, chunk_rows)
        frames = (_canonical_frame(source, RawTable(derive_columns(columns, cfg), rows, cfg), names, spec, meta_columns)
                  for names, columns, rows in parts)
    for frame in frames:
        if bad is not None:
            frame = _without_invalid(frame, source, spec, bad, invalid)
            bad.clear()
        yield frame
    if bad and invalid is not None:  # lines left out after the last chunk's rows
        invalid.extend(InvalidRow(source, line, UNPARSEABLE, detail) for line, detail in bad)


def _column_chunks(path: Path, source: str, cfg: DataConfig, required: list[str], optional: list[str],
                   bad: BadLines | None, chunk_rows: int) -> Iterator[tuple[list[str] | None, dict[str, list], list[int]]]:
    """(column names or None, raw column key -> values, row numbers) of a table format, in chunks
    for the delimited formats."""
    if cfg.format in DELIMITED_FORMATS:
        from tlflow.data.formats.delimited import iter_delimited

        text = iter_text(path, source, cfg.encoding, cfg.compression)
        yield from iter_delimited(text, source, cfg.format, cfg.separator, cfg.header, required, optional,
                                  cfg.maxsplit, bad, chunk_rows)
    else:
        yield _read_columns(path, source, cfg, required, optional, bad)


def read_class_file(label: str, path: str | Path, cfg: DataConfig, spec: DatasetSpec,
                    meta_columns: Sequence[str] = (), invalid: list[InvalidRow] | None = None) -> pd.DataFrame:
    """Read one file of ``data.class_files``: each non-empty line an example of `label` (mapped by
    ``label_map`` like any raw label), with its line number. `DataError` when the task type needs
    more than a text and a label per row, or evaluation slices need a column."""
    if set(spec.table_fields) != {TEXT_FIELD, LABEL_FIELD}:
        raise DataError(f"data.class_files: one text per line and a label per file, but {spec.name} rows need "
                        f"{', '.join(spec.table_fields) or 'a structured format'}: give `file` or `files`")
    if meta_columns:
        raise DataError(f"data.class_files: lines have no column '{meta_columns[0]}' for the evaluation slices "
                        "(evaluate.slices)")
    from tlflow.data.formats.lines import read_lines

    source = str(path)
    texts, rows = read_lines(read_text(_data_file(path), source, cfg.encoding, cfg.compression))
    one_label = cfg.model_copy(update={"text_columns": [TEXT_FIELD], "label_column": LABEL_FIELD, "columns": {},
                                       "derived_columns": {}, "group_column": None})
    table = RawTable({TEXT_FIELD: texts, LABEL_FIELD: [label] * len(texts)}, rows, one_label)
    frame = _canonical_frame(source, table, [TEXT_FIELD, LABEL_FIELD], spec, ())
    return _without_invalid(frame, source, spec, [], invalid) if cfg.invalid_rows == "drop" else frame


def _data_file(path: str | Path) -> Path:
    """`path` as a Path; `DataError` when it is a directory or does not exist."""
    source, path = str(path), Path(path)
    if path.is_dir():
        raise DataError(f"{source}: is a directory, not a data file")
    if not path.is_file():
        raise DataError(f"{source}: file not found")
    return path


def _read_columns(path: Path, source: str, cfg: DataConfig, required: list[str], optional: list[str],
                  bad: BadLines | None) -> tuple[list[str] | None, dict[str, list], list[int]]:
    """(column names or None, raw column key -> values, row numbers) of a table format other than
    the delimited ones (`_column_chunks`)."""
    if cfg.format in NATIVE_FORMATS:  # another task's structured format, read as a table of its fields
        columns, rows = _structured_as_table(source, cfg, required)
        return list(columns), columns, rows
    if cfg.format == "parquet":
        from tlflow.data.formats.parquet import read_parquet

        compressed = compression_of(path, cfg.compression) is not None
        return read_parquet(io.BytesIO(read_bytes(path, source, cfg.compression)) if compressed else path,
                            source, required, optional)
    text = read_text(path, source, cfg.encoding, cfg.compression)
    if cfg.format == "jsonl":
        from tlflow.data.formats.jsonl import read_jsonl

        return read_jsonl(text, source, required, optional, bad)
    from tlflow.data.formats.regex import read_regex

    return read_regex(text, source, cfg.pattern, required, optional, bad)


def _canonical_frame(source: str, table: RawTable, names: Sequence[str] | None, spec: DatasetSpec,
                     meta_columns: Sequence[str]) -> pd.DataFrame:
    """The canonical columns of `spec` from a table, then source_file/source_row, the carried
    group and split columns and the ``meta_<column>`` columns."""
    cfg, columns, rows = table.cfg, table.columns, table.rows
    check_no_nul(source, columns, rows, "row" if cfg.format in ("parquet", "squad") else "line")
    meta = {c: _meta_values(source, c, columns, names, len(rows)) for c in meta_columns}
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
    if cfg.split_column is not None:
        values = [to_str(v) for v in table.columns[column_key(cfg.split_column)]] if rows else []
        frame[SPLIT_VALUE] = pd.Series([(v or "").strip() for v in values], dtype=object)
        kept.append(SPLIT_VALUE)
    for column, values in meta.items():
        frame[meta_column(column)] = pd.Series(values, dtype=object)
        kept.append(meta_column(column))
    return frame[kept]


def _without_invalid(frame: pd.DataFrame, source: str, spec: DatasetSpec, bad: BadLines,
                     invalid: list[InvalidRow] | None) -> pd.DataFrame:
    """`frame` without the rows `row_problems` finds; those and the unparseable lines in `bad`
    are appended to `invalid` in line order."""
    problems = row_problems(frame, [f for f in spec.table_fields if f in spec.features])
    found = [InvalidRow(source, line, UNPARSEABLE, detail) for line, detail in bad]
    found += [InvalidRow(source, int(row), problem)
              for row, problem in zip(frame["source_row"], problems) if problem is not None]
    if invalid is not None:
        invalid.extend(sorted(found, key=lambda r: r.row))
    keep = np.array([p is None for p in problems], dtype=bool)
    return frame[keep].reset_index(drop=True) if not keep.all() else frame


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

        frame = read_squad_json(source, cfg.encoding, cfg.compression)
        columns = {name: frame[name].tolist() for name in ("id", "title", "question", "context")}
        columns["answer_text"] = [texts[0] if len(texts) else None for texts in frame["answer_texts"]]
        columns["answer_start"] = [int(starts[0]) if len(starts) else None for starts in frame["answer_starts"]]
    else:
        from tlflow.data.formats.conll import read_conll

        frame = read_conll(source, cfg.encoding, 0, -1, cfg.separator, cfg.compression)
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
        frame = read_conll(source, cfg.encoding, token_index, tag_index, cfg.separator, cfg.compression)
    else:
        from tlflow.data.formats.squad import read_squad_json

        frame = read_squad_json(source, cfg.encoding, cfg.compression)
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
    if cfg.split_column is not None:
        required.append(column_key(cfg.split_column))
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


def _overlap(rows: datasets.Dataset, others: list[datasets.Dataset], columns: Sequence[str]) -> np.ndarray:
    """Whether each row's `overlap_keys` equals that of a row of `others`, reading the rows chunk by
    chunk (the held-out keys are kept, not those of `rows`)."""
    held_out = {k for ds in others for frame in frames_of(ds, columns) for k in overlap_keys(frame, columns)
                if k is not None}
    leaked = [np.fromiter((k is not None and k in held_out for k in overlap_keys(frame, columns)), dtype=bool)
              for frame in frames_of(rows, columns)]
    return np.concatenate(leaked) if leaked else np.zeros(0, dtype=bool)


def _label_names(cfg: DataConfig, train: datasets.Dataset, spec: DatasetSpec, origin: str) -> list[str]:
    """Declared label names, or those the spec infers from the training split (none without labels);
    DataError naming the training file(s) `origin` when fewer than two are found there."""
    if cfg.label_names or spec.infer_labels is None:
        return list(cfg.label_names)
    names = spec.infer_labels(frames_of(train))
    if len(names) < 2:
        raise DataError(f"{origin}: the training split holds {len(names)} distinct label(s) {names}: a classifier "
                        "needs at least 2 (data.label_names is empty, so labels are taken from the training rows)")
    return names


@dataclass
class _Rows:
    """Rows of one split, not yet taken from the rows read: the split's key columns (`KeyColumns`,
    with each row's `POSITION` in `source`, the memory-mapped rows of its file(s))."""

    keys: pd.DataFrame
    source: datasets.Dataset

    def __len__(self) -> int:
        return len(self.keys)

    def part(self, keys: pd.DataFrame) -> _Rows:
        return _Rows(keys, self.source)

    def dataset(self) -> datasets.Dataset:
        positions = self.keys[POSITION].to_numpy()
        if len(positions) == len(self.source) and np.array_equal(positions, np.arange(len(positions))):
            return self.source
        return take_rows(self.source, positions)


def load_labelled_data(cfg: DataConfig, spec: DatasetSpec, meta_columns: Sequence[str] = (),
                       chunk_rows: int = CHUNK_ROWS) -> LoadedData:
    """Read every file of ``cfg`` and return the canonical train/validation/test splits of `spec`,
    with a ``meta_<column>`` column per raw column of `meta_columns` (evaluation slices).

    Steps, in order:

    1. ``cfg.files`` are read one per split; or ``cfg.file`` (or the ``cfg.class_files``, one per
       label) is read and cut: by the value of ``cfg.split_column`` (mapped by ``cfg.split_map``),
       by `grouped_split` when ``cfg.group_column`` (default: ``spec.group_default``) is set,
       otherwise with ``cfg.split`` by `stratified_split` (per label; one group without labels).
       Under ``cfg.invalid_rows == 'drop'`` invalid rows are left out as each file is read.
    2. Without a validation split ('validation' absent from ``cfg.files``, from the split column's
       values, or ``cfg.split.validation == 0``), 10 % of train is carved out as validation, the
       same way, seeded by ``cfg.seed``.
    3. ``cfg.drop_train_overlap``: training rows whose `overlap_keys` (``spec.overlap_columns``) equals that of any
       validation/test row are dropped and counted in ``dropped_overlap``.
    4. ``cfg.max_train_rows`` / ``cfg.max_eval_rows``: `stratified_sample` of train /
       validation and test, seeded by ``cfg.seed``; the splits before it are kept as ``whole``.

    Files are read `chunk_rows` rows at a time (`read_table_chunks`) into memory-mapped Arrow files
    (`RowFile`); cutting and sampling look only at the key columns (`KeyColumns`), and each split
    is copied from the rows read to its own memory-mapped file (`take_rows`), so memory grows by
    the key columns (about 100 bytes a row), not by the rows' Python objects.

    ``label_names`` is ``cfg.label_names``, or taken from the whole train split when empty
    (`_label_names`). Raises `DataError` when a file cannot be read or a split ends up with no rows.
    """
    with removed_on_error():  # a file that fails to read leaves no rows of the others behind
        return _load(cfg, spec, meta_columns, chunk_rows)


def _load(cfg: DataConfig, spec: DatasetSpec, meta_columns: Sequence[str], chunk_rows: int) -> LoadedData:
    """`load_labelled_data`'s steps."""
    group = cfg.group_column or spec.group_default
    features = datasets.Features({**spec.features, **meta_features(meta_columns)})
    invalid: list[InvalidRow] = []
    parts, origin = _read_splits(cfg, spec, meta_columns, group, features, invalid, chunk_rows)
    if "validation" not in parts:
        share = {"train": 1 - CARVED_VALIDATION_FRACTION, "validation": CARVED_VALIDATION_FRACTION}
        carved = split_rows(parts["train"].keys, share, group, cfg.seed)
        parts["train"], parts["validation"] = parts["train"].part(carved["train"]), parts["train"].part(carved["validation"])
        origin["validation"] = origin["train"]
    for split in SPLITS:
        if not len(parts[split]):
            raise DataError(f"{origin[split]}: {split} split is empty (0 rows) after splitting/filtering")
    whole = {split: parts[split].dataset() for split in ("validation", "test")}
    dropped = 0
    if cfg.drop_train_overlap:  # read over the training rows' file(s): train is copied once, after the drop
        train = parts["train"]
        leaked = _overlap(train.source, list(whole.values()), spec.overlap_columns)[train.keys[POSITION].to_numpy()]
        dropped = int(leaked.sum())
        parts["train"] = train.part(train.keys[~leaked].reset_index(drop=True))
        if not len(parts["train"]):
            raise DataError(f"{origin['train']}: train split is empty (0 rows) after splitting/filtering")
    whole["train"] = parts["train"].dataset()
    splits = dict(whole)
    if cfg.max_train_rows:
        splits["train"] = _sampled(parts["train"], cfg.max_train_rows, cfg.seed)
    if cfg.max_eval_rows:
        for split in ("validation", "test"):
            splits[split] = _sampled(parts[split], cfg.max_eval_rows, cfg.seed)
    sampled = any(len(splits[split]) != len(whole[split]) for split in SPLITS)
    return LoadedData(
        splits=datasets.DatasetDict({split: splits[split] for split in SPLITS}),
        label_names=_label_names(cfg, whole["train"], spec, origin["train"]),
        dropped_overlap=dropped, files=cfg.paths(), invalid=invalid,
        whole=datasets.DatasetDict({split: whole[split] for split in SPLITS}) if sampled else None,
    )


def _sampled(rows: _Rows, n: int, seed: int) -> datasets.Dataset:
    return rows.part(stratified_sample(rows.keys, n, seed)).dataset()


def _key_columns(cfg: DataConfig, spec: DatasetSpec, group: str | None) -> list[str]:
    """The columns cutting and sampling look at: the label, the group, the split value, the file."""
    keys = [LABEL_FIELD] if LABEL_FIELD in spec.columns else []
    if group:
        keys.append(group)
    if cfg.split_column is not None:
        keys.append(SPLIT_VALUE)
    return list(dict.fromkeys([*keys, "source_file"]))


def _write(frames: Iterator[pd.DataFrame], features: datasets.Features, key_columns: list[str]) -> _Rows:
    """Every frame appended to a `RowFile` (its key columns kept as `KeyColumns`)."""
    keys = KeyColumns(key_columns, numbers=["source_row"])
    with RowFile(features) as rows:
        for frame in frames:
            rows.append(frame)
            keys.append(frame)
        return _Rows(keys.frame(), rows.dataset())


def _read_splits(cfg: DataConfig, spec: DatasetSpec, meta_columns: Sequence[str], group: str | None,
                 features: datasets.Features, invalid: list[InvalidRow],
                 chunk_rows: int) -> tuple[dict[str, _Rows], dict[str, str]]:
    """Step 1 of `load_labelled_data`: the splits as read or cut, and the file each came from."""
    keys = _key_columns(cfg, spec, group)
    if cfg.files:
        parts, origin = {}, {}
        for split in SPLITS:
            if split in cfg.files:
                parts[split] = _write(read_table_chunks(cfg.files[split], cfg, spec, meta_columns, invalid,
                                                        chunk_rows), features, keys)
                origin[split] = cfg.files[split]
                if not len(parts[split]):
                    raise DataError(f"{cfg.files[split]}: {split} split is empty (0 rows)")
        return parts, origin
    if cfg.class_files:
        frames = (read_class_file(label, path, cfg, spec, meta_columns, invalid)
                  for label, path in cfg.class_files.items())
        where = ", ".join(cfg.class_files.values())
    else:
        if cfg.split_column is not None and cfg.format in NATIVE_FORMATS:
            raise DataError(f"{cfg.file}: data.split_column needs a table format (csv, tsv, text, regex, jsonl, "
                            f"parquet), not {cfg.format}")
        frames, where = read_table_chunks(cfg.file, cfg, spec, meta_columns, invalid, chunk_rows), cfg.file
    whole = _write(frames, features, keys)
    if not len(whole):
        raise DataError(f"{where}: no rows to split into train/validation/test (0 rows)")
    origin = {split: cfg.file or where for split in SPLITS}
    if cfg.split_column is not None:
        cut = split_by_column(whole.keys, SPLIT_VALUE, cfg.split_map, f"data.split_column '{cfg.split_column}'")
    elif group:
        wanted = {"train": cfg.split.train, "validation": cfg.split.validation, "test": cfg.split.test}
        cut = split_rows(whole.keys, {k: v for k, v in wanted.items() if v}, group, cfg.split.seed)
    else:
        cut = stratified_split(whole.keys, cfg.split)
    return {split: whole.part(keys) for split, keys in cut.items()}, origin
