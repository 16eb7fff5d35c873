import numpy as np
import pytest
from datasets import Dataset, load_from_disk

from tlflow.data.features import ArrowColumn, example_lengths, feature_columns
from tlflow.modeling.batching import collate

pytestmark = [pytest.mark.unit]

ROWS = {"input_ids": [[101, 7, 102], [101, 8, 9, 10, 102], [101, 102]], "labels": [1, 0, 1],
        "token_type_ids": [[0, 0, 0], [0, 0, 1, 1, 1], [0, 0]]}


@pytest.fixture
def saved(tmp_path):
    Dataset.from_dict(ROWS).save_to_disk(str(tmp_path / "train"))
    return load_from_disk(str(tmp_path / "train"))


def test_columns_read_like_the_lists_they_were_saved_from(saved):
    features = feature_columns(saved)
    assert sorted(features) == sorted(ROWS) and len(features) == 3
    for name, values in ROWS.items():
        assert len(features[name]) == len(values)
        assert [features[name][i] for i in range(len(values))] == values
        assert list(features[name]) == values
    assert list(features["input_ids"][1:]) == ROWS["input_ids"][1:]
    with pytest.raises(KeyError):
        features["start_positions"]


def test_lengths_come_from_the_offsets_and_match_len(saved):
    features = feature_columns(saved)
    assert isinstance(features["input_ids"], ArrowColumn)
    assert example_lengths(features["input_ids"]).tolist() == [3, 5, 2]
    assert example_lengths(ROWS["input_ids"]) == [3, 5, 2]


def test_batches_from_columns_equal_batches_from_lists(saved):
    from_disk = collate(feature_columns(saved), [1, 2], pad_id=0)
    from_lists = collate(ROWS, [1, 2], pad_id=0)
    assert from_disk.keys() == from_lists.keys()
    for key in from_lists:
        assert np.array_equal(from_disk[key].numpy(), from_lists[key].numpy()), key
