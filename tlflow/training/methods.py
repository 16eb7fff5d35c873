"""How much of the model fine-tuning trains (`finetune.method`), for any task type's model.

* `full`: every weight.
* `lora`: low-rank adapters and the task head (`tlflow.training.lora`), merged at the end.
* `head`: the task head only, on the frozen pretrained base (a linear probe for a classifier:
  the base's own layers, a BERT pooler included, keep their pretrained weights). It answers "is
  fine-tuning needed at all?", and it is the cheapest setting for differentially private training
  (the noise is spread over a few thousand weights instead of millions).

With `lora` or `head` the checkpoints hold only the trained weights (`tlflow.training.checkpoints`).
"""

from __future__ import annotations

from peft import PeftModel
from transformers import PreTrainedModel

from tlflow.config import ConfigError
from tlflow.config.schema import FinetuneConfig
from tlflow.training.lora import add_lora, head_modules, merge_lora


def freeze_base(model: PreTrainedModel) -> list[str]:
    """Freeze every weight of `model` outside its task head; the head modules' names.

    Raises:
        ConfigError: the model has no task head of its own (a language model's output layer is
            pretrained), so nothing would train.
    """
    heads = head_modules(model)
    if not heads:
        kind = getattr(model.config, "model_type", type(model).__name__)
        raise ConfigError(f"finetune.method: head trains a task head, and this '{kind}' task model has none "
                          "(use full or lora)")
    for name, param in model.named_parameters():
        param.requires_grad_(name.split(".", 1)[0] in heads)
    return heads


def prepare_method(model: PreTrainedModel, cfg: FinetuneConfig) -> PeftModel | None:
    """Make `model` train what `cfg.method` says (in place); the `PeftModel` of a LoRA run."""
    if cfg.method == "lora":
        return add_lora(model, cfg.lora)
    if cfg.method == "head":
        freeze_base(model)
    return None


def trained_model(model: PreTrainedModel, peft_model: PeftModel | None) -> PreTrainedModel:
    """The plain Hugging Face model after training (LoRA adapters merged), every weight trainable
    again as a loaded model's are."""
    if peft_model is not None:
        return merge_lora(peft_model)
    for param in model.parameters():
        param.requires_grad_(True)
    return model
