"""The promotion gate as pure functions on hand-made per-example statistics."""

from functools import partial

import numpy as np
import pytest

from tlflow.registry.gate import GateSettings, Scores, decide, paired_bootstrap
from tlflow.task_types.metrics import classification_from_sums, classification_stats

pytestmark = [pytest.mark.unit]

LABELS = ["neg", "pos"]


def scores(y_true, y_pred) -> Scores:
    stats = classification_stats(np.asarray(y_true), np.asarray(y_pred), 2)
    metrics = partial(classification_from_sums, label_names=LABELS)
    m = metrics(stats.sum(axis=0))
    return Scores(stats, metrics, {name: m[f"f1_{name}"] for name in LABELS})


def predictions(y_true, n_wrong, rng_seed=0):
    """y_true with `n_wrong` labels flipped (seeded positions)."""
    y = np.array(y_true)
    idx = np.random.default_rng(rng_seed).choice(len(y), n_wrong, replace=False)
    y[idx] = 1 - y[idx]
    return y


Y = np.array([0, 1] * 200)  # 400 balanced examples
SETTINGS = GateSettings(metric="accuracy", bootstrap_samples=1000, seed=1)


def check(decision, name):
    return next(c for c in decision.checks if c.name == name)


def test_first_model_needs_only_the_floors():
    new = scores(Y, predictions(Y, 100))  # accuracy 0.75
    assert decide(new, None, None, SETTINGS).promoted
    floored = GateSettings(metric="accuracy", floors={"accuracy": 0.8})
    decision = decide(new, None, None, floored)
    assert not decision.promoted and "accuracy 0.7500 >= 0.8" in decision.reason


def test_clear_improvement_is_promoted_with_its_interval():
    champion = scores(Y, predictions(Y, 120))  # 0.70
    new = scores(Y, predictions(Y, 40, rng_seed=1))  # 0.90
    decision = decide(new, champion, "3", SETTINGS)
    assert decision.promoted, decision.reason
    low, high = decision.interval
    assert 0.1 < low < 0.2 < high < 0.3  # gain 0.20
    assert all(c.passed for c in decision.checks)
    assert decision.champion_score == pytest.approx(0.70) and decision.new_score == pytest.approx(0.90)


def test_a_gain_on_every_class_is_not_called_a_drop():
    champion = scores(Y, predictions(Y, 120))  # 0.70
    new = scores(Y, predictions(Y, 40, rng_seed=1))  # 0.90, both classes better
    for name in ("max_class_drop", "max_slice_drop"):
        detail = check(decide(new, champion, "3", SETTINGS), name).detail
        assert "drop," in detail or "no slice" in detail, detail
        assert "largest" not in detail, detail
    class_check = check(decide(new, champion, "3", SETTINGS), "max_class_drop")
    assert class_check.detail.startswith("no F1 drop, smallest gain ")
    worse = check(decide(champion, new, "3", SETTINGS), "max_class_drop")
    assert worse.detail.startswith("largest F1 drop ")


def test_improvement_below_min_delta_is_rejected():
    champion = scores(Y, predictions(Y, 120))
    new = scores(Y, predictions(Y, 40, rng_seed=1))
    decision = decide(new, champion, "3", GateSettings(metric="accuracy", min_delta=0.25))
    assert not decision.promoted
    assert not check(decision, "min_delta").passed and check(decision, "bootstrap").passed


def test_improvement_the_bootstrap_calls_noise_is_rejected():
    champion_pred = predictions(Y, 100)
    new_pred = champion_pred.copy()
    wrong = np.flatnonzero(new_pred != Y)[:3]  # fixes 3 of 100 mistakes ...
    new_pred[wrong] = Y[wrong]
    right = np.flatnonzero(new_pred == Y)[:1]  # ... and makes 1 new one: +0.5 points
    new_pred[right] = 1 - Y[right]
    decision = decide(scores(Y, new_pred), scores(Y, champion_pred), "3", SETTINGS)
    assert check(decision, "min_delta").passed
    assert not check(decision, "bootstrap").passed and not decision.promoted
    assert decision.interval[0] <= 0 < decision.interval[1]


def test_a_collapsing_class_blocks_promotion_despite_a_better_average():
    y = np.array([0] * 360 + [1] * 40)  # imbalanced
    champion = scores(y, np.where(np.arange(400) % 5 == 0, 1 - y, y))  # 80 % on both classes
    new_pred = y.copy()
    new_pred[360:] = 0  # perfect on class 0, never predicts class 1
    decision = decide(scores(y, new_pred), champion, "3", SETTINGS)
    assert check(decision, "min_delta").passed and check(decision, "bootstrap").passed
    drop = check(decision, "max_class_drop")
    assert not drop.passed and "pos" in drop.detail and not decision.promoted


def test_a_tie_keeps_the_champion():
    pred = predictions(Y, 80)
    decision = decide(scores(Y, pred), scores(Y, pred), "3", SETTINGS)
    assert not decision.promoted and not check(decision, "min_delta").passed
    share, low, high = paired_bootstrap(scores(Y, pred), scores(Y, pred), "accuracy", 200, 0.95)
    assert (share, low, high) == (0.0, 0.0, 0.0)


def test_bootstrap_needs_the_same_examples():
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap(scores(Y, Y), scores(Y[:10], Y[:10]), "accuracy", 100, 0.95)


def with_slices(s: Scores, slices: dict[str, np.ndarray], gaps=None) -> Scores:
    return Scores(s.stats, s.metrics, s.class_f1, slices, gaps or {})


def test_a_slice_that_loses_more_than_allowed_blocks_a_better_average():
    # Examples 0-199 are slice a, 200-399 slice b. The champion errs 60 times in a, 60 in b (0.70);
    # the new model is perfect on a but errs 80 times in b (0.80 overall, slice b 0.70 -> 0.60).
    slices = {"group=a": np.arange(200), "group=b": np.arange(200, 400)}
    champion_pred, new_pred = Y.copy(), Y.copy()
    champion_pred[:60] = 1 - Y[:60]
    champion_pred[200:260] = 1 - Y[200:260]
    new_pred[200:280] = 1 - Y[200:280]
    champion, new = with_slices(scores(Y, champion_pred), slices), with_slices(scores(Y, new_pred), slices)
    decision = decide(new, champion, "3", SETTINGS)
    assert check(decision, "bootstrap").passed and check(decision, "min_delta").passed
    drop = check(decision, "max_slice_drop")
    assert not drop.passed and not decision.promoted
    assert "group=b (n=200): 0.7000 -> 0.6000 (-0.1000, allowed -0.05)" in drop.detail
    lenient = GateSettings(metric="accuracy", bootstrap_samples=1000, seed=1, max_slice_drop=0.15)
    assert decide(new, champion, "3", lenient).promoted
    small = GateSettings(metric="accuracy", bootstrap_samples=1000, seed=1, min_slice_size=201)
    assert check(decide(new, champion, "3", small), "max_slice_drop").passed  # both slices too small to gate


def test_the_counterfactual_bound_applies_to_a_first_model_too():
    gaps = {"gender/positive": (0.02, -0.01, 0.05), "race/positive": (-0.03, -0.09, 0.01)}
    new = with_slices(scores(Y, predictions(Y, 40)), {}, gaps)
    bounded = GateSettings(metric="accuracy", max_counterfactual_gap=0.08)
    decision = decide(new, None, None, bounded)
    gap = check(decision, "max_counterfactual_gap")
    assert not gap.passed and not decision.promoted and "race/positive" in gap.detail and "0.0900" in gap.detail
    assert decide(new, None, None, GateSettings(metric="accuracy", max_counterfactual_gap=0.1)).promoted
    assert not any(c.name == "max_counterfactual_gap" for c in decide(new, None, None, SETTINGS).checks)
    unaudited = decide(scores(Y, predictions(Y, 40)), None, None, bounded)
    assert not unaudited.promoted and "no counterfactual audit" in unaudited.reason
