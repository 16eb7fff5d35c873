"""jsonl: one JSON object per line; the wanted keys as columns, each row with its line number."""

from __future__ import annotations

import json

from tlflow.data.formats.common import DataError, missing_column, to_str


def read_jsonl(
    text: str, source: str, wanted: list[str], optional: list[str]
) -> tuple[list[str], dict[str, list], list[int]]:
    """Columns by key (absent keys are missing values); `DataError` for bad JSON, a non-object
    line or a key of `wanted` that no object has."""
    objects: list[dict] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{source}: line {number}: invalid JSON: {err.msg} (column {err.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{source}: line {number}: expected a JSON object, got {type(obj).__name__}")
        objects.append(obj)
        lines.append(number)
    names = list(dict.fromkeys(k for obj in objects for k in obj))
    columns: dict[str, list] = {}
    for key in [*wanted, *optional]:
        if key not in names:
            if not objects or key in optional:
                continue
            raise missing_column(source, key, names, len(names))
        columns[key] = [to_str(obj.get(key)) for obj in objects]
    return names, columns, lines
