"""jsonl: one JSON object per line; the wanted keys as columns, each row with its line number."""

from __future__ import annotations

import json

from tlflow.data.formats.common import DROP_HINT, BadLines, DataError, excerpt, missing_column, to_str


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    repeated = next((k for k in keys if keys.count(k) > 1), None)
    if repeated is not None:  # json.loads would keep the last value silently
        raise ValueError(f"key '{excerpt(repeated)}' appears more than once in the object")
    return dict(pairs)


def read_jsonl(
    text: str, source: str, wanted: list[str], optional: list[str], bad: BadLines | None = None
) -> tuple[list[str], dict[str, list], list[int]]:
    """Columns by key (absent keys are missing values); `DataError` for bad JSON, a non-object
    line (both appended to `bad` as (line, reason) instead when it is a list) or a key of `wanted`
    that no object has."""
    objects: list[dict] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
            problem = None if isinstance(obj, dict) else f"expected a JSON object, got {type(obj).__name__}"
        except json.JSONDecodeError as err:
            problem = f"invalid JSON: {err.msg} (column {err.colno})"
        except ValueError as err:
            problem = str(err)
        if problem is not None:
            if bad is None:
                raise DataError(f"{source}: line {number}: {problem}; {DROP_HINT}")
            bad.append((number, problem))
            continue
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
