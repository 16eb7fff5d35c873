"""Data-quality checks on the pretraining corpus (Great Expectations 1.x).

``corpus_frame`` turns the corpus reader's documents into a pandas frame with one row per document
(``doc_id``, ``source``, ``text`` and the counts ``n_tokens``, ``n_unknown``, ``n_non_ascii``,
``n_chars``); ``validate_corpus`` runs one GE suite (``build_corpus_suite``) on it with a single
``batch.validate`` call in a quiet ephemeral GE context and returns a ``ValidationReport`` of
``tlflow.data.validation.suite``: every check has split ``"corpus"``, offending documents are named by
``doc_id`` (``{"file": doc_id, "row": None, "value": excerpt}``), and ``class_balance`` holds the
documents per source (``{"corpus": {source: n_docs}}``).

Decodable text is not checked here: the corpus reader raises on undecodable bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from tlflow.config import CorpusConfig
from tlflow.data.validation.suite import BLANK_REGEX, CheckResult, ValidationReport, exception_message, pct, quiet_gx

if TYPE_CHECKING:
    import great_expectations as gx

CORPUS_SPLIT = "corpus"
FRAME_COLUMNS = ("doc_id", "source", "text", "n_tokens", "n_unknown", "n_non_ascii", "n_chars")

# Check names (CheckResult.check). Stable: the numbers live in `observed`.
CHECK_DOCUMENTS = "enough documents"
CHECK_TEXT_NOT_NULL = "document text not null"
CHECK_TEXT_NOT_BLANK = "document text not blank"
CHECK_TOKENS = "enough tokens for the budget"
CHECK_UNKNOWN_SHARE = "unknown-token share within limit"
CHECK_NON_ASCII_SHARE = "non-ASCII share (report only)"

EXAMPLES_PER_FAILURE = 5
TOKENIZE_BATCH = 256
_EXCERPT_CHARS = 80
_POS = "_pos"  # 0-based position in the validated frame, reported by GE for every unexpected row
_UNK_WEIGHTED = "unk_weighted"  # n_unknown / mean(n_tokens): its mean is the corpus-wide [UNK] share
# GE's mean of unk_weighted can exceed sum(n_unknown) / sum(n_tokens) by a few float ulps, which
# would fail a corpus sitting exactly at the limit; the bound is widened by this (absolute) amount.
_SHARE_TOLERANCE = 1e-9


# --------------------------------------------------------------------------------------------------
# Frame


def corpus_frame(docs: Sequence[tuple[str, str, list[str]]], tokenizer: Any) -> pd.DataFrame:
    """One row per document of ``docs`` (``(source, doc_id, sentences)``), with the counts the
    suite checks.

    ``text`` is the sentences joined with " "; ``n_tokens``/``n_unknown`` come from the fast
    ``tokenizer`` in batches of ``TOKENIZE_BATCH`` documents, without special tokens or truncation
    (``n_unknown`` counts ids equal to ``tokenizer.unk_token_id``; 0 when it has none);
    ``n_non_ascii``/``n_chars`` count characters (code points) of ``text``.
    """
    texts = [" ".join(sentences) for _, _, sentences in docs]
    n_tokens, n_unknown = _token_counts(texts, tokenizer)
    return pd.DataFrame(
        {
            "doc_id": pd.Series([str(d[1]) for d in docs], dtype=object),
            "source": pd.Series([str(d[0]) for d in docs], dtype=object),
            "text": pd.Series(texts, dtype=object),
            "n_tokens": pd.Series(n_tokens, dtype="int64"),
            "n_unknown": pd.Series(n_unknown, dtype="int64"),
            "n_non_ascii": pd.Series([len(t) - len(t.encode("ascii", "ignore")) for t in texts], dtype="int64"),
            "n_chars": pd.Series([len(t) for t in texts], dtype="int64"),
        }
    )


def _token_counts(texts: list[str], tokenizer: Any) -> tuple[list[int], list[int]]:
    """Tokens and [UNK] tokens per text. ``verbose=False`` silences the "longer than the maximum
    sequence length" warning: documents are counted whole, never fed to a model as they are."""
    unk_id = tokenizer.unk_token_id
    n_tokens: list[int] = []
    n_unknown: list[int] = []
    for start in range(0, len(texts), TOKENIZE_BATCH):
        ids = tokenizer(
            texts[start : start + TOKENIZE_BATCH],
            add_special_tokens=False,
            truncation=False,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )["input_ids"]
        n_tokens.extend(len(row) for row in ids)
        n_unknown.extend(0 if unk_id is None else row.count(unk_id) for row in ids)
    return n_tokens, n_unknown


# --------------------------------------------------------------------------------------------------
# Suite


def build_corpus_suite(cfg: CorpusConfig, min_tokens: int) -> gx.ExpectationSuite:
    """The GE suite of the corpus. Each expectation carries ``meta={"check": <name>}``; it expects
    the derived column ``unk_weighted`` that ``validate_corpus`` adds.

    The [UNK] share must be the corpus-wide one, sum(n_unknown) / sum(n_tokens), not the mean of
    per-document shares (that would let a few long gibberish documents hide among many short clean
    ones). GE 1.24 has no expectation on a ratio of two column sums, so ``validate_corpus`` adds
    ``unk_weighted = n_unknown / mean(n_tokens)``, whose mean is exactly that ratio (up to float
    rounding, hence ``_SHARE_TOLERANCE``), and GE checks its mean with ``ExpectColumnMeanToBeBetween``:
    GE does the aggregation over all documents and reports the share as its observed value.
    """
    import great_expectations as gx  # seconds of imports: only where a corpus is validated

    E = gx.expectations
    expectations: list[Any] = []

    def add(expectation: Any, check: str) -> None:
        expectation.meta = {"check": check}
        expectations.append(expectation)

    add(E.ExpectTableRowCountToBeBetween(min_value=cfg.min_documents), CHECK_DOCUMENTS)
    add(E.ExpectColumnValuesToNotBeNull(column="text"), CHECK_TEXT_NOT_NULL)
    add(E.ExpectColumnValuesToNotMatchRegex(column="text", regex=BLANK_REGEX), CHECK_TEXT_NOT_BLANK)
    add(E.ExpectColumnSumToBeBetween(column="n_tokens", min_value=min_tokens), CHECK_TOKENS)
    add(
        E.ExpectColumnMeanToBeBetween(column=_UNK_WEIGHTED, max_value=cfg.max_unknown_fraction + _SHARE_TOLERANCE),
        CHECK_UNKNOWN_SHARE,
    )
    # The non-ASCII share is report-only: GE has no expectation that only observes, and a vacuous
    # bound would be a check that cannot fail, so validate_corpus computes it in pandas.
    return gx.ExpectationSuite(name="tlflow-corpus", expectations=expectations)


# --------------------------------------------------------------------------------------------------
# Validation


def validate_corpus(
    frame: pd.DataFrame, cfg: CorpusConfig, min_tokens: int, *, max_examples: int = EXAMPLES_PER_FAILURE
) -> ValidationReport:
    """Run the corpus suite on ``frame`` (from ``corpus_frame``, or any frame with its columns) and
    collect the report. Never raises on bad data; raises ``ValueError`` when a column is missing.

    Args:
        frame: one row per document, columns ``FRAME_COLUMNS``.
        cfg: corpus section of the config (``min_documents``, ``max_unknown_fraction``).
        min_tokens: tokens the pretraining budget needs (e.g. steps x batch x sequence length).
        max_examples: offending documents listed per failed check.
    """
    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"corpus frame lacks columns {', '.join(missing)} (build it with corpus_frame)")
    df = _prepare_frame(frame)
    suite = build_corpus_suite(cfg, min_tokens)
    with quiet_gx() as context:
        batch = (
            context.data_sources.add_pandas("tlflow-corpus")
            .add_dataframe_asset(CORPUS_SPLIT)
            .add_batch_definition_whole_dataframe("whole")
            .get_batch(batch_parameters={"dataframe": df})
        )
        result = batch.validate(
            suite,
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": max_examples,
                "unexpected_index_column_names": ["doc_id", _POS],
                "return_unexpected_index_query": False,
            },
        )
    by_check = {r.expectation_config.meta["check"]: r for r in result.results}
    checks = [
        _to_check(exp, by_check[exp.meta["check"]], df, cfg, min_tokens, max_examples)
        for exp in suite.expectations  # suite order; GE returns results in its own order
    ]
    checks.append(_non_ascii_check(df, max_examples))
    counts = df["source"].astype(str).value_counts(sort=False)
    balance = {CORPUS_SPLIT: {str(s): int(n) for s, n in sorted(counts.items())}}
    return ValidationReport(success=all(c.success for c in checks), checks=checks, class_balance=balance)


def _prepare_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with the position column and ``unk_weighted`` (missing counts read as 0). With no
    tokens at all the share is undefined: ``unk_weighted`` is all null, GE observes no mean and
    the check fails, as it does on a frame without rows."""
    df = frame.reset_index(drop=True).copy()
    df[_POS] = range(len(df))
    for col in ("n_tokens", "n_unknown", "n_non_ascii", "n_chars"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    mean_tokens = float(df["n_tokens"].fillna(0).mean()) if len(df) else 0.0
    unknown = df["n_unknown"].fillna(0).astype("float64")
    df[_UNK_WEIGHTED] = unknown / mean_tokens if mean_tokens > 0 else float("nan")
    return df


def _to_check(
    exp: Any, res: Any, df: pd.DataFrame, cfg: CorpusConfig, min_tokens: int, max_examples: int
) -> CheckResult:
    check, etype = exp.meta["check"], exp.expectation_type
    r = res.result or {}
    success = bool(res.success)
    examples: list[dict] = []
    error = exception_message(res.exception_info)
    if error is not None:
        return CheckResult(CORPUS_SPLIT, check, etype, False, f"error: {error}", [])
    if check == CHECK_DOCUMENTS:
        observed = f"{r.get('observed_value', len(df))} documents; minimum {cfg.min_documents}"
    elif check == CHECK_TOKENS:
        total = _int(r.get("observed_value"))
        observed = f"{total} tokens in {len(df)} documents; the budget needs {min_tokens}"
    elif check == CHECK_UNKNOWN_SHARE:
        unknown, total = int(df["n_unknown"].fillna(0).sum()), int(df["n_tokens"].fillna(0).sum())
        share = r.get("observed_value")
        limit = f"maximum {pct(cfg.max_unknown_fraction, 1.0)}"
        if share is None or not total:
            observed = f"no tokens: unknown share undefined; {limit}"
        else:
            observed = f"{unknown} of {total} tokens are unknown ({pct(float(share), 1.0)}); {limit}"
        if not success:
            examples = _top_documents(df, "n_unknown", "n_tokens", "tokens are unknown", max_examples)
    else:  # null / blank text
        n, total = int(r.get("unexpected_count") or 0), int(r.get("element_count") or len(df))
        observed = f"{n} of {total} documents ({pct(n, total)})"
        for idx in (r.get("partial_unexpected_index_list") or [])[:max_examples]:
            row = df.iloc[int(idx[_POS])]
            examples.append(_example(row))
    return CheckResult(CORPUS_SPLIT, check, etype, success, observed, examples)


def _non_ascii_check(df: pd.DataFrame, max_examples: int) -> CheckResult:
    """Report-only (see build_corpus_suite): always passes; the examples are the documents with
    the largest non-ASCII share."""
    n, total = int(df["n_non_ascii"].fillna(0).sum()), int(df["n_chars"].fillna(0).sum())
    observed = f"{n} of {total} characters are non-ASCII ({pct(n, total)})"
    examples = _top_documents(df, "n_non_ascii", "n_chars", "characters are non-ASCII", max_examples)
    return CheckResult(CORPUS_SPLIT, CHECK_NON_ASCII_SHARE, "", True, observed, examples)


def _top_documents(df: pd.DataFrame, part: str, whole: str, what: str, limit: int) -> list[dict]:
    """Up to ``limit`` documents with the largest ``part / whole`` share (``part`` > 0), largest
    counts first among equal shares."""
    counts = df[[part, whole]].fillna(0)
    hit = counts[counts[part] > 0]
    if hit.empty or limit <= 0:
        return []
    share = hit[part] / hit[whole].where(hit[whole] > 0, 1)
    order = pd.DataFrame({"share": share, "n": hit[part]}).sort_values(["share", "n"], ascending=False)
    out = []
    for i in order.index[:limit]:
        p, w = int(counts.at[i, part]), int(counts.at[i, whole])
        out.append(_example(df.loc[i], f"{p} of {w} {what} ({pct(p, w)})"))
    return out


def _example(row: pd.Series, note: str | None = None) -> dict:
    """A document as a report example: ``{"file": doc_id, "row": None, "value": excerpt}``."""
    example = {"file": str(row["doc_id"]), "row": None, "value": _excerpt(row["text"])}
    source = row["source"]
    example["note"] = f"source {source}" + (f"; {note}" if note else "")
    return example


def _excerpt(text: Any) -> str | None:
    """The first ``_EXCERPT_CHARS`` characters of a text (None for a missing one)."""
    if not isinstance(text, str):
        return None
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"


def _int(value: Any) -> int:
    """A GE observed value as an int (0 when GE reports none, e.g. the sum of no documents)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
