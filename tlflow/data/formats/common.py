"""What every format reader shares: the error type, whole-file decoding and cell conversion."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from tlflow.config.loading import did_you_mean
from tlflow.errors import TlflowError


class DataError(TlflowError, ValueError):
    """A data file that cannot be read; the message is one line naming file, row and field."""


#: Lines a reader left out under ``data.invalid_rows: drop``: (1-based line, what is wrong with it).
BadLines = list[tuple[int, str]]
#: What the error for an unparseable line adds when no likelier fix is known.
DROP_HINT = "data.invalid_rows: drop skips such lines"


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


#: Longest excerpt of a data value shown anywhere (terminal, reports, MLflow, Prefect).
EXCERPT_CHARS = 60


def excerpt(value: str, limit: int = EXCERPT_CHARS) -> str:
    """A short excerpt of a data value: control and invisible characters other than whitespace
    escaped (no terminal escape sequence, NUL or zero-width character reaches a report), cut at
    `limit` characters with an ellipsis."""
    shown = "".join(c if c.isprintable() or c.isspace() else c.encode("unicode_escape").decode("ascii")
                    for c in value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def missing_column(source: str, column: str, names: list[str] | None, ncols: int, hint: str | None = None) -> DataError:
    """The error for a wanted column a table does not have (with or without a header), with the
    likely fix: `hint` when the caller knows one, else the closest column name."""
    if names is None:
        message = f"{source}: no column {column} (the file has no header: columns are 0-based indices 0..{ncols - 1})"
    else:
        shown = ", ".join(repr(excerpt(n)) for n in names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        message = f"{source}: no column '{column}' (columns: {shown})"
        if hint is None:
            message += did_you_mean(column, names)
    return DataError(f"{message}; {hint}" if hint else message)


def column_position(source: str, key: str, names: list[str]) -> int:
    """0-based position of the column `key` in a header; DataError naming both positions when the
    header has it twice (taking either silently would read the wrong data)."""
    found = [i for i, name in enumerate(names) if name == key]
    if len(found) > 1:
        where = " and ".join(str(i + 1) for i in found)
        raise DataError(f"{source}: column '{excerpt(key)}' appears more than once in the header (columns {where}, "
                        "1-based); rename one")
    return found[0]


def check_no_nul(source: str, columns: dict[str, list], rows: list[int], unit: str = "line") -> None:
    """DataError naming file, line (or row) and column of the first NUL byte in a cell: text formats
    never hold one, it marks a binary or corrupt file."""
    for key, values in columns.items():
        for value, row in zip(values, rows):
            if isinstance(value, str) and "\x00" in value:
                raise DataError(f"{source}: {unit} {row}: column '{excerpt(key)}' contains a NUL byte (\\x00)")


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
