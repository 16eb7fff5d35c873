"""Opt-in speed tricks, and the only code in tlflow that touches Hugging Face internals.

Each trick is named (the names of `finetune.speedups` and of `TaskSettings.inference_speedups`)
and applied by one function here, so whatever runs a model decides what it enables:

* `cls_only` (`cls_only.py`): a sequence classifier's last encoder layer computes [CLS] only;
  same logits and gradients up to float rounding. Training and inference.
* `kept_embedding_grad` (`kept_embedding_grad.py`): one dense word-embedding gradient buffer
  that only the batch's rows reach; bitwise the weights of the dense path. Training only, single
  process (DDP reduces dense gradients).
* `fast_dropout` (`fast_dropout.py`): dropout masks drawn as `rand >= p`; same p and scaling,
  other random numbers. Training only.

Each one skips a model it does not apply to, so any task type's model (a causal LM, a LoRA model
whose base is frozen) trains with any of them named: `cls_only` only touches a BERT sequence
classifier's last layer, `kept_embedding_grad` only a trainable, untied input embedding.

Every trick is undone when its context exits: models built or loaded by `tlflow.modeling`, and
models saved or logged, are plain Hugging Face models. `attention_implementation` switches a
model's attention implementation for a while (the ONNX export writes attention out as "eager").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager

import torch

from tlflow.training.speedups.cls_only import cls_only, cls_only_last_layer
from tlflow.training.speedups.fast_dropout import fast_dropout
from tlflow.training.speedups.kept_embedding_grad import DenseGrads, KeptEmbeddingGrad, kept_embedding_grad

#: Every speed-up, in the order they are applied.
SPEEDUPS: tuple[str, ...] = ("cls_only", "kept_embedding_grad", "fast_dropout")
#: Those that also apply to inference (what a logged model's settings may name).
INFERENCE_SPEEDUPS: tuple[str, ...] = ("cls_only",)

GradZeroer = KeptEmbeddingGrad | DenseGrads

__all__ = [
    "INFERENCE_SPEEDUPS", "SPEEDUPS", "DenseGrads", "GradZeroer", "KeptEmbeddingGrad", "apply_inference_speedups",
    "attention_implementation", "inference_speedups", "training_speedups",
]


def _checked(names: Iterable[str], known: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(names)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown speed-up(s) {unknown}: known are {list(known)}")
    return names


@contextmanager
def training_speedups(
    model: torch.nn.Module, names: Iterable[str] = (), data_parallel: bool = False
) -> Iterator[GradZeroer]:
    """The speed-ups in `names` while `model` trains, all undone on exit; yields what zeroes the
    gradients after each optimizer step (`.zero_grad(optimizer)`: `optimizer.zero_grad(
    set_to_none=True)` unless `kept_embedding_grad` is on).

    `kept_embedding_grad` is skipped for data-parallel ranks (`data_parallel`), whose
    DistributedDataParallel reduces dense gradients.
    """
    names = _checked(names, SPEEDUPS)
    with ExitStack() as stack:
        if "cls_only" in names:
            stack.enter_context(cls_only(model))
        grads: GradZeroer = DenseGrads()
        if "kept_embedding_grad" in names and not data_parallel:
            grads = kept_embedding_grad(model)
        stack.enter_context(grads)
        if "fast_dropout" in names:
            stack.enter_context(fast_dropout(model))
        yield grads


def inference_speedups(names: Iterable[str]) -> tuple[str, ...]:
    """Of the speed-ups a model was trained with, those that serving applies (in order): what a
    logged model's `TaskSettings.inference_speedups` holds."""
    names = _checked(names, SPEEDUPS)
    return tuple(n for n in INFERENCE_SPEEDUPS if n in names)


def apply_inference_speedups(model: object, names: Iterable[str]) -> object:
    """Apply the inference speed-ups in `names` to a model loaded for serving, for good (it is
    not saved again); returns the model. Models they do not apply to (other heads, ONNX
    sessions) are left alone."""
    names = _checked(names, INFERENCE_SPEEDUPS)
    if "cls_only" in names and isinstance(model, torch.nn.Module):
        cls_only_last_layer(model)
    return model


@contextmanager
def attention_implementation(model: torch.nn.Module, name: str) -> Iterator[torch.nn.Module]:
    """`model` running attention implementation `name` ("eager", "sdpa", ...) while inside; its own
    one is set back on exit."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)
