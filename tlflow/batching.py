"""Length-grouped batching and dynamic padding.

Padding is the largest waste on short texts (SST-2 averages ~13 words): batches of texts of
similar length, padded only to the longest text in the batch, cost a fraction of batches padded
to a fixed max length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: Shuffled examples are sorted by length within windows of this many batches.
GROUP_WINDOW_BATCHES = 50


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool = True
) -> list[list[int]]:
    """The batches (lists of example indices) of one epoch, fixed by (seed, epoch).

    With `group_by_length`, the shuffled indices are cut into windows of
    `GROUP_WINDOW_BATCHES` batches, each window is sorted by length, cut into batches, and the
    batch order is shuffled again. Deterministic, so a resumed run sees the same batches.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        lengths = np.asarray(lengths)
        window = batch_size * GROUP_WINDOW_BATCHES
        chunks = [order[i : i + window] for i in range(0, len(order), window)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Inference batches in length order (longest first): the least padding possible."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest one; returns (input_ids, attention_mask)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask
