"""Replace each finding by ``<TYPE>`` (e.g. ``<EMAIL_ADDRESS>``) in a split's text columns,
keeping what depends on the texts consistent: a word list keeps its length (each word inside a
finding becomes ``<TYPE>``, so tags stay aligned) and its joined text is rebuilt; answer spans of a
redacted context are moved (and re-read from the redacted context)."""

from __future__ import annotations

import json
from functools import lru_cache

import pandas as pd
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

from tlflow.data.pii.fields import TextFields
from tlflow.data.pii.scan import Finding, Span, SplitScan


def placeholder(entity_type: str) -> str:
    return f"<{entity_type}>"


@lru_cache(maxsize=1)
def _anonymizer() -> AnonymizerEngine:
    return AnonymizerEngine()


def redact_text(text: str, spans: list[Span]) -> str:
    """`text` with each (merged, non-overlapping) span replaced by its placeholder (Presidio's
    anonymizer, ``replace`` operator)."""
    if not spans:
        return text
    results = [RecognizerResult(s.entity_type, s.start, s.end, s.score) for s in spans]
    operators = {s.entity_type: OperatorConfig("replace", {"new_value": placeholder(s.entity_type)}) for s in spans}
    return _anonymizer().anonymize(text, results, operators, merge_entities_with_spaces=False).text


def moved(position: int, spans: list[Span], *, end: bool) -> int:
    """Where character offset `position` of the original text lands in the redacted one; an offset
    inside a span moves to the placeholder's start (`end`=False) or end (`end`=True)."""
    shift = 0
    for s in spans:
        new_start = s.start + shift
        new_end = new_start + len(placeholder(s.entity_type))
        if position <= s.start:
            break
        if position < s.end:
            return new_end if end else new_start
        shift = new_end - s.end
    return position + shift


def redact_words(words: list[str], spans: list[Span]) -> list[str]:
    """Each word overlapping a span of ``" ".join(words)`` becomes the span's placeholder."""
    out, start = [], 0
    for word in words:
        end = start + len(word)
        hit = next((s for s in spans if s.start < end and start < s.end), None)
        out.append(placeholder(hit.entity_type) if hit else word)
        start = end + 1
    return out


def redact_frame(df: pd.DataFrame, scan: SplitScan, fields: TextFields) -> pd.DataFrame:
    """A copy of the split's frame with every finding of `scan` redacted (rows in the same order)."""
    df = df.reset_index(drop=True).copy()
    by_cell: dict[tuple[str, int, str], list[Span]] = {}
    for f in scan.findings:
        by_cell.setdefault((f.column, f.row, f.key), []).append(f.span)
    columns = {c: df[c].tolist() for c in {*fields.columns(), *(j for j, _ in fields.joined)} if c in df.columns}
    if fields.answers and all(c in df.columns for c in fields.answers):
        context, texts, starts = fields.answers
        columns[texts], columns[starts] = df[texts].tolist(), df[starts].tolist()
    for (column, row, key), spans in by_cell.items():
        if column in fields.texts:
            if fields.answers and column == fields.answers[0] and fields.answers[1] in columns:
                _move_answers(columns, row, columns[column][row], spans, fields.answers)
            columns[column][row] = redact_text(columns[column][row], spans)
        elif column in fields.words:
            columns[column][row] = redact_words([str(w) for w in columns[column][row]], spans)
        elif column in fields.json_objects:
            obj = json.loads(columns[column][row])
            obj[key] = redact_text(obj[key], spans)
            columns[column][row] = json.dumps(obj, ensure_ascii=False)
    for joined, words in fields.joined:
        if joined in columns and words in columns:
            columns[joined] = [" ".join(str(w) for w in ws) if ws is not None else None for ws in columns[words]]
    for column, values in columns.items():
        df[column] = pd.Series(values, index=df.index, dtype=object)
    return df


def _move_answers(columns: dict[str, list], row: int, context: str, spans: list[Span],
                  answers: tuple[str, str, str]) -> None:
    _, texts, starts = answers
    new_context = redact_text(context, spans)
    new_texts, new_starts = [], []
    for text, start in zip(list(columns[texts][row]), list(columns[starts][row])):
        start = int(start)
        a, b = moved(start, spans, end=False), moved(start + len(str(text)), spans, end=True)
        new_starts.append(a)
        new_texts.append(new_context[a:b])
    columns[texts][row], columns[starts][row] = new_texts, new_starts


__all__ = ["Finding", "moved", "placeholder", "redact_frame", "redact_text", "redact_words"]
