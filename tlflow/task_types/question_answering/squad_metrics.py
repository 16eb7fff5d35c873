"""The official SQuAD v1.1 evaluation (exact match and token F1), on a 0..1 scale.

Same normalisation and scoring as the official ``evaluate-v1.1.py``, so numbers are comparable
with published results once multiplied by 100.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lowercase, drop ASCII punctuation, drop the articles a/an/the and collapse whitespace (official order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    """Harmonic mean of token precision and recall over normalised tokens (bag-of-words overlap)."""
    pred_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(truth).split()
    common = Counter(pred_tokens) & Counter(truth_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], gold: list[list[str]]) -> dict[str, float]:
    """Mean over examples of the best exact match and F1 against any gold answer: {"exact_match", "f1"} in 0..1.

    Raises ValueError when the lists differ in length, are empty, or an example has no gold answer.
    """
    if len(predictions) != len(gold):
        raise ValueError(f"predictions and gold differ in length ({len(predictions)} vs {len(gold)})")
    if not predictions:
        raise ValueError("no examples to score")
    em_total = f1_total = 0.0
    for n, (prediction, truths) in enumerate(zip(predictions, gold)):
        truths = list(truths)
        if not truths:
            raise ValueError(f"example {n} has no gold answers")
        em_total += max(exact_match(prediction, t) for t in truths)
        f1_total += max(f1(prediction, t) for t in truths)
    return {"exact_match": em_total / len(predictions), "f1": f1_total / len(predictions)}
