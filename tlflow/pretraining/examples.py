"""BERT pretraining examples from tokenized documents: NSP sentence pairs, packed sequences, masking.

Pure functions on token ids. Documents arrive as ``docs[d][s] = token ids of sentence s of document
d`` (no special tokens); randomness comes only from the numpy Generator passed in, so a seed fixes
every example and every mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["SpecialIds", "create_nsp_examples", "mask_tokens", "pack_sequences", "word_start_flags"]

#: Share of the tokens chosen for masking that become [MASK] / a random token (the rest stay as they are).
MASK_SHARE = 0.8
RANDOM_SHARE = 0.1


@dataclass(frozen=True)
class SpecialIds:
    """Special token ids and the vocabulary size that building and masking examples need.

    `never_mask` always contains [CLS], [SEP], [MASK] and [PAD] (added when not given); [UNK] is
    not in it by default because an unknown token is ordinary input that may be masked.
    """

    cls: int
    sep: int
    mask: int
    pad: int
    vocab_size: int
    never_mask: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        always = {self.cls, self.sep, self.mask, self.pad}
        object.__setattr__(self, "never_mask", frozenset(self.never_mask) | always)
        if self.vocab_size <= len(self.never_mask):
            raise ValueError(f"vocab_size {self.vocab_size} leaves no id that may replace a masked token")

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> SpecialIds:
        """Ids of a BERT-style (Hugging Face) tokenizer; the vocabulary size includes added tokens."""
        return cls(
            cls=tokenizer.cls_token_id,
            sep=tokenizer.sep_token_id,
            mask=tokenizer.mask_token_id,
            pad=tokenizer.pad_token_id,
            vocab_size=len(tokenizer),
        )


@lru_cache(maxsize=8)
def _replacement_ids(special: SpecialIds) -> np.ndarray:
    """Ids a masked token may be replaced with at random: the vocabulary without never_mask."""
    ids = np.arange(special.vocab_size, dtype=np.int64)
    return ids[~np.isin(ids, np.fromiter(special.never_mask, dtype=np.int64))]


# ---------------------------------------------------------------------------------------------
# Next-sentence prediction
# ---------------------------------------------------------------------------------------------


def _truncate_pair(
    a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """Shorten the pair to `max_tokens`, one token at a time from the longer side, front or back at random.

    Which side loses a token depends only on the lengths, so the per-side counts are computed first
    and the front/back coin flips are drawn as one binomial per side (same distribution as BERT's
    token-by-token loop, without its quadratic cost on very long sentences).
    """
    la, lb = len(a), len(b)
    while la + lb > max_tokens:
        if la > lb:
            la -= 1
        else:
            lb -= 1
    cut_a, cut_b = len(a) - la, len(b) - lb
    front_a = int(rng.binomial(cut_a, 0.5)) if cut_a else 0
    front_b = int(rng.binomial(cut_b, 0.5)) if cut_b else 0
    return a[front_a : front_a + la], b[front_b : front_b + lb]


def _pair_example(
    a: list[int], b: list[int], is_random_next: bool, doc_a: int, doc_b: int, special: SpecialIds
) -> dict[str, Any]:
    """[CLS] A [SEP] B [SEP] with segment ids 0 for the first part and 1 for B and its [SEP]."""
    return {
        "input_ids": [special.cls, *a, special.sep, *b, special.sep],
        "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
        "next_sentence_label": int(is_random_next),
        "doc_a": doc_a,
        "doc_b": doc_b,
    }


def create_nsp_examples(
    docs: Sequence[Sequence[Sequence[int]]],
    max_seq_length: int,
    short_seq_prob: float,
    rng: np.random.Generator,
    special: SpecialIds,
) -> list[dict[str, Any]]:
    """Sentence-pair examples for MLM + next-sentence prediction, as Google's create_pretraining_data.py.

    Each document is walked sentence by sentence, gathering a chunk until it reaches the target
    length (max_seq_length - 3, or with probability `short_seq_prob` a random length in
    [2, target], drawn per chunk) or the document ends. A random split point makes segment A. With
    probability 0.5, and always when the chunk is a single sentence, B is taken from a random other
    document from a random sentence on (NotNext, label 1) and the chunk's unused sentences go back to
    the walk; otherwise B is the rest of the chunk (IsNext, label 0, the Hugging Face convention).
    The pair is truncated to the target length from the front or back of the longer segment.

    Args:
        docs: documents -> sentences -> token ids without special tokens; empty sentences and
            documents are ignored (document indices in the output still refer to `docs`).
        max_seq_length: longest example including [CLS] and two [SEP].
        short_seq_prob: share of chunks with a shorter random target length.
        rng: source of all randomness.
        special: [CLS]/[SEP] ids.

    Returns:
        Examples in random order: input_ids, token_type_ids, next_sentence_label, doc_a, doc_b.

    Raises:
        ValueError: fewer than two non-empty documents (NotNext needs another document) or
            max_seq_length below 5.
    """
    max_tokens = max_seq_length - 3
    if max_tokens < 2:
        raise ValueError(f"max_seq_length must be at least 5 for sentence pairs, got {max_seq_length}")
    # Keep original document indices so doc_a/doc_b refer to the caller's list.
    kept = [(d, [list(s) for s in doc if len(s)]) for d, doc in enumerate(docs)]
    kept = [(d, sents) for d, sents in kept if sents]
    if len(kept) < 2:
        raise ValueError("next-sentence prediction needs at least two non-empty documents")
    examples: list[dict[str, Any]] = []
    for k, (doc_index, sentences) in enumerate(kept):
        examples.extend(_document_examples(k, doc_index, sentences, kept, max_tokens, short_seq_prob, rng, special))
    order = rng.permutation(len(examples))
    return [examples[i] for i in order]


def _target_length(max_tokens: int, short_seq_prob: float, rng: np.random.Generator) -> int:
    """Usually fill the whole example; sometimes aim shorter so the model also sees short inputs."""
    if short_seq_prob > 0 and rng.random() < short_seq_prob:
        return int(rng.integers(2, max_tokens + 1))
    return max_tokens


def _document_examples(
    k: int,
    doc_index: int,
    sentences: list[list[int]],
    kept: list[tuple[int, list[list[int]]]],
    max_tokens: int,
    short_seq_prob: float,
    rng: np.random.Generator,
    special: SpecialIds,
) -> list[dict[str, Any]]:
    """The NSP examples whose segment A comes from one document (`kept[k]`)."""
    out: list[dict[str, Any]] = []
    target = _target_length(max_tokens, short_seq_prob, rng)
    chunk: list[list[int]] = []
    length = 0
    i = 0
    while i < len(sentences):
        chunk.append(sentences[i])
        length += len(sentences[i])
        if i == len(sentences) - 1 or length >= target:
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
            tokens_a = [t for s in chunk[:a_end] for t in s]
            if len(chunk) == 1 or rng.random() < 0.5:
                # NotNext: another document, never this one (drawn among the others directly).
                other = int(rng.integers(len(kept) - 1))
                other += other >= k
                other_index, other_sentences = kept[other]
                tokens_b: list[int] = []
                for s in other_sentences[int(rng.integers(len(other_sentences))) :]:
                    tokens_b.extend(s)
                    if len(tokens_b) >= target - len(tokens_a):
                        break
                # The sentences after A were not used: walk on from there so they are not lost.
                i -= len(chunk) - a_end
                is_random, doc_b = True, other_index
            else:
                tokens_b = [t for s in chunk[a_end:] for t in s]
                is_random, doc_b = False, doc_index
            a, b = _truncate_pair(tokens_a, tokens_b, target, rng)
            out.append(_pair_example(a, b, is_random, doc_index, doc_b, special))
            chunk, length = [], 0
            target = _target_length(max_tokens, short_seq_prob, rng)
        i += 1
    return out


# ---------------------------------------------------------------------------------------------
# Packed sequences (MLM only)
# ---------------------------------------------------------------------------------------------


def pack_sequences(
    docs: Sequence[Sequence[Sequence[int]]], max_seq_length: int, special: SpecialIds
) -> list[dict[str, list[int]]]:
    """Full-length MLM examples without NSP: the corpus as one token stream cut into equal pieces.

    Documents are concatenated with a [SEP] between consecutive documents (so the model can tell
    where unrelated text starts), and the stream is cut into chunks of exactly max_seq_length - 2
    tokens, each example being [CLS] + chunk + [SEP]; only the last one may be shorter. Nothing is
    padded (the collator pads per batch).
    """
    width = max_seq_length - 2
    if width < 1:
        raise ValueError(f"max_seq_length must be at least 3, got {max_seq_length}")
    stream: list[int] = []
    for doc in docs:
        tokens = [t for s in doc for t in s]
        if not tokens:
            continue
        if stream:
            stream.append(special.sep)
        stream.extend(tokens)
    return [
        {
            "input_ids": [special.cls, *stream[start : start + width], special.sep],
            "token_type_ids": [0] * (min(width, len(stream) - start) + 2),
        }
        for start in range(0, len(stream), width)
    ]


# ---------------------------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------------------------


def word_start_flags(tokens: Sequence[str]) -> list[bool]:
    """True where a WordPiece token starts a word, False for '##' continuation pieces."""
    return [not t.startswith("##") for t in tokens]


def _whole_words(candidates: list[int], word_starts: Sequence[bool]) -> list[list[int]]:
    """Candidate positions grouped into words: a continuation joins the word right before it."""
    words: list[list[int]] = []
    for pos in candidates:
        if not word_starts[pos] and words and words[-1][-1] == pos - 1:
            words[-1].append(pos)
        else:
            words.append([pos])
    return words


def _choose_positions(
    candidates: list[int], budget: int, rng: np.random.Generator, word_starts: Sequence[bool] | None
) -> list[int]:
    """`budget` candidate positions, or whole words adding up to at most `budget` tokens."""
    if word_starts is None:
        return rng.choice(candidates, size=budget, replace=False).tolist()
    words = _whole_words(candidates, word_starts)
    chosen: list[int] = []
    for w in rng.permutation(len(words)).tolist():
        if len(chosen) >= budget:
            break
        word = words[w]
        # As BERT: skip a word that would overshoot, but take the first one anyway so that a
        # sequence of long words still gets a mask.
        if chosen and len(chosen) + len(word) > budget:
            continue
        chosen.extend(word)
    return chosen


def mask_tokens(
    input_ids: Sequence[int],
    special: SpecialIds,
    probability: float,
    rng: np.random.Generator,
    word_starts: Sequence[bool] | None = None,
) -> tuple[list[int], list[int], list[int]]:
    """BERT's masked-LM corruption of one sequence.

    round(probability x candidates) positions are chosen (at least one when there is a candidate)
    among tokens not in `special.never_mask`; with `word_starts` (whole-word masking) whole words
    are chosen until the budget is reached, all their pieces together. Of the chosen tokens 80 %
    become [MASK], 10 % a random id from the vocabulary without the never-masked ids, and 10 % stay
    unchanged (so the model cannot tell which unmasked tokens it will be scored on).

    Returns:
        (masked ids, chosen positions in ascending order, original ids at those positions).
    """
    ids = list(input_ids)
    if word_starts is not None and len(word_starts) != len(ids):
        raise ValueError(f"word_starts has {len(word_starts)} flags for {len(ids)} tokens")
    never = special.never_mask
    candidates = [i for i, t in enumerate(ids) if t not in never]
    if not candidates:
        return ids, [], []
    budget = max(1, round(probability * len(candidates)))
    positions = sorted(_choose_positions(candidates, budget, rng, word_starts))
    labels = [ids[p] for p in positions]
    draws = rng.random(len(positions))
    replacements = _replacement_ids(special)
    random_ids = replacements[rng.integers(len(replacements), size=len(positions))]
    for p, draw, random_id in zip(positions, draws.tolist(), random_ids.tolist()):
        if draw < MASK_SHARE:
            ids[p] = special.mask
        elif draw < MASK_SHARE + RANDOM_SHARE:
            ids[p] = random_id
    return ids, positions, labels
