"""IOB2 tag sequences: validity, entity spans, word/sub-word label alignment and entity-level metrics.

Named-entity data is labelled per word, but the model sees sub-word tokens. `align_labels` moves
word labels onto tokens for training (-100 where the loss should ignore a token), `word_predictions`
brings token predictions back to words, and `entity_metrics` scores whole entities the way
CoNLL-2003 results are reported (seqeval, strict IOB2, micro-averaged).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
from seqeval.metrics.v1 import unique_labels
from seqeval.scheme import IOB2

from tlflow.modeling.batching import IGNORE_INDEX


def _split_tag(tag: str) -> tuple[str, str] | None:
    """('B'|'I', type) for a well-formed entity tag, None for anything else (including 'O')."""
    prefix, sep, kind = tag.partition("-")
    if prefix not in ("B", "I") or not sep or not kind or kind != kind.strip() or " " in kind:
        return None
    return prefix, kind


def iob2_error(tags: Sequence[str]) -> str | None:
    """None when ``tags`` is valid IOB2, else a one-line description of the first problem.

    Valid: every tag is 'O', 'B-X' or 'I-X', and an I-X follows a B-X or I-X of the same type X.
    Words are counted from 1 in the message, e.g. ``word 3: I-PER follows O``.
    """
    previous: str | None = None
    for i, tag in enumerate(tags, start=1):
        if tag != "O":
            parts = _split_tag(tag) if isinstance(tag, str) else None
            if parts is None:
                return f"word {i}: malformed tag {tag!r}"
            prefix, kind = parts
            if prefix == "I":
                if previous is None:
                    return f"word {i}: {tag} starts the sentence"
                if previous == "O" or previous[2:] != kind:
                    return f"word {i}: {tag} follows {previous}"
        previous = tag
    return None


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities of a valid IOB2 sequence as (type, first word, last word inclusive), 0-based.

    Raises ValueError (with `iob2_error`'s description) for an invalid sequence, rather than guess.
    """
    error = iob2_error(tags)
    if error is not None:
        raise ValueError(f"not a valid IOB2 sequence: {error}")
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append((tag[2:], i, i))
        elif tag.startswith("I-"):
            kind, start, _ = spans[-1]
            spans[-1] = (kind, start, i)
    return spans


def align_labels(
    word_ids: Sequence[int | None], word_labels: Sequence[int], label_all_subwords: bool = False
) -> list[int]:
    """Per-token label ids from per-word label ids, for training a token classifier.

    The first sub-word of each word gets the word's label; special tokens (word id None) get -100,
    and so do later sub-words of a word unless ``label_all_subwords``, which gives them the same label.
    ``word_ids`` is what a fast tokenizer's ``encoding.word_ids()`` returns.
    """
    labels: list[int] = []
    previous: int | None = None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE_INDEX)
        elif word != previous or label_all_subwords:
            labels.append(int(word_labels[word]))
        else:
            labels.append(IGNORE_INDEX)
        previous = word
    return labels


def word_predictions(
    word_ids: Sequence[int | None], token_predictions: Sequence[int] | np.ndarray, n_words: int, default: int
) -> list[int]:
    """Per-word predictions from per-token ones: each word takes its first sub-word's prediction.

    Words that truncation cut off (no token carries their id) get ``default``, so the result always
    has ``n_words`` entries and lines up with the gold tags. ``token_predictions`` may be longer than
    ``word_ids`` (padding); it may not be shorter.
    """
    if len(token_predictions) < len(word_ids):
        raise ValueError(f"{len(token_predictions)} token predictions for {len(word_ids)} tokens")
    result: list[int | None] = [None] * n_words
    for position, word in enumerate(word_ids):
        if word is None:
            continue
        if not 0 <= word < n_words:
            raise ValueError(f"token {position} belongs to word {word}, but the sentence has {n_words} words")
        if result[word] is None:
            result[word] = int(token_predictions[position])
    return [default if p is None else p for p in result]


def entity_metrics(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level scores of predicted against gold IOB2 tags (seqeval, strict mode, IOB2).

    Returns micro-averaged ``precision``, ``recall`` and ``f1`` over entities (an entity counts only
    when type and both boundaries match), ``f1_<TYPE>`` for every type in gold or predictions, and
    ``token_accuracy`` over all words. Undefined ratios (no entities) count as 0. Raises ValueError,
    naming the sentence, when the number of sentences or a sentence's length differs or a tag is malformed
    (seqeval would fail with a bare KeyError). Ill-ordered but well-formed tags (I-X after O) are scored as
    seqeval's strict mode does: they start no entity.
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} gold sentences but {len(pred_tags)} predicted")
    for i, (gold, pred) in enumerate(zip(true_tags, pred_tags)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {i}: {len(gold)} gold tags but {len(pred)} predicted")
        for which, tags in (("gold", gold), ("predicted", pred)):
            bad = next((t for t in tags if t != "O" and (not isinstance(t, str) or _split_tag(t) is None)), None)
            if bad is not None:
                raise ValueError(f"sentence {i}: malformed {which} tag {bad!r}")
    y_true = [list(s) for s in true_tags]
    y_pred = [list(s) for s in pred_tags]
    if sum(len(s) for s in y_true) == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "token_accuracy": 0.0}

    strict = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    metrics = {
        "precision": float(precision_score(y_true, y_pred, **strict)),
        "recall": float(recall_score(y_true, y_pred, **strict)),
        "f1": float(f1_score(y_true, y_pred, **strict)),
    }
    types = unique_labels(y_true, y_pred, IOB2)
    if types:
        per_type = f1_score(y_true, y_pred, average=None, **strict)
        for kind, score in zip(types, per_type):
            metrics[f"f1_{kind}"] = float(score)
    metrics["token_accuracy"] = float(accuracy_score(y_true, y_pred))
    return metrics
