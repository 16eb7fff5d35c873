"""What every format reader shares: the error type, whole-file decoding and cell conversion."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from tlflow.errors import TlflowError


class DataError(TlflowError, ValueError):
    """A data file that cannot be read; the message is one line naming file, row and field."""


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


def missing_column(source: str, column: str, names: list[str] | None, ncols: int) -> DataError:
    """The error for a wanted column a table does not have (with or without a header)."""
    if names is None:
        return DataError(
            f"{source}: no column {column} (the file has no header: columns are 0-based indices 0..{ncols - 1})"
        )
    return DataError(f"{source}: no column '{column}' (columns: {', '.join(repr(n) for n in names)})")


def to_str(value: Any) -> str | None:
    """A cell of a typed table (jsonl, parquet) as text: None for missing, JSON for lists and numbers."""
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


def as_list(value: str | None) -> list[str]:
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
