"""`bench/mfu.py` counts the FLOPs a fine-tune step executes: every matrix product once, the
[CLS]-only last layer's skipped positions not at all, attention once (whether it runs as matmuls
or as SDPA's CPU kernel), checked against the products written out by hand for a small BERT."""


import pytest
import torch
from mfu import CPU_SDPA_FLOPS, Step, median_interval
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForSequenceClassification

from tlflow.training.settings import LoopSettings
from tlflow.training.speedups import SPEEDUPS, training_speedups

pytestmark = [pytest.mark.unit]

B, H, FF, LAYERS, HEADS, LABELS = 4, 32, 64, 3, 4, 3


def _model(attention: str, dropout: float) -> BertForSequenceClassification:
    config = BertConfig(vocab_size=120, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=FF, max_position_embeddings=64, num_labels=LABELS,
                        attention_probs_dropout_prob=dropout)
    config._attn_implementation = attention
    torch.manual_seed(0)
    return BertForSequenceClassification(config)


def _batch(length: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, 120, (B, length), generator=torch.Generator().manual_seed(length))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(B) % LABELS}


def _forward_flops(length: int, cls_only: bool) -> int:
    """2 x m x k x n for every product of one forward pass, written out."""
    full_layer = 2 * B * length * (4 * H * H + 2 * H * FF) + 2 * 2 * B * length * length * H
    cls_layer = (2 * B * H * H                       # query of [CLS] only
                 + 2 * 2 * B * length * H * H          # keys and values of every position
                 + 2 * 2 * B * 1 * length * H          # [CLS]'s scores and weighted sum
                 + 2 * B * (H * H + 2 * H * FF))       # attention output and feed-forward of [CLS]
    layers = (LAYERS - 1) * full_layer + (cls_layer if cls_only else full_layer)
    return layers + 2 * B * H * H + 2 * B * H * LABELS  # pooler, classifier


@pytest.mark.parametrize("length", [8, 16])
def test_training_step_counts_each_executed_product_once(length):
    """With the fine-tune stage's speed-ups a training step executes 3 x the forward products
    (forward, input and weight gradients); attention runs as matmuls the counter sees."""
    model = _model("sdpa", 0.1).train()
    settings = LoopSettings(total_steps=10, batch_size=B, learning_rate=1e-4, weight_decay=0.01, warmup_ratio=0.0,
                            checkpoint_every_steps=100, seed=0, speedups=SPEEDUPS)
    with training_speedups(model, settings.speedups) as grads:
        counted = Step(model, settings, grads).count(_batch(length))
    assert counted["flops"] == 3 * _forward_flops(length, cls_only=True)
    assert counted["by_op"]["aten.bmm"] == 3 * (LAYERS - 1) * 4 * B * length * length * H + 3 * 4 * B * length * H


def test_sdpa_cpu_kernel_is_counted_once():
    """Without dropout SDPA runs its fused CPU kernel; with `CPU_SDPA_FLOPS` the count holds its
    attention products once, like the matmul path."""
    model = _model("sdpa", 0.0).eval()
    batch = _batch(16)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as counter:
        model(**batch)
    assert counter.get_total_flops() == _forward_flops(16, cls_only=False)


def test_median_interval_uses_binomial_order_statistics():
    assert median_interval(list(range(1, 21)), 0.95) == (6, 15)
    assert median_interval(list(range(1, 101)), 0.95) == (40, 61)
    assert median_interval([3.0, 1.0, 2.0], 0.95) == (1.0, 3.0)  # too few values: the range
