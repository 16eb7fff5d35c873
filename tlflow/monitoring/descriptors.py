"""Descriptors of prediction requests: what monitoring keeps of a text instead of the text.

Per request: `text_length` (characters), `unk_share` (share of the model tokenizer's tokens that
are its unknown token: words the vocabulary cannot spell), `non_ascii_share` (share of characters
outside ASCII), the prediction (`prediction`, the response's `label` where the task has one) and
the model's [CLS] vector (`cls`: the encoder's last hidden state at the first position). A
request with several text fields (a sentence pair, a question and its context) is described by
its fields joined with a space.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from tlflow.modeling.inference import forward_outputs

#: Numerical descriptors of a text, in report order.
TEXT_DESCRIPTORS = ("text_length", "unk_share", "non_ascii_share")
PREDICTION, CLS = "prediction", "cls"


def request_texts(requests: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The monitored text of each request: its text fields (`columns` present in `requests`) joined
    with a space."""
    present = [c for c in columns if c in requests.columns]
    if not present:
        raise ValueError(f"no text field to monitor: the requests have none of {', '.join(columns)}")
    return [" ".join(str(v) for v in values) for values in zip(*(requests[c].tolist() for c in present))]


def text_statistics(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> pd.DataFrame:
    """`TEXT_DESCRIPTORS` of each text (the UNK share over the tokenizer's tokens, no special tokens)."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    unk = tokenizer.unk_token_id
    return pd.DataFrame({
        "text_length": [len(t) for t in texts],
        "unk_share": [float(np.mean([i == unk for i in row])) if row and unk is not None else 0.0 for row in ids],
        "non_ascii_share": [sum(not c.isascii() for c in t) / len(t) if t else 0.0 for t in texts],
    })


class _FirstPosition(nn.Module):
    """An encoder whose output is the last hidden state at the first ([CLS]) position."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {CLS: self.encoder(**inputs).last_hidden_state[:, 0]}


def encoder_of(model: object) -> nn.Module | None:
    """The transformer body of a task model (`base_model` of a Hugging Face head); None for a model
    that is not a torch module (an ONNX variant), which then has no [CLS] vectors."""
    encoder = getattr(model, "base_model", None)
    return encoder if isinstance(encoder, nn.Module) and encoder is not model else None


def cls_vectors(model: object, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int,
                batch_size: int = 64) -> np.ndarray | None:
    """The [CLS] vector of each text under `model`'s encoder (texts cut at `max_length` tokens),
    shape (texts, hidden); None when the model has no torch encoder."""
    encoder = encoder_of(model)
    if encoder is None or not texts:
        return None
    features = dict(tokenizer(list(texts), truncation=True, max_length=max_length,
                              return_token_type_ids=False, return_attention_mask=False))
    out = forward_outputs(_FirstPosition(encoder), features, tokenizer.pad_token_id or 0, batch_size, names=(CLS,))
    return np.stack(out[CLS]).astype(np.float32)


def describe(texts: Sequence[str], predictions: Sequence[object] | None, model: object,
             tokenizer: PreTrainedTokenizerBase, max_length: int) -> pd.DataFrame:
    """One row per text: `TEXT_DESCRIPTORS`, `prediction` (None when the task has no label) and
    `cls` (a list of floats, None without a torch encoder)."""
    frame = text_statistics(texts, tokenizer)
    frame[PREDICTION] = list(predictions) if predictions is not None else [None] * len(texts)
    vectors = cls_vectors(model, tokenizer, texts, max_length)
    frame[CLS] = [v.round(5).tolist() for v in vectors] if vectors is not None else [None] * len(texts)
    return frame


def prediction_labels(predictions: pd.DataFrame) -> list[object] | None:
    """The predicted label of each response (its `label` field), None when the task has no label."""
    return predictions["label"].astype(str).tolist() if "label" in predictions.columns else None
