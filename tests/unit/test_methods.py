"""`finetune.method: head` (the linear probe) on a tiny random BERT classifier: only the task head
trains, the base stays bitwise as loaded, checkpoints hold the head only and resume exactly; a
language model (no head of its own) is a config error. Also with DP-SGD: only the head is noised."""

import pytest
import torch
from safetensors.torch import load_file

from tests.unit.test_lora import ALL_SPEEDUPS, CLASSIFY, cfg, tiny_bert, tiny_llama
from tlflow.config import ConfigError, parse_config
from tlflow.config.schema import DifferentialPrivacyConfig
from tlflow.training.checkpoints import latest_checkpoint
from tlflow.training.loop import finetune
from tlflow.training.methods import freeze_base, prepare_method, trained_model

pytestmark = [pytest.mark.unit]


def head_cfg(**kw):
    return cfg(method="head", learning_rate=5e-2, **kw)


def test_head_trains_only_the_classifier_and_leaves_the_base_as_loaded(tmp_path):
    model = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert prepare_method(model, head_cfg()) is None
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}
    finetune(model, CLASSIFY, head_cfg(speedups=ALL_SPEEDUPS), 0, tmp_path, progress=False)
    after = model.state_dict()
    changed = {k for k, v in before.items() if not torch.equal(after[k], v)}
    assert changed == {"classifier.weight", "classifier.bias"}
    plain = trained_model(model, None)
    assert plain is model and all(p.requires_grad for p in plain.parameters())


def test_head_checkpoint_holds_the_head_and_resumes_exactly(tmp_path):
    settings = head_cfg()
    reference = tiny_bert()
    freeze_base(reference)
    full = finetune(reference, CLASSIFY, settings, 0, tmp_path / "ref", progress=False)

    class Crash(RuntimeError):
        pass

    def crash_at_step_7(metrics, step):
        if step == 7:
            raise Crash()

    crashed = tiny_bert()
    freeze_base(crashed)
    with pytest.raises(Crash):
        finetune(crashed, CLASSIFY, settings, 0, tmp_path / "run", log_metrics=crash_at_step_7, progress=False)
    saved = load_file(str(latest_checkpoint(tmp_path / "run") / "model.safetensors"))
    assert set(saved) == {"classifier.weight", "classifier.bias"}
    resumed = tiny_bert()
    freeze_base(resumed)
    result = finetune(resumed, CLASSIFY, settings, 0, tmp_path / "run", progress=False)
    assert result.resumed_from == 5 and result.steps == full.steps
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=name)


def test_a_language_model_has_no_head_to_train():
    with pytest.raises(ConfigError, match="finetune.method: head"):
        freeze_base(tiny_llama())
    assert parse_config({"finetune": {"method": "head"}}).finetune.method == "head"


def test_private_head_training_noises_the_head_only(tmp_path):
    model = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    freeze_base(model)
    privacy = DifferentialPrivacyConfig(epsilon=8.0, max_grad_norm=1.0)
    result = finetune(model, CLASSIFY, head_cfg(privacy=privacy), 0, tmp_path, progress=False)
    assert result.privacy.trained_weights == 16 * 2 + 2
    assert result.privacy.tags()["dp_trained_weights"] == "34"
    changed = {k for k, v in before.items() if not torch.equal(model.state_dict()[k], v)}
    assert changed == {"classifier.weight", "classifier.bias"}
