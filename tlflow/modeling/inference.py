"""Batched, length-sorted inference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel

from tlflow.modeling.batching import collate, sorted_batches

#: Feature columns that are model inputs at inference time (labels are not).
_INPUTS = ("input_ids", "token_type_ids")


def forward_outputs(
    model: PreTrainedModel,
    features: Mapping[str, Sequence],
    pad_id: int,
    batch_size: int = 64,
    names: Sequence[str] = ("logits",),
    token_level: bool = False,
) -> dict[str, list[np.ndarray]]:
    """The model outputs `names` for every example, in input order, as float32 arrays.

    Examples run in length-sorted batches (least padding) in eval mode under
    `torch.inference_mode`. With `token_level`, each example's output is cut to its own length
    (per-token logits); otherwise it is the example's row (per-sequence logits).
    """
    inputs = {k: features[k] for k in _INPUTS if k in features}
    lengths = [len(x) for x in inputs["input_ids"]]
    if not lengths:
        raise ValueError("no examples to predict")
    out: dict[str, list] = {name: [None] * len(lengths) for name in names}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in sorted_batches(lengths, batch_size):
                output = model(**collate(inputs, batch, pad_id))
                for name in names:
                    values = output[name].float().numpy()
                    for row, i in enumerate(batch):
                        out[name][i] = values[row, : lengths[i]] if token_level else values[row]
    finally:
        model.train(was_training)
    return out

