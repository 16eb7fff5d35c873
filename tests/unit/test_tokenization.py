import pytest
from datasets import Dataset, DatasetDict

from tlflow.models import load_tokenizer
from tlflow.tokenization import cache_key, encode_labels, load_tokenized, tokenize_cached


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm-l6")


def splits():
    rows = {"text": ["a fine film", "dull and long , really long"], "label": ["positive", "negative"],
            "source_file": ["f", "f"], "source_row": [2, 3]}
    return DatasetDict({"train": Dataset.from_dict(rows), "test": Dataset.from_dict(rows)})


def test_labels_are_encoded_by_declared_order():
    out = encode_labels(splits(), ["negative", "positive"])
    assert out["train"]["labels"] == [1, 0]


def test_tokenized_once_then_served_from_cache(tmp_path, tokenizer):
    key = cache_key(data="x", max_length=8)
    first = tokenize_cached(splits(), ["negative", "positive"], tokenizer, 8, tmp_path, key)
    second = tokenize_cached(splits(), ["negative", "positive"], tokenizer, 8, tmp_path, key)
    assert not first.cache_hit and second.cache_hit and first.path == second.path
    train = load_tokenized(second.path)["train"]
    assert train["input_ids"][0][0] == tokenizer.cls_token_id
    assert max(train["length"]) == 8  # truncated to max_length, no padding stored
    assert train["length"][0] == len(train["input_ids"][0]) < 8
    assert [p.name for p in tmp_path.iterdir()] == [key]  # no temporary folders left behind


def test_cache_key_depends_on_every_part():
    base = dict(data_md5="a", tokenizer="t", max_length=64, data={"x": 1})
    assert cache_key(**base) == cache_key(**dict(reversed(list(base.items()))))
    for k, v in [("data_md5", "b"), ("tokenizer", "u"), ("max_length", 128), ("data", {"x": 2})]:
        assert cache_key(**{**base, k: v}) != cache_key(**base)
