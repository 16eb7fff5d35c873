"""Label smoothing of the fine-tuning loss (`finetune.label_smoothing`), for any task type's model.

Hugging Face models compute a plain cross-entropy when given labels; `SmoothedLoss` wraps the
model for training and replaces `output.loss` with the smoothed cross-entropy of the same logits:
per example (sequence classification), per token (token classification, -100 ignored), per answer
start and end (question answering, as the model averages them), or per next token (a causal LM).
Like `DistributedDataParallel`, it keeps the model as `.module`, which is what the training loop
checkpoints, evaluates and speeds up; the model itself is never changed.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float,
                           ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy over the labelled positions, with `smoothing` of the target spread over
    the classes (`torch.nn.functional.cross_entropy`'s label_smoothing)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                           ignore_index=ignore_index, label_smoothing=smoothing)


class SmoothedLoss(torch.nn.Module):
    """`module` with its training loss label-smoothed (see the module docstring)."""

    def __init__(self, module: torch.nn.Module, smoothing: float) -> None:
        super().__init__()
        self.module, self.smoothing = module, smoothing
        can_generate = getattr(module, "can_generate", None)
        self.causal = bool(can_generate and can_generate())

    def forward(self, **inputs):
        output = self.module(**inputs)
        if "start_positions" in inputs:  # answer spans: positions outside the window are ignored
            ignored = output.start_logits.size(1)
            start = inputs["start_positions"].clamp(0, ignored)
            end = inputs["end_positions"].clamp(0, ignored)
            output.loss = (smoothed_cross_entropy(output.start_logits, start, self.smoothing, ignored)
                           + smoothed_cross_entropy(output.end_logits, end, self.smoothing, ignored)) / 2
        elif "labels" in inputs:
            logits, labels = output.logits, inputs["labels"]
            if self.causal:  # token t predicts token t + 1
                logits, labels = logits[:, :-1], labels[:, 1:]
            output.loss = smoothed_cross_entropy(logits, labels, self.smoothing)
        return output
