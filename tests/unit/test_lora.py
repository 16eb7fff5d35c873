"""LoRA fine-tuning (finetune.method: lora) on tiny random models: only the adapters (and a fresh
task head) train, checkpoints hold only them and resume exactly, the merged model is a plain
Hugging Face model with the PEFT model's logits; the speed-ups skip what does not apply."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

from tlflow.config import ConfigError, FinetuneConfig, parse_config
from tlflow.config.schema import LoraConfig
from tlflow.training.checkpoints import latest_checkpoint
from tlflow.training.loop import finetune
from tlflow.training.lora import add_lora, default_target_modules, head_modules, merge_lora

pytestmark = [pytest.mark.unit]

EXAMPLES = [([2, 5, 6, 3], 0), ([2, 7, 5, 3], 1), ([2, 6, 6, 5, 3], 0), ([2, 5, 7, 7, 3], 1)] * 16
CLASSIFY = {"input_ids": [x for x, _ in EXAMPLES], "labels": [y for _, y in EXAMPLES]}
# Prompt then target; the loss counts the target tokens only (the prompt's labels are -100).
GENERATE = {
    "input_ids": [[1, 5, 6, 9, 10, 2], [1, 7, 8, 11, 12, 13, 2], [1, 5, 5, 6, 9, 2]] * 8,
    "labels": [[-100, -100, -100, 9, 10, 2], [-100, -100, -100, 11, 12, 13, 2], [-100, -100, -100, -100, 9, 2]] * 8,
}
ALL_SPEEDUPS = ["cls_only", "kept_embedding_grad", "fast_dropout"]
LORA = LoraConfig(r=4, alpha=8, dropout=0.0)


def tiny_bert(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=16, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout))


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32, tie_word_embeddings=True, pad_token_id=0))


def cfg(**kw):
    base = dict(epochs=3, batch_size=8, learning_rate=5e-3, checkpoint_every_steps=5, log_every_steps=1, threads=1,
                method="lora", lora=LORA)
    return FinetuneConfig(**{**base, **kw})


def test_default_targets_and_heads_follow_the_architecture():
    bert, llama = tiny_bert(), tiny_llama()
    assert default_target_modules(bert) == ["query", "value"]
    assert default_target_modules(llama) == ["q_proj", "v_proj"]
    assert head_modules(bert) == ["classifier"]  # fresh: trains in full
    assert head_modules(llama) == []  # the LM head is pretrained (and tied): frozen
    with pytest.raises(ConfigError, match="target_modules"):
        default_target_modules(nn.Sequential(nn.Conv1d(2, 2, 1)))


def test_lora_trains_only_the_adapters_and_the_fresh_head(tmp_path):
    model = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    add_lora(model, LORA)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".modules_to_save." in n for n in trainable)
    finetune(model, CLASSIFY, cfg(speedups=ALL_SPEEDUPS), 0, tmp_path, progress=False)
    after = model.state_dict()
    for name, value in before.items():  # base weights (and the head's original copy) bitwise unchanged
        peft_name = name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        kept = after.get(name, after.get(peft_name, after.get(name.replace("classifier.", "classifier.original_module."))))
        assert torch.equal(kept, value), name
    assert not torch.equal(after["classifier.modules_to_save.default.weight"], before["classifier.weight"])
    assert any(not torch.all(v == 0) for k, v in after.items() if "lora_B" in k)  # B starts at zero


def test_lora_checkpoint_holds_the_adapters_and_resumes_exactly(tmp_path):
    """A causal LM with every speed-up named (none applies but fast_dropout): a run killed after a
    checkpoint and resumed ends with the weights of an uninterrupted run."""
    settings = cfg(speedups=ALL_SPEEDUPS)
    reference = tiny_llama()
    add_lora(reference, LORA)
    full = finetune(reference, GENERATE, settings, 0, tmp_path / "ref", progress=False)

    class Crash(RuntimeError):
        pass

    def crash_at_step_7(metrics, step):
        if step == 7:
            raise Crash()

    crashed = tiny_llama()
    add_lora(crashed, LORA)
    with pytest.raises(Crash):
        finetune(crashed, GENERATE, settings, 0, tmp_path / "run", log_metrics=crash_at_step_7, progress=False)
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint.name == "step-0000005"
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert set(saved) == {n for n, p in crashed.named_parameters() if p.requires_grad}
    assert all("lora_" in n for n in saved)
    assert sum(t.numel() for t in saved.values()) < 0.2 * sum(p.numel() for p in crashed.parameters())

    resumed = tiny_llama()
    add_lora(resumed, LORA)
    result = finetune(resumed, GENERATE, settings, 0, tmp_path / "run", progress=False)
    assert result.resumed_from == 5 and result.steps == full.steps == 9
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("build", [tiny_bert, tiny_llama])
def test_merged_model_is_plain_and_gives_the_peft_logits(tmp_path, build):
    model = build()
    plain_keys = set(model.state_dict())
    peft_model = add_lora(model, LORA)
    finetune(model, CLASSIFY if build is tiny_bert else GENERATE, cfg(), 0, tmp_path / "t", progress=False)
    inputs = {"input_ids": torch.tensor([[2, 5, 7, 3], [2, 6, 5, 3]]), "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    with torch.no_grad():
        expected = peft_model.eval()(**inputs).logits
        merged = merge_lora(peft_model).eval()
        got = merged(**inputs).logits
    assert type(merged) is type(build())
    assert set(merged.state_dict()) == plain_keys
    assert all(p.requires_grad for p in merged.parameters())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    merged.save_pretrained(tmp_path / "saved")
    reloaded = type(merged).from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, got)


def test_lora_with_speedups_trains_like_without(tmp_path):
    """cls_only still applies inside a LoRA BERT classifier (adapter layers are called like the
    linear layers they wrap); kept_embedding_grad skips the frozen embedding."""
    losses = {}
    for name, speedups in (("on", ALL_SPEEDUPS), ("off", [])):
        model = tiny_bert(dropout=0.0)
        add_lora(model, LORA)
        logged = []
        finetune(model, CLASSIFY, cfg(speedups=speedups), 0, tmp_path / name,
                 log_metrics=lambda m, s, logged=logged: logged.append(m["train/loss"]) if "train/loss" in m else None,
                 progress=False)
        losses[name] = logged
    torch.testing.assert_close(torch.tensor(losses["on"]), torch.tensor(losses["off"]), atol=1e-5, rtol=1e-4)


def test_merge_false_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="not supported yet"):
        parse_config({"finetune": {"method": "lora", "lora": {"merge": False}}})
    assert parse_config({"finetune": {"method": "lora"}}).finetune.lora.merge is True
