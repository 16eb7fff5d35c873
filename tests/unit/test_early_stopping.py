"""Early stopping in the training loop on a hand-made validation curve: the step it stops at, the
weights it restores, a resume that keeps the best; label smoothing and the dropout override."""

from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F
from transformers import BertConfig, BertForSequenceClassification

from tlflow.config import ModelConfig
from tlflow.config.schema import EarlyStoppingConfig
from tlflow.modeling.models import build_task_model
from tlflow.training.label_smoothing import SmoothedLoss
from tlflow.training.loop import train_loop
from tlflow.training.overfitting_gap import gap_metrics
from tlflow.training.settings import LoopSettings

pytestmark = [pytest.mark.unit]

#: Validation accuracy at steps 2, 4, 6, ...: with patience 2 and min_delta 0.01, step 6 (+0.005)
#: is no gain, step 8 is the best, steps 10 and 12 are no gain: the run stops at step 12.
CURVE = [0.5, 0.6, 0.605, 0.7, 0.69, 0.70, 0.9, 0.9]
X = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] > 0).long()


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x, labels, attention_mask):
        return SimpleNamespace(loss=F.cross_entropy(self.linear(x), labels))


def _settings() -> LoopSettings:
    return LoopSettings(total_steps=30, batch_size=4, learning_rate=0.05, weight_decay=0.0, warmup_ratio=0.0,
                        checkpoint_every_steps=3, seed=1, eval_every_steps=2, log_every_steps=1,
                        early_stopping=EarlyStoppingConfig(patience=2, min_delta=0.01, metric="accuracy"))


class Curve:
    """Hands out the next point of CURVE and keeps a copy of the weights it was asked about;
    raises at evaluation `fail_at` (a run killed there)."""

    def __init__(self, start: int = 0, fail_at: int | None = None) -> None:
        self.calls, self.fail_at, self.weights = start, fail_at, {}
        self.logged: list[tuple[int, dict]] = []

    def __call__(self, model) -> dict[str, float]:
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("killed")
        self.weights[(self.calls + 1) * 2] = model.linear.weight.detach().clone()
        self.calls += 1
        return {"accuracy": CURVE[self.calls - 1]}

    def log(self, metrics: dict, step: int) -> None:
        self.logged.append((step, metrics))


def _train(model, checkpoints, curve: Curve):
    return train_loop(model, [1] * len(X), lambda batch, step: {"x": X[batch], "labels": Y[batch],
                                                                "attention_mask": torch.ones(len(batch), 1)},
                      _settings(), checkpoints, evaluate=curve, log_metrics=curve.log, progress=False)


def test_stops_after_patience_and_restores_the_best_weights(tmp_path):
    model, curve = Tiny(), Curve()
    result = _train(model, tmp_path, curve)

    assert result.steps == 12 and curve.calls == 6  # no evaluation after the stop, none at the end
    assert result.val_metrics == {"accuracy": 0.7}
    assert result.early_stopping["train/early_stopping_best_step"] == 8 and result.early_stopping["train/early_stopped"] == 1
    assert torch.equal(model.linear.weight, curve.weights[8])
    assert not torch.equal(curve.weights[8], curve.weights[12])  # training went on after the best
    assert (12, result.early_stopping) in curve.logged
    assert [p.name for p in (tmp_path / "best").iterdir()] == ["step-0000008"]  # older bests removed


def test_resume_keeps_the_best_and_stops_where_the_whole_run_did(tmp_path):
    first = Curve(fail_at=4)  # killed at the evaluation of step 10; the checkpoint of step 9 names best step 8
    with pytest.raises(KeyboardInterrupt):
        _train(Tiny(), tmp_path, first)

    model, second = Tiny(), Curve(start=4)
    result = _train(model, tmp_path, second)

    assert result.resumed_from == 9 and result.steps == 12
    assert result.val_metrics == {"accuracy": 0.7}
    assert torch.equal(model.linear.weight, first.weights[8])  # the best of the first segment

    again = _train(Tiny(), tmp_path, Curve(start=6))  # a stopped run started again trains no more
    assert again.resumed_from == 12 and again.steps == 12 and again.val_metrics == {"accuracy": 0.7}


def test_label_smoothing_replaces_the_loss_of_the_same_logits():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=3))
    model.eval()
    inputs = {"input_ids": torch.randint(1, 50, (4, 6)), "attention_mask": torch.ones(4, 6, dtype=torch.long),
              "labels": torch.tensor([0, 1, 2, 1])}
    plain = model(**inputs)
    assert SmoothedLoss(model, 0.0)(**inputs).loss.item() == pytest.approx(plain.loss.item(), abs=1e-6)
    smoothed = SmoothedLoss(model, 0.1)(**inputs).loss
    assert smoothed.item() == pytest.approx(F.cross_entropy(plain.logits, inputs["labels"], label_smoothing=0.1).item())
    assert smoothed.item() != pytest.approx(plain.loss.item(), abs=1e-4)


def test_dropout_override_reaches_the_model_config():
    cfg = ModelConfig(init="random", num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32, dropout=0.3)
    model = build_task_model(cfg, (BertForSequenceClassification, BertForSequenceClassification), ["a", "b"], 50, 0)
    assert model.config.hidden_dropout_prob == model.config.attention_probs_dropout_prob == 0.3
    assert model.config.classifier_dropout == 0.3


def test_gap_is_train_minus_validation():
    assert gap_metrics({"accuracy": 0.9, "f1": 0.8}, {"accuracy": 0.7}) == pytest.approx(
        {"gap/train_accuracy": 0.9, "gap/train_f1": 0.8, "gap/accuracy": 0.2})
