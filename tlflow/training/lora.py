"""LoRA fine-tuning (`finetune.method: lora`) through `peft`, for any task type's model.

`add_lora` freezes the base and injects low-rank adapters into the attention projections named by
`finetune.lora.target_modules` (by default the query and value projections the model has: BERT's
query/value, Llama's q_proj/v_proj, GPT-2's c_attn, DistilBERT's q_lin/v_lin, MPNet's q/v). A task
head that the base does not provide (a classifier, span or tagging head: a top-level module of the
model outside the base, not holding its tied output embedding) trains in full beside the adapters;
a language-model head is pretrained and stays frozen.

The injection happens in place, so the loop trains `PeftModel.get_base_model()`: the task type's
own Hugging Face class (its forward, `generate` and the speed-ups see the model they know), with
adapter layers inside. Checkpoints then hold only the trainable weights
(`tlflow.training.checkpoints`). `merge_lora` folds the adapters into the base weights and removes
every wrapper: the model that is evaluated, saved and logged is a plain Hugging Face model.
"""

from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from tlflow.config import ConfigError
from tlflow.config.schema import LoraConfig

#: Attention projection names LoRA adapts by default, per architecture family (first match wins).
DEFAULT_TARGETS: tuple[tuple[str, ...], ...] = (
    ("query", "value"),    # BERT, RoBERTa, ELECTRA
    ("q_proj", "v_proj"),  # Llama, SmolLM2, Mistral, OPT, BART
    ("c_attn",),           # GPT-2 (fused query/key/value)
    ("q_lin", "v_lin"),    # DistilBERT
    ("q", "v"),            # MPNet, T5
)


def default_target_modules(model: nn.Module) -> list[str]:
    """The query and value projections of `model` (the first family of `DEFAULT_TARGETS` whose
    names all end a linear layer's name).

    Raises:
        ConfigError: none matches; `finetune.lora.target_modules` must name the layers.
    """
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear | Conv1D)}
    for family in DEFAULT_TARGETS:
        if set(family) <= names:
            return list(family)
    kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    raise ConfigError(f"finetune.lora.target_modules: no default for a '{kind}' model; name its attention layers")


def head_modules(model: PreTrainedModel) -> list[str]:
    """Top-level modules of a task model outside its base (e.g. `classifier`, `qa_outputs`) that
    hold parameters and not the output embeddings (a language-model head is pretrained)."""
    base = getattr(model, "base_model_prefix", "")
    get_output = getattr(model, "get_output_embeddings", None)
    output = get_output() if callable(get_output) else None
    heads = []
    for name, child in model.named_children():
        if name == base or not any(True for _ in child.parameters()):
            continue
        if output is not None and any(m is output for m in child.modules()):
            continue
        heads.append(name)
    return heads


def add_lora(model: PreTrainedModel, cfg: LoraConfig) -> PeftModel:
    """Freeze `model` and inject LoRA adapters (and a trainable copy of a fresh task head) in
    place; returns the `PeftModel` (train its `get_base_model()`; `merge_lora` at the end)."""
    targets = list(cfg.target_modules) or default_target_modules(model)
    config = PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, bias="none",
        modules_to_save=head_modules(model) or None,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # e.g. target modules not found in the model
        raise ConfigError(f"finetune.lora: {str(err).splitlines()[0]}") from None


def merge_lora(peft_model: PeftModel) -> PreTrainedModel:
    """Fold the adapters into the base weights and drop the wrappers: the plain Hugging Face
    model, every parameter trainable again (as a loaded model would be)."""
    model = peft_model.merge_and_unload()
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def trainable_fraction(model: nn.Module) -> float:
    """Share of the parameters that train (distinct tensors)."""
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in params)
    return sum(p.numel() for p in params if p.requires_grad) / total if total else 0.0
