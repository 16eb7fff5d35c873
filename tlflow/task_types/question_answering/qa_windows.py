"""Sliding-window features for extractive question answering, and span selection from start/end logits.

Plain-list versions of the preprocessing and post-processing in Hugging Face's ``run_qa.py``: a
(question, context) pair longer than ``max_length`` becomes several windows over the context that
overlap by ``doc_stride`` tokens; the question always comes first (the BERT layout). Each window
remembers ``example_index``, the input example it came from, so predictions can be gathered back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Answer:
    """A predicted span: its text, its score (start + end logit) and its character offsets (end exclusive)."""

    text: str
    score: float
    start: int
    end: int


def prepare_train_features(
    questions: list[str],
    contexts: list[str],
    answer_starts: list[int],
    answer_texts: list[str],
    tokenizer: Any,
    max_length: int,
    doc_stride: int,
) -> dict[str, list]:
    """Windows with the answer's token positions, for training.

    One answer per example (give the first). ``start_positions``/``end_positions`` are the token
    indices of the answer inside each window, or both the [CLS] index (0) when the answer is not
    wholly inside that window, or when the example has no answer (empty text or negative start).
    Returns input_ids, token_type_ids, start_positions, end_positions and example_index, unpadded.
    """
    n = len(questions)
    if not (len(contexts) == len(answer_starts) == len(answer_texts) == n):
        raise ValueError(
            f"questions, contexts, answer_starts and answer_texts differ in length "
            f"({n}, {len(contexts)}, {len(answer_starts)}, {len(answer_texts)})"
        )
    enc = _encode(questions, contexts, tokenizer, max_length, doc_stride)
    out: dict[str, list] = {
        "input_ids": [],
        "token_type_ids": [],
        "start_positions": [],
        "end_positions": [],
        "example_index": [],
    }
    for w, example in enumerate(enc["overflow_to_sample_mapping"]):
        input_ids = enc["input_ids"][w]
        offsets = _context_offsets(enc, w)
        cls = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        start_char = int(answer_starts[example])
        end_char = start_char + len(answer_texts[example])
        start_tok, end_tok = cls, cls
        if answer_texts[example] and start_char >= 0:
            span = _token_span(offsets, start_char, end_char)
            if span is not None:
                start_tok, end_tok = span
        out["input_ids"].append(list(input_ids))
        out["token_type_ids"].append(list(enc["token_type_ids"][w]))
        out["start_positions"].append(start_tok)
        out["end_positions"].append(end_tok)
        out["example_index"].append(int(example))
    return out


def prepare_eval_features(
    questions: list[str],
    contexts: list[str],
    tokenizer: Any,
    max_length: int,
    doc_stride: int,
) -> dict[str, list]:
    """Windows for prediction: input_ids, token_type_ids, example_index and offset_mapping.

    ``offset_mapping`` has, per window, one entry per token: the (start, end) character offsets
    into the context for context tokens and None for question and special tokens, so that
    `postprocess_predictions` can never pick a span outside the context.
    """
    if len(questions) != len(contexts):
        raise ValueError(f"questions and contexts differ in length ({len(questions)} vs {len(contexts)})")
    enc = _encode(questions, contexts, tokenizer, max_length, doc_stride)
    out: dict[str, list] = {"input_ids": [], "token_type_ids": [], "example_index": [], "offset_mapping": []}
    for w, example in enumerate(enc["overflow_to_sample_mapping"]):
        out["input_ids"].append(list(enc["input_ids"][w]))
        out["token_type_ids"].append(list(enc["token_type_ids"][w]))
        out["example_index"].append(int(example))
        out["offset_mapping"].append(_context_offsets(enc, w))
    return out


def postprocess_predictions(
    contexts: list[str],
    example_index: list[int],
    offset_mapping: list[list],
    start_logits: list[np.ndarray],
    end_logits: list[np.ndarray],
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> list[Answer]:
    """The best answer span for each context, over all of its windows.

    In each window the ``n_best_size`` highest start and end logits among the context tokens are
    paired; a pair is a valid span when end >= start and it has at most ``max_answer_length``
    tokens. Its score is start logit + end logit and the highest score over the example's windows
    wins (the first one found on ties). An example without any valid span (or without windows)
    gets ``Answer("", float("-inf"), 0, 0)``.
    """
    w = len(example_index)
    if not (len(offset_mapping) == len(start_logits) == len(end_logits) == w):
        raise ValueError(
            f"example_index, offset_mapping, start_logits and end_logits differ in length "
            f"({w}, {len(offset_mapping)}, {len(start_logits)}, {len(end_logits)})"
        )
    best: list[Answer] = [Answer("", float("-inf"), 0, 0) for _ in contexts]
    for window, example in enumerate(example_index):
        example = int(example)
        if not 0 <= example < len(contexts):
            raise ValueError(f"window {window}: example_index {example} out of range for {len(contexts)} contexts")
        offsets = offset_mapping[window]
        starts = np.asarray(start_logits[window], dtype=np.float64).reshape(-1)
        ends = np.asarray(end_logits[window], dtype=np.float64).reshape(-1)
        usable = min(len(offsets), len(starts), len(ends))
        in_context = np.array([i for i in range(usable) if offsets[i] is not None], dtype=np.int64)
        if in_context.size == 0:
            continue
        top_starts = _top(in_context, starts, n_best_size)
        top_ends = _top(in_context, ends, n_best_size)
        for s in top_starts:
            for e in top_ends:
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(starts[s] + ends[e])
                if score > best[example].score:
                    char_start, char_end = int(offsets[s][0]), int(offsets[e][1])
                    best[example] = Answer(contexts[example][char_start:char_end], score, char_start, char_end)
    return best


# --------------------------------------------------------------------------- helpers


def _encode(questions: list[str], contexts: list[str], tokenizer: Any, max_length: int, doc_stride: int) -> Any:
    """Tokenize (question, context) pairs into overlapping windows over the context, unpadded."""
    if max_length <= 0 or doc_stride < 0:
        raise ValueError(f"need max_length > 0 and doc_stride >= 0, got {max_length} and {doc_stride}")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("sliding windows need a fast tokenizer (offset mappings, overflowing tokens)")
    # Some SQuAD questions start with long runs of spaces that only waste window room (as in run_qa.py).
    questions = [q.lstrip() for q in questions]
    return tokenizer(
        questions,
        list(contexts),
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
        padding=False,
    )


def _context_offsets(enc: Any, window: int) -> list[tuple[int, int] | None]:
    """Character offsets of the window's context tokens, None for question and special tokens."""
    sequence_ids = enc.sequence_ids(window)
    return [(int(o[0]), int(o[1])) if sid == 1 else None for o, sid in zip(enc["offset_mapping"][window], sequence_ids)]


def _token_span(offsets: Sequence[tuple[int, int] | None], start_char: int, end_char: int) -> tuple[int, int] | None:
    """Token indices of the first and last token of [start_char, end_char), or None if not wholly in the window."""
    context = [i for i, o in enumerate(offsets) if o is not None]
    if not context:
        return None
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return None
    # The last token starting at or before the answer start, the first token ending at or after its end.
    start_tok = max(i for i in context if offsets[i][0] <= start_char)
    end_tok = min(i for i in context if offsets[i][1] >= end_char)
    return start_tok, max(start_tok, end_tok)


def _top(candidates: np.ndarray, logits: np.ndarray, n: int) -> list[int]:
    """The (at most) ``n`` candidate indices with the highest logits, best first, ties by position."""
    order = np.argsort(-logits[candidates], kind="stable")[: max(n, 0)]
    return [int(i) for i in candidates[order]]
