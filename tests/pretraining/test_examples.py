"""BERT pretraining examples on hand-made documents whose token ids say where they come from."""

from __future__ import annotations

import numpy as np
import pytest

from tlflow.pretraining.examples import (
    SpecialIds,
    create_nsp_examples,
    mask_tokens,
    pack_sequences,
    word_start_flags,
)

pytestmark = [pytest.mark.unit]

PAD, CLS, SEP, MASK, UNK = 0, 1, 2, 3, 4
SPECIAL = SpecialIds(cls=CLS, sep=SEP, mask=MASK, pad=PAD, vocab_size=100_000)


def make_docs(n_docs: int, n_sentences: int, rng: np.random.Generator) -> list[list[list[int]]]:
    """Token k of sentence s of document d has id 10000 + 1000*d + 10*s + k (never a special id).

    Sentence lengths vary (3..9 tokens) so chunks end at different places.
    """
    return [
        [[10_000 + 1000 * d + 10 * s + k for k in range(int(rng.integers(3, 10)))] for s in range(n_sentences)]
        for d in range(n_docs)
    ]


def locate(token: int) -> tuple[int, int, int]:
    """(document, sentence, position) encoded in a content token id."""
    t = token - 10_000
    return t // 1000, (t % 1000) // 10, t % 10


def segments(example: dict) -> tuple[list[int], list[int]]:
    """Segment A and B of a [CLS] A [SEP] B [SEP] example."""
    ids = example["input_ids"]
    first_sep = ids.index(SEP)
    return ids[1:first_sep], ids[first_sep + 1 : -1]


@pytest.fixture(scope="module")
def nsp_examples() -> tuple[list[list[list[int]]], list[dict]]:
    docs = make_docs(40, 30, np.random.default_rng(7))
    return docs, create_nsp_examples(docs, 32, 0.1, np.random.default_rng(0), SPECIAL)


def test_nsp_layout_and_lengths(nsp_examples):
    _, examples = nsp_examples
    assert len(examples) > 300
    for ex in examples:
        ids, types = ex["input_ids"], ex["token_type_ids"]
        assert len(ids) <= 32
        assert len(types) == len(ids)
        assert ids[0] == CLS and ids[-1] == SEP
        assert ids.count(SEP) == 2 and ids.count(CLS) == 1
        a, b = segments(ex)
        assert a and b
        assert types == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        assert ex["next_sentence_label"] in (0, 1)


def test_nsp_is_next_continues_and_not_next_comes_from_another_document(nsp_examples):
    _, examples = nsp_examples
    n_is_next = n_exact = 0
    for ex in examples:
        a, b = segments(ex)
        doc_a = {locate(t)[0] for t in a}
        doc_b = {locate(t)[0] for t in b}
        assert doc_a == {ex["doc_a"]} and doc_b == {ex["doc_b"]}
        if ex["next_sentence_label"] == 1:
            assert ex["doc_b"] != ex["doc_a"]
            continue
        assert ex["doc_b"] == ex["doc_a"]
        last_a_sentence = locate(a[-1])[1]
        first_b_sentence = locate(b[0])[1]
        # B always comes after A; truncation may cut A's end or B's start (even whole sentences),
        # so the link is exact only in most pairs here (always in the untruncated test below).
        assert first_b_sentence > last_a_sentence
        n_is_next += 1
        n_exact += first_b_sentence == last_a_sentence + 1
    assert n_is_next > 100
    assert n_exact / n_is_next > 0.8


def test_nsp_untruncated_is_next_pairs_are_exact_continuations():
    # Short sentences and a long max length: nothing is truncated, so every IsNext pair must be A's
    # sentences followed by exactly the next sentences of the same document.
    docs = make_docs(10, 20, np.random.default_rng(3))
    examples = create_nsp_examples(docs, 512, 0.0, np.random.default_rng(1), SPECIAL)
    n_is_next = 0
    for ex in examples:
        if ex["next_sentence_label"] == 1:
            continue
        a, b = segments(ex)
        d = ex["doc_a"]
        last = locate(a[-1])[1]
        first = locate(b[0])[1]
        assert first == last + 1
        assert a[-len(docs[d][last]) :] == docs[d][last]
        assert b[: len(docs[d][first])] == docs[d][first]
        n_is_next += 1
    assert n_is_next > 0


def test_nsp_labels_are_balanced(nsp_examples):
    _, examples = nsp_examples
    share = np.mean([ex["next_sentence_label"] for ex in examples])
    # Chunks of a single sentence are always NotNext, so the share is a bit above one half.
    assert 0.45 < share < 0.62


def test_nsp_covers_every_document_and_shuffles(nsp_examples):
    docs, examples = nsp_examples
    assert {ex["doc_a"] for ex in examples} == set(range(len(docs)))
    first_docs = [ex["doc_a"] for ex in examples[:20]]
    assert first_docs != sorted(first_docs)


def test_nsp_is_deterministic_for_a_seed():
    docs = make_docs(5, 10, np.random.default_rng(0))
    one = create_nsp_examples(docs, 24, 0.2, np.random.default_rng(5), SPECIAL)
    two = create_nsp_examples(docs, 24, 0.2, np.random.default_rng(5), SPECIAL)
    assert one == two


def test_nsp_short_sequences_appear_with_short_seq_prob():
    docs = make_docs(20, 40, np.random.default_rng(2))
    full = create_nsp_examples(docs, 64, 0.0, np.random.default_rng(0), SPECIAL)
    short = create_nsp_examples(docs, 64, 0.5, np.random.default_rng(0), SPECIAL)
    assert np.mean([len(e["input_ids"]) for e in short]) < np.mean([len(e["input_ids"]) for e in full]) - 5


def test_nsp_single_document_raises():
    docs = make_docs(1, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="two non-empty documents"):
        create_nsp_examples(docs, 32, 0.1, np.random.default_rng(0), SPECIAL)
    # An empty second document does not count as another document.
    with pytest.raises(ValueError):
        create_nsp_examples(docs + [[[]]], 32, 0.1, np.random.default_rng(0), SPECIAL)


def test_nsp_long_sentence_is_truncated():
    docs = [[list(range(10_000, 10_500))], [list(range(20_000, 20_500))]]
    for ex in create_nsp_examples(docs, 64, 0.0, np.random.default_rng(0), SPECIAL):
        a, b = segments(ex)
        assert len(ex["input_ids"]) == 64
        assert ex["next_sentence_label"] == 1
        # Truncation removes from the ends only: what is left is a contiguous run.
        assert a == list(range(a[0], a[0] + len(a)))
        assert b == list(range(b[0], b[0] + len(b)))


# ---------------------------------------------------------------------------------------------
# pack_sequences
# ---------------------------------------------------------------------------------------------


def test_pack_sequences_keeps_every_token_once_in_order():
    docs = make_docs(7, 9, np.random.default_rng(4))
    examples = pack_sequences(docs, 20, SPECIAL)
    stream: list[int] = []
    for i, ex in enumerate(examples):
        ids = ex["input_ids"]
        assert ids[0] == CLS and ids[-1] == SEP
        assert PAD not in ids
        assert ex["token_type_ids"] == [0] * len(ids)
        if i < len(examples) - 1:
            assert len(ids) == 20
        else:
            assert len(ids) <= 20
        stream.extend(ids[1:-1])
    expected: list[int] = []
    for d, doc in enumerate(docs):
        if d:
            expected.append(SEP)
        expected.extend(t for s in doc for t in s)
    assert stream == expected
    content = [t for t in stream if t != SEP]
    assert content == [t for doc in docs for s in doc for t in s]
    # A [SEP] sits exactly between consecutive documents.
    for before, after in zip(stream, stream[1:]):
        if before != SEP and after != SEP and locate(before)[0] != locate(after)[0]:
            pytest.fail("two documents touch without a [SEP] between them")


def test_pack_sequences_skips_empty_documents():
    examples = pack_sequences([[[11, 12]], [], [[]], [[13]]], 16, SPECIAL)
    assert [ex["input_ids"] for ex in examples] == [[CLS, 11, 12, SEP, 13, SEP]]


# ---------------------------------------------------------------------------------------------
# mask_tokens
# ---------------------------------------------------------------------------------------------


def test_mask_tokens_rates_and_labels():
    rng = np.random.default_rng(0)
    n_candidates = n_masked = n_mask_id = n_random = n_kept = 0
    for _ in range(2000):
        content = rng.integers(10, 5000, size=int(rng.integers(20, 60))).tolist()
        ids = [CLS, *content[:10], SEP, *content[10:], SEP]
        masked, positions, labels = mask_tokens(ids, SPECIAL, 0.15, rng)
        assert len(masked) == len(ids)
        assert positions == sorted(set(positions))
        assert labels == [ids[p] for p in positions]
        for p in positions:
            assert ids[p] not in SPECIAL.never_mask
        unchanged = [i for i in range(len(ids)) if i not in set(positions)]
        assert all(masked[i] == ids[i] for i in unchanged)
        n_candidates += len(content)
        n_masked += len(positions)
        for p in positions:
            if masked[p] == MASK:
                n_mask_id += 1
            elif masked[p] == ids[p]:
                n_kept += 1
            else:
                n_random += 1
                assert 0 <= masked[p] < SPECIAL.vocab_size
                assert masked[p] not in SPECIAL.never_mask
    assert abs(n_masked / n_candidates - 0.15) < 0.01
    assert abs(n_mask_id / n_masked - 0.8) < 0.02
    assert abs(n_random / n_masked - 0.1) < 0.015
    assert abs(n_kept / n_masked - 0.1) < 0.015


def test_mask_tokens_random_ids_avoid_special_ids():
    # A tiny vocabulary makes a random replacement by a special id likely if it were allowed.
    special = SpecialIds(cls=1, sep=2, mask=3, pad=0, vocab_size=6)
    rng = np.random.default_rng(0)
    seen: set[int] = set()
    for _ in range(500):
        masked, positions, _ = mask_tokens([1, 4, 5, 4, 5, 2], special, 0.5, rng)
        seen.update(masked[p] for p in positions)
    assert seen <= {3, 4, 5}
    assert seen == {3, 4, 5}


def test_mask_tokens_at_least_one_and_nothing_without_candidates():
    rng = np.random.default_rng(0)
    masked, positions, labels = mask_tokens([CLS, 50, SEP], SPECIAL, 0.15, rng)
    assert positions == [1] and labels == [50]
    assert mask_tokens([CLS, SEP, PAD], SPECIAL, 0.15, rng) == ([CLS, SEP, PAD], [], [])


def test_unk_may_be_masked():
    rng = np.random.default_rng(0)
    hits = sum(1 in mask_tokens([CLS, UNK, 50, SEP], SPECIAL, 0.5, rng)[1] for _ in range(200))
    assert hits > 50


def test_whole_word_masking_masks_all_pieces():
    tokens = ["[CLS]", "the", "straw", "##berry", "##like", "fields", "for", "ever", "##more", "[SEP]"]
    starts = word_start_flags(tokens)
    assert starts == [True, True, True, False, False, True, True, True, False, True]
    words = [[1], [2, 3, 4], [5], [6], [7, 8]]
    ids = [CLS, 11, 12, 13, 14, 15, 16, 17, 18, SEP]
    rng = np.random.default_rng(0)
    chosen_words: set[int] = set()
    for _ in range(500):
        _, positions, labels = mask_tokens(ids, SPECIAL, 0.4, rng, starts)
        assert positions
        assert labels == [ids[p] for p in positions]
        covered = set(positions)
        for w, word in enumerate(words):
            hit = covered & set(word)
            assert not hit or hit == set(word), f"word {word} partly masked: {positions}"
            if hit:
                chosen_words.add(w)
    assert chosen_words == set(range(len(words)))


def test_whole_word_masking_rate_over_many_sequences():
    rng = np.random.default_rng(1)
    total = masked = 0
    for _ in range(1000):
        lengths = rng.integers(1, 4, size=30)
        starts = [True] + [k == 0 for n in lengths for k in range(n)] + [True]
        ids = [CLS] + [10 + i for i in range(len(starts) - 2)] + [SEP]
        _, positions, _ = mask_tokens(ids, SPECIAL, 0.15, rng, starts)
        budget = round(0.15 * (len(ids) - 2))
        single_word = starts[positions[0]] and not any(starts[p] for p in positions[1:])
        assert len(positions) <= budget or single_word  # a word that would overshoot is skipped
        total += len(ids) - 2
        masked += len(positions)
    assert abs(masked / total - 0.15) < 0.02


def test_special_ids_always_never_mask_the_four_specials():
    special = SpecialIds(cls=101, sep=102, mask=103, pad=0, vocab_size=30522)
    assert special.never_mask == frozenset({0, 101, 102, 103})
    with pytest.raises(ValueError):
        SpecialIds(cls=1, sep=2, mask=3, pad=0, vocab_size=4)
