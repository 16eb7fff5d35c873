"""Read the data of any task type into a canonical `datasets.DatasetDict`.

Every raw file (csv, tsv, delimited text, jsonl, parquet; conll for token-classification, SQuAD
JSON for question-answering) becomes a table with the canonical columns of its task type
(`TASK_COLUMNS`), always ending in:

* ``source_file`` (str): the path as given in the config;
* ``source_row`` (int): 1-based line of the row in the raw file (header counted), the 1-based row
  index for parquet, the line of a sentence's first token (conll), or the 1-based question number
  (SQuAD JSON). Rows of a csv with quoted line breaks keep the line they start on.

Classification task types have ``text`` (several ``text_columns`` joined with ``text_join``),
``label`` (raw value stripped, then mapped by ``label_map``) and, for sentence pairs, ``text_pair``.
Token classification has ``tokens`` and ``tags`` (lists) and ``text`` (the tokens joined by spaces);
question answering has ``id``, ``title``, ``question``, ``context``, ``answer_texts`` and
``answer_starts`` (lists).

Reading never judges content (blank texts, unknown labels, duplicates): the validation suite
reports those with ``source_file``/``source_row``. Files that cannot be read at all raise
`DataError` with a one-line message naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

from tlflow.config import DataConfig, SplitFractions
from tlflow.data.text import normalize_text

_STR, _INT = datasets.Value("string"), datasets.Value("int64")
_SOURCE = {"source_file": _STR, "source_row": _INT}
#: Canonical columns (and their Arrow types) of each task type's splits.
TASK_FEATURES: dict[str, datasets.Features] = {
    "text-classification": datasets.Features({"text": _STR, "label": _STR, **_SOURCE}),
    "sentence-pair": datasets.Features({"text": _STR, "text_pair": _STR, "label": _STR, **_SOURCE}),
    "token-classification": datasets.Features(
        {"tokens": datasets.List(_STR), "tags": datasets.List(_STR), "text": _STR, **_SOURCE}
    ),
    "question-answering": datasets.Features(
        {
            "id": _STR, "title": _STR, "question": _STR, "context": _STR,
            "answer_texts": datasets.List(_STR), "answer_starts": datasets.List(_INT), **_SOURCE,
        }
    ),
}
TASK_COLUMNS = {task: list(features) for task, features in TASK_FEATURES.items()}
COLUMNS = TASK_COLUMNS["text-classification"]
FEATURES = TASK_FEATURES["text-classification"]
#: Task-specific fields read from tables (DataConfig.columns maps them to raw columns).
_TABLE_FIELDS = {
    "text-classification": ((), ()),
    "sentence-pair": (("text_pair",), ()),
    "token-classification": (("tokens", "tags"), ()),
    "question-answering": (("question", "context", "answer_text", "answer_start"), ("id", "title")),
}
SPLITS = ("train", "validation", "test")
CARVED_VALIDATION_FRACTION = 0.1

_DEFAULT_SEPARATOR = {"csv": ",", "tsv": "\t"}


class DataError(ValueError):
    """A data file that cannot be read; the message is one line naming file, row and field."""


@dataclass
class LoadedData:
    """The canonical splits of one labelled dataset and what was done to get them."""

    splits: datasets.DatasetDict
    label_names: list[str]
    dropped_overlap: int = 0
    files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading one file


def read_table(path: str | Path, cfg: DataConfig, task: str = "text-classification") -> pd.DataFrame:
    """Read one raw file into a DataFrame with the canonical columns of `task` (`TASK_COLUMNS`).

    ``cfg`` gives format, separator, header, encoding, the columns to read and the label map.
    An empty file (or one with only a header) gives an empty frame; the caller decides whether
    that is an error. Raises `DataError` for a missing file, undecodable bytes, a row with the
    wrong number of fields, bad JSON and missing columns.
    """
    source = str(path)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{source}: file not found")
    if cfg.format in ("conll", "squad"):
        return _read_structured(source, cfg, task)
    required, optional = _table_fields(cfg, task)
    if cfg.format == "parquet":
        names, columns, rows = _read_parquet(path, source, required, optional)
    else:
        text = decode_text(path.read_bytes(), source, cfg.encoding)
        if cfg.format == "jsonl":
            names, columns, rows = _read_jsonl(text, source, required, optional)
        else:
            names, columns, rows = _read_delimited(text, source, cfg, required, optional)
    frame = _canonical(task, cfg, columns, rows)
    frame["source_file"] = pd.Series([source] * len(rows), dtype=object)
    frame["source_row"] = pd.Series(rows, dtype="int64")
    return frame[TASK_COLUMNS[task]]


def _read_structured(source: str, cfg: DataConfig, task: str) -> pd.DataFrame:
    """conll (token-classification) and SQuAD JSON (question-answering)."""
    expected = {"conll": "token-classification", "squad": "question-answering"}[cfg.format]
    if task != expected:
        raise DataError(f"{source}: format '{cfg.format}' holds {expected} data, not {task}")
    if cfg.format == "conll":
        from tlflow.data.formats.conll import read_conll

        token_index = int(cfg.columns.get("tokens", 0))
        tag_index = int(cfg.columns.get("tags", -1))
        frame = read_conll(source, cfg.encoding, token_index, tag_index, cfg.separator)
    else:
        from tlflow.data.formats.squad import read_squad_json

        frame = read_squad_json(source, cfg.encoding)
    return frame[TASK_COLUMNS[task]].reset_index(drop=True)


def _table_fields(cfg: DataConfig, task: str) -> tuple[list[str], list[str]]:
    """Raw column keys a table must have, and those it may have."""
    fields, optional = _TABLE_FIELDS[task]
    required = [_key(cfg.columns.get(f, f)) for f in fields]
    if task in ("text-classification", "sentence-pair"):
        required = [*_keys(cfg.text_columns), _key(cfg.label_column), *required]
    return list(dict.fromkeys(required)), [_key(cfg.columns.get(f, f)) for f in optional]


def _canonical(task: str, cfg: DataConfig, columns: dict[str, list], rows: list[int]) -> pd.DataFrame:
    """Canonical fields of `task` from the raw columns read from a table."""

    def raw(field: str) -> list:
        return columns.get(_key(cfg.columns.get(field, field)), [None] * len(rows))

    def obj(values: list) -> pd.Series:
        return pd.Series(values, dtype=object)

    if task in ("text-classification", "sentence-pair"):
        out = {"text": obj(_join_texts([columns[k] for k in _keys(cfg.text_columns)], cfg.text_join) if rows else [])}
        if task == "sentence-pair":
            out["text_pair"] = obj(raw("text_pair"))
        out["label"] = obj(_map_labels(columns[_key(cfg.label_column)], cfg.label_map) if rows else [])
        return pd.DataFrame(out)
    if task == "token-classification":
        tokens = [_as_list(v) for v in raw("tokens")]
        return pd.DataFrame({
            "tokens": obj(tokens),
            "tags": obj([_as_list(v) for v in raw("tags")]),
            "text": obj([" ".join(t) for t in tokens]),
        })
    contexts = raw("context")
    ids = [i if i is not None else f"row-{r}" for i, r in zip(raw("id"), rows)]
    titles = [t if t is not None else c for t, c in zip(raw("title"), contexts)]
    starts = [[int(float(x)) for x in _as_list(v)] for v in raw("answer_start")]
    return pd.DataFrame({
        "id": obj(ids), "title": obj(titles), "question": obj(raw("question")), "context": obj(contexts),
        "answer_texts": obj([_as_list(v) for v in raw("answer_text")]), "answer_starts": obj(starts),
    })


def _as_list(value: str | None) -> list[str]:
    """A list field from a table: JSON (jsonl/parquet lists arrive as JSON text) or space-separated."""
    if value is None:
        return []
    text = value.strip()
    if text.startswith("["):
        try:
            return [str(v) for v in json.loads(text)]
        except json.JSONDecodeError:
            pass
    return text.split()


def decode_text(raw: bytes, source: str, encoding: str) -> str:
    """Decode a whole raw file (a DataError names the line of the first bad byte); drop a UTF-8 BOM."""
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise DataError(f"{source}: unknown encoding '{encoding}'") from None
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{source}: cannot decode as {encoding} at byte {err.start} (line {line}): {err.reason}"
        ) from None
    # A BOM read with plain 'utf-8' would otherwise end up in the first column name.
    return text.removeprefix("\ufeff")


def _key(column: str | int) -> str:
    return str(column)


def _keys(columns: list[str | int]) -> list[str]:
    return [_key(c) for c in columns]


def _missing(source: str, column: str, names: list[str] | None, ncols: int) -> DataError:
    if names is None:
        return DataError(
            f"{source}: no column {column} (the file has no header: columns are 0-based indices 0..{ncols - 1})"
        )
    return DataError(f"{source}: no column '{column}' (columns: {', '.join(repr(n) for n in names)})")


def _read_delimited(
    text: str, source: str, cfg: DataConfig, wanted: list[str], optional: list[str]
) -> tuple[list[str] | None, dict, list[int]]:
    """csv/tsv/text: parse with the csv module so every row keeps its exact line number."""
    sep = cfg.separator or _DEFAULT_SEPARATOR[cfg.format]
    # GLUE tsv files contain unbalanced quotes: only csv honours quoting.
    quoting = csv.QUOTE_MINIMAL if cfg.format == "csv" else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting, strict=True)
    records: list[list[str]] = []
    lines: list[int] = []
    width: int | None = None
    start = 1  # line on which the next record starts
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record:  # blank line
                continue
            if width is None:
                width = len(record)
            elif len(record) != width:
                raise DataError(
                    f"{source}: line {line}: expected {width} fields separated by {sep!r}, found {len(record)}"
                )
            records.append(record)
            lines.append(line)
    except csv.Error as err:
        raise DataError(f"{source}: line {reader.line_num}: {err}") from None
    names: list[str] | None = None
    if cfg.header and records:
        names = [n.strip() for n in records[0]]
        records, lines = records[1:], lines[1:]
    ncols = width or 0
    columns: dict[str, list[str]] = {}
    for key in [*wanted, *optional]:
        if names is None:
            if not key.isdigit() or int(key) >= ncols:
                if not records or key in optional:
                    continue  # empty file: nothing to check against
                raise _missing(source, key, None, ncols)
            pos = int(key)
        elif key in names:
            pos = names.index(key)
        elif key in optional:
            continue
        else:
            raise _missing(source, key, names, ncols)
        columns[key] = [r[pos] for r in records]
    return names, columns, lines


def _to_str(value: Any) -> str | None:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    if isinstance(value, (bool, int, float, list, dict)):
        return json.dumps(value)
    return str(value)


def _read_jsonl(text: str, source: str, wanted: list[str], optional: list[str]) -> tuple[list[str], dict, list[int]]:
    """jsonl: one JSON object per line; columns by key, absent keys are missing values."""
    objects: list[dict] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{source}: line {number}: invalid JSON: {err.msg} (column {err.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{source}: line {number}: expected a JSON object, got {type(obj).__name__}")
        objects.append(obj)
        lines.append(number)
    names = list(dict.fromkeys(k for obj in objects for k in obj))
    columns: dict[str, list] = {}
    for key in [*wanted, *optional]:
        if key not in names:
            if not objects or key in optional:
                continue
            raise _missing(source, key, names, len(names))
        columns[key] = [_to_str(obj.get(key)) for obj in objects]
    return names, columns, lines


def _read_parquet(path: Path, source: str, wanted: list[str], optional: list[str]) -> tuple[list[str], dict, list[int]]:
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises many types for a corrupt file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{source}: cannot read parquet: {first}") from None
    names = [str(c) for c in df.columns]
    columns: dict[str, list] = {}
    for key in [*wanted, *optional]:
        if key not in names:
            if key in optional:
                continue
            raise _missing(source, key, names, len(names))
        columns[key] = [_to_str(v) for v in df.iloc[:, names.index(key)].tolist()]
    return names, columns, list(range(1, len(df) + 1))


def _join_texts(parts: list[list[str | None]], sep: str) -> list[str | None]:
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


def _map_labels(raw: list[str | None], label_map: dict[str, str]) -> list[str | None]:
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


# --------------------------------------------------------------------------- splitting and sampling


def _label_groups(df: pd.DataFrame) -> list[np.ndarray]:
    """Row positions of each distinct label (missing labels form one group), in first-seen order."""
    if "label" not in df.columns:  # task types without labels: one group
        return [np.arange(len(df))] if len(df) else []
    codes, _ = pd.factorize(df["label"].astype(object), use_na_sentinel=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds) if len(order) else []


def _partition(df: pd.DataFrame, fractions: dict[str, float], seed: int) -> dict[str, pd.DataFrame]:
    """Per-label proportional partition; 'train' takes the rounding remainder and >= 1 row per label."""
    rng = np.random.default_rng(seed)
    others = [name for name in fractions if name != "train"]
    picked: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    for positions in _label_groups(df):
        n = len(positions)
        positions = rng.permutation(positions)
        counts = {name: int(math.floor(n * fractions[name] + 0.5)) for name in others}
        while n - sum(counts.values()) < 1 and any(counts.values()):
            biggest = max(others, key=lambda name: counts[name])
            counts[biggest] -= 1
        start = 0
        for name in others:
            picked[name].append(positions[start : start + counts[name]])
            start += counts[name]
        picked["train"].append(positions[start:])
    out = {}
    for name, chunks in picked.items():
        rows = np.sort(np.concatenate(chunks)) if chunks else np.array([], dtype=int)
        out[name] = df.iloc[rows].reset_index(drop=True)
    return out


def stratified_split(df: pd.DataFrame, fractions: SplitFractions) -> dict[str, pd.DataFrame]:
    """Split rows into train/validation/test, per label in proportion to ``fractions``.

    Pure and seeded by ``fractions.seed``: the same rows and seed give the same splits. Each label
    is shuffled and cut separately (counts rounded half up); train takes the remainder and keeps
    at least one row of every label, so every label with >= 3 rows (indeed >= 1) lands in train.
    A validation fraction of 0 gives no 'validation' key. Rows keep their original order.
    """
    wanted = {"train": fractions.train, "validation": fractions.validation, "test": fractions.test}
    if not fractions.validation:
        del wanted["validation"]
    return _partition(df, wanted, fractions.seed)


def stratified_sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Seeded subset of ``n`` rows with each label's share kept (largest remainder rounding).

    Every label keeps at least one row when ``n`` is at least the number of labels (otherwise the
    ``n`` most frequent labels get one row each). ``n >= len(df)`` returns all rows. Pure; rows
    keep their original order.
    """
    if n >= len(df):
        return df.reset_index(drop=True)
    groups = _label_groups(df)
    sizes = np.array([len(g) for g in groups])
    if n < len(groups):
        alloc = np.zeros(len(groups), dtype=int)
        alloc[np.argsort(-sizes, kind="stable")[:n]] = 1
    else:
        quota = n * sizes / sizes.sum()
        alloc = np.maximum(np.floor(quota).astype(int), 1)
        while alloc.sum() > n:  # minimum-one bumps overshot: take from the most over-served label
            over = np.where(alloc > 1, alloc - quota, -np.inf)
            alloc[int(np.argmax(over))] -= 1
        while alloc.sum() < n:  # hand out the rest by largest remainder
            short = np.where(alloc < sizes, quota - alloc, -np.inf)
            alloc[int(np.argmax(short))] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(g, size=k, replace=False) for g, k in zip(groups, alloc) if k]
    return df.iloc[np.sort(np.concatenate(chosen))].reset_index(drop=True)


# --------------------------------------------------------------------------- whole dataset


def grouped_split(df: pd.DataFrame, fractions: dict[str, float], column: str, seed: int) -> dict[str, pd.DataFrame]:
    """Split rows so that all rows sharing a value of `column` land in the same split.

    Groups are shuffled (seeded) and handed out in order: each split other than 'train' takes
    groups until it holds its fraction of the rows; 'train' takes the rest. Pure; rows keep their
    original order.
    """
    if column not in df.columns:
        raise DataError(f"group_column '{column}' is not a field of this task type (fields: {', '.join(df.columns)})")
    keys = df[column].astype(object).where(df[column].notna(), "")
    groups = list(dict.fromkeys(keys))
    order = np.random.default_rng(seed).permutation(len(groups))
    sizes = keys.value_counts()
    assignment: dict[Any, str] = {}
    targets = [(name, share * len(df)) for name, share in fractions.items() if name != "train"]
    taken = {name: 0 for name, _ in targets}
    for i in order:
        group = groups[i]
        for name, target in targets:
            if taken[name] < target:
                assignment[group], taken[name] = name, taken[name] + int(sizes[group])
                break
        else:
            assignment[group] = "train"
    split_of = keys.map(assignment)
    return {name: df[split_of == name].reset_index(drop=True) for name in fractions}


def overlap_keys(df: pd.DataFrame, task: str) -> list[str | None]:
    """What two rows share when one leaks into another split: the text (pairs: both texts;
    question-answering: the context), normalised; None for a missing text."""
    if task == "question-answering":
        values = df["context"].tolist()
    elif task == "sentence-pair":
        values = [f"{a} ||| {b}" if isinstance(a, str) and isinstance(b, str) else None
                  for a, b in zip(df["text"], df["text_pair"])]
    else:
        values = df["text"].tolist()
    return [normalize_text(v) if isinstance(v, str) and v.strip() else None for v in values]


def _drop_overlap(train: pd.DataFrame, others: list[pd.DataFrame], task: str) -> tuple[pd.DataFrame, int]:
    held_out = {k for df in others for k in overlap_keys(df, task) if k is not None}
    leaked = np.fromiter((k is not None and k in held_out for k in overlap_keys(train, task)), dtype=bool, count=len(train))
    return train[~leaked].reset_index(drop=True), int(leaked.sum())


def _label_names(cfg: DataConfig, train: pd.DataFrame, task: str) -> list[str]:
    """Declared label names, or those of the training split (tags for token classification,
    'O' first; none for question answering)."""
    if cfg.label_names or task == "question-answering":
        return list(cfg.label_names)
    if task == "token-classification":
        tags = {t for tags in train["tags"] for t in tags if t}
        return ["O", *sorted(tags - {"O"})]
    return sorted({v for v in train["label"] if v is not None})


def _split(df: pd.DataFrame, fractions: dict[str, float], group: str | None, seed: int) -> dict[str, pd.DataFrame]:
    return grouped_split(df, fractions, group, seed) if group else _partition(df, fractions, seed)


def load_labelled_data(cfg: DataConfig, task: str = "text-classification") -> LoadedData:
    """Read every file of ``cfg`` and return the canonical train/validation/test splits of `task`.

    Steps, in order:

    1. ``cfg.files`` are read one per split; or ``cfg.file`` is read and cut with ``cfg.split``:
       by `grouped_split` when ``cfg.group_column`` is set (question-answering: 'title' by
       default), otherwise by `stratified_split` (per label; one group without labels).
    2. Without a validation split ('validation' absent from ``cfg.files``, or
       ``cfg.split.validation == 0``), 10 % of train is carved out as validation, the same way,
       seeded by ``cfg.seed``.
    3. ``cfg.drop_train_overlap``: training rows whose `overlap_keys` equals that of any
       validation/test row are dropped and counted in ``dropped_overlap``.
    4. ``cfg.max_train_rows`` / ``cfg.max_eval_rows``: `stratified_sample` of train /
       validation and test, seeded by ``cfg.seed``.

    ``label_names`` is ``cfg.label_names``, or taken from train when empty (`_label_names`).
    Raises `DataError` when a file cannot be read or a split ends up with no rows.
    """
    group = cfg.group_column or ("title" if task == "question-answering" else None)
    frames: dict[str, pd.DataFrame] = {}
    origin: dict[str, str] = {}
    if cfg.files:
        for split in SPLITS:
            if split in cfg.files:
                frames[split] = read_table(cfg.files[split], cfg, task)
                origin[split] = cfg.files[split]
                if frames[split].empty:
                    raise DataError(f"{cfg.files[split]}: {split} split is empty (0 rows)")
    else:
        whole = read_table(cfg.file, cfg, task)
        if whole.empty:
            raise DataError(f"{cfg.file}: no rows to split into train/validation/test (0 rows)")
        if group:
            wanted = {"train": cfg.split.train, "validation": cfg.split.validation, "test": cfg.split.test}
            frames = _split(whole, {k: v for k, v in wanted.items() if v}, group, cfg.split.seed)
        else:
            frames = stratified_split(whole, cfg.split)
        origin = {split: cfg.file for split in SPLITS}
    if "validation" not in frames:
        share = {"train": 1 - CARVED_VALIDATION_FRACTION, "validation": CARVED_VALIDATION_FRACTION}
        carved = _split(frames["train"], share, group, cfg.seed)
        frames["train"], frames["validation"] = carved["train"], carved["validation"]
        origin["validation"] = origin["train"]
    dropped = 0
    if cfg.drop_train_overlap:
        frames["train"], dropped = _drop_overlap(frames["train"], [frames["validation"], frames["test"]], task)
    if cfg.max_train_rows:
        frames["train"] = stratified_sample(frames["train"], cfg.max_train_rows, cfg.seed)
    if cfg.max_eval_rows:
        for split in ("validation", "test"):
            frames[split] = stratified_sample(frames[split], cfg.max_eval_rows, cfg.seed)
    for split in SPLITS:
        if frames[split].empty:
            raise DataError(f"{origin[split]}: {split} split is empty (0 rows) after splitting/filtering")
    features = TASK_FEATURES[task]
    splits = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_pandas(frames[split][list(features)], features=features, preserve_index=False)
            for split in SPLITS
        }
    )
    return LoadedData(
        splits=splits, label_names=_label_names(cfg, frames["train"], task), dropped_overlap=dropped, files=cfg.paths()
    )
