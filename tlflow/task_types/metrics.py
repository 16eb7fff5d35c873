"""Classification metrics and the reports built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix


def classification_stats(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Per-example additive statistics: [correct, tp per label, predicted per label, gold per label].

    Metrics follow from their column sums (`classification_from_sums`), which is what lets the
    promotion gate bootstrap them cheaply. A prediction of -1 (a label outside the set) is wrong.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(y_true)
    stats = np.zeros((n, 1 + 3 * n_labels), dtype=np.float64)
    stats[:, 0] = y_true == y_pred
    rows = np.arange(n)
    hit = (y_true == y_pred) & (y_pred >= 0)
    stats[rows[hit], 1 + y_pred[hit]] = 1
    known = y_pred >= 0
    stats[rows[known], 1 + n_labels + y_pred[known]] = 1
    stats[rows, 1 + 2 * n_labels + y_true] = 1
    return stats


def classification_from_sums(sums: np.ndarray, label_names: list[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class precision/recall/F1 (keys `<metric>_<label>`) from summed
    `classification_stats`; with two labels also `f1`, the F1 of the second (positive) label."""
    k = len(label_names)
    tp, pred, gold = sums[1 : 1 + k], sums[1 + k : 1 + 2 * k], sums[1 + 2 * k : 1 + 3 * k]
    precision = np.divide(tp, pred, out=np.zeros(k), where=pred > 0)
    recall = np.divide(tp, gold, out=np.zeros(k), where=gold > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    total = gold.sum()
    metrics = {"accuracy": float(sums[0] / total) if total else 0.0, "macro_f1": float(np.mean(f1))}
    if k == 2:
        metrics["f1"] = float(f1[1])
    for i, name in enumerate(label_names):
        metrics[f"precision_{name}"] = float(precision[i])
        metrics[f"recall_{name}"] = float(recall[i])
        metrics[f"f1_{name}"] = float(f1[i])
    return metrics


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class precision/recall/F1 (see `classification_from_sums`)."""
    stats = classification_stats(y_true, y_pred, len(label_names))
    return classification_from_sums(stats.sum(axis=0), label_names)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Confusion matrix, rows = true label, columns = predicted label."""
    return confusion_matrix(y_true, y_pred, labels=list(range(n_labels)))


def plot_confusion(matrix: np.ndarray, label_names: list[str], path: Path, title: str = "") -> Path:
    """Save the confusion matrix as a PNG heat map with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 1.2 + 0.7 * len(label_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size + 0.5))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(label_names))
    ax.set_xticks(ticks, label_names, rotation=45, ha="right")
    ax.set_yticks(ticks, label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def misclassified_rows(
    texts: list[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    confidence: np.ndarray,
    label_names: list[str],
    limit: int,
) -> list[dict]:
    """The `limit` most confident mistakes: text, true and predicted label, confidence."""
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    return [
        {
            "text": texts[i],
            "true": label_names[int(y_true[i])],
            "predicted": label_names[int(y_pred[i])] if y_pred[i] >= 0 else "(unknown label)",
            "confidence": round(float(confidence[i]), 4),
        }
        for i in wrong
    ]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
