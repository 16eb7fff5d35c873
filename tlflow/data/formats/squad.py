"""Read SQuAD v1.1 JSON into a flat table of questions, and describe answers that do not fit their context.

The reader only checks structure (keys and their types): an answer that is not found in its context,
or a question without answers, is content for the validation suite to report, which it can do with
`answer_mismatch` as a derived column and ``source_file``/``source_row`` to point at the question.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tlflow.data.formats.common import DataError
from tlflow.data.formats.compression import read_text

#: Columns of the frame `read_squad_json` returns.
COLUMNS = ["id", "title", "question", "context", "answer_texts", "answer_starts", "source_file", "source_row"]

_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer"}


def read_squad_json(path: str | Path, encoding: str = "utf-8", compression: str = "auto") -> pd.DataFrame:
    """One row per question of a SQuAD-format JSON file, in file order.

    Columns: id, title, question, context, answer_texts (list[str]), answer_starts (list[int]),
    source_file (the path as given), source_row (1-based question number). Raises `DataError`
    (one line naming the file and the JSON location) for a missing file, undecodable bytes,
    invalid JSON and missing or ill-typed keys; a question with no answers gets empty lists.
    `compression` as in `read_bytes` (by extension under 'auto').
    """
    source = str(path)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{source}: file not found")
    text = read_text(path, source, encoding, compression)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{source}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None

    rows: list[dict[str, Any]] = []
    articles = _get(doc, "data", list, source, "top level")
    for a, article in enumerate(articles):
        where = f"data[{a}]"
        article = _expect(article, dict, source, where)
        title = _get(article, "title", str, source, where)
        for p, paragraph in enumerate(_get(article, "paragraphs", list, source, where)):
            where = f"data[{a}].paragraphs[{p}]"
            paragraph = _expect(paragraph, dict, source, where)
            context = _get(paragraph, "context", str, source, where)
            for q, qa in enumerate(_get(paragraph, "qas", list, source, where)):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                qa = _expect(qa, dict, source, where)
                qid = _get(qa, "id", str, source, where)
                question = _get(qa, "question", str, source, where)
                texts: list[str] = []
                starts: list[int] = []
                for n, answer in enumerate(_get(qa, "answers", list, source, where)):
                    at = f"{where}.answers[{n}]"
                    answer = _expect(answer, dict, source, at)
                    texts.append(_get(answer, "text", str, source, at))
                    starts.append(_get(answer, "answer_start", int, source, at))
                rows.append(
                    {
                        "id": qid,
                        "title": title,
                        "question": question,
                        "context": context,
                        "answer_texts": texts,
                        "answer_starts": starts,
                    }
                )
    return pd.DataFrame(
        {
            "id": pd.Series([r["id"] for r in rows], dtype=object),
            "title": pd.Series([r["title"] for r in rows], dtype=object),
            "question": pd.Series([r["question"] for r in rows], dtype=object),
            "context": pd.Series([r["context"] for r in rows], dtype=object),
            "answer_texts": pd.Series([r["answer_texts"] for r in rows], dtype=object),
            "answer_starts": pd.Series([r["answer_starts"] for r in rows], dtype=object),
            "source_file": pd.Series([source] * len(rows), dtype=object),
            "source_row": pd.Series(range(1, len(rows) + 1), dtype="int64"),
        },
        columns=COLUMNS,
    )


def answer_mismatch(context: str, texts: Sequence[str], starts: Sequence[int]) -> str | None:
    """None when there is at least one answer and every text sits in ``context`` at its start; else the first problem.

    Meant as a derived column for the validation suite: the message is one short line, e.g.
    ``answer 1 'Denver Broncos' not at char 177 (context there: 'Carolina Panth')``.
    """
    texts = list(texts)
    starts = list(starts)
    if len(texts) != len(starts):
        return f"answer_texts and answer_starts differ in length ({len(texts)} vs {len(starts)})"
    if not texts:
        return "no answers"
    for n, (text, start) in enumerate(zip(texts, starts), start=1):
        start = int(start)
        if start < 0 or start + len(text) > len(context):
            return f"answer {n} {_short(text)} not at char {start} (context has {len(context)} chars)"
        there = context[start : start + len(text)]
        if there != text:
            return f"answer {n} {_short(text)} not at char {start} (context there: {_short(there)})"
    return None


# --------------------------------------------------------------------------- helpers


def _expect(value: Any, kind: type, source: str, where: str) -> Any:
    """``value`` if it has type ``kind`` (bool is not an int here), else a `DataError` at ``where``."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = "null" if value is None else type(value).__name__
        raise DataError(f"{source}: {where}: expected {_TYPE_NAMES[kind]}, got {got}")
    return value


def _get(obj: Any, key: str, kind: type, source: str, where: str) -> Any:
    """``obj[key]`` checked to have type ``kind``; `DataError` naming ``where`` when missing or ill-typed."""
    if not isinstance(obj, dict):
        _expect(obj, dict, source, where)
    if key not in obj:
        raise DataError(f"{source}: {where}: missing '{key}'")
    location = key if where == "top level" else f"{where}.{key}"
    return _expect(obj[key], kind, source, location)


def _short(text: str, limit: int = 40) -> str:
    """Quoted, one-line and at most about ``limit`` characters, for messages."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)
