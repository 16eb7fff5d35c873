"""The fine-tuning loop on a tiny random BERT: learning, checkpoints, exact resume after a crash."""

import time

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from tlflow.config import FinetuneConfig
from tlflow.training.loop import finetune, latest_checkpoint

# Two classes a tiny model can learn in a few steps: class 1 sequences contain token 7.
EXAMPLES = [([2, 5, 6, 3], 0), ([2, 7, 5, 3], 1), ([2, 6, 6, 5, 3], 0), ([2, 5, 7, 7, 3], 1)] * 16
IDS = [x for x, _ in EXAMPLES]
LABELS = [y for _, y in EXAMPLES]
FEATURES = {"input_ids": IDS, "labels": LABELS}


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return BertForSequenceClassification(
        BertConfig(vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )


def cfg(**kw):
    base = dict(epochs=3, batch_size=8, learning_rate=5e-3, checkpoint_every_steps=5, log_every_steps=1, threads=1)
    return FinetuneConfig(**{**base, **kw})


def test_loss_falls_and_metrics_are_reported(tmp_path):
    logged = []
    result = finetune(tiny_model(), FEATURES, cfg(epochs=6), 0, tmp_path, log_metrics=lambda m, s: logged.append((s, m)), progress=False)
    losses = [m["train_loss"] for _, m in logged if "train_loss" in m]
    assert result.steps == result.total_steps == 48
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2
    assert result.samples == 6 * 64 and result.tokens > 0


def test_eval_callback_results_are_logged_with_val_prefix(tmp_path):
    logged = {}
    finetune(tiny_model(), FEATURES, cfg(epochs=2), 0, tmp_path,
             evaluate=lambda m: {"accuracy": 0.5}, log_metrics=lambda m, s: logged.update(m), progress=False)
    assert logged["val_accuracy"] == 0.5


def test_validation_time_is_not_training_time(tmp_path):
    def slow_eval(model):
        time.sleep(0.3)
        return {"accuracy": 0.5}

    began = time.perf_counter()
    result = finetune(tiny_model(), FEATURES, cfg(epochs=3, eval_every_steps=4, checkpoint_every_steps=100),
                      0, tmp_path, evaluate=slow_eval, progress=False)
    wall = time.perf_counter() - began
    evaluations = result.steps // 4  # every 4 steps but the last, plus the final one
    assert wall - result.seconds >= 0.3 * evaluations - 0.05
    assert result.samples_per_second == pytest.approx(result.samples / result.seconds)


def test_checkpoint_writes_are_not_training_time(tmp_path):
    began = time.perf_counter()
    result = finetune(tiny_model(), FEATURES, cfg(epochs=2, checkpoint_every_steps=1), 0, tmp_path, progress=False)
    wall = time.perf_counter() - began
    assert result.steps == 16 and result.checkpoint_seconds > 0
    assert wall - result.seconds >= result.checkpoint_seconds
    assert latest_checkpoint(tmp_path).name == "step-0000016"


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_continues_exactly(tmp_path):
    reference = tiny_model()
    full = finetune(reference, FEATURES, cfg(), 0, tmp_path / "ref", progress=False)

    def crash_at_step_13(metrics, step):
        if step == 13:
            raise Crash()

    crashed = tiny_model()
    with pytest.raises(Crash):
        finetune(crashed, FEATURES, cfg(), 0, tmp_path / "run", log_metrics=crash_at_step_13, progress=False)
    assert latest_checkpoint(tmp_path / "run").name == "step-0000010"

    resumed = tiny_model()
    result = finetune(resumed, FEATURES, cfg(), 0, tmp_path / "run", progress=False)
    assert result.resumed_from == 10 and result.steps == 24
    assert result.samples == full.samples == 3 * 64  # work before the crash still counts
    assert result.tokens == full.tokens and result.seconds > 0
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    finetune(tiny_model(), FEATURES, cfg(), 0, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000020", "step-0000024"]
