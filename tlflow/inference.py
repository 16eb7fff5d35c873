"""Batched, length-sorted inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel

from tlflow.batching import pad_batch, sorted_batches


def predict_logits(
    model: PreTrainedModel, input_ids: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64
) -> np.ndarray:
    """Logits for every example, in input order. Runs in eval mode under `torch.inference_mode`."""
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    try:
        with torch.inference_mode():
            for batch in sorted_batches([len(x) for x in input_ids], batch_size):
                ids, mask = pad_batch([input_ids[i] for i in batch], pad_id)
                logits = model(input_ids=ids, attention_mask=mask).logits.float().numpy()
                if out is None:
                    out = np.empty((len(input_ids), logits.shape[-1]), dtype=np.float32)
                out[batch] = logits
    finally:
        model.train(was_training)
    if out is None:
        raise ValueError("no examples to predict")
    return out
