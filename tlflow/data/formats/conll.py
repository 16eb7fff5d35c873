"""Read CoNLL-style token-per-line files (e.g. CoNLL-2003) into one row per sentence.

A file holds one token per line, its fields separated by whitespace (or ``separator``); a blank
line ends a sentence and ``-DOCSTART-`` lines mark document boundaries. Each sentence becomes a
row with ``tokens``, ``tags``, ``text`` (tokens joined by single spaces), ``source_file`` and
``source_row`` (1-based line of its first token), so the validation suite can point at the raw line.

Reading never judges the tags (invalid IOB2, unknown types): the validation suite reports those.
Files that cannot be read at all raise `DataError` with a one-line message naming file and line.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tlflow.data.formats.common import DataError
from tlflow.data.formats.compression import read_text

#: Columns of the frame `read_conll` returns.
COLUMNS = ["tokens", "tags", "text", "source_file", "source_row"]
DOCSTART = "-DOCSTART-"


def read_conll(
    path: str | Path,
    encoding: str = "utf-8",
    token_index: int = 0,
    tag_index: int = -1,
    separator: str | None = None,
    compression: str = "auto",
) -> pd.DataFrame:
    """Read one CoNLL file into a DataFrame with the columns tokens, tags, text, source_file, source_row.

    Args:
        path: the file; ``source_file`` holds it as given.
        encoding: text encoding; a UTF-8 byte-order mark is dropped either way and CRLF line ends are accepted.
        token_index: field holding the word (negative counts from the end).
        tag_index: field holding the tag (negative counts from the end; -1 = last field, as in CoNLL-2003).
        separator: field separator; None splits on any run of whitespace.
        compression: 'auto' (by extension), 'none', 'gz', 'bz2', 'xz' or 'zip' (`read_bytes`).

    ``-DOCSTART-`` lines are skipped (and end a sentence that lacks its blank line); a last sentence
    without a trailing blank line is kept. An empty file gives an empty frame. Raises `DataError` for a
    missing file, undecodable bytes and a non-blank line with too few fields for the two indices.
    """
    source = str(path)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{source}: file not found")
    text = read_text(path, source, encoding, compression)

    needed = max(_fields_needed(token_index), _fields_needed(tag_index))
    sentences: list[tuple[list[str], list[str], int]] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0

    def close() -> None:
        nonlocal tokens, tags
        if tokens:
            sentences.append((tokens, tags, first_line))
        tokens, tags = [], []

    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            close()
            continue
        if line.split(None, 1)[0] == DOCSTART:
            close()
            continue
        fields = line.split(separator)
        if len(fields) < needed:
            raise DataError(f"{source}: line {number}: expected at least {needed} fields, found {len(fields)}")
        if not tokens:
            first_line = number
        tokens.append(fields[token_index])
        tags.append(fields[tag_index])
    close()

    return pd.DataFrame(
        {
            "tokens": pd.Series([s[0] for s in sentences], dtype=object),
            "tags": pd.Series([s[1] for s in sentences], dtype=object),
            "text": pd.Series([" ".join(s[0]) for s in sentences], dtype=object),
            "source_file": pd.Series([source] * len(sentences), dtype=object),
            "source_row": pd.Series([s[2] for s in sentences], dtype="int64"),
        },
        columns=COLUMNS,
    )


def _fields_needed(index: int) -> int:
    """How many fields a line needs for ``fields[index]`` to exist."""
    return index + 1 if index >= 0 else -index
