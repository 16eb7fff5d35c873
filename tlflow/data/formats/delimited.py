"""csv, tsv and delimited text: the wanted columns of a table, each row with its exact line number."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator

from tlflow.data.formats.common import DROP_HINT, BadLines, DataError, column_position, missing_column
from tlflow.data.formats.hints import header_hint, no_header_hint, separator_hint

#: Separator of each delimited format when the config gives none ('text' always needs one).
DEFAULT_SEPARATOR = {"csv": ",", "tsv": "\t"}
#: Longest field the csv module accepts (its default, 131,072 characters, would stop a long text
#: with "field larger than field limit" before the length check can name its file and row).
FIELD_LIMIT = 2**31 - 1
#: Rows per chunk of `iter_delimited`.
CHUNK_ROWS = 10_000


def read_delimited(
    text: str, source: str, fmt: str, separator: str | None, header: bool, wanted: list[str], optional: list[str],
    maxsplit: int | None = None, bad: BadLines | None = None,
) -> tuple[list[str] | None, dict[str, list], list[int]]:
    """Parse with the csv module (or, with `maxsplit`, by splitting each line at most that many
    times) so every row keeps its exact line number.

    Returns (column names or None without header, raw column key -> values, 1-based line of each
    row). Keys are column names, or 0-based indices as strings without a header. A line with another
    number of fields than the first raises `DataError` naming the likely fix, or is appended to
    `bad` as (line, reason) when `bad` is a list (``data.invalid_rows: drop``). A column of
    `wanted` that is absent raises `DataError`; one of `optional` is left out.
    """
    names, columns, lines = None, {}, []
    for chunk_names, part, rows in iter_delimited(text, source, fmt, separator, header, wanted, optional, maxsplit,
                                                  bad):
        names = chunk_names
        for key, values in part.items():
            columns.setdefault(key, []).extend(values)
        lines += rows
    return names, columns, lines


def iter_delimited(
    text: str, source: str, fmt: str, separator: str | None, header: bool, wanted: list[str], optional: list[str],
    maxsplit: int | None = None, bad: BadLines | None = None, chunk_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[list[str] | None, dict[str, list], list[int]]]:
    """`read_delimited` in chunks of at most `chunk_rows` rows: (names, columns, lines) of each, the
    same columns in every chunk; at least one chunk (with no rows for a file without any). Only the
    rows of one chunk are held at a time."""
    sep = separator or DEFAULT_SEPARATOR[fmt]
    records: list[list[str]] = []
    lines: list[int] = []
    width: int | None = None
    names: list[str] | None = None
    positions: dict[str, int] | None = None
    first: list[str] = []
    for line, record in _records(text, source, fmt, sep, maxsplit):
        if width is None:
            width, first = len(record), record
            if header:
                names = [n.strip() for n in record]
                continue
        elif len(record) != width:
            problem = f"expected {width} fields separated by {sep!r}, found {len(record)}"
            if bad is not None:
                bad.append((line, problem))
                continue
            hint = separator_hint(text, sep)
            if hint is None and len(record) > width and fmt != "csv" and maxsplit is None:
                hint = f"if the last column may hold {sep!r}: data.maxsplit: {width - 1}?"
            raise DataError(f"{source}: line {line}: {problem}; {hint or DROP_HINT}")
        records.append(record)
        lines.append(line)
        if len(records) >= chunk_rows:
            if positions is None:
                positions = _positions(text, source, sep, names, width, first, wanted, optional, True)
            yield names, {key: [r[pos] for r in records] for key, pos in positions.items()}, lines
            records, lines = [], []
    if positions is None:
        positions = _positions(text, source, sep, names, width or 0, first, wanted, optional, bool(records))
    elif not records:
        return
    yield names, {key: [r[pos] for r in records] for key, pos in positions.items()}, lines


def _positions(text: str, source: str, sep: str, names: list[str] | None, ncols: int, first: list[str],
               wanted: list[str], optional: list[str], has_rows: bool) -> dict[str, int]:
    """0-based position of each column of `wanted` and of those of `optional` the table has;
    `DataError` with the likely fix for a wanted one it lacks."""
    positions: dict[str, int] = {}
    for key in [*wanted, *optional]:
        if names is None:
            if not key.isdigit() or int(key) >= ncols:
                if not has_rows or key in optional:
                    continue  # empty file: nothing to check against
                hint = separator_hint(text, sep) if ncols == 1 else None
                raise missing_column(source, key, None, ncols, hint or no_header_hint(first, key))
            positions[key] = int(key)
        elif key in names:
            positions[key] = column_position(source, key, names)
        elif key in optional:
            continue
        else:
            hint = (separator_hint(text, sep) if ncols == 1 else None) or header_hint(names, key)
            raise missing_column(source, key, names, ncols, hint)
    return positions


def _records(text: str, source: str, fmt: str, sep: str, maxsplit: int | None) -> Iterator[tuple[int, list[str]]]:
    """(1-based line, fields) of each non-blank record; split without quoting for `maxsplit` and
    separators of several characters (the csv module takes one)."""
    if maxsplit is not None or len(sep) != 1:
        for number, line in enumerate(_split_lines(text), start=1):
            line = line.removesuffix("\r")
            if line:
                yield number, line.split(sep, -1 if maxsplit is None else maxsplit)
        return
    if csv.field_size_limit() < FIELD_LIMIT:
        csv.field_size_limit(FIELD_LIMIT)  # process-wide; only ever raised
    # GLUE tsv files contain unbalanced quotes: only csv honours quoting.
    quoting = csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE
    reader = csv.reader(_csv_lines(text), delimiter=sep, quoting=quoting, strict=True)
    start = 1  # line on which the next record starts
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if record:  # not a blank line
                yield line, record
    except csv.Error as err:
        raise DataError(f"{source}: line {reader.line_num}: {err}") from None


#: A line with its ending as ``io.StringIO(text, newline="")`` reads it (CR LF, CR or LF), or the last one.
_CSV_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _csv_lines(text: str) -> Iterator[str]:
    """The lines of `text` for the csv module, one at a time (a StringIO would copy the whole text
    at four bytes a character)."""
    return (match.group() for match in _CSV_LINE.finditer(text))


def _split_lines(text: str) -> Iterator[str]:
    """``text.split("\\n")``, one line at a time."""
    start = 0
    while (end := text.find("\n", start)) >= 0:
        yield text[start:end]
        start = end + 1
    yield text[start:]
