import numpy as np
import pytest

from tlflow.task_types.metrics import classification_metrics, confusion, misclassified_rows, plot_confusion, softmax

pytestmark = [pytest.mark.unit]


def test_metrics_on_a_hand_worked_example():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P=1/2 R=1/2 F=1/2; b: P=2/3 R=1 F=0.8; c: P=1 R=1/2 F=2/3
    assert m["f1_a"] == pytest.approx(0.5)
    assert m["f1_b"] == pytest.approx(0.8)
    assert m["precision_c"] == pytest.approx(1.0)
    assert m["recall_c"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert confusion(y_true, y_pred, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_absent_class_scores_zero_not_error():
    m = classification_metrics(np.array([0, 0]), np.array([0, 0]), ["a", "b"])
    assert m["f1_b"] == 0.0 and m["accuracy"] == 1.0


def test_misclassified_rows_most_confident_first():
    rows = misclassified_rows(
        ["x", "y", "z"], np.array([0, 1, 1]), np.array([1, 1, 0]), np.array([0.6, 0.9, 0.95]), ["n", "p"], 5
    )
    assert [r["text"] for r in rows] == ["z", "x"]
    assert rows[0] == {"text": "z", "true": "p", "predicted": "n", "confidence": 0.95}


def test_softmax_rows_sum_to_one():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    assert np.allclose(p.sum(-1), 1) and np.allclose(p[1], [0.25, 0.75])


def test_confusion_png(tmp_path):
    path = plot_confusion(np.array([[3, 1], [0, 4]]), ["neg", "pos"], tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
