"""Dropout with a cheaper random mask, for the duration of a training run.

`nn.Dropout` on the CPU draws its mask with `bernoulli_`, then divides it and multiplies: three
passes, the first the slowest. Comparing one `torch.rand_like` draw with `p` gives the same
Bernoulli(1 - p) keep mask (to float resolution) in fewer, cheaper passes, for hidden-state and
attention-probability dropout alike (figures in bench/README.md, "Measured facts"). Same `p`, same scaling by 1 / (1 - p), same global generator (checkpoints that save the
RNG state still resume exactly); only the random numbers differ.

Two places drop out: the `nn.Dropout` modules (hidden states, embeddings, the head), swapped to
`FastDropout`; and the attention probabilities, which PyTorch's `scaled_dot_product_attention`
drops inside its CPU math kernel. While training with attention dropout, an SDPA model runs the
same math (scores, mask, softmax, dropout, weighted sum) with the cheaper mask instead; without
dropout (evaluation, `p = 0`) it calls SDPA unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

#: Attention implementation name used while `fast_dropout` is active on an SDPA model.
SDPA_FAST_DROPOUT = "sdpa_fast_dropout"


def scaled_keep_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """Keep mask of `like`'s shape, Bernoulli(1 - p), already scaled by 1 / (1 - p)."""
    return (torch.rand_like(like) >= p) * (1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """`nn.Dropout` whose keep mask is `rand >= p` (never in place)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return input
        if self.p == 1.0:
            return input * 0.0
        return input * scaled_keep_mask(input, self.p)


def sdpa_fast_dropout_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Hugging Face attention function: SDPA, except where it drops out attention probabilities
    (the caller passes `dropout` > 0 only while training) of a bidirectional attention; there, the
    same math with `scaled_keep_mask`."""
    plain = (dropout == 0.0 or getattr(module, "is_causal", False)
             or kwargs.get("position_bias") is not None or getattr(module, "num_key_value_groups", 1) > 1)
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:  # SDPA's mask: True where a key may be attended to, or additive
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    probs = scores.softmax(dim=-1)
    probs = probs * scaled_keep_mask(probs, dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    if SDPA_FAST_DROPOUT not in AttentionInterface._global_mapping:
        AttentionInterface.register(SDPA_FAST_DROPOUT, sdpa_fast_dropout_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(SDPA_FAST_DROPOUT, sdpa_mask)


@contextmanager
def fast_dropout(model: nn.Module) -> Iterator[int]:
    """Cheaper dropout masks for `model` while inside; yields how many `nn.Dropout` were swapped.

    Every plain `nn.Dropout` becomes a `FastDropout` (only the instances' class changes: no
    parameters or buffers are involved), and a model whose config asks for SDPA attention uses
    `sdpa_fast_dropout_attention`. Both are put back on exit, so a saved model is unaffected.
    """
    swapped = [m for m in model.modules() if type(m) is nn.Dropout]
    config = getattr(model, "config", None)
    sdpa = config is not None and getattr(config, "_attn_implementation", None) == "sdpa"
    for module in swapped:
        module.__class__ = FastDropout
    if sdpa:
        _register_attention()
        config._attn_implementation = SDPA_FAST_DROPOUT
    try:
        yield len(swapped)
    finally:
        for module in swapped:
            module.__class__ = nn.Dropout
        if sdpa:
            config._attn_implementation = "sdpa"
