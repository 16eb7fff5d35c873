"""Find personal data in the text columns of every split (Presidio, offline: `engine`).

Every text of every split goes through one batched pass (`BatchAnalyzerEngine`, i.e. spaCy's
``nlp.pipe``); a text that occurs several times (a SQuAD context shared by its questions) is
analyzed once. Overlapping findings are merged into one span (the type of the most confident),
so redaction replaces each character at most once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pandas as pd

from tlflow.data.pii.fields import TextFields

BATCH_SIZE = 256


@dataclass(frozen=True)
class Span:
    """One finding in one text: characters [start, end) are an `entity_type`."""

    entity_type: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Finding:
    """A span found in one row's column (`key`: the field of a JSON-object column, else '')."""

    row: int  # 0-based position in the split
    column: str
    key: str
    span: Span


@dataclass
class SplitScan:
    rows: int
    findings: list[Finding] = field(default_factory=list)
    #: row position -> "file:line" for the rows with findings (the fail message names them).
    locations: dict[int, str] = field(default_factory=dict)

    def by_row(self) -> dict[int, list[Finding]]:
        out: dict[int, list[Finding]] = {}
        for f in self.findings:
            out.setdefault(f.row, []).append(f)
        return out


@dataclass
class PiiScan:
    """The findings of every split, and what was asked for."""

    entities: list[str]
    min_score: float
    splits: dict[str, SplitScan]


def texts_of(df: pd.DataFrame, fields: TextFields) -> Iterator[tuple[int, str, str, str]]:
    """(row, column, key, text) for every non-blank text of `fields` in `df` (word lists joined by
    spaces, JSON objects one text per string value)."""
    for column in fields.texts:
        if column in df.columns:
            for row, value in enumerate(df[column].tolist()):
                if isinstance(value, str) and value.strip():
                    yield row, column, "", value
    for column in fields.words:
        if column in df.columns:
            for row, words in enumerate(df[column].tolist()):
                if words is not None and len(words):
                    yield row, column, "", " ".join(str(w) for w in words)
    for column in fields.json_objects:
        if column in df.columns:
            for row, value in enumerate(df[column].tolist()):
                for key, text in _json_strings(value):
                    yield row, column, key, text


def _json_strings(value: object) -> list[tuple[str, str]]:
    if not isinstance(value, str) or not value.strip():
        return []
    try:
        obj = json.loads(value)
    except ValueError:
        return []
    if not isinstance(obj, dict):
        return []
    return [(str(k), v) for k, v in obj.items() if isinstance(v, str) and v.strip()]


def analyze(texts: list[str], entities: list[str], min_score: float) -> dict[str, list[Span]]:
    """Distinct text -> its merged, non-overlapping spans (only texts with findings)."""
    unique = list(dict.fromkeys(texts))
    if not unique or not entities:
        return {}
    from presidio_analyzer import BatchAnalyzerEngine  # Presidio and spaCy: seconds of imports, only when scanning

    from tlflow.data.pii import engine

    batch = BatchAnalyzerEngine(engine.analyzer(engine.needs_ner(entities)))
    results = batch.analyze_iterator(unique, language=engine.LANGUAGE, batch_size=BATCH_SIZE,
                                     entities=list(entities), score_threshold=min_score)
    out = {}
    for text, found in zip(unique, results):
        spans = merge_spans([Span(r.entity_type, r.start, r.end, r.score) for r in found if r.score >= min_score])
        if spans:
            out[text] = spans
    return out


def merge_spans(spans: list[Span]) -> list[Span]:
    """Overlapping spans become one (the union, typed by the most confident); sorted by start."""
    merged: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and s.start < merged[-1].end:
            last = merged[-1]
            best = last if last.score >= s.score else s
            merged[-1] = Span(best.entity_type, last.start, max(last.end, s.end), max(last.score, s.score))
        else:
            merged.append(s)
    return merged


def scan_splits(frames: Mapping[str, pd.DataFrame], fields: TextFields, entities: list[str],
                min_score: float) -> PiiScan:
    """Scan the `fields` of every split (frames with ``source_file``/``source_row``)."""
    units = {split: list(texts_of(df.reset_index(drop=True), fields)) for split, df in frames.items()}
    spans = analyze([u[3] for us in units.values() for u in us], entities, min_score)
    out = {}
    for split, df in frames.items():
        scan = SplitScan(rows=len(df))
        for row, column, key, text in units[split]:
            scan.findings.extend(Finding(row, column, key, s) for s in spans.get(text, ()))
        files = df["source_file"].tolist() if "source_file" in df.columns else [split] * len(df)
        lines = df["source_row"].tolist() if "source_row" in df.columns else range(1, len(df) + 1)
        for row in scan.by_row():
            scan.locations[row] = f"{files[row]}:{int(lines[row])}"
        out[split] = scan
    return PiiScan(entities=list(entities), min_score=min_score, splits=out)
