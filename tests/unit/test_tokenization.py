import pytest
from datasets import Dataset

from tlflow.data.cache import cache_key, load_tokenized, tokenize_cached
from tlflow.modeling.models import load_tokenizer
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import get_task_type

pytestmark = [pytest.mark.unit]


def split():
    rows = {"text": ["a fine film", "dull and long , really long"], "label": ["positive", "negative"],
            "source_file": ["f", "f"], "source_row": [2, 3]}
    return Dataset.from_dict(rows)


def test_tokenized_once_then_served_from_cache(tmp_path):
    tokenizer = load_tokenizer("minilm-l6")
    task = get_task_type("text-classification")
    settings = TaskSettings("text-classification", max_length=8)
    calls = []

    def build(rows):
        calls.append(len(rows))
        return task.train_features(rows, ["negative", "positive"], tokenizer, settings)

    key = cache_key(data="x", max_length=8)
    first = tokenize_cached(split(), build, tmp_path, key)
    second = tokenize_cached(split(), build, tmp_path, key)
    assert not first.cache_hit and second.cache_hit and first.path == second.path and len(calls) == 1
    train = load_tokenized(second.path)["train"]
    assert train["labels"] == [1, 0]  # encoded in declared label order
    assert train["input_ids"][0][0] == tokenizer.cls_token_id
    assert len(train["input_ids"][1]) == 8  # truncated to max_length, no padding stored
    assert len(train["input_ids"][0]) < 8
    assert [p.name for p in tmp_path.iterdir()] == [key]  # no temporary folders left behind


def test_cache_key_depends_on_every_part():
    base = dict(data_md5="a", tokenizer="t", max_length=64, data={"x": 1})
    assert cache_key(**base) == cache_key(**dict(reversed(list(base.items()))))
    for k, v in [("data_md5", "b"), ("tokenizer", "u"), ("max_length", 128), ("data", {"x": 2})]:
        assert cache_key(**{**base, k: v}) != cache_key(**base)


def test_chunked_features_equal_the_features_built_at_once(tmp_path):
    tokenizer = load_tokenizer("minilm-l6")
    task = get_task_type("text-classification")
    settings = TaskSettings("text-classification", max_length=16)
    texts = [f"film number {i} was {'fine' if i % 3 else 'dull and long'}" for i in range(23)]
    rows = Dataset.from_dict({"text": texts, "label": ["positive" if i % 3 else "negative" for i in range(23)]})
    calls = []

    def build(chunk):
        calls.append(len(chunk))
        return task.train_features(chunk, ["negative", "positive"], tokenizer, settings)

    built = tokenize_cached(rows, build, tmp_path, "chunked", chunk_rows=5)
    assert calls == [5, 5, 5, 5, 3]  # one chunk of rows in memory at a time
    whole = task.train_features(rows, ["negative", "positive"], tokenizer, settings)
    assert load_tokenized(built.path)["train"].to_dict() == whole
    assert [p.name for p in tmp_path.iterdir()] == ["chunked"]  # the chunk file is gone


def test_a_chunk_with_other_columns_is_refused_and_nothing_is_cached(tmp_path):
    rows = Dataset.from_dict({"text": ["a", "b", "c"]})

    def build(chunk):
        if chunk["text"][0] == "c":
            return {"input_ids": [[1]], "labels": [[0]]}  # labels per token after labels per example
        return {"input_ids": [[1, 2]] * len(chunk), "labels": [0] * len(chunk)}

    with pytest.raises(ValueError, match="rows 3-3"):
        tokenize_cached(rows, build, tmp_path, "mismatch", chunk_rows=2)
    assert list(tmp_path.iterdir()) == []


def test_each_chunk_is_reported_with_the_rows_done(tmp_path):
    rows = Dataset.from_dict({"text": [f"text {i}" for i in range(12)]})
    seen = []
    tokenize_cached(rows, lambda chunk: {"input_ids": [[1, 2]] * len(chunk)}, tmp_path, "k", chunk_rows=5,
                    on_chunk=lambda done, total: seen.append((done, total)))
    assert seen == [(5, 12), (10, 12), (12, 12)]
    tokenize_cached(rows, lambda chunk: {"input_ids": [[1]] * len(chunk)}, tmp_path, "k", on_chunk=seen.append)
    assert len(seen) == 3  # served from the cache: nothing to report
