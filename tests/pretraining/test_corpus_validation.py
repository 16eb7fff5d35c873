"""Tests of tlflow.pretraining.corpus_validation: the Great Expectations suite on the pretraining corpus."""

from __future__ import annotations

import json
import logging
import random

import pandas as pd
import pytest
import transformers

from tlflow.config import CorpusConfig
from tlflow.data.validation.suite import CheckResult, ValidationReport
from tlflow.modeling.models import load_tokenizer
from tlflow.pretraining.corpus_validation import (
    CHECK_DOCUMENTS,
    CHECK_NON_ASCII_SHARE,
    CHECK_TEXT_NOT_BLANK,
    CHECK_TEXT_NOT_NULL,
    CHECK_TOKENS,
    CHECK_UNKNOWN_SHARE,
    FRAME_COLUMNS,
    build_corpus_suite,
    corpus_frame,
    validate_corpus,
)

pytestmark = [pytest.mark.unit]

HEALTHY = [
    ("wikitext2", "wt-0", ["The tower is on the hill .", "It was built in 1850 ."]),
    ("wikitext2", "wt-1", ["The river runs to the sea .", "Boats carry grain and wood ."]),
    ("gutenberg", "pg-7", ["It was a dark and stormy night .", "The café was closed ."]),
]
# Cherokee syllabary: the MiniLM (BERT uncased) vocabulary has none of these characters, so every
# word is one [UNK] ("." is known). (Tamil is only partly unknown to it: some letters are in.)
CHEROKEE = ["ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ ᏓᏂᎸᎢ ᎠᏂᏴᏫ .", "ᎣᏏᏲ ᏙᎯᏱ ᎠᏆᏚᎵ ᎦᏚ ."]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm-l6")


def check(report: ValidationReport, name: str) -> CheckResult:
    [found] = [c for c in report.checks if c.check == name]
    return found


def failed(report: ValidationReport) -> list[str]:
    return [c.check for c in report.failures()]


def counts_frame(n_tokens: list[int], n_unknown: list[int], **extra) -> pd.DataFrame:
    """A corpus frame with hand-set counts (one document per entry)."""
    n = len(n_tokens)
    data = {
        "doc_id": [f"d{i}" for i in range(n)],
        "source": ["wikitext2"] * n,
        "text": [f"document {i}" for i in range(n)],
        "n_tokens": n_tokens,
        "n_unknown": n_unknown,
        "n_non_ascii": [0] * n,
        "n_chars": [10] * n,
    }
    data.update(extra)
    return pd.DataFrame(data)


# --------------------------------------------------------------------------------------------------
# corpus_frame


def test_corpus_frame_counts(tokenizer):
    frame = corpus_frame(HEALTHY + [("task", "t-1", CHEROKEE)], tokenizer)
    assert tuple(frame.columns) == FRAME_COLUMNS
    assert list(frame["doc_id"]) == ["wt-0", "wt-1", "pg-7", "t-1"]
    assert list(frame["source"]) == ["wikitext2", "wikitext2", "gutenberg", "task"]
    assert frame.loc[0, "text"] == "The tower is on the hill . It was built in 1850 ."
    for text, n_tokens in zip(frame["text"], frame["n_tokens"]):
        assert n_tokens == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert list(frame["n_unknown"][:3]) == [0, 0, 0]
    assert frame.loc[3, "n_unknown"] == 8  # 4 + 4 Cherokee words
    assert frame.loc[3, "n_tokens"] == 10
    assert list(frame["n_chars"]) == [len(t) for t in frame["text"]]
    assert frame.loc[2, "n_non_ascii"] == 1  # é
    assert frame.loc[0, "n_non_ascii"] == 0
    assert frame["n_tokens"].dtype == "int64"


def test_corpus_frame_batches_and_long_documents_quietly(tokenizer, capfd):
    """Several tokenizer batches; a document longer than the model maximum is counted whole
    without the tokenizer's 'sequence length' warning."""
    long_doc = ["the cat sat on the mat ."] * 200  # ~1400 tokens > 512
    docs = [("wikitext2", f"wt-{i}", ["a short one ."]) for i in range(600)] + [("gutenberg", "long", long_doc)]
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    hf_logger = logging.getLogger("transformers")  # does not propagate: listen on it directly
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()  # the test session runs at "error" (runtime.apply_defaults)
    hf_logger.addHandler(handler)
    try:
        frame = corpus_frame(docs, tokenizer)
    finally:
        hf_logger.removeHandler(handler)
        transformers.logging.set_verbosity(level)
    assert [r.getMessage() for r in records] == []
    assert len(frame) == 601
    assert frame["n_tokens"].iloc[:600].tolist() == [4] * 600
    assert frame["n_tokens"].iloc[600] == 7 * 200
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_corpus_frame_empty_document(tokenizer):
    frame = corpus_frame([("task", "empty", [])], tokenizer)
    assert frame.loc[0, "text"] == ""
    assert (frame.loc[0, "n_tokens"], frame.loc[0, "n_chars"]) == (0, 0)


# --------------------------------------------------------------------------------------------------
# Suite


def test_build_corpus_suite_expectations():
    suite = build_corpus_suite(CorpusConfig(min_documents=3, max_unknown_fraction=0.1), 500)
    by_check = {e.meta["check"]: e for e in suite.expectations}
    assert set(by_check) == {CHECK_DOCUMENTS, CHECK_TEXT_NOT_NULL, CHECK_TEXT_NOT_BLANK, CHECK_TOKENS, CHECK_UNKNOWN_SHARE}
    assert by_check[CHECK_DOCUMENTS].expectation_type == "expect_table_row_count_to_be_between"
    assert by_check[CHECK_DOCUMENTS].min_value == 3
    assert by_check[CHECK_TOKENS].expectation_type == "expect_column_sum_to_be_between"
    assert by_check[CHECK_TOKENS].min_value == 500
    assert by_check[CHECK_UNKNOWN_SHARE].expectation_type == "expect_column_mean_to_be_between"
    assert by_check[CHECK_UNKNOWN_SHARE].max_value == pytest.approx(0.1)


def test_healthy_corpus_passes_with_numbers(tokenizer):
    frame = corpus_frame(HEALTHY, tokenizer)
    total = int(frame["n_tokens"].sum())
    chars = int(frame["n_chars"].sum())
    report = validate_corpus(frame, CorpusConfig(min_documents=3), min_tokens=total)
    assert report.success, report.summary()
    assert [c.split for c in report.checks] == ["corpus"] * 6
    assert check(report, CHECK_DOCUMENTS).observed == "3 documents; minimum 3"
    assert check(report, CHECK_TEXT_NOT_NULL).observed == "0 of 3 documents (0.0%)"
    assert check(report, CHECK_TEXT_NOT_BLANK).observed == "0 of 3 documents (0.0%)"
    assert check(report, CHECK_TOKENS).observed == f"{total} tokens in 3 documents; the budget needs {total}"
    assert check(report, CHECK_UNKNOWN_SHARE).observed == f"0 of {total} tokens are unknown (0.0%); maximum 10.0%"
    non_ascii = check(report, CHECK_NON_ASCII_SHARE)
    assert non_ascii.observed.startswith(f"1 of {chars} characters are non-ASCII (")
    assert non_ascii.examples[0]["file"] == "pg-7"
    assert report.class_balance == {"corpus": {"gutenberg": 1, "wikitext2": 2}}
    assert report.summary().startswith("all 6 checks passed on splits corpus")
    json.dumps(report.to_dict())


def test_empty_document_fails_naming_doc_id(tokenizer):
    docs = HEALTHY + [("task", "blank-doc", ["   "]), ("task", "no-sentences", [])]
    report = validate_corpus(corpus_frame(docs, tokenizer), CorpusConfig(), min_tokens=1)
    assert failed(report) == [CHECK_TEXT_NOT_BLANK]
    blank = check(report, CHECK_TEXT_NOT_BLANK)
    assert blank.observed == "2 of 5 documents (40.0%)"
    assert [ex["file"] for ex in blank.examples] == ["blank-doc", "no-sentences"]
    assert all(ex["row"] is None for ex in blank.examples)
    assert [ex["value"] for ex in blank.examples] == ["   ", ""]


def test_null_text_fails_naming_doc_id():
    frame = counts_frame([10, 10, 10], [0, 0, 0], text=["one", None, "three"])
    report = validate_corpus(frame, CorpusConfig(), min_tokens=1)
    assert failed(report) == [CHECK_TEXT_NOT_NULL]
    null = check(report, CHECK_TEXT_NOT_NULL)
    assert null.observed == "1 of 3 documents (33.3%)"
    assert null.examples == [{"file": "d1", "row": None, "value": None, "note": "source wikitext2"}]


def test_example_value_is_a_short_excerpt():
    frame = counts_frame([10, 10], [0, 0], text=["x" * 500, "\t" * 300])
    [ex] = check(validate_corpus(frame, CorpusConfig(), 1), CHECK_TEXT_NOT_BLANK).examples
    assert ex["file"] == "d1"
    assert len(ex["value"]) <= 81 and ex["value"].endswith("…")


def test_too_few_documents_fails(tokenizer):
    report = validate_corpus(corpus_frame(HEALTHY, tokenizer), CorpusConfig(min_documents=4), min_tokens=1)
    assert failed(report) == [CHECK_DOCUMENTS]
    assert check(report, CHECK_DOCUMENTS).observed == "3 documents; minimum 4"


def test_too_few_tokens_fails(tokenizer):
    frame = corpus_frame(HEALTHY, tokenizer)
    total = int(frame["n_tokens"].sum())
    report = validate_corpus(frame, CorpusConfig(), min_tokens=total + 1)
    assert failed(report) == [CHECK_TOKENS]
    assert check(report, CHECK_TOKENS).observed == f"{total} tokens in 3 documents; the budget needs {total + 1}"


def test_gibberish_corpus_fails_unknown_share(tokenizer):
    docs = [("task", f"chr-{i}", CHEROKEE) for i in range(3)] + HEALTHY[:1]
    frame = corpus_frame(docs, tokenizer)
    unknown, total = int(frame["n_unknown"].sum()), int(frame["n_tokens"].sum())
    assert unknown > total / 2
    report = validate_corpus(frame, CorpusConfig(), min_tokens=1)
    assert failed(report) == [CHECK_UNKNOWN_SHARE]
    unk = check(report, CHECK_UNKNOWN_SHARE)
    assert unk.observed == f"{unknown} of {total} tokens are unknown ({100 * unknown / total:.1f}%); maximum 10.0%"
    assert [ex["file"] for ex in unk.examples] == ["chr-0", "chr-1", "chr-2"]
    assert unk.examples[0]["value"].startswith("ᏣᎳᎩ")
    assert "8 of 10 tokens are unknown (80.0%)" in unk.examples[0]["note"]
    # The same corpus passes when the limit allows it.
    assert validate_corpus(frame, CorpusConfig(max_unknown_fraction=0.9), min_tokens=1).success


@pytest.mark.parametrize(
    ("n_unknown", "success"), [([5, 0], True), ([3, 3], False), ([0, 6], False), ([0, 0], True)]
)
def test_unknown_share_limit(n_unknown, success):
    report = validate_corpus(counts_frame([50, 50], n_unknown), CorpusConfig(max_unknown_fraction=0.05), 1)
    unk = check(report, CHECK_UNKNOWN_SHARE)
    assert unk.success is success
    assert unk.observed.startswith(f"{sum(n_unknown)} of 100 tokens are unknown ({sum(n_unknown)}.0%)")


def test_unknown_share_is_token_weighted():
    """The overall share, not the mean of per-document shares."""
    # One short all-[UNK] document among long clean ones: 10 of 1010 tokens (1%), per-document mean 50%.
    assert check(validate_corpus(counts_frame([1000, 10], [0, 10]), CorpusConfig(), 1), CHECK_UNKNOWN_SHARE).success
    # One long bad document among short clean ones: 200 of 1090 tokens (18%), per-document mean 2%.
    frame = counts_frame([1000] + [10] * 9, [200] + [0] * 9)
    unk = check(validate_corpus(frame, CorpusConfig(), 1), CHECK_UNKNOWN_SHARE)
    assert not unk.success
    assert unk.observed.startswith("200 of 1090 tokens are unknown (18.3%)")
    assert [ex["file"] for ex in unk.examples] == ["d0"]


def test_unknown_share_exactly_at_limit_passes():
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(2, 40)
        tokens = [rng.randint(20, 400) for _ in range(n)]
        tokens[0] += -sum(tokens) % 20  # total a multiple of 20: exactly 5% is a whole number of tokens
        unknown, left = [], sum(tokens) // 20
        for t in tokens:
            k = min(left, rng.randint(0, t // 10))
            unknown.append(k)
            left -= k
        unknown[-1] += left
        assert all(u <= t for u, t in zip(unknown, tokens))
        report = validate_corpus(counts_frame(tokens, unknown), CorpusConfig(max_unknown_fraction=0.05), 1)
        assert check(report, CHECK_UNKNOWN_SHARE).success, (tokens, unknown)


def test_no_tokens_fails_unknown_share_as_undefined():
    report = validate_corpus(counts_frame([0, 0], [0, 0]), CorpusConfig(), min_tokens=1)
    assert set(failed(report)) == {CHECK_TOKENS, CHECK_UNKNOWN_SHARE}
    assert check(report, CHECK_UNKNOWN_SHARE).observed.startswith("no tokens: unknown share undefined")


def test_empty_frame_fails_without_raising():
    report = validate_corpus(counts_frame([], []), CorpusConfig(), min_tokens=1)
    assert set(failed(report)) == {CHECK_DOCUMENTS, CHECK_TOKENS, CHECK_UNKNOWN_SHARE}
    assert check(report, CHECK_DOCUMENTS).observed == "0 documents; minimum 2"


def test_non_ascii_share_reported_never_fails():
    frame = counts_frame([10, 10], [0, 0], n_non_ascii=[10, 5], n_chars=[10, 10])
    report = validate_corpus(frame, CorpusConfig(), min_tokens=1)
    assert report.success
    non_ascii = check(report, CHECK_NON_ASCII_SHARE)
    assert non_ascii.success
    assert non_ascii.observed == "15 of 20 characters are non-ASCII (75.0%)"
    assert [ex["file"] for ex in non_ascii.examples] == ["d0", "d1"]
    assert "10 of 10 characters are non-ASCII (100.0%)" in non_ascii.examples[0]["note"]


def test_all_non_ascii_corpus_passes_when_tokenizer_knows_it(tokenizer):
    docs = [("task", f"ko-{i}", ["한국어 문장 입니다 ."]) for i in range(3)]
    report = validate_corpus(corpus_frame(docs, tokenizer), CorpusConfig(), min_tokens=1)
    assert report.success, report.summary()
    assert check(report, CHECK_NON_ASCII_SHARE).observed.startswith("24 of 36 characters are non-ASCII (66.7%)")


def test_summary_and_html_name_the_failed_check(tokenizer):
    docs = HEALTHY + [("task", "blank-doc", [" "])] + [("task", "chr-0", CHEROKEE)]
    report = validate_corpus(corpus_frame(docs, tokenizer), CorpusConfig(min_documents=10), min_tokens=10**6)
    assert set(failed(report)) == {CHECK_DOCUMENTS, CHECK_TEXT_NOT_BLANK, CHECK_TOKENS, CHECK_UNKNOWN_SHARE}
    summary = report.summary()
    assert summary.startswith("data validation failed: 4 of 6 checks failed")
    for name in failed(report):
        assert f"[corpus] {name}" in summary
    assert "blank-doc: ' '" in summary
    assert "chr-0: 'ᏣᎳᎩ" in summary
    assert "class balance corpus: gutenberg=1" in summary
    page = report.to_html()
    assert "FAILED" in page
    for name in (CHECK_TEXT_NOT_BLANK, CHECK_TOKENS, CHECK_UNKNOWN_SHARE, CHECK_DOCUMENTS, "blank-doc", "chr-0"):
        assert name in page
    assert report.to_dict()["num_failed"] == 4
    json.dumps(report.to_dict())


def test_missing_column_raises():
    with pytest.raises(ValueError, match="n_unknown"):
        validate_corpus(counts_frame([1], [0]).drop(columns="n_unknown"), CorpusConfig(), 1)


def test_quiet_on_700_documents(capfd):
    """~700 documents validate with nothing on stdout/stderr (validation speed is a bench/ matter)."""
    rng = random.Random(1)
    n = 700
    tokens = [rng.randint(50, 2000) for _ in range(n)]
    frame = counts_frame(tokens, [t // 100 for t in tokens], text=[f"document {i} " * 50 for i in range(n)])
    frame["source"] = [("wikitext2", "gutenberg", "task")[i % 3] for i in range(n)]
    capfd.readouterr()
    report = validate_corpus(frame, CorpusConfig(), min_tokens=1000)
    assert report.success, report.summary()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert report.class_balance == {"corpus": {"gutenberg": 233, "task": 233, "wikitext2": 234}}
