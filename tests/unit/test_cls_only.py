"""The [CLS]-only last layer gives a sequence classifier the same outputs and gradients."""

import copy

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

from tlflow.training.speedups.cls_only import ClsOnlyBertLayer, cls_only_last_layer

pytestmark = [pytest.mark.unit]


def _config(attn: str) -> BertConfig:
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, num_labels=3)
    config._attn_implementation = attn
    return config


def _batch():
    ids = torch.tensor([[2, 17, 40, 9, 3, 0, 0], [2, 55, 3, 0, 0, 0, 0], [2, 8, 9, 10, 11, 12, 3]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([0, 2, 1])}


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_same_logits_and_gradients(attn):
    torch.manual_seed(0)
    plain = BertForSequenceClassification(_config(attn)).eval()
    fast = copy.deepcopy(plain)
    assert cls_only_last_layer(fast) and isinstance(fast.bert.encoder.layer[-1], ClsOnlyBertLayer)
    assert not isinstance(fast.bert.encoder.layer[0], ClsOnlyBertLayer)
    out_plain, out_fast = plain(**_batch()), fast(**_batch())
    torch.testing.assert_close(out_fast.logits, out_plain.logits, atol=1e-6, rtol=1e-5)
    out_plain.loss.backward()
    out_fast.loss.backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        # The key bias has a zero gradient in exact arithmetic (softmax ignores a constant shift).
        atol = 1e-6 if name.endswith("key.bias") else 1e-7
        torch.testing.assert_close(q.grad, p.grad, atol=atol, rtol=1e-4, msg=name)


def test_weights_and_saved_model_are_unchanged(tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(_config("sdpa"))
    keys = list(model.state_dict())
    cls_only_last_layer(model)
    assert cls_only_last_layer(model)  # idempotent
    assert list(model.state_dict()) == keys
    model.save_pretrained(tmp_path)
    loaded = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded.bert.encoder.layer[-1]).__name__ == "BertLayer"
    torch.testing.assert_close(loaded(**_batch()).logits, model.eval()(**_batch()).logits, atol=1e-6, rtol=1e-5)


def test_token_level_heads_are_left_alone():
    model = BertForTokenClassification(_config("sdpa"))
    assert not cls_only_last_layer(model)
    assert type(model.bert.encoder.layer[-1]).__name__ == "BertLayer"
