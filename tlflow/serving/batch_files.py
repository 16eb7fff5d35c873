"""Batch inference files: read a table of prediction requests, write requests + predictions.

Formats by file extension: .csv, .tsv, .jsonl, .parquet. Predictions with list fields (entity
tags) are best written as .jsonl or .parquet. The output is written to a temporary file beside
the target and renamed, so a failed run never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from tlflow.data.readers import DataError

FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unknown file type '{suffix}' (use one of {', '.join(FORMATS)})")
    return suffix


def read_requests(path: str | Path) -> pd.DataFrame:
    """The requests in `path`, one per row."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: cannot read requests: {str(err).splitlines()[0]}") from None


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write `frame` to `path` atomically (temporary file + rename)."""
    path = Path(path)
    suffix = _suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix == ".jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_csv(tmp, sep="\t" if suffix == ".tsv" else ",", index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
