"""Tests of the extractive-QA building blocks: SQuAD reading, sliding windows, span selection, SQuAD metrics.

Expected values are worked out by hand (window counts, token positions, scores), not recomputed
with the code under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tlflow.data.formats.common import DataError
from tlflow.data.formats.squad import COLUMNS, answer_mismatch, read_squad_json
from tlflow.task_types.question_answering.qa_windows import (
    Answer,
    postprocess_predictions,
    prepare_eval_features,
    prepare_train_features,
)
from tlflow.task_types.question_answering.squad_metrics import exact_match, f1, normalize_answer, squad_scores

pytestmark = [pytest.mark.unit]

SQUAD_DEV = Path(__file__).resolve().parents[2] / "data" / "squad" / "dev-v1.1.json"

# 13 context tokens, one word each: the(0) quick(1) brown(2) fox(3) jumps(4) over(5) the(6) lazy(7) dog(8)
# near(9) the(10) river(11) bank(12). The question is 3 tokens: what jumps ?
CONTEXT = "the quick brown fox jumps over the lazy dog near the river bank"
QUESTION = "what jumps?"


@pytest.fixture(scope="module")
def tok():
    from tlflow.modeling.models import load_tokenizer

    return load_tokenizer("minilm-l6")


def squad_doc(qa: dict | None = None, context: str = "Denver won.") -> dict:
    if qa is None:
        qa = {"id": "q1", "question": "Who won?", "answers": [{"text": "Denver", "answer_start": 0}]}
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": context, "qas": [qa]}]}]}


def write_json(path: Path, doc) -> str:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- squad_metrics


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("The  Denver Broncos!", "denver broncos"),
        ("  a Cat, an apple; THE end. ", "cat apple end"),
        ("theory of Anna", "theory of anna"),  # articles only as whole words
        ("Broncos'", "broncos"),
        ("24–10", "24–10"),  # the en dash is not ASCII punctuation: kept, as in the official script
        ("", ""),
    ],
)
def test_normalize_answer(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_exact_match_pairs():
    assert exact_match("The Denver Broncos", "denver broncos!") == 1.0
    assert exact_match("Denver", "Denver Broncos") == 0.0
    assert exact_match("", "") == 1.0


def test_f1_hand_computed():
    # pred {cat, sat}, truth {cat, sat, down}: P = 2/2, R = 2/3, F1 = 2*1*(2/3)/(1+2/3) = 0.8
    assert f1("the cat sat", "cat sat down") == pytest.approx(0.8)
    # pred {denver}, truth {denver, broncos}: P = 1, R = 1/2, F1 = 2/3
    assert f1("Denver", "the Denver Broncos") == pytest.approx(2 / 3)
    # repeated tokens: 'b b c' vs 'b c c' share {b: 1, c: 1} = 2 tokens, P = R = 2/3, F1 = 2/3
    assert f1("b b c", "b c c") == pytest.approx(2 / 3)
    assert f1("Carolina Panthers", "Denver Broncos") == 0.0
    assert f1("the", "a") == 0.0  # both normalise to nothing: no common token, 0 as in the official script


def test_squad_scores_takes_max_over_gold_and_mean_over_examples():
    predictions = ["Denver", "cat sat", "nothing"]
    gold = [
        ["Denver Broncos", "Denver"],  # EM 1, F1 1 (second gold)
        ["the cat sat down", "a dog"],  # EM 0, F1 0.8 (first gold)
        ["something"],  # EM 0, F1 0
    ]
    scores = squad_scores(predictions, gold)
    assert set(scores) == {"exact_match", "f1"}
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((1 + 0.8 + 0) / 3)


def test_squad_scores_errors():
    with pytest.raises(ValueError, match="differ in length"):
        squad_scores(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="no examples"):
        squad_scores([], [])
    with pytest.raises(ValueError, match="no gold"):
        squad_scores(["a"], [[]])


# --------------------------------------------------------------------------- windows


def test_train_windows_hand_worked(tok):
    # max_length 12 = [CLS] + 3 question tokens + [SEP] + 6 context tokens + [SEP]; stride 2 -> windows
    # start at context tokens 0, 4, 8: [0..5], [4..9], [8..12] (the last reaches the end) = 3 windows.
    # 'lazy dog' = context tokens 7..8 -> only inside window 1, at 5 + (7 - 4) = 8 and 9.
    start = CONTEXT.index("lazy dog")
    feats = prepare_train_features([QUESTION], [CONTEXT], [start], ["lazy dog"], tok, max_length=12, doc_stride=2)
    assert set(feats) == {"input_ids", "token_type_ids", "start_positions", "end_positions", "example_index"}
    assert feats["example_index"] == [0, 0, 0]
    assert [len(ids) for ids in feats["input_ids"]] == [12, 12, 11]
    assert feats["start_positions"] == [0, 8, 0]  # window 2 holds 'dog' but not 'lazy': not wholly inside -> CLS
    assert feats["end_positions"] == [0, 9, 0]
    ids = feats["input_ids"][1]
    assert tok.decode(ids[8:10]) == "lazy dog"
    assert tok.convert_ids_to_tokens(ids) == [
        "[CLS]", "what", "jumps", "?", "[SEP]", "jumps", "over", "the", "lazy", "dog", "near", "[SEP]",
    ]  # fmt: skip
    assert feats["token_type_ids"][1] == [0] * 5 + [1] * 7


def test_train_windows_several_examples_and_case(tok):
    # A capitalised answer decodes lowercased (uncased tokenizer); a short example gives a single window.
    contexts = ["Super Bowl 50 was won by the Denver Broncos.", CONTEXT]
    texts = ["Denver Broncos", "river bank"]
    starts = [contexts[0].index("Denver"), CONTEXT.index("river bank")]
    feats = prepare_train_features(["Who won?", "  " + QUESTION], contexts, starts, texts, tok, 12, 2)
    # example 0: 3 question tokens again, so 6 context tokens a window; its 10 context tokens (super bowl 50 was
    # won by the denver broncos .) -> windows [0..5], [4..9]; the answer (7..8) sits in window 1 at 5 + 3 = 8, 9.
    # example 1: leading spaces in the question change nothing, so it windows as in the test above; 'river bank'
    # (11..12) is only in window [8..12], at 5 + 3 = 8, 9.
    assert feats["example_index"] == [0, 0, 1, 1, 1]
    assert feats["start_positions"] == [0, 8, 0, 0, 8]
    assert feats["end_positions"] == [0, 9, 0, 0, 9]
    for ids, s, e, ex in zip(
        feats["input_ids"], feats["start_positions"], feats["end_positions"], feats["example_index"]
    ):
        if s:
            assert tok.decode(ids[s : e + 1]) == texts[ex].lower()


def test_train_no_answer_goes_to_cls(tok):
    feats = prepare_train_features([QUESTION], [CONTEXT], [-1], [""], tok, 64, 16)
    assert feats["start_positions"] == [0] and feats["end_positions"] == [0]


def test_eval_windows_offsets(tok):
    feats = prepare_eval_features([QUESTION], [CONTEXT], tok, max_length=12, doc_stride=2)
    assert set(feats) == {"input_ids", "token_type_ids", "example_index", "offset_mapping"}
    assert feats["example_index"] == [0, 0, 0]
    offsets = feats["offset_mapping"][1]
    assert offsets[:5] == [None] * 5 and offsets[-1] is None
    assert [CONTEXT[s:e] for s, e in offsets[5:-1]] == ["jumps", "over", "the", "lazy", "dog", "near"]
    assert [len(o) for o in feats["offset_mapping"]] == [len(ids) for ids in feats["input_ids"]]


def test_windows_round_trip_through_postprocess(tok):
    # Logits peaked at the training labels must give back the answer text and its character span.
    start = CONTEXT.index("lazy dog")
    train = prepare_train_features([QUESTION], [CONTEXT], [start], ["lazy dog"], tok, 12, 2)
    ev = prepare_eval_features([QUESTION], [CONTEXT], tok, 12, 2)
    starts, ends = [], []
    for ids, s, e in zip(train["input_ids"], train["start_positions"], train["end_positions"]):
        sl, el = np.zeros(len(ids)), np.zeros(len(ids))
        if s:
            sl[s], el[e] = 5.0, 4.0
        starts.append(sl)
        ends.append(el)
    (answer,) = postprocess_predictions([CONTEXT], ev["example_index"], ev["offset_mapping"], starts, ends)
    assert answer == Answer("lazy dog", 9.0, start, start + len("lazy dog"))


# --------------------------------------------------------------------------- postprocess


# Context 'the quick brown fox' behind a 3-token question: [CLS] q q q(?) [SEP] the quick brown fox [SEP]
FOX = "the quick brown fox"
FOX_OFFSETS = [None, None, None, None, None, (0, 3), (4, 9), (10, 15), (16, 19), None]


def logits(**at: float) -> np.ndarray:
    """Ten logits, zero except the positions given as p<index>=value."""
    out = np.zeros(10)
    for key, value in at.items():
        out[int(key[1:])] = value
    return out


def test_postprocess_picks_best_span_and_never_question_tokens():
    # The highest logits sit on question tokens 1 and 2 and on [CLS]: they must be ignored.
    start = logits(p0=20, p1=10, p6=5, p7=1)
    end = logits(p0=20, p2=10, p7=4, p5=3)
    (answer,) = postprocess_predictions([FOX], [0], [FOX_OFFSETS], [start], [end])
    # candidates: (6,7) 5+4=9, (6,6) 5+0=5, (5,5) 0+3=3, (7,7) 1+4=5 ... best (6,7) = 'quick brown'
    assert answer == Answer("quick brown", 9.0, 4, 15)


def test_postprocess_respects_max_answer_length_and_order():
    start = logits(p5=6, p8=5)
    end = logits(p8=6, p5=1)
    # (5,8) scores 12 but is 4 tokens; with max 2, spans: (8,8) 5+6 = 11 wins over (5,5) 6+1 = 7.
    (answer,) = postprocess_predictions([FOX], [0], [FOX_OFFSETS], [start], [end], max_answer_length=2)
    assert answer == Answer("fox", 11.0, 16, 19)
    # with max 3, (5,8) is still one token too long: 'fox' again
    (answer,) = postprocess_predictions([FOX], [0], [FOX_OFFSETS], [start], [end], max_answer_length=3)
    assert answer == Answer("fox", 11.0, 16, 19)
    (answer,) = postprocess_predictions([FOX], [0], [FOX_OFFSETS], [start], [end], max_answer_length=4)
    assert answer == Answer("the quick brown fox", 12.0, 0, 19)
    # an end before the start is never a span: only the start at 8 and the end at 5 are allowed here
    (answer,) = postprocess_predictions([FOX], [0], [FOX_OFFSETS], [logits(p8=9)], [logits(p5=9)], n_best_size=1)
    assert answer.text == "" and answer.score == -math.inf and (answer.start, answer.end) == (0, 0)


def test_postprocess_best_window_wins_and_examples_stay_apart():
    ctx = "one two three four five six"
    # window A covers one..four, window B covers three..six (overlap 'three four'); both belong to example 0.
    a = [None, None, None, (0, 3), (4, 7), (8, 13), (14, 18), None]
    b = [None, None, None, (8, 13), (14, 18), (19, 23), (24, 27), None]
    a_start, a_end = np.array([0, 0, 0, 0, 3, 0, 0, 0.0]), np.array([0, 0, 0, 0, 3, 0, 0, 0.0])  # 'two' = 6
    b_start, b_end = np.array([0, 0, 0, 0, 0, 4, 0, 0.0]), np.array([0, 0, 0, 0, 0, 3, 0, 0.0])  # 'five' = 7
    other = "zz"
    o = [None, None, (0, 2), None]
    answers = postprocess_predictions(
        [ctx, other],
        [0, 1, 0],
        [a, o, b],
        [a_start, np.array([0, 0, 1.0, 0]), b_start],
        [a_end, np.array([0, 0, 2.0, 0]), b_end],
    )
    assert answers == [Answer("five", 7.0, 19, 23), Answer("zz", 3.0, 0, 2)]
    # swap the scores: window A's 'two' now wins
    answers = postprocess_predictions([ctx], [0, 0], [a, b], [a_start * 3, b_start], [a_end * 3, b_end])
    assert answers == [Answer("two", 18.0, 4, 7)]


def test_postprocess_example_without_windows_and_short_logits():
    answers = postprocess_predictions(
        ["abc", "never windowed"], [0], [[None, (0, 3), None]], [np.array([0, 2.0])], [np.array([0, 1.0, 9.0])]
    )
    # index 2 of the end logits is beyond the start logits: only (1,1) is usable
    assert answers[0] == Answer("abc", 3.0, 0, 3)
    assert answers[1].text == "" and answers[1].score == -math.inf
    with pytest.raises(ValueError, match="differ in length"):
        postprocess_predictions(["abc"], [0, 0], [[None]], [np.zeros(1)], [np.zeros(1)])


# --------------------------------------------------------------------------- squad_format


@pytest.mark.needs_data
@pytest.mark.integration
@pytest.mark.skipif(not SQUAD_DEV.is_file(), reason="data/squad/dev-v1.1.json is missing")
def test_read_real_dev_set():
    df = read_squad_json(str(SQUAD_DEV))
    assert list(df.columns) == COLUMNS
    assert len(df) == 10_570
    assert df["title"].nunique() == 48
    first = df.iloc[0]
    assert first["id"] == "56be4db0acb8001400a502ec"
    assert first["title"] == "Super_Bowl_50"
    assert first["answer_texts"] == ["Denver Broncos"] * 3 and first["answer_starts"] == [177] * 3
    assert df["source_row"].tolist() == list(range(1, 10_571))
    assert (df["source_file"] == str(SQUAD_DEV)).all()
    assert answer_mismatch(first["context"], first["answer_texts"], first["answer_starts"]) is None


def test_read_small_file_types_bom_and_empty_answers(tmp_path):
    doc = squad_doc()
    doc["data"][0]["paragraphs"][0]["qas"].append({"id": "q2", "question": "Who lost?", "answers": []})
    path = tmp_path / "s.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc).encode("utf-8"))
    df = read_squad_json(path)
    assert list(df.columns) == COLUMNS
    assert df.to_dict("records") == [
        {"id": "q1", "title": "T", "question": "Who won?", "context": "Denver won.", "answer_texts": ["Denver"],
         "answer_starts": [0], "source_file": str(path), "source_row": 1},
        {"id": "q2", "title": "T", "question": "Who lost?", "context": "Denver won.", "answer_texts": [],
         "answer_starts": [], "source_file": str(path), "source_row": 2},
    ]  # fmt: skip


def test_read_does_not_judge_content(tmp_path):
    qa = {"id": "q1", "question": "Who?", "answers": [{"text": "Nobody", "answer_start": 99}]}
    df = read_squad_json(write_json(tmp_path / "s.json", squad_doc(qa)))
    assert df["answer_texts"].tolist() == [["Nobody"]]


def test_read_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n  {"title": "T",\n   "paragraphs": [}\n]}', encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_squad_json(path)
    message = str(err.value)
    assert message.startswith(f"{path}: invalid JSON at line 3, column ")
    assert "\n" not in message


def _paragraph(d: dict) -> dict:
    return d["data"][0]["paragraphs"][0]


def _qa(d: dict) -> dict:
    return _paragraph(d)["qas"][0]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: _qa(d).pop("question"), "data[0].paragraphs[0].qas[0]: missing 'question'"),
        (lambda d: d["data"][0].pop("title"), "data[0]: missing 'title'"),
        (lambda d: d.pop("data"), "top level: missing 'data'"),
        (lambda d: _paragraph(d).update(context=5), "data[0].paragraphs[0].context: expected a string, got int"),
        (
            lambda d: _qa(d)["answers"][0].update(answer_start="0"),
            "data[0].paragraphs[0].qas[0].answers[0].answer_start: expected an integer, got str",
        ),
        (lambda d: _qa(d).update(answers=None), "data[0].paragraphs[0].qas[0].answers: expected a list, got null"),
        (lambda d: _qa(d)["answers"][0].update(answer_start=True), "answer_start: expected an integer, got bool"),
        (lambda d: d["data"].append("oops"), "data[1]: expected an object, got str"),
    ],
)
def test_read_structure_errors_name_the_json_path(tmp_path, mutate, expected):
    doc = squad_doc()
    mutate(doc)
    source = write_json(tmp_path / "x.json", doc)
    with pytest.raises(DataError) as err:
        read_squad_json(source)
    message = str(err.value)
    assert message.startswith(f"{source}: ") and message.endswith(expected)
    if expected.startswith(("data", "top")):
        assert message == f"{source}: {expected}"


def test_read_unreadable_files(tmp_path):
    with pytest.raises(DataError, match=r"missing\.json: file not found"):
        read_squad_json(tmp_path / "missing.json")
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"data": [\n"caf\xe9"]}')
    with pytest.raises(DataError, match=r"latin\.json: cannot decode as utf-8 at byte \d+ \(line 2\)"):
        read_squad_json(path)


def test_answer_mismatch():
    ctx = "The Denver Broncos beat the Carolina Panthers."
    assert answer_mismatch(ctx, ["Denver Broncos", "Broncos"], [4, 11]) is None
    # one character early: the 14 characters from 3 are ' Denver Bronco'
    assert answer_mismatch(ctx, ["Denver Broncos"], [3]) == (
        "answer 1 'Denver Broncos' not at char 3 (context there: ' Denver Bronco')"
    )
    assert answer_mismatch(ctx, ["Broncos", "Panthers"], [11, 24]) == (
        "answer 2 'Panthers' not at char 24 (context there: 'the Caro')"
    )
    assert answer_mismatch(ctx, ["Panthers"], [45]) == "answer 1 'Panthers' not at char 45 (context has 46 chars)"
    assert answer_mismatch(ctx, [], []) == "no answers"
    assert answer_mismatch(ctx, ["a", "b"], [0]) == "answer_texts and answer_starts differ in length (2 vs 1)"
