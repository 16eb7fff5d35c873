"""The word-embedding gradient kept between steps, reached only by the rows a batch uses.

A dense `nn.Embedding` backward allocates a zero tensor the size of the whole table and adds the
batch's rows into it. For `minilm-l6` that is 30,522 x 384 floats (47 MB) every step, of which an
SST-2 batch touches ~400 rows. Memory that large is mapped fresh by the allocator each time and
page-faults on first touch, so the dense embedding backward is a visible share of a small
fine-tuning step, and touching only the used rows makes it a small fraction of that (figures in
bench/README.md, "Measured facts").

Here the embedding's backward is sparse (`sparse=True`: only the used rows), autograd adds those
rows in place into one dense gradient buffer that lives for the whole training, and zeroing the
buffer after the optimizer step touches the same rows again. Gradient clipping
(`clip_grad_norm_`) reads and scales the buffer at those rows only: every other row is zero, so
the norm is the dense gradient's up to float rounding in its sum, and the clipped rows are the
dense path's. The fused AdamW step sees the dense buffer, so every row still gets its AdamW update
(momentum and weight decay included) and the trained weights are those of the dense path up to
that rounding (unit test).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

import torch
from torch import nn


class KeptEmbeddingGrad(AbstractContextManager):
    """While entered, `embedding.weight.grad` is one dense buffer that only used rows reach.

    Call `clip_grad_norm_(...)` instead of `torch.nn.utils.clip_grad_norm_(...)` and
    `zero_grad(optimizer)` instead of `optimizer.zero_grad()`. On exit the embedding is dense
    again and the buffer is dropped (a saved or logged model is unaffected: `sparse` is not part of
    its weights or config).
    """

    def __init__(self, embedding: nn.Embedding) -> None:
        self.embedding = embedding
        self._rows: list[torch.Tensor] = []
        self._hook = None
        self._was_sparse = embedding.sparse

    def __enter__(self) -> KeptEmbeddingGrad:
        weight = self.embedding.weight
        self.embedding.sparse = True
        weight.grad = torch.zeros_like(weight)
        self._hook = self.embedding.register_forward_hook(self._record_rows)
        return self

    def _record_rows(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        # Forward passes without autograd (validation) add nothing to the gradient.
        if torch.is_grad_enabled():
            self._rows.append(inputs[0].detach().reshape(-1))

    def clip_grad_norm_(self, parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
        """`torch.nn.utils.clip_grad_norm_` (L2 norm of every gradient, scaled by
        min(1, max_norm / (norm + 1e-6))), with the buffer read and scaled only at the rows written
        since it was last zeroed. For `minilm-l6` the word table is half of the gradient's elements,
        of which an SST-2 batch writes about 400 rows of 30,522. Returns the total norm."""
        weight = self.embedding.weight
        buffer = weight.grad
        params = [p for p in parameters if p.grad is not None]
        if buffer is None or buffer.is_sparse or not self._rows or not any(p is weight for p in params):
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        others = [p for p in params if p is not weight]
        rows = torch.unique(torch.cat(self._rows))
        used = buffer.index_select(0, rows)
        total = torch.nn.utils.get_total_norm([*(p.grad for p in others), used])
        torch.nn.utils.clip_grads_with_norm_(others, max_norm, total)
        buffer.index_copy_(0, rows, used.mul_(torch.clamp(max_norm / (total + 1e-6), max=1.0)))
        return total

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        """`optimizer.zero_grad(set_to_none=True)` for every other parameter; the buffer is zeroed
        where the last steps wrote into it, and stays."""
        weight = self.embedding.weight
        buffer = weight.grad
        optimizer.zero_grad(set_to_none=True)
        if buffer is None or buffer.is_sparse:  # something replaced the buffer: start a new one
            buffer = torch.zeros_like(weight)
        elif self._rows:
            buffer.index_fill_(0, torch.cat(self._rows), 0.0)
        self._rows.clear()
        weight.grad = buffer

    def __exit__(self, *exc) -> None:
        if self._hook is not None:
            self._hook.remove()
        self.embedding.sparse = self._was_sparse
        self.embedding.weight.grad = None
        self._rows.clear()


class DenseGrads(AbstractContextManager):
    """The plain path: `torch.nn.utils.clip_grad_norm_` and `optimizer.zero_grad(set_to_none=True)`;
    entering it changes nothing."""

    def __exit__(self, *exc) -> None:
        return None

    def clip_grad_norm_(self, parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)


def kept_embedding_grad(model: nn.Module) -> KeptEmbeddingGrad | DenseGrads:
    """A `KeptEmbeddingGrad` for the model's input word embeddings, or the plain path where it
    does not apply: no trainable `nn.Embedding` input table, or one whose weight is shared (a
    language-model head tied to it writes a dense gradient into every row)."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    if not isinstance(embedding, nn.Embedding) or not embedding.weight.requires_grad:
        return DenseGrads()
    uses = sum(p is embedding.weight for _, p in model.named_parameters(remove_duplicate=False))
    return KeptEmbeddingGrad(embedding) if uses == 1 else DenseGrads()
