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

    def build():
        calls.append(1)
        return task.train_features(split(), ["negative", "positive"], tokenizer, settings)

    key = cache_key(data="x", max_length=8)
    first = tokenize_cached(build, tmp_path, key)
    second = tokenize_cached(build, tmp_path, key)
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
