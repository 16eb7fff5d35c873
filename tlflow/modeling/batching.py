"""Length-grouped batching and dynamic padding.

Padding is the largest waste on short texts (SST-2 averages ~13 words): batches of texts of
similar length, padded only to the longest text in the batch, cost a fraction of batches padded
to a fixed max length.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

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


#: Label of positions the loss ignores (special tokens, later sub-words, padding).
IGNORE_INDEX = -100


def pad_sequences(sequences: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Right-pad integer lists with `value` to the longest one."""
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest one; returns (input_ids, attention_mask)."""
    ids = pad_sequences(sequences, pad_id)
    mask = pad_sequences([[1] * len(s) for s in sequences], 0)
    return ids, mask


def collate(features: Mapping[str, Sequence], indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Model inputs for the examples `indices` of column-wise `features`, padded to the longest.

    input_ids (padded with `pad_id`) and attention_mask always; token_type_ids (padded with 0)
    when present; labels per example, or per token (padded with IGNORE_INDEX); start_positions and
    end_positions (question answering) when present.
    """
    ids, mask = pad_batch([features["input_ids"][i] for i in indices], pad_id)
    batch = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in features:
        batch["token_type_ids"] = pad_sequences([features["token_type_ids"][i] for i in indices], 0)
    if "labels" in features:
        labels = [features["labels"][i] for i in indices]
        if isinstance(labels[0], (list, tuple, np.ndarray)):
            batch["labels"] = pad_sequences(labels, IGNORE_INDEX)
        else:
            batch["labels"] = torch.as_tensor(labels, dtype=torch.long)
    for key in ("start_positions", "end_positions"):
        if key in features:
            batch[key] = torch.as_tensor([features[key][i] for i in indices], dtype=torch.long)
    return batch


def keep_target_logits(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A causal-LM batch that asks the model only for the logits the loss reads.

    Position t's logits predict token t + 1, so the loss reads positions from the one before the
    first target token (in any row) to the end. Adds `logits_to_keep` (Hugging Face causal LMs
    then apply the LM head to the last K positions only) and keeps the labels of the same
    positions: the loss is the same, and the prompt's logits (most of a row; the LM head is a
    vocabulary-sized matmul per position) are neither computed nor kept for the backward pass.
    A batch without a target token is left as it is.
    """
    labels = batch["labels"]
    targeted = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    if len(targeted) == 0:
        return batch
    keep = labels.size(1) - max(int(targeted[0]) - 1, 0)
    return {**batch, "labels": labels[:, -keep:], "logits_to_keep": keep}


def trims_logits(model: torch.nn.Module) -> bool:
    """Whether `model` is a causal LM whose forward takes `logits_to_keep` (Hugging Face's do)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    can_generate = getattr(base, "can_generate", None)
    return bool(can_generate and can_generate()) and "logits_to_keep" in inspect.signature(base.forward).parameters


def training_collate(model: torch.nn.Module, features: Mapping[str, Sequence],
                     pad_id: int) -> Callable[[Sequence[int], int], dict[str, torch.Tensor]]:
    """`make_batch(indices, step)` of the training loop: `collate`, and for a causal LM the logits
    of target positions only (`keep_target_logits`)."""
    trim = trims_logits(model)

    def make_batch(indices: Sequence[int], step: int) -> dict[str, torch.Tensor]:
        batch = collate(features, indices, pad_id)
        return keep_target_logits(batch) if trim and "labels" in batch else batch

    return make_batch
