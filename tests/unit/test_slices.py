"""Evaluation slices: metadata columns through the readers (never trained on), the built-in slices
of the task types, metrics per slice against the same metrics computed on the subset directly,
MLflow metric names, and the gate comparing a champion on the new model's slice rows."""

import json

import numpy as np
import pytest
from datasets import Dataset
from mlflow.utils.validation import _validate_metric_name
from sklearn.metrics import accuracy_score, recall_score

from tlflow.config import DataConfig
from tlflow.data.readers import DataError, load_labelled_data, read_table
from tlflow.data.spec import without_meta
from tlflow.evaluation.slice_plot import plot_slices
from tlflow.evaluation.slices import MISSING, metric_name, slice_report, slice_rows
from tlflow.modeling.models import load_tokenizer
from tlflow.registry.gate import Scores, slice_drop_check
from tlflow.task_types.base import Evaluation, TaskSettings, quartile_labels
from tlflow.task_types.metrics import classification_from_sums, classification_stats
from tlflow.task_types.question_answering.squad_metrics import exact_match, f1, squad_scores
from tlflow.task_types.registry import get_task_type
from tlflow.task_types.token_classification.iob import entity_metrics
from tlflow.task_types.token_classification.task import entity_types, sentence_stats

pytestmark = [pytest.mark.unit]

CLASSIFIER = get_task_type("text-classification")


def test_length_quartiles_cut_at_numpy_quantiles():
    # quantiles of 1..8: 2.75, 4.5, 6.25
    assert quartile_labels([8, 1, 2, 3, 4, 5, 6, 7]) == ["q4", "q1", "q1", "q2", "q2", "q3", "q3", "q4"]
    # edges equal to a value keep it in the lower quartile; ties stay together
    assert quartile_labels([5, 5, 5, 5, 10]) == ["q1", "q1", "q1", "q1", "q4"]
    assert quartile_labels([]) == []
    split = Dataset.from_dict({"text": ["a", "a b", "a b c", "a b c d"], "label": ["x"] * 4})
    assert CLASSIFIER.slice_lengths(split) == [1, 2, 3, 4]
    pairs = Dataset.from_dict({"text": ["a b", "c"], "text_pair": ["d e f", "g"], "label": ["x", "y"]})
    assert get_task_type("sentence-pair").slice_lengths(pairs) == [5, 2]  # both segments


def _csv(path, rows):
    path.write_text("text,label,group,region\n" + "".join(f"{t},{lab},{g},{r}\n" for t, lab, g, r in rows),
                    encoding="utf-8")
    return str(path)


def test_metadata_columns_are_carried_but_never_trained_on(tmp_path):
    rows = [(f"text number {i}", "pos" if i % 2 else "neg", "A" if i % 5 else " ", "north") for i in range(30)]
    files = {s: _csv(tmp_path / f"{s}.csv", rows[k::3]) for k, s in enumerate(("train", "validation", "test"))}
    cfg = DataConfig(format="csv", files=files, label_names=["neg", "pos"])
    loaded = load_labelled_data(cfg, CLASSIFIER.dataset_spec(), ["group"])
    test = loaded.splits["test"]
    assert test.column_names == ["text", "label", "source_file", "source_row", "meta_group"]
    assert test["meta_group"][:3] == ["A", None, "A"]  # rows 2, 5, 8: blank is missing
    assert list(CLASSIFIER.requests(test).columns) == ["text"]  # input example and signature
    assert without_meta(test).column_names == ["text", "label", "source_file", "source_row"]
    tokenizer = load_tokenizer("minilm-l6")
    features = CLASSIFIER.train_features(without_meta(loaded.splits["train"]), loaded.label_names, tokenizer,
                                         TaskSettings("text-classification", max_length=16))
    assert set(features) == {"input_ids", "labels"}
    rows_of = slice_rows(CLASSIFIER, test, ["group"])
    assert sorted(rows_of) == [f"group={MISSING}", "group=A", "length=q1"]
    assert rows_of["group=A"].tolist() == [i for i, g in enumerate(test["meta_group"]) if g == "A"]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"text": "a", "label": "x", "group": 3}\n{"text": "b", "label": "y"}\n', encoding="utf-8")
    df = read_table(jsonl, DataConfig(format="jsonl", file=str(jsonl)), CLASSIFIER.dataset_spec(), ["group"])
    assert df["meta_group"].tolist() == ["3", None]


def test_a_missing_slice_column_names_the_file_and_the_column(tmp_path):
    path = _csv(tmp_path / "train.csv", [("hello", "pos", "A", "n")])
    with pytest.raises(DataError, match=r"train.csv: no column 'author' for the evaluation slices in "
                                        r"evaluate.slices \(columns: 'text', 'label', 'group', 'region'\)"):
        read_table(path, DataConfig(format="csv", file=path), CLASSIFIER.dataset_spec(), ["group", "author"])
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "Paris is big.", "qas": [
        {"id": "q1", "question": "What?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}), encoding="utf-8")
    qa = get_task_type("question-answering").dataset_spec()
    assert read_table(squad, DataConfig(format="squad", file=str(squad)), qa, ["title"])["meta_title"].tolist() == ["T"]
    with pytest.raises(DataError, match="squad.json: no column 'genre' for the evaluation slices"):
        read_table(squad, DataConfig(format="squad", file=str(squad)), qa, ["genre"])


def _classification(n=240, seed=0):
    rng = np.random.default_rng(seed)
    labels = ["neg", "neu", "pos"]
    y = rng.integers(0, 3, n)
    p = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    group = rng.choice(["A", "B", "C"], n, p=[0.6, 0.35, 0.05])
    group[y == 2] = np.where(group[y == 2] == "C", "A", group[y == 2])  # no "pos" example in group C
    texts = [" ".join(["w"] * int(k)) for k in rng.integers(1, 30, n)]
    split = Dataset.from_dict({"text": texts, "label": [labels[i] for i in y], "meta_group": list(group)})
    stats = classification_stats(y, p, 3)
    evaluation = Evaluation(classification_from_sums(stats.sum(0), labels), ("accuracy",), stats, label_names=labels)
    return split, evaluation, labels, y, p


def test_classification_slices_equal_metrics_on_the_subset(tmp_path):
    split, evaluation, labels, y, p = _classification()
    report = slice_report(CLASSIFIER, split, evaluation, labels, "accuracy", ["group"], min_size=50)
    lengths = np.asarray(CLASSIFIER.slice_lengths(split))
    assert {s.name for s in report.slices} == {"group=A", "group=B", "group=C", *(f"length=q{i}" for i in (1, 2, 3, 4))}
    for s in report.slices:
        values = np.asarray(split["meta_group"]) if s.column == "group" else np.asarray(quartile_labels(list(lengths)))
        rows = np.flatnonzero(values == s.value)
        assert s.rows.tolist() == rows.tolist() and s.metrics["count"] == len(rows)
        assert s.metrics["accuracy"] == pytest.approx(accuracy_score(y[rows], p[rows]))
        for i, name in enumerate(labels):
            if (y[rows] == i).any():
                assert s.metrics[f"recall_{name}"] == pytest.approx(recall_score(y[rows], p[rows], labels=[i],
                                                                                 average="macro"))
            else:
                assert np.isnan(s.metrics[f"recall_{name}"])
        assert s.words == (lengths[rows].min(), lengths[rows].max())
    c = next(s for s in report.slices if s.name == "group=C")
    assert np.isnan(c.metrics["recall_pos"]) and "test_recall_pos__group:C" not in report.mlflow_metrics()
    assert report.overall["accuracy"] == pytest.approx(evaluation.metrics["accuracy"])
    table = report.table()
    assert table["gated"] == [len(s.rows) >= 50 for s in report.slices] and table["recall_pos"][table["slice"].index("group=C")] is None
    markdown = report.markdown()
    assert f"| `group=C` | {len(c.rows)} |" in markdown and "| no |" in markdown
    assert plot_slices(report, tmp_path / "slices.png").stat().st_size > 1000


def test_metric_names_are_valid_mlflow_names():
    split, evaluation, labels, _, _ = _classification(60)
    names = slice_report(CLASSIFIER, split, evaluation, labels, "accuracy", ["group"]).mlflow_metrics()
    assert "test_accuracy__length:q1" in names and "test_count__group:A" in names
    assert metric_name("test_", "f1", "city", "New York, NY (2/3)") == "test_f1__city:New York_ NY _2_3_"
    for name in [*names, metric_name("test_", "f1", "x", "../a=b")]:
        _validate_metric_name(name)


def test_entity_slices_equal_seqeval_on_the_sentences_holding_the_type():
    task = get_task_type("token-classification")
    gold = [["B-PER", "O"], ["B-LOC", "I-LOC", "O"], ["B-PER", "O", "B-LOC"], ["O", "O"], ["B-PER", "I-PER"]]
    pred = [["B-PER", "O"], ["B-LOC", "O", "O"], ["O", "O", "B-LOC"], ["B-ORG", "O"], ["B-PER", "I-PER"]]
    label_names = ["O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-PER"]
    stats = np.array([sentence_stats(g, p, entity_types(label_names)) for g, p in zip(gold, pred)])
    split = Dataset.from_dict({"tokens": [["w"] * len(g) for g in gold], "tags": gold,
                               "text": [" ".join(["w"] * len(g)) for g in gold]})
    evaluation = Evaluation(entity_metrics(gold, pred), ("f1",), stats, label_names=label_names)
    report = slice_report(task, split, evaluation, label_names, "f1")
    entity = {s.value: s for s in report.slices if s.column == "entity"}
    assert set(entity) == {"LOC", "PER"}  # sentences without entities are no entity slice
    for kind, s in entity.items():
        rows = [i for i, g in enumerate(gold) if f"B-{kind}" in g]
        assert s.rows.tolist() == rows
        assert s.metrics["f1"] == pytest.approx(entity_metrics([gold[i] for i in rows], [pred[i] for i in rows])["f1"])
    assert "recall_O" not in report.overall  # per-class recall is classification's


def test_answer_length_slices_equal_squad_scores_on_the_subset():
    task = get_task_type("question-answering")
    gold = [["Paris"], ["the river Seine"], ["in 1889"], ["a b c d e f g h i j"], ["Eiffel"], ["two words"]]
    predicted = ["Paris", "river Seine", "1889", "a b c", "Gustave", "two words"]
    stats = np.array([[1.0, max(exact_match(p, t) for t in g), max(f1(p, t) for t in g)]
                      for p, g in zip(predicted, gold)])
    split = Dataset.from_dict({"question": ["q"] * 6, "context": ["c d"] * 6, "answer_texts": gold})
    evaluation = Evaluation(squad_scores(predicted, gold), ("f1",), stats)
    report = slice_report(task, split, evaluation, [], "f1")
    answers = {s.value: s for s in report.slices if s.column == "answer_words"}
    assert {k: v.rows.tolist() for k, v in answers.items()} == {"1": [0, 4], "2": [2, 5], "3-4": [1], "9-up": [3]}
    for s in answers.values():
        rows = s.rows.tolist()
        assert s.metrics["f1"] == pytest.approx(squad_scores([predicted[i] for i in rows], [gold[i] for i in rows])["f1"])


def test_the_gate_scores_the_champion_on_the_new_models_slice_rows():
    split, evaluation, labels, y, p = _classification()
    metrics = lambda sums: classification_from_sums(sums, labels)  # noqa: E731
    rows = slice_rows(CLASSIFIER, split, ["group"])
    new = Scores(evaluation.stats, metrics, slices=rows)
    b = rows["group=B"]
    worse_on_b = p.copy()
    worse_on_b[b] = y[b]  # the champion is right on every example of group B
    champion = Scores(classification_stats(y, worse_on_b, 3), metrics)  # re-scored: no slices of its own
    check = slice_drop_check(new, champion, "accuracy", 0.05, 50)
    assert not check.passed and "group=B" in check.detail and f"1.0000 -> {accuracy_score(y[b], p[b]):.4f}" in check.detail
    short = Scores(evaluation.stats[:10], metrics)
    assert not slice_drop_check(new, short, "accuracy", 0.05, 50).passed
