"""A WordPiece vocabulary trained on real WikiText lines behaves like a BERT tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tlflow.pretraining.vocab import SPECIAL_TOKENS, train_wordpiece

pytestmark = [pytest.mark.integration]

WIKITEXT = Path(__file__).resolve().parents[2] / "data" / "corpus" / "wikitext2" / "valid.txt"
UNSEEN = "☃"


@pytest.fixture(scope="module")
def lines() -> list[str]:
    if not WIKITEXT.is_file():
        pytest.skip("data/corpus/wikitext2/valid.txt is missing: run `dvc pull`")
    with WIKITEXT.open(encoding="utf-8") as handle:
        rows = [line.strip() for line in handle if line.strip() and not line.strip().startswith("=")]
    return rows[:400]


@pytest.fixture(scope="module")
def tokenizer(lines: list[str]) -> PreTrainedTokenizerBase:
    return train_wordpiece(lines, vocab_size=1000, max_length=128)


def test_vocabulary_has_the_requested_size_and_special_ids(tokenizer):
    assert len(tokenizer) == 1000
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id) == (0, 1, 2)
    assert (tokenizer.sep_token_id, tokenizer.mask_token_id) == (3, 4)
    assert tokenizer.model_max_length == 128
    assert tokenizer.is_fast


def test_small_corpus_gives_at_most_the_requested_size(lines):
    small = train_wordpiece(lines[:50], vocab_size=30000)
    assert 100 < len(small) < 30000


def test_encode_decode_round_trip_is_lowercased(tokenizer, lines):
    text = "The Lobster Is Closely Related To The American Lobster."
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text.lower()
    pieces = [piece for line in lines[:50] for piece in tokenizer.tokenize(line)]
    assert any(piece.startswith("##") for piece in pieces)
    assert tokenizer.unk_token not in pieces[:200]


def test_cased_tokenizer_keeps_case(lines):
    cased = train_wordpiece(lines, vocab_size=600, lowercase=False)
    assert cased.decode(cased("The Lobster")["input_ids"], skip_special_tokens=True) == "The Lobster"


def test_pairs_get_token_types(tokenizer):
    encoded = tokenizer("the first part", "the second part")
    types, ids = encoded["token_type_ids"], encoded["input_ids"]
    sep = ids.index(tokenizer.sep_token_id)
    assert ids.count(tokenizer.sep_token_id) == 2 and ids[-1] == tokenizer.sep_token_id
    assert set(types[: sep + 1]) == {0} and set(types[sep + 1 :]) == {1}


def test_save_and_load_round_trip_gives_identical_ids(tokenizer, lines, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert len(loaded) == len(tokenizer) and loaded.model_max_length == 128
    assert loaded.mask_token_id == 4 and loaded.pad_token_id == 0
    for a, b in zip(lines[:20], lines[20:40]):
        assert loaded(a, b) == tokenizer(a, b)


def test_unknown_characters_map_to_unk(tokenizer, lines):
    assert not any(UNSEEN in line for line in lines)
    assert tokenizer.tokenize(f"the {UNSEEN} the") == ["the", "[UNK]", "the"]
    assert tokenizer(UNSEEN)["input_ids"] == [tokenizer.cls_token_id, tokenizer.unk_token_id, tokenizer.sep_token_id]
