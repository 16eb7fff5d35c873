import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

from tlflow.modeling.batching import (
    IGNORE_INDEX,
    epoch_batches,
    keep_target_logits,
    pad_batch,
    sorted_batches,
    training_collate,
    trims_logits,
)

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


def _tiny_causal_lm() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))


def _generation_features() -> dict[str, list]:
    """Three `prompt + target` rows of different lengths: the loss is on the targets only."""
    rng = np.random.default_rng(0)
    ids, labels = [], []
    for prompt, target in ((9, 3), (5, 4), (11, 2)):
        row = rng.integers(1, 97, prompt + target).tolist()
        ids.append(row)
        labels.append([IGNORE_INDEX] * prompt + row[prompt:])
    return {"input_ids": ids, "labels": labels}


def test_a_causal_lm_computes_only_the_logits_its_loss_reads_with_the_same_loss_and_gradients():
    model, features = _tiny_causal_lm(), _generation_features()
    assert trims_logits(model)
    trimmed = training_collate(model, features, pad_id=0)([0, 1, 2], 0)
    width = max(len(x) for x in features["input_ids"])  # 13; the first target is column 5 (row 1)
    assert trimmed["logits_to_keep"] == width - 4 and trimmed["labels"].shape == (3, width - 4)

    def loss_and_grads(batch):
        model.zero_grad()
        output = model(**batch)
        output.loss.backward()
        return output, {n: p.grad.clone() for n, p in model.named_parameters()}

    full, full_grads = loss_and_grads({k: v for k, v in trimmed.items() if k != "logits_to_keep"} | {
        "labels": torch.cat([torch.full((3, 4), IGNORE_INDEX), trimmed["labels"]], dim=1)})
    part, part_grads = loss_and_grads(trimmed)
    assert full.logits.shape[1] == width and part.logits.shape[1] == width - 4
    assert torch.allclose(part.loss, full.loss, atol=1e-6)
    for name, grad in full_grads.items():
        assert torch.allclose(part_grads[name], grad, atol=1e-6), name


def test_batches_without_targets_and_models_that_are_not_causal_lms_are_left_whole():
    batch = {"input_ids": torch.ones(2, 4, dtype=torch.long), "labels": torch.full((2, 4), IGNORE_INDEX)}
    assert keep_target_logits(batch) is batch
    classifier = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=32))
    assert not trims_logits(classifier)
    features = {"input_ids": [[1, 2, 3], [4, 5]], "labels": [0, 1]}
    assert "logits_to_keep" not in training_collate(classifier, features, pad_id=0)([0, 1], 0)
