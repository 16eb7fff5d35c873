"""Differentially private fine-tuning (DP-SGD through Opacus) on a tiny random BERT: per-example
gradients clipped before the noise, the noise and epsilon the Opacus accountant gives for the same
sampling rate and steps, epsilon logged per epoch, exact resume with the accountant restored,
speed-ups and LoRA that work with it, and one-line errors for what does not."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from tlflow.config import ConfigError, FinetuneConfig, load_config
from tlflow.modeling.batching import collate
from tlflow.task_types.registry import check_config
from tlflow.training.checkpoints import latest_checkpoint
from tlflow.training.loop import finetune
from tlflow.training.private import PrivacyPlan, PrivateTraining, freeze_embeddings, poisson_batch

pytestmark = [pytest.mark.unit]

# class 1 sequences contain token 7 (as in test_train.py); lengths vary so batches need padding.
EXAMPLES = [([2, 5, 6, 3], 0), ([2, 7, 5, 3], 1), ([2, 6, 6, 5, 3], 0), ([2, 5, 7, 7, 3], 1)] * 16
FEATURES = {"input_ids": [x for x, _ in EXAMPLES], "labels": [y for _, y in EXAMPLES]}
PRIVACY = {"epsilon": 4.0, "delta": 1e-3, "max_grad_norm": 0.5, "physical_batch_size": 3}


def tiny_model(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout))


def cfg(**kw):
    base = dict(epochs=3, batch_size=8, learning_rate=5e-3, checkpoint_every_steps=5, log_every_steps=1, threads=1,
                privacy=PRIVACY)
    return FinetuneConfig(**{**base, **kw})


def test_dp_training_spends_what_the_opacus_accountant_says(tmp_path):
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logged = []
    result = finetune(model, FEATURES, cfg(), 0, tmp_path, log_metrics=lambda m, s: logged.append((s, m)),
                      progress=False)
    plan, rate, steps = result.privacy.plan, 8 / 64, 24
    assert result.steps == steps and plan.sample_rate == rate and plan.steps == steps
    assert plan.noise_multiplier == get_noise_multiplier(target_epsilon=4.0, target_delta=1e-3, sample_rate=rate,
                                                         steps=steps, accountant="rdp")
    accountant = RDPAccountant()
    accountant.history = [(plan.noise_multiplier, rate, steps)]
    assert result.privacy.epsilon_spent == pytest.approx(accountant.get_epsilon(delta=1e-3))
    assert 3.9 < result.privacy.epsilon_spent <= 4.0
    epsilons = [(s, m["train/dp_epsilon"]) for s, m in logged if "train/dp_epsilon" in m]
    assert [s for s, _ in epsilons] == [1, 2, 3]  # MLflow step: the epoch
    assert epsilons[0][1] < epsilons[1][1] < epsilons[2][1] == result.privacy.epsilon_spent
    tags = result.privacy.tags()
    assert tags["dp_noise_multiplier"] == f"{plan.noise_multiplier:.4f}" and tags["dp_max_grad_norm"] == "0.5"
    # Embeddings frozen (unchanged), the rest trained; a plain model afterwards.
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if "embeddings" in n and "LayerNorm" not in n)
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert all(p.requires_grad and not hasattr(p, "grad_sample") for p in model.parameters())
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def _per_example_grads(model, batch):
    """Each example's gradient alone, by plain autograd (no Opacus)."""
    grads = []
    for i in batch:
        model.zero_grad()
        model(**collate(FEATURES, [i], 0)).loss.backward()
        grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    return grads


def test_per_example_gradients_are_clipped_then_summed_over_chunks():
    model = tiny_model(dropout=0.0)
    reference = copy.deepcopy(model)
    freeze_embeddings(reference)
    batch = [0, 1, 2, 3, 5, 6, 7]
    grads = _per_example_grads(reference, batch)
    clip = 0.05
    norms = [torch.sqrt(sum((g ** 2).sum() for g in grad.values())) for grad in grads]
    assert min(norms) > clip  # every example is clipped
    dp = replace(PrivacyPlan.calibrate(FinetuneConfig(privacy=PRIVACY).privacy, 64, 8, 10),
                 noise_multiplier=0.0, max_grad_norm=clip, physical_batch_size=3)
    private = PrivateTraining(model, dp, freeze_embeddings(model))
    private.wrap(torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0))
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    lengths = [len(x) for x in FEATURES["input_ids"]]

    # Opacus' per-example gradients (grad_sample) are each example's own gradient.
    inputs = collate(FEATURES, batch, 0)
    private.module(**inputs).loss.backward()
    params = dict(model.named_parameters())
    for name, p in params.items():
        if p.requires_grad:
            torch.testing.assert_close(p.grad_sample, torch.stack([g[name] for g in grads]), atol=1e-5, rtol=1e-4)
    private.optimizer.zero_grad(set_to_none=True)

    # One step over three chunks: the update is the sum of the clipped gradients / expected batch size.
    private._step(batch, lengths, lambda b, s: collate(FEATURES, b, 0), 0)
    for name, p in params.items():
        if not p.requires_grad:
            continue
        clipped = sum(g[name] * min(1.0, clip / float(n)) for g, n in zip(grads, norms))
        torch.testing.assert_close(start[name] - p.detach(), clipped / 8, atol=1e-6, rtol=1e-4)
    private.close()


def test_poisson_sampling_is_a_pure_function_of_seed_and_step():
    sizes = [len(poisson_batch(1000, 0.05, 42, step)) for step in range(200)]
    assert poisson_batch(1000, 0.05, 42, 7) == poisson_batch(1000, 0.05, 42, 7) != poisson_batch(1000, 0.05, 43, 7)
    assert abs(np.mean(sizes) - 50) < 2 and np.std(sizes) > 3  # Binomial(1000, 0.05), not a fixed size


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_keeps_the_accountant_and_the_weights(tmp_path):
    reference = tiny_model()
    full = finetune(reference, FEATURES, cfg(epochs=2), 0, tmp_path / "ref", progress=False)

    def crash_at_step_13(metrics, step):
        if step == 13 and "train/loss" in metrics:
            raise Crash()

    crashed = tiny_model()
    with pytest.raises(Crash):
        finetune(crashed, FEATURES, cfg(epochs=2), 0, tmp_path / "run", log_metrics=crash_at_step_13, progress=False)
    assert not any(m._forward_hooks for m in crashed.modules())  # a plain model again after the crash
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint.name == "step-0000010"
    saved = torch.load(checkpoint / "state.pt", weights_only=True)["extra"]["dp_accountant"]
    assert sum(n for _, _, n in saved["history"]) == 10

    resumed = tiny_model()
    logged = []
    result = finetune(resumed, FEATURES, cfg(epochs=2), 0, tmp_path / "run",
                      log_metrics=lambda m, s: logged.append((s, m)), progress=False)
    assert result.resumed_from == 10 and result.steps == 16
    assert result.privacy.epsilon_spent == full.privacy.epsilon_spent
    assert [s for s, m in logged if "train/dp_epsilon" in m] == [2]  # epoch 1 ended before the crash
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5, msg=name)


def test_speedups_and_lora_train_privately(tmp_path):
    plain, fast = tiny_model(dropout=0.0), tiny_model(dropout=0.0)
    finetune(plain, FEATURES, cfg(epochs=1, speedups=[]), 0, tmp_path / "plain", progress=False)
    finetune(fast, FEATURES, cfg(epochs=1), 0, tmp_path / "fast", progress=False)  # cls_only, kept_embedding_grad, fast_dropout
    for (name, a), b in zip(plain.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-3, msg=name)

    from tlflow.config.schema import LoraConfig
    from tlflow.training.lora import add_lora, merge_lora

    model = tiny_model()
    peft = add_lora(model, LoraConfig(r=2))
    result = finetune(model, FEATURES, cfg(epochs=1), 0, tmp_path / "lora", progress=False)
    assert result.privacy.epsilon_spent <= 4.0
    merged = merge_lora(peft)
    assert not any(m._forward_hooks for m in merged.modules() if isinstance(m, nn.Linear))


def test_unsupported_combinations_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"finetune: privacy \(DP-SGD\) trains in one process"):
        load_config(None, ["finetune.privacy.epsilon=8", "finetune.processes=2"])
    with pytest.raises(ConfigError, match="finetune.privacy: pretrain.corpus.sources has 'task'"):
        load_config(None, ["finetune.privacy.epsilon=8", "pretrain.mode=continue", "pretrain.corpus.sources=[task]"])
    ner = load_config(None, ["task.type=token-classification", "finetune.privacy.epsilon=8"])
    with pytest.raises(ConfigError, match="finetune.privacy: .* does not support task.type token-classification "
                                          r"\(supported: text-classification, sentence-pair\)") as err:
        check_config(ner)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="finetune.batch_size: 64 must be below the 64 training rows"):
        finetune(tiny_model(), FEATURES, cfg(batch_size=64), 0, tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="finetune.privacy.epsilon: 1e-09 cannot be met"):
        finetune(tiny_model(), FEATURES, cfg(privacy={**PRIVACY, "epsilon": 1e-9}), 0, tmp_path / "b", progress=False)


def test_prv_accountant_calibrates_like_opacus():
    plan = PrivacyPlan.calibrate(FinetuneConfig(privacy={**PRIVACY, "accountant": "prv"}).privacy, 64, 8, 16)
    assert plan.noise_multiplier == get_noise_multiplier(target_epsilon=4.0, target_delta=1e-3, sample_rate=8 / 64,
                                                         steps=16, accountant="prv")
