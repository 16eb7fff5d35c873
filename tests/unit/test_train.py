"""The fine-tuning loop on a tiny random BERT: learning, checkpoints, exact resume after a crash,
opt-in speed-ups that change no result and leave a plain model."""

import time

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from tlflow.config import FinetuneConfig
from tlflow.training.checkpoints import latest_checkpoint
from tlflow.training.loop import finetune

pytestmark = [pytest.mark.unit]

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
    losses = [m["train/loss"] for _, m in logged if "train/loss" in m]
    assert result.steps == result.total_steps == 48
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2
    assert result.samples == 6 * 64 and result.tokens > 0


def test_eval_callback_results_are_logged_with_val_prefix(tmp_path):
    logged = {}
    finetune(tiny_model(), FEATURES, cfg(epochs=2), 0, tmp_path,
             evaluate=lambda m: {"accuracy": 0.5}, log_metrics=lambda m, s: logged.update(m), progress=False)
    assert logged["val_accuracy"] == 0.5


@pytest.mark.parametrize(("epochs", "early_stopping", "steps"), [
    (1, None, [2, 4, 6, 8]),  # 8 steps, one epoch: 4 validations, the last at the end
    (3, None, [6, 12, 18, 24]),  # 3 epochs: 4 validations a run (more often than once per epoch)
    (6, None, [8, 16, 24, 32, 40, 48]),  # 6 epochs: at least once per epoch
    (3, {"patience": 5, "metric": "accuracy"}, [8, 16, 24]),  # early stopping counts epochs: once per epoch
])
def test_by_default_a_run_is_validated_four_times_and_at_least_once_per_epoch(tmp_path, epochs, early_stopping,
                                                                               steps):
    validated = []
    finetune(tiny_model(), FEATURES, cfg(epochs=epochs, early_stopping=early_stopping, checkpoint_every_steps=100),
             0, tmp_path, evaluate=lambda m: {"accuracy": 0.5},
             log_metrics=lambda m, s: validated.append(s) if "val_accuracy" in m else None, progress=False)
    assert validated == steps


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


def _losses_and_model(tmp_path, speedups, dropout: bool):
    model = tiny_model()
    if not dropout:  # no random draws: the paths must agree step for step
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    logged = []
    finetune(model, FEATURES, cfg(speedups=speedups), 0, tmp_path, log_metrics=lambda m, s: logged.append(m),
             progress=False)
    return [m["train/loss"] for m in logged if "train/loss" in m], model


def test_speedups_off_trains_like_speedups_on(tmp_path):
    on, fast = _losses_and_model(tmp_path / "on", ["cls_only", "kept_embedding_grad", "fast_dropout"], False)
    off, plain = _losses_and_model(tmp_path / "off", [], False)
    assert len(on) == len(off) == 24
    torch.testing.assert_close(torch.tensor(on), torch.tensor(off), atol=1e-5, rtol=1e-4)
    for (name, a), b in zip(plain.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-3, msg=name)
    # With dropout the masks differ (fast_dropout draws other random numbers) but training still works.
    dropped, _ = _losses_and_model(tmp_path / "dropout", [], True)
    assert len(dropped) == 24 and sum(dropped[-5:]) < sum(dropped[:5])


def test_speedups_are_undone_after_training(tmp_path):
    from transformers.models.bert.modeling_bert import BertLayer

    model = tiny_model()
    finetune(model, FEATURES, cfg(epochs=1), 0, tmp_path, progress=False)
    assert type(model.bert.encoder.layer[-1]) is BertLayer
    assert all(type(m) is nn.Dropout for m in model.modules() if isinstance(m, nn.Dropout))
    assert model.config._attn_implementation != "sdpa_fast_dropout"
    assert model.bert.embeddings.word_embeddings.weight.grad is None
    assert not model.bert.embeddings.word_embeddings.sparse
    with pytest.raises(ValueError):
        cfg(speedups=["warp_drive"])
