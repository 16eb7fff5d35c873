"""Rows that cannot be used (``data.invalid_rows``): a blank text, a missing label, a line that
cannot be parsed. Under ``drop`` the readers leave them out and list them here, so the report can
give their count and the first file:line of each; under ``fail`` a line that cannot be parsed stops
reading and a blank or missing value fails validation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from tlflow.data.spec import LABEL_FIELD
from tlflow.data.text import strip_text


@dataclass(frozen=True)
class InvalidRow:
    """A row left out: its file, its 1-based line (row for parquet) and what is wrong with it."""

    file: str
    row: int
    reason: str  # 'blank text', 'missing label', 'unparseable line', ...
    detail: str = ""  # for an unparseable line: why, e.g. "expected 2 fields separated by '\\t', found 3"

    def where(self) -> str:
        return f"{self.file}:{self.row}"

    def describe(self) -> str:
        """e.g. 'data/a.tsv:7 (unparseable line: expected 2 fields separated by '\\t', found 3)'."""
        return f"{self.where()} ({self.reason}{': ' + self.detail if self.detail else ''})"


#: The reason of a line a reader could not parse.
UNPARSEABLE = "unparseable line"


def row_problems(frame: pd.DataFrame, fields: Sequence[str]) -> list[str | None]:
    """What makes each row of a canonical frame unusable (the first blank of `fields`: 'blank text',
    'missing label', 'no tokens'), None for a usable row."""
    present = [f for f in fields if f in frame.columns]
    out: list[str | None] = []
    for values in zip(*(frame[f].tolist() for f in present)) if present else ([()] * len(frame)):
        out.append(next((_problem(f, v) for f, v in zip(present, values) if _problem(f, v)), None))
    return out


def reason_counts(rows: Sequence[InvalidRow]) -> dict[str, int]:
    """Rows per reason, most frequent first."""
    return dict(Counter(r.reason for r in rows).most_common())


def _problem(field: str, value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return f"missing {field}" if field == LABEL_FIELD else f"blank {field}"
    if isinstance(value, str) and not strip_text(value):
        return f"blank {field}"
    if isinstance(value, (list, tuple)) and not value:
        return f"no {field}"
    return None
