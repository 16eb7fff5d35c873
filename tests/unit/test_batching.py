import numpy as np
import pytest
import torch

from tlflow.modeling.batching import epoch_batches, pad_batch, sorted_batches

pytestmark = [pytest.mark.unit]


def _padding(lengths, batches):
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_every_example_once_per_epoch_and_deterministic():
    lengths = list(np.random.default_rng(0).integers(3, 60, size=1003))
    batches = epoch_batches(lengths, 32, seed=1, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1003))
    assert all(len(b) <= 32 for b in batches)
    assert batches == epoch_batches(lengths, 32, seed=1, epoch=0)
    assert batches != epoch_batches(lengths, 32, seed=1, epoch=1)
    assert batches != epoch_batches(lengths, 32, seed=2, epoch=0)


def test_grouping_by_length_cuts_padding():
    lengths = list(np.random.default_rng(0).integers(3, 60, size=4000))
    grouped = _padding(lengths, epoch_batches(lengths, 32, 0, 0, group_by_length=True))
    shuffled = _padding(lengths, epoch_batches(lengths, 32, 0, 0, group_by_length=False))
    assert grouped < shuffled / 5


def test_sorted_batches_longest_first():
    lengths = [3, 9, 1, 7, 5]
    assert sorted_batches(lengths, 2) == [[1, 3], [4, 0], [2]]


def test_pad_batch():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == torch.long
