"""Named-entity building blocks against hand-worked examples: IOB2 checks, spans, sub-word alignment,
entity-level metrics and the CoNLL reader (real CoNLL-2003 test split and small crafted files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlflow.data.formats.common import DataError
from tlflow.data.formats.conll import read_conll
from tlflow.modeling.models import load_tokenizer
from tlflow.task_types.token_classification.iob import (
    align_labels,
    entity_metrics,
    entity_spans,
    iob2_error,
    word_predictions,
)

pytestmark = [pytest.mark.unit]

CONLL = Path(__file__).resolve().parents[2] / "data" / "conll2003"
WORDS = ["Johanson", "lives", "in", "Reykjavik"]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("minilm-l6")


# --------------------------------------------------------------------------- iob2_error


@pytest.mark.parametrize(
    "tags",
    [
        [],
        ["O", "O"],
        ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-LOC"],
        ["B-PER", "B-ORG", "I-ORG", "B-MISC"],
    ],
)
def test_iob2_error_valid(tags):
    assert iob2_error(tags) is None


@pytest.mark.parametrize(
    "tags, message",
    [
        (["O", "O", "I-PER"], "word 3: I-PER follows O"),
        (["I-LOC", "O"], "word 1: I-LOC starts the sentence"),
        (["B-PER", "I-LOC"], "word 2: I-LOC follows B-PER"),
        (["B-PER", "I-PER", "I-ORG"], "word 3: I-ORG follows I-PER"),
        (["O", "PER"], "word 2: malformed tag 'PER'"),
        (["B-"], "word 1: malformed tag 'B-'"),
        (["O", "E-PER"], "word 2: malformed tag 'E-PER'"),
        (["b-PER"], "word 1: malformed tag 'b-PER'"),
        (["O", ""], "word 2: malformed tag ''"),
        (["B-PER", "O", "I-PER", "XX"], "word 3: I-PER follows O"),  # the first problem only
    ],
)
def test_iob2_error_invalid(tags, message):
    assert iob2_error(tags) == message


# --------------------------------------------------------------------------- entity_spans


def test_entity_spans():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-LOC", "O", "B-MISC"]
    assert entity_spans(tags) == [("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 6), ("MISC", 8, 8)]
    assert entity_spans(["O", "O"]) == []
    assert entity_spans([]) == []


def test_entity_spans_rejects_invalid_sequence():
    with pytest.raises(ValueError, match="word 2: I-PER follows O"):
        entity_spans(["O", "I-PER"])


# --------------------------------------------------------------------------- align_labels / word_predictions


def test_align_labels_with_real_tokenizer(tok):
    enc = tok(WORDS, is_split_into_words=True)
    # [CLS] johan ##son lives in reykjavik [SEP]
    assert enc.tokens() == ["[CLS]", "johan", "##son", "lives", "in", "reykjavik", "[SEP]"]
    word_ids = enc.word_ids()
    assert word_ids == [None, 0, 0, 1, 2, 3, None]
    labels = [1, 0, 0, 5]  # B-PER O O B-LOC
    assert align_labels(word_ids, labels) == [-100, 1, -100, 0, 0, 5, -100]
    assert align_labels(word_ids, labels, label_all_subwords=True) == [-100, 1, 1, 0, 0, 5, -100]


def test_align_labels_repeated_word_ids_after_special_token():
    # A pair encoding: word 0 of the second sequence follows [SEP] and is a new word again.
    assert align_labels([None, 0, 1, 1, None, 0, 0, None], [3, 4]) == [-100, 3, 4, -100, -100, 3, -100, -100]


def test_word_predictions_first_subword(tok):
    word_ids = tok(WORDS, is_split_into_words=True).word_ids()
    preds = [9, 1, 7, 0, 0, 5, 9]  # 7 on '##son' must be ignored, 9 on specials too
    assert word_predictions(word_ids, preds, n_words=4, default=-1) == [1, 0, 0, 5]
    padded = np.array([9, 1, 7, 0, 0, 5, 9, 8, 8])  # longer than word_ids: padding
    assert word_predictions(word_ids, padded, n_words=4, default=-1) == [1, 0, 0, 5]


def test_word_predictions_truncated(tok):
    enc = tok(WORDS, is_split_into_words=True, truncation=True, max_length=5)
    word_ids = enc.word_ids()
    assert word_ids == [None, 0, 0, 1, None]  # [CLS] johan ##son lives [SEP]
    assert word_predictions(word_ids, np.array([9, 1, 7, 3, 9]), n_words=4, default=-1) == [1, 3, -1, -1]


def test_word_predictions_rejects_too_few_predictions():
    with pytest.raises(ValueError):
        word_predictions([None, 0, 1, None], [0, 0], n_words=2, default=0)


# --------------------------------------------------------------------------- entity_metrics


def test_entity_metrics_one_correct_one_spurious():
    # Gold: PER(0-1), LOC(3). Predicted: PER(0-1) correct, ORG(2) spurious, LOC missed.
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "B-ORG", "O"]]
    m = entity_metrics(gold, pred)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    assert m["f1_PER"] == pytest.approx(1.0)
    assert m["f1_LOC"] == pytest.approx(0.0)
    assert m["f1_ORG"] == pytest.approx(0.0)
    assert m["token_accuracy"] == pytest.approx(0.5)  # words 3 and 4 wrong


def test_entity_metrics_per_type_over_sentences():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O", "O", "B-PER"]]
    # 4 gold, 4 predicted, 3 correct: the ORG boundary is wrong (0-0 instead of 0-1).
    m = entity_metrics(gold, pred)
    assert set(m) == {"precision", "recall", "f1", "f1_LOC", "f1_ORG", "f1_PER", "token_accuracy"}
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    assert m["f1_PER"] == pytest.approx(1.0)
    assert m["f1_LOC"] == pytest.approx(1.0)
    assert m["f1_ORG"] == pytest.approx(0.0)
    assert m["token_accuracy"] == pytest.approx(8 / 9)


def test_entity_metrics_is_strict():
    # The lenient (conlleval) mode would read I-PER I-PER as a PER entity and count it correct.
    m = entity_metrics([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])
    assert (m["precision"], m["recall"], m["f1"], m["f1_PER"]) == (0.0, 0.0, 0.0, 0.0)
    assert m["token_accuracy"] == pytest.approx(2 / 3)


def test_entity_metrics_mismatched_lengths():
    with pytest.raises(ValueError, match="sentence 1: 2 gold tags but 3 predicted"):
        entity_metrics([["O"], ["O", "O"]], [["O"], ["O", "O", "O"]])
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        entity_metrics([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 0: malformed predicted tag 'PER'"):
        entity_metrics([["B-PER"]], [["PER"]])


# --------------------------------------------------------------------------- read_conll


@pytest.mark.needs_data
@pytest.mark.integration
def test_read_conll_real_test_split():
    path = str(CONLL / "test.txt")
    df = read_conll(path)
    assert list(df.columns) == ["tokens", "tags", "text", "source_file", "source_row"]
    assert len(df) == 3453
    first = df.iloc[0]
    assert first["tokens"] == ["SOCCER", "-", "JAPAN", "GET", "LUCKY", "WIN", ",", "CHINA", "IN", "SURPRISE", "DEFEAT", "."]
    assert first["tags"] == ["O", "O", "B-LOC", "O", "O", "O", "O", "B-PER", "O", "O", "O", "O"]
    assert first["text"] == "SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT ."
    assert first["source_file"] == path
    assert first["source_row"] == 3  # line 1 is -DOCSTART-, line 2 blank
    assert df.iloc[1]["tokens"] == ["Nadim", "Ladki"] and df.iloc[1]["source_row"] == 16
    assert df["source_row"].dtype == "int64"
    assert all(len(t) == len(g) for t, g in zip(df["tokens"], df["tags"]))
    assert not any(t == "-DOCSTART-" for tokens in df["tokens"] for t in tokens)


def test_read_conll_docstart_and_last_sentence(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text(
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
        "  \n"  # whitespace-only counts as blank
        "-DOCSTART- -X- -X- O\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP B-NP I-PER",  # no trailing newline
        encoding="utf-8",
    )
    df = read_conll(path)
    assert df["tokens"].tolist() == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert df["tags"].tolist() == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert df["text"].tolist() == ["EU rejects", "Peter Blackburn"]
    assert df["source_row"].tolist() == [3, 8]
    assert df["source_file"].tolist() == [str(path), str(path)]


def test_read_conll_docstart_without_blank_line_ends_sentence(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("EU NNP B-NP B-ORG\n-DOCSTART- -X- -X- O\nPeter NNP B-NP B-PER\n", encoding="utf-8")
    assert read_conll(path)["tokens"].tolist() == [["EU"], ["Peter"]]


@pytest.mark.parametrize("separator", [None, " "])
def test_read_conll_crlf_and_bom(tmp_path, separator):
    path = tmp_path / "x.txt"
    path.write_bytes(b"\xef\xbb\xbfEU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\r\n\r\nPeter NNP B-NP B-PER\r\n\r\n")
    df = read_conll(path, separator=separator)
    assert df["tokens"].tolist() == [["EU", "rejects"], ["Peter"]]
    assert df["tags"].tolist() == [["B-ORG", "O"], ["B-PER"]]
    assert df["source_row"].tolist() == [1, 4]


def test_read_conll_indices_and_separator(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("B-LOC\tNew York\tNNP\nO\tis\tVBZ\n", encoding="utf-8")
    df = read_conll(path, token_index=1, tag_index=0, separator="\t")
    assert df.iloc[0]["tokens"] == ["New York", "is"]
    assert df.iloc[0]["tags"] == ["B-LOC", "O"]
    assert df.iloc[0]["text"] == "New York is"


def test_read_conll_short_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("EU NNP B-NP B-ORG\n\nrejects\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_conll(path, token_index=0, tag_index=3)
    assert str(err.value) == f"{path}: line 3: expected at least 4 fields, found 1"
    # The default tag_index=-1 only needs one field; the tag's validity is the suite's business.
    assert read_conll(path)["tags"].tolist() == [["B-ORG"], ["rejects"]]


def test_read_conll_unreadable(tmp_path):
    with pytest.raises(DataError, match="missing.txt: file not found"):
        read_conll(tmp_path / "missing.txt")
    path = tmp_path / "x.txt"
    path.write_bytes(b"EU NNP B-NP B-ORG\n\nbad\xff NN O O\n")
    with pytest.raises(DataError, match=r"x\.txt: cannot decode as utf-8 at byte 22 \(line 3\)") as err:
        read_conll(path)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)


def test_read_conll_empty_file(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\n", encoding="utf-8")
    df = read_conll(path)
    assert len(df) == 0
    assert list(df.columns) == ["tokens", "tags", "text", "source_file", "source_row"]
