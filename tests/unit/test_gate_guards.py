"""The gate's guards against being fooled, as pure functions on hand-made per-example statistics:
the trivial baseline a model must beat without floors, the warning for a class with F1 0, a
champion trained on rows of the new test split, and the epoch budget of a small training split."""

from functools import partial

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from tlflow.config import FinetuneConfig
from tlflow.data.readers import LoadedData
from tlflow.registry.baseline import trivial_baseline
from tlflow.registry.gate import Baseline, GateSettings, Scores, TrainedRows, decide
from tlflow.task_types.base import Evaluation
from tlflow.task_types.metrics import classification_from_sums, classification_stats
from tlflow.task_types.question_answering.task import QuestionAnswering
from tlflow.task_types.text_classification import TextClassification
from tlflow.task_types.text_generation.task import TextGeneration
from tlflow.task_types.token_classification.task import TokenClassification
from tlflow.training.budget import epoch_budget, never_improved

pytestmark = [pytest.mark.unit]

LABELS = ["neg", "pos"]
Y = np.array([0] * 240 + [1] * 160)  # 400 examples, "neg" the majority
SETTINGS = GateSettings(metric="accuracy", bootstrap_samples=1000, seed=1)
METRICS = partial(classification_from_sums, label_names=LABELS)
MAJORITY = Baseline("majority class 'neg'", classification_stats(Y, np.zeros_like(Y), 2))


def scores(pred, y=Y, baseline=MAJORITY, trained=None) -> Scores:
    stats = classification_stats(y, np.asarray(pred), 2)
    m = METRICS(stats.sum(axis=0))
    return Scores(stats, METRICS, {k: m[f"f1_{k}"] for k in LABELS}, baseline=baseline, trained_rows=trained)


def flipped(n_wrong: int, seed: int = 0) -> np.ndarray:
    pred = Y.copy()
    idx = np.random.default_rng(seed).choice(len(Y), n_wrong, replace=False)
    pred[idx] = 1 - pred[idx]
    return pred


def check(decision, name):
    return next(c for c in decision.checks if c.name == name)


def test_a_majority_class_model_never_becomes_the_first_champion():
    decision = decide(scores(np.zeros_like(Y)), None, None, SETTINGS)
    baseline = check(decision, "trivial_baseline")
    assert not decision.promoted and not baseline.passed
    assert "accuracy 0.6000 vs majority class 'neg' 0.6000" in baseline.detail
    assert "warning: F1 0 for pos" in decision.reason


def test_a_model_clearly_above_the_baseline_becomes_the_first_champion():
    decision = decide(scores(flipped(40)), None, None, SETTINGS)  # accuracy 0.90 vs 0.60
    assert decision.promoted and decision.reason.startswith("no champion yet; accuracy 0.9000 vs majority")
    assert "warning" not in decision.reason


def test_floors_or_the_switch_replace_the_baseline_check():
    useless = scores(np.zeros_like(Y))
    floored = decide(useless, None, None, GateSettings(metric="accuracy", floors={"accuracy": 0.5}))
    assert floored.promoted and [c.name for c in floored.checks] == ["floor"]
    assert decide(useless, None, None, GateSettings(metric="accuracy", trivial_baseline=False)).promoted
    assert decide(scores(np.zeros_like(Y), baseline=None), None, None, SETTINGS).promoted  # none for this task


def test_the_baseline_applies_against_a_champion_too():
    champion = scores(np.ones_like(Y))  # accuracy 0.40: worse than the majority class
    decision = decide(scores(np.zeros_like(Y)), champion, "2", SETTINGS)
    assert check(decision, "bootstrap").passed and not check(decision, "trivial_baseline").passed
    assert not decision.promoted


def test_a_champion_trained_on_test_rows_is_compared_on_the_others():
    # The champion was trained on rows 0-99 and gets them all right; elsewhere it errs 60 times.
    champion_pred = Y.copy()
    champion_pred[100:160] = 1 - Y[100:160]
    new_pred = Y.copy()
    new_pred[:40] = 1 - Y[:40]  # the new model errs 40 times, on the champion's training rows
    new_pred[300:310] = 1 - Y[300:310]  # and 10 times elsewhere
    trained = TrainedRows(np.arange(100))
    naive = decide(scores(new_pred), scores(champion_pred), "1", SETTINGS)
    assert naive.new_score == pytest.approx(0.875) and naive.champion_score == pytest.approx(0.85)
    assert not naive.promoted  # the champion's memorised rows hide a clear gain

    decision = decide(scores(new_pred), scores(champion_pred, trained=trained), "1", SETTINGS)
    assert decision.promoted, decision.reason
    assert decision.new_score == pytest.approx(290 / 300) and decision.champion_score == pytest.approx(240 / 300)
    assert "compared on the 300 test rows champion v1 was not trained on (100 of 400 test rows (25.0%) were in " \
           "champion v1's training rows (allowed 0.0%))" in decision.reason
    assert check(decision, "champion_train_overlap").passed
    assert "paired resamples of 300 examples" in check(decision, "bootstrap").detail


def test_an_overlap_within_the_allowance_or_the_fail_policy():
    champion = scores(flipped(100), trained=TrainedRows(np.arange(10)))
    new = scores(flipped(40, seed=1))
    lenient = GateSettings(metric="accuracy", seed=1, max_champion_train_overlap=0.05)
    decision = decide(new, champion, "1", lenient)
    assert decision.promoted and "10 of 400 test rows (2.5%)" in decision.reason and "compared on all rows" in \
        decision.reason
    strict = GateSettings(metric="accuracy", seed=1, on_champion_train_overlap="fail")
    refused = decide(new, champion, "1", strict)
    overlap = check(refused, "champion_train_overlap")
    assert not refused.promoted and not overlap.passed and "comparison refused" in refused.reason
    assert [c.name for c in refused.checks] == ["trivial_baseline", "champion_train_overlap"]
    everything = scores(flipped(100), trained=TrainedRows(np.arange(400)))
    assert "no test row is left" in decide(new, everything, "1", SETTINGS).reason


def test_a_champion_without_a_fingerprint_is_compared_and_said_so():
    decision = decide(scores(flipped(40, seed=1)), scores(flipped(100), trained=TrainedRows(None)), "4", SETTINGS)
    assert decision.promoted
    assert "champion v4 has no training-row fingerprint" in decision.reason and decision.to_dict()["notes"]
    plain = decide(scores(flipped(40, seed=1)), scores(flipped(100)), "4", SETTINGS)
    assert "fingerprint" not in plain.reason  # not looked up: nothing to say


def test_a_subset_keeps_slices_and_class_scores_consistent():
    s = Scores(classification_stats(Y, flipped(100), 2), METRICS, {"neg": 0.0, "pos": 0.0},
               {"half=a": np.arange(0, 400, 2)}, baseline=MAJORITY)
    keep = np.arange(100, 400)
    sub = s.subset(keep)
    assert len(sub.stats) == 300 and sub.value("accuracy") == pytest.approx(s.rows_value(keep, "accuracy"))
    assert sub.class_f1["pos"] == pytest.approx(METRICS(s.stats[keep].sum(axis=0))["f1_pos"])
    assert np.array_equal(keep[sub.slices["half=a"]], np.arange(100, 400, 2))
    assert len(sub.baseline.stats) == 300


def test_trivial_baselines_of_the_task_types():
    train = Dataset.from_dict({"label": ["pos", "neg", "pos"]})
    test = Dataset.from_dict({"label": ["pos", "neg", "neg", "pos"]})
    name, stats = TextClassification().trivial_baseline(test, train, LABELS)
    assert name == "majority class 'pos'" and METRICS(stats.sum(axis=0))["accuracy"] == 0.5

    tags = ["O", "B-PER", "I-PER", "B-LOC", "O", "B-MISC"]
    ner = TokenClassification()
    split = Dataset.from_dict({"tags": [["B-PER", "I-PER", "O"], ["O", "O"]]})
    name, stats = ner.trivial_baseline(split, split, tags)
    m = ner.metrics_from_sums(stats.sum(axis=0), tags)
    assert name == "all-O tags" and m["f1"] == 0.0 and m["token_accuracy"] == pytest.approx(3 / 5)

    qa = QuestionAnswering()
    split = Dataset.from_dict({"answer_texts": [["Paris"], ["in 1813", "1813"]]})
    name, stats = qa.trivial_baseline(split, split, [])
    assert name == "the empty answer" and qa.metrics_from_sums(stats.sum(axis=0), []) == {"exact_match": 0.0, "f1": 0.0}


def test_text_generation_is_measured_against_its_zero_shot_base_when_it_was_scored():
    split = Dataset.from_dict({"prompt": ["a", "b"], "target": ["x", "y"]})
    loaded = LoadedData(DatasetDict({"train": split, "test": split}), [])
    zero_shot = np.ones((2, 3))
    evaluation = Evaluation({}, (), np.zeros((2, 3)), baseline={"rougeL": 0.1}, baseline_stats=zero_shot)
    baseline = trivial_baseline(TextGeneration(), loaded, evaluation)
    assert baseline.name == "the zero-shot base model" and baseline.stats is zero_shot
    assert trivial_baseline(TextGeneration(), loaded, Evaluation({}, (), np.zeros((2, 3)))) is None


def test_a_small_split_gets_the_epochs_that_reach_min_steps():
    cfg = FinetuneConfig(batch_size=32)  # epochs 1, min_steps 150
    small = epoch_budget(cfg, 3400)  # 107 steps an epoch
    assert (small.epochs, small.steps, small.raised) == (2.0, 214, True)
    assert "finetune.epochs raised from 1 to 2 (214 steps) to reach finetune.min_steps 150" in small.note()
    assert not epoch_budget(cfg, 6080).raised  # AG News's 190 steps an epoch are enough
    large = epoch_budget(cfg, 67_349)
    assert (large.epochs, large.steps, large.raised) == (1.0, 2105, False)
    assert epoch_budget(FinetuneConfig(batch_size=32, min_steps=0, epochs=0.02), 800).steps == 1


def test_a_flat_validation_curve_is_noticed():
    assert never_improved([0.51, 0.51, 0.50])
    assert not never_improved([0.51, 0.52])
    assert not never_improved([0.5])  # one point says nothing
