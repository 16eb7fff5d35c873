"""csv, tsv and delimited text: the wanted columns of a table, each row with its exact line number."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from itertools import chain

from tlflow.data.formats.common import DROP_HINT, BadLines, DataError, column_position, missing_column
from tlflow.data.formats.hints import header_hint, no_header_hint, separator_hint

#: Separator of each delimited format when the config gives none ('text' always needs one).
DEFAULT_SEPARATOR = {"csv": ",", "tsv": "\t"}
#: Longest field the csv module accepts (its default, 131,072 characters, would stop a long text
#: with "field larger than field limit" before the length check can name its file and row).
FIELD_LIMIT = 2**31 - 1
#: Rows per chunk of `iter_delimited`.
CHUNK_ROWS = 10_000


def iter_delimited(
    text: str | Iterable[str], source: str, fmt: str, separator: str | None, header: bool, wanted: list[str],
    optional: list[str], maxsplit: int | None = None, bad: BadLines | None = None, chunk_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[list[str] | None, dict[str, list], list[int]]]:
    """Parse a text, or its pieces each ending at a line end (`compression.iter_text`), with the csv
    module (or, with `maxsplit`, by splitting each line at most that many times) so every row keeps
    its exact line number; only the rows of one chunk of at most `chunk_rows` are held at a time.

    Yields (column names or None without header, raw column key -> values, 1-based line of each
    row) per chunk, the same columns in every chunk; at least one chunk (with no rows for a file
    without any). Keys are column names, or 0-based indices as strings without a header. A line
    with another number of fields than the first raises `DataError` naming the likely fix, or is
    appended to `bad` as (line, reason) when `bad` is a list (``data.invalid_rows: drop``). A column
    of `wanted` that is absent raises `DataError`; one of `optional` is left out.
    """
    pieces = iter([text] if isinstance(text, str) else text)
    head = next(pieces, "")  # the first lines, for the hints of an error
    text = chain([head], pieces)
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
            hint = separator_hint(head, sep)
            if hint is None and len(record) > width and fmt != "csv" and maxsplit is None:
                hint = f"if the last column may hold {sep!r}: data.maxsplit: {width - 1}?"
            raise DataError(f"{source}: line {line}: {problem}; {hint or DROP_HINT}")
        records.append(record)
        lines.append(line)
        if len(records) >= chunk_rows:
            if positions is None:
                positions = _positions(head, source, sep, names, width, first, wanted, optional, True)
            yield names, {key: [r[pos] for r in records] for key, pos in positions.items()}, lines
            records, lines = [], []
    if positions is None:
        positions = _positions(head, source, sep, names, width or 0, first, wanted, optional, bool(records))
    elif not records:
        return
    yield names, {key: [r[pos] for r in records] for key, pos in positions.items()}, lines


def _positions(head: str, source: str, sep: str, names: list[str] | None, ncols: int, first: list[str],
               wanted: list[str], optional: list[str], has_rows: bool) -> dict[str, int]:
    """0-based position of each column of `wanted` and of those of `optional` the table has;
    `DataError` with the likely fix (from `head`, the first lines) for a wanted one it lacks."""
    positions: dict[str, int] = {}
    for key in [*wanted, *optional]:
        if names is None:
            if not key.isdigit() or int(key) >= ncols:
                if not has_rows or key in optional:
                    continue  # empty file: nothing to check against
                hint = separator_hint(head, sep) if ncols == 1 else None
                raise missing_column(source, key, None, ncols, hint or no_header_hint(first, key))
            positions[key] = int(key)
        elif key in names:
            positions[key] = column_position(source, key, names)
        elif key in optional:
            continue
        else:
            hint = (separator_hint(head, sep) if ncols == 1 else None) or header_hint(names, key)
            raise missing_column(source, key, names, ncols, hint)
    return positions


def _records(text: Iterable[str], source: str, fmt: str, sep: str, maxsplit: int | None) -> Iterator[tuple[int, list[str]]]:
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


def _csv_lines(pieces: Iterable[str]) -> Iterator[str]:
    """The lines of the text whose pieces (each ending at a line end) are `pieces`, one at a time,
    for the csv module: a StringIO per piece, not one of the whole text (which would hold it at
    four bytes a character)."""
    for piece in pieces:
        yield from io.StringIO(piece, newline="")


def _split_lines(pieces: Iterable[str]) -> Iterator[str]:
    """``"".join(pieces).split("\\n")``, one line at a time."""
    carry = ""
    for piece in pieces:
        lines = (carry + piece).split("\n")
        carry = lines.pop()
        yield from lines
    yield carry
