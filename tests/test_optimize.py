"""Optimized inference variants with a tiny fine-tuned model and a real MLflow store: torch int8 and
ONNX Runtime (fp32, int8) predict like the fp32 model through the task's own code, log and load
as the pyfunc; `tlflow optimize`'s registration tags the variant, moves only `optimized`, writes
the ledger, is refused by `promote`, and an injected failure leaves the registry as it was."""

import re
from functools import partial
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from flows.cli import app
from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.modeling.models import load_tokenizer
from tlflow.registry import ledger, registration, tracking, transaction
from tlflow.registry.lineage import Lineage
from tlflow.registry.lock import lock_name
from tlflow.serving import load_task_model, log_task_model
from tlflow.serving.optimize_champion import optimize_champion
from tlflow.serving.optimized import (
    FP32,
    VARIANTS,
    Measurement,
    OnnxTaskModel,
    OptimizeError,
    build_variants,
    check_variant,
    choose,
)
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import check_config, get_task_type
from tlflow.training.finetuning import train_task_model

pytestmark = [pytest.mark.needs_data, pytest.mark.slow]  # trains a model, builds and times ONNX variants

REPO = Path(__file__).resolve().parents[1]
NAME = "opt-tiny"
TINY = {
    "name": NAME, "model.init": "random", "model.num_layers": "2", "model.hidden_size": "64", "model.num_heads": "2",
    "model.intermediate_size": "128", "model.max_length": "64", "data.max_train_rows": "800",
    "data.max_eval_rows": "200", "finetune.learning_rate": "3e-3", "finetune.batch_size": "32",
    "finetune.epochs": "3", "finetune.checkpoint_every_steps": "1000",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-layer, hidden-64 BERT fine-tuned for 3 epochs on 800 SST-2 sentences (accuracy ~0.6 but
    confident, with both labels predicted, so agreement between variants means something);
    (cfg, loaded, model, tokenizer)."""
    cfg = check_config(load_config(REPO / "configs" / "sst2.yaml", [f"{k}={v}" for k, v in TINY.items()]))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        loaded = load_labelled_data(cfg.data, get_task_type(cfg.task.type).dataset_spec())
    tokenizer = load_tokenizer(cfg.model.base)
    task, settings = get_task_type(cfg.task.type), TaskSettings.from_config(cfg)
    features = task.train_features(loaded.splits["train"], loaded.label_names, tokenizer, settings)
    model, _ = train_task_model(cfg, features, None, loaded.label_names, tokenizer, cfg.model.base,
                                tmp_path_factory.mktemp("ckpt"), progress=False)
    return cfg, loaded, model.eval(), tokenizer


def _probs(model, trained_parts, split=None):
    cfg, loaded, _, tokenizer = trained_parts
    task = get_task_type(cfg.task.type)
    return task.probabilities(model, tokenizer, split or loaded.splits["test"], TaskSettings.from_config(cfg))


def test_variants_predict_like_fp32_through_the_task_code(trained, project, tmp_path):
    cfg, loaded, model, tokenizer = trained
    task, settings = get_task_type(cfg.task.type), TaskSettings.from_config(cfg)
    attention = model.config._attn_implementation
    variants = build_variants(model, cfg.task.type, tmp_path, VARIANTS, threads=2)
    assert set(variants) == set(VARIANTS)
    assert model.config._attn_implementation == attention  # exported with eager attention, then put back
    reference = _probs(model, trained)
    assert 0.2 < reference.argmax(-1).mean() < 0.8 and reference.max(-1).mean() > 0.7  # not a constant model
    for name, variant in variants.items():
        probs = _probs(variant.model, trained)
        agree = (probs.argmax(-1) == reference.argmax(-1)).mean()
        assert agree >= 0.95, (name, agree)
        if name == "onnx-fp32":  # the same arithmetic in another runtime
            np.testing.assert_allclose(probs, reference, atol=1e-4)
        evaluation = task.evaluate(variant.model, tokenizer, loaded.splits["test"], loaded.label_names, settings)
        assert abs(evaluation.metrics["accuracy"] - task.evaluate(
            model, tokenizer, loaded.splits["test"], loaded.label_names, settings).metrics["accuracy"]) <= 0.05
    onnx = variants["onnx-int8"].model
    assert isinstance(onnx, OnnxTaskModel) and onnx.session.get_session_options().intra_op_num_threads == 2
    assert onnx.input_names == ("input_ids", "attention_mask", "token_type_ids")
    with pytest.raises(OptimizeError, match="inference only"):
        onnx.train()
    requests = pd.DataFrame({"text": ["a gorgeous , witty , seductive movie .", "dull"]})
    assert [set(p) for p in task.predict(onnx, tokenizer, requests, settings)] == [{"label", "score"}] * 2
    with pytest.raises(OptimizeError, match="not supported.*'summarization'"):
        check_variant("onnx-int8", "summarization")
    with pytest.raises(OptimizeError, match="unknown variant 'onnx-int4'"):
        check_variant("onnx-int4", cfg.task.type)

    # Logged and loaded as the pyfunc: torch-int8 keeps fp32 weights and quantizes at load time.
    tracking.configure()
    example = task.requests(loaded.splits["test"].select(range(3)))
    with mlflow.start_run(experiment_id=tracking.ensure_experiment("variants")):
        uri = log_task_model(model, tokenizer, settings, example, variants["torch-int8"])
    loaded_model = load_task_model(uri)
    assert loaded_model.variant == "torch-int8"
    assert "DynamicQuantizedLinear" in repr(loaded_model.model)
    # Both are the plain model quantized the same way (no inference speed-ups in these settings).
    reloaded, built = _probs(loaded_model.model, trained), _probs(variants["torch-int8"].model, trained)
    np.testing.assert_allclose(reloaded, built, atol=1e-6)


def _measurement(variant: str, accuracy: float, speed: float) -> Measurement:
    return Measurement(variant, {"accuracy": accuracy}, ("accuracy",), (speed,), 100)


def test_choose_takes_the_fastest_variant_within_the_bound():
    base = _measurement(FP32, 0.88, 100.0)
    candidates = [_measurement("torch-int8", 0.865, 300.0), _measurement("onnx-fp32", 0.88, 180.0),
                  _measurement("onnx-int8", 0.875, 250.0)]
    choice = choose(base, candidates, "accuracy", max_drop=0.01)
    assert choice.chosen.variant == "onnx-int8" and "2.50x" in choice.reason and "-0.50 pt" in choice.reason
    assert choose(base, candidates, "accuracy", max_drop=0.02).chosen.variant == "torch-int8"
    tied = choose(base, [*candidates, _measurement("onnx-int8b", 0.88, 290.0)], "accuracy", max_drop=0.02)
    assert tied.chosen.variant == "onnx-int8b" and "as fast as torch-int8 within 5 %" in tied.reason
    none = choose(base, candidates, "accuracy", max_drop=0.01, min_speedup=3.0)
    assert none.chosen is None and none.reason.startswith("no variant is within 1.00 pt") and "torch-int8" in none.reason


def _register_champion(trained, client) -> None:
    """v1 of NAME through the real gate (first champion), from a run holding its config."""
    cfg, loaded, model, tokenizer = trained
    task, settings = get_task_type(cfg.task.type), TaskSettings.from_config(cfg)
    evaluation = task.evaluate(model, tokenizer, loaded.splits["test"], loaded.label_names, settings)
    with mlflow.start_run(experiment_id=tracking.ensure_experiment(NAME)):
        mlflow.log_dict(cfg.to_dict(), "config.yaml")
        uri = log_task_model(model, tokenizer, settings, task.requests(loaded.splits["test"].select(range(3))))
    outcome = registration.register_and_promote(
        client, cfg, uri, registration.scores_of(cfg, evaluation, loaded.label_names), lambda v: None,
        Lineage(data_md5="tiny", task_type=cfg.task.type, eval_split="tiny-split"), "test", lambda v, d: "",
    )
    assert outcome.version == "1" and outcome.decision.promoted


def _state(client):
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name = '{NAME}'"))
    optimized = tracking.alias_version(client, NAME, tracking.OPTIMIZED)
    champion = tracking.alias_version(client, NAME, tracking.CHAMPION)
    return (versions, str(champion.version), str(optimized.version) if optimized else None,
            len(ledger.entries(client, NAME)))


def test_optimize_registers_the_variant_beside_the_champion(trained, project):
    tracking.configure()
    client = MlflowClient()
    _register_champion(trained, client)
    optimize = partial(optimize_champion, client, NAME, "test", Lineage(data_md5="tiny"), max_drop=0.1, min_speedup=0.0,
                       repeats=1)

    outcome = optimize(variants=("onnx-int8",))
    assert outcome.version == "2" and outcome.chosen.variant == "onnx-int8", outcome.reason
    assert _state(client) == (["1", "2"], "1", "2", 2)
    mv = client.get_model_version(NAME, "2")
    assert mv.tags["variant"] == "onnx-int8" and mv.tags["optimized_from"] == "1"
    assert mv.tags["registration"] == "complete" and mv.tags["eval_split"] == "tiny-split"
    assert float(mv.tags["samples_per_s"]) > 0 and "optimized variant of v1: onnx-int8" in mv.tags["decision_reason"]
    entry = ledger.entries(client, NAME)[-1]
    assert (entry.action, entry.version, entry.champion_before, entry.champion_after) == ("optimize", "2", "1", "1")
    assert entry.decision["chosen"] == "onnx-int8" and len(entry.decision["measurements"]) == 2
    assert ledger.previous_champion(ledger.entries(client, NAME), "1") is None  # not a promotion
    run = client.get_run(outcome.run_id)
    assert run.data.params["source_version"] == "1" and run.data.metrics["speedup"] > 0

    served = load_task_model(f"models:/{NAME}@optimized")  # the pyfunc as `tlflow serve --alias optimized` loads it
    assert served.variant == "onnx-int8" and isinstance(served.model, OnnxTaskModel)
    reqs = mlflow.artifacts.load_text(f"models:/{NAME}/2/requirements.txt")
    assert "onnxruntime==" in reqs
    cfg, loaded, model, tokenizer = trained
    texts = pd.DataFrame({"text": loaded.splits["test"]["text"][:40]})
    fp32 = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(texts)
    fast = mlflow.pyfunc.load_model(f"models:/{NAME}@optimized").predict(texts)
    assert (fp32["label"] == fast["label"]).mean() >= 0.9

    code = CliRunner().invoke(app, ["promote", NAME, "2"])
    assert code.exit_code == 1 and "is an optimized variant (onnx-int8 of v1)" in code.output
    assert len(code.output.strip().splitlines()) == 1
    with pytest.raises(registration.RegistryError, match="optimized variant"):
        registration.promote_version(client, cfg, "2", lambda v: None, "test", Lineage())

    before = _state(client)

    def fail(step):
        if step == transaction.STEP_LEDGER:  # the variant is registered and `optimized` moved
            raise RuntimeError("injected: network gone before the ledger entry")

    with pytest.raises(RuntimeError, match="injected"):
        optimize(variants=("torch-int8",), on_step=fail)
    assert _state(client) == before  # no version left behind, `optimized` still on v2, no ledger entry
    with pytest.raises(MlflowException):  # the lock was released
        client.get_registered_model(lock_name(NAME))

    # The command: nothing qualifies (no variant is 1000x faster), so nothing is registered.
    result = CliRunner().invoke(app, ["optimize", NAME, "--variants", "torch-int8", "--min-speedup", "1000",
                                      "--repeats", "1"])
    assert result.exit_code == 1, result.output
    assert re.search(r"^torch-int8 .* pt$", result.output, re.M) and "nothing registered: no variant is within 1.00 pt" \
        in result.output
    assert _state(client) == before
    result = CliRunner().invoke(app, ["optimize", NAME, "--variants", "onnx-int4"])
    assert result.exit_code == 1 and result.output.strip() == (
        "error: unknown variant 'onnx-int4' (one of torch-int8, onnx-fp32, onnx-int8)")
