"""Lines whose fields are not cleanly delimited: each line matched by a regular expression, its
named groups the columns (e.g. ``(?P<label>[A-Z]+):(?P<fine>\\S+) (?P<text>.*)`` for
``DESC:manner How did serfdom develop ?``)."""

from __future__ import annotations

import re

from tlflow.config.loading import did_you_mean
from tlflow.data.formats.common import DROP_HINT, BadLines, DataError, excerpt, missing_column


def read_regex(
    text: str, source: str, pattern: str, wanted: list[str], optional: list[str], bad: BadLines | None = None
) -> tuple[list[str], dict[str, list], list[int]]:
    """Columns by group name, each non-blank line matched whole (`re.fullmatch`; a group that did
    not take part is missing). A line that does not match raises `DataError` naming it, or is
    appended to `bad` as (line, reason) when `bad` is a list; a column of `wanted` that is no group
    of the pattern raises `DataError`."""
    regex = re.compile(pattern)
    names = list(regex.groupindex)
    for key in wanted:
        if key not in names:
            hint = None if did_you_mean(key, names) else f"name a group of data.pattern (?P<{key}>...)"
            raise missing_column(source, key, names, len(names), hint)
    keys = [k for k in [*wanted, *optional] if k in names]
    columns: dict[str, list] = {k: [] for k in keys}
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        match = regex.fullmatch(line)
        if match is None:
            problem = "does not match data.pattern"
            if bad is None:
                raise DataError(f"{source}: line {number}: {problem}: {excerpt(line)!r}; {DROP_HINT}")
            bad.append((number, problem))
            continue
        for key in keys:
            columns[key].append(match.group(key))
        lines.append(number)
    return names, columns, lines
