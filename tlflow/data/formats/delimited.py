"""csv, tsv and delimited text: the wanted columns of a table, each row with its exact line number."""

from __future__ import annotations

import csv
import io

from tlflow.data.formats.common import DataError, column_position, missing_column

#: Separator of each delimited format when the config gives none ('text' always needs one).
DEFAULT_SEPARATOR = {"csv": ",", "tsv": "\t"}
#: Longest field the csv module accepts (its default, 131,072 characters, would stop a long text
#: with "field larger than field limit" before the length check can name its file and row).
FIELD_LIMIT = 2**31 - 1


def read_delimited(
    text: str, source: str, fmt: str, separator: str | None, header: bool, wanted: list[str], optional: list[str]
) -> tuple[list[str] | None, dict[str, list], list[int]]:
    """Parse with the csv module so every row keeps its exact line number.

    Returns (column names or None without header, raw column key -> values, 1-based line of each
    row). Keys are column names, or 0-based indices as strings without a header. A column of
    `wanted` that is absent raises `DataError`; one of `optional` is left out.
    """
    sep = separator or DEFAULT_SEPARATOR[fmt]
    if csv.field_size_limit() < FIELD_LIMIT:
        csv.field_size_limit(FIELD_LIMIT)  # process-wide; only ever raised
    # GLUE tsv files contain unbalanced quotes: only csv honours quoting.
    quoting = csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE
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
    if header and records:
        names = [n.strip() for n in records[0]]
        records, lines = records[1:], lines[1:]
    ncols = width or 0
    columns: dict[str, list[str]] = {}
    for key in [*wanted, *optional]:
        if names is None:
            if not key.isdigit() or int(key) >= ncols:
                if not records or key in optional:
                    continue  # empty file: nothing to check against
                raise missing_column(source, key, None, ncols)
            pos = int(key)
        elif key in names:
            pos = column_position(source, key, names)
        elif key in optional:
            continue
        else:
            raise missing_column(source, key, names, ncols)
        columns[key] = [r[pos] for r in records]
    return names, columns, lines
