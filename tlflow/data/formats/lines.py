"""One example per line (``data.class_files``: a file per label, e.g. ``reviews.pos``)."""

from __future__ import annotations


def read_lines(text: str) -> tuple[list[str], list[int]]:
    """The lines of a text (line ends and a trailing CR removed) and their 1-based numbers; empty
    lines are no examples and are skipped, lines of only spaces are kept (a blank text)."""
    values: list[str] = []
    numbers: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line:
            values.append(line)
            numbers.append(number)
    return values, numbers
