"""The training loop's step speed-ups change no result: the kept word-embedding gradient gives
the weights of the dense path (bitwise without clipping; up to float rounding in the norm with its
rows-only clipping), and the cheaper dropout keeps p and its scaling."""

import copy

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

from tlflow.pretraining.model import BertForMaskedPretraining
from tlflow.training.optimizer import make_optimizer
from tlflow.training.settings import LoopSettings
from tlflow.training.speedups.fast_dropout import (
    SDPA_FAST_DROPOUT,
    FastDropout,
    fast_dropout,
    sdpa_fast_dropout_attention,
)
from tlflow.training.speedups.kept_embedding_grad import DenseGrads, KeptEmbeddingGrad, kept_embedding_grad

pytestmark = [pytest.mark.unit]

CONFIG = dict(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=32)


def _batches(steps=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(1, 100, (8, 12), generator=g)  # rows 100-199 are never used
        ids[:4, 9:] = 0  # padding rows
        yield {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.randint(0, 2, (8,), generator=g)}


def _train(model, grads, steps=6, max_norm=None):
    """Train `steps` steps; with `max_norm`, clip by `grads.clip_grad_norm_` and return the norms."""
    settings = LoopSettings(total_steps=steps, batch_size=8, learning_rate=1e-2, weight_decay=0.01, warmup_ratio=0.0,
                            checkpoint_every_steps=100, seed=0)
    optimizer = make_optimizer(model, settings)
    model.train()
    torch.manual_seed(1)  # the same dropout masks for both paths
    norms = []
    with grads:
        for batch in _batches(steps):
            model(**batch).loss.backward()
            if max_norm is not None:
                norms.append(float(grads.clip_grad_norm_(model.parameters(), max_norm)))
            optimizer.step()
            grads.zero_grad(optimizer)
    return norms


def _pair():
    torch.manual_seed(0)
    dense = BertForSequenceClassification(BertConfig(**CONFIG))
    return dense, copy.deepcopy(dense)


def test_kept_gradient_trains_bitwise_like_the_dense_path_without_clipping():
    dense, kept = _pair()
    unused_before = dense.bert.embeddings.word_embeddings.weight[100:].detach().clone()
    grads = kept_embedding_grad(kept)
    assert isinstance(grads, KeptEmbeddingGrad)
    _train(dense, DenseGrads())
    _train(kept, grads)
    for (name, p), q in zip(dense.named_parameters(), kept.parameters()):
        assert torch.equal(p, q), name
    # Rows no batch used moved too (AdamW's weight decay reaches every row, as on the dense path).
    assert not torch.equal(kept.bert.embeddings.word_embeddings.weight[100:], unused_before)


def test_rows_only_clipping_trains_like_torch_clipping_on_the_dense_path():
    dense, kept = _pair()
    dense_norms = _train(dense, DenseGrads(), max_norm=0.05)
    kept_norms = _train(kept, kept_embedding_grad(kept), max_norm=0.05)
    assert min(dense_norms) > 0.05  # every step was clipped, so the scaling is exercised
    np.testing.assert_allclose(kept_norms, dense_norms, rtol=1e-5)
    for (name, p), q in zip(dense.named_parameters(), kept.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=2e-6, msg=name)


def test_rows_only_clipping_gives_the_dense_norm_and_clipped_gradient():
    dense, kept = _pair()
    grads = kept_embedding_grad(kept)
    batch = next(_batches(1))
    with grads:
        for model in (dense, kept):
            model.train()
            torch.manual_seed(1)
            model(**batch).loss.backward()
        expected = torch.nn.utils.clip_grad_norm_(dense.parameters(), 0.1)
        total = grads.clip_grad_norm_(kept.parameters(), 0.1)
        torch.testing.assert_close(total, expected, rtol=1e-6, atol=0.0)
        assert expected > 0.1
        for (name, p), q in zip(dense.named_parameters(), kept.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-8, msg=name)
        assert not kept.get_input_embeddings().weight.grad[100:].any()  # unused rows still zero


def test_buffer_is_zero_after_each_step_and_gone_after_training():
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(**CONFIG, num_labels=2))
    weight = model.get_input_embeddings().weight
    grads = kept_embedding_grad(model)
    settings = LoopSettings(total_steps=2, batch_size=8, learning_rate=1e-3, weight_decay=0.0, warmup_ratio=0.0,
                            checkpoint_every_steps=100, seed=0)
    optimizer = make_optimizer(model, settings)
    with grads:
        buffer = weight.grad
        for batch in _batches(2):
            batch["labels"] = batch["input_ids"] % 2
            model(**batch).loss.backward()
            assert weight.grad is buffer and not buffer.is_sparse and buffer.abs().sum() > 0
            optimizer.step()
            grads.zero_grad(optimizer)
            assert weight.grad is buffer and not buffer.any()
            assert model.classifier.weight.grad is None  # the other parameters' gradients are freed
        with torch.no_grad():  # forward passes without autograd are not recorded
            model(input_ids=next(_batches(1, seed=5))["input_ids"])
        assert grads._rows == []
    assert weight.grad is None and not model.get_input_embeddings().sparse


def test_tied_embeddings_keep_the_dense_path():
    config = BertConfig(**CONFIG, tie_word_embeddings=True)
    model = BertForMaskedPretraining(config)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert isinstance(kept_embedding_grad(model), DenseGrads)


def test_frozen_embeddings_keep_the_dense_path():
    model = BertForSequenceClassification(BertConfig(**CONFIG))
    model.get_input_embeddings().weight.requires_grad_(False)
    assert isinstance(kept_embedding_grad(model), DenseGrads)


def test_fast_dropout_keeps_p_and_scaling_and_is_undone():
    model = BertForSequenceClassification(BertConfig(**CONFIG))
    plain = [m for m in model.modules() if type(m) is torch.nn.Dropout]
    with fast_dropout(model) as swapped:
        assert swapped == len(plain) > 0 and all(type(m) is FastDropout for m in plain)
        drop = plain[0].train()
        x = torch.ones(200_000, requires_grad=True)
        y = drop(x)
        kept = y != 0
        assert kept.float().mean().item() == pytest.approx(1 - drop.p, abs=0.005)
        assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - drop.p)))
        y.sum().backward()
        assert torch.equal(x.grad, y.detach())  # d(sum)/dx is the scaled keep mask
        assert torch.equal(drop.eval()(x), x)
    assert all(type(m) is torch.nn.Dropout for m in plain)
    assert model.config._attn_implementation == "sdpa"


def test_attention_dropout_is_sdpa_math_with_the_cheaper_mask():
    """Same result as PyTorch's SDPA math kernel given the same keep mask; SDPA itself without dropout."""
    module = torch.nn.Module().train()
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 4, 7, 8, generator=g) for _ in range(3))
    mask = torch.ones(3, 1, 7, 7, dtype=torch.bool)
    mask[0, ..., 5:] = False  # padded keys of the first sequence
    torch.manual_seed(7)
    out, _ = sdpa_fast_dropout_attention(module, q, k, v, mask, dropout=0.2, scaling=0.3)
    torch.manual_seed(7)
    keep = torch.rand(3, 4, 7, 7) >= 0.2
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))  # the kernel's own mask format
    reference, _ = torch.ops.aten._scaled_dot_product_attention_math(
        q, k, v, attn_mask=additive, dropout_p=0.2, scale=0.3, dropout_mask=keep)
    torch.testing.assert_close(out, reference.transpose(1, 2), atol=1e-6, rtol=1e-5)
    assert 0.7 < keep.float().mean() < 0.9
    plain, _ = sdpa_fast_dropout_attention(module.eval(), q, k, v, mask, dropout=0.0, scaling=0.3)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    torch.testing.assert_close(plain, expected.transpose(1, 2))


def test_sdpa_model_switches_attention_only_inside():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**CONFIG)).eval()
    batch = next(_batches(1))
    reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    with fast_dropout(model):
        assert model.config._attn_implementation == SDPA_FAST_DROPOUT
        same = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        model.train()
        model(**batch).loss.backward()
    torch.testing.assert_close(same, reference)
    assert model.config._attn_implementation == "sdpa"
    assert all(p.grad is not None for p in model.parameters())


def test_fast_dropout_follows_the_global_seed():
    drop = FastDropout(0.1).train()
    x = torch.ones(1000)
    torch.manual_seed(3)
    a = drop(x)
    torch.manual_seed(3)
    assert torch.equal(drop(x), a)
