"""The likely fix of a table that does not read as configured: another separator, a header that is
data, a first line that is a header. Each function returns the hint text (None when nothing is
likely), to be added to the one-line `DataError` that stopped reading."""

from __future__ import annotations

import csv
import io
import re

#: Separators tried when a file does not split as configured, with the setting that reads each.
CANDIDATES = {"\t": ("tab", "data.format: tsv"), ",": ("comma", "data.format: csv"),
              ";": ("';'", "data.format: text, data.separator: ';'"),
              "|": ("'|'", "data.format: text, data.separator: '|'")}
#: Lines looked at.
_SAMPLE_LINES = 20
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|\.\d+)([eE][+-]?\d+)?$")


def separator_hint(text: str, separator: str) -> str | None:
    """'looks tab-separated: data.format: tsv?' when the first lines split into the same number
    (>= 2) of fields on another common separator, and not on `separator`."""
    lines = [line for line in text.splitlines()[: _SAMPLE_LINES * 2] if line.strip()][:_SAMPLE_LINES]
    if not lines:
        return None
    if _consistent(lines, separator):
        return None
    for candidate, (name, setting) in CANDIDATES.items():
        if candidate != separator and _consistent(lines, candidate):
            return f"looks {name}-separated: {setting}?"
    return None


def header_is_data(names: list[str]) -> bool:
    """Whether a header row looks like a row of data: a number among the names, or a long text."""
    return any(_NUMBER.match(n.strip()) or len(n.split()) > 4 for n in names)


def header_hint(names: list[str], wanted: str) -> str | None:
    """'the first line looks like data ...: data.header: false?' for a header that is data, or
    that is asked for a column by index (indices name columns only without a header)."""
    if header_is_data(names):
        return "the first line looks like data, not column names: data.header: false?"
    if wanted.isdigit():
        return "0-based column indices name columns only without a header: data.header: false?"
    return None


def no_header_hint(first_row: list[str], wanted: str) -> str | None:
    """'line 1 names a column 'text': data.header: true?' when a file read without header has the
    wanted column name in its first row."""
    if any(value.strip() == wanted for value in first_row):
        return f"its first line names a column '{wanted}': data.header: true?"
    return None


def _consistent(lines: list[str], separator: str) -> bool:
    counts = {_fields(line, separator) for line in lines}
    return len(counts) == 1 and counts.pop() >= 2


def _fields(line: str, separator: str) -> int:
    if separator == ",":  # quoted commas are not separators
        try:
            return len(next(csv.reader(io.StringIO(line))))
        except (csv.Error, StopIteration):
            return line.count(",") + 1
    return line.count(separator) + 1
