"""Text generation through the unchanged `training_pipeline`: a tiny causal LM built in the test
(2-layer Llama, BPE tokenizer trained on a few sentences) as model.base, a few dozen AG News
rows (description -> headline), then the registered champion asked to generate."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flows.training import training_pipeline
from tests.task_types import tiny_causal_lm as tiny
from tlflow.config import load_config
from tlflow.registry import tracking

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]



def test_generation_trains_registers_and_serves(project, prefect_server):
    base = tiny.save_tiny_causal_lm(project / "tiny-lm")
    cfg = load_config("configs/ag_news_headlines.yaml", [
        "name=headlines-tiny", f"model.base={base}", f"paths.model_roots=[{base}]", "model.max_length=512", "finetune.method=full",
        "data.max_train_rows=32", "data.max_eval_rows=8", "finetune.batch_size=8", "finetune.learning_rate=1e-3",
        "task.max_new_tokens=4", "task.max_truncated_fraction=1.0", "evaluate.batch_size=8",
        "evaluate.misclassified_examples=3", "finetune.min_steps=0", "promote.trivial_baseline=false",
    ])
    outcome = training_pipeline(cfg)
    assert outcome.version == "1" and outcome.decision.alias == "champion"

    tracking.configure()
    metrics = MlflowClient().get_run(outcome.run_id).data.metrics
    for name in ("rougeL", "rouge1", "rouge2", "bleu", "exact_match", "gen_length", "perplexity"):
        assert f"test_{name}" in metrics and f"zeroshot_{name}" in metrics, name
    assert "val_rougeL" in metrics
    artifacts = {a.path for a in MlflowClient().list_artifacts(outcome.run_id, "evaluation")}
    assert "evaluation/samples.json" in artifacts and "evaluation/mistakes.json" not in artifacts
    table = mlflow.artifacts.load_dict(f"runs:/{outcome.run_id}/evaluation/samples.json")  # log_table's layout
    samples = pd.DataFrame(table["data"], columns=table["columns"])
    assert samples["kind"].tolist() == ["worst"] * 3 + ["random"] * 3  # 3 worst of 8 test rows, 3 drawn
    assert {"rougeL", "prompt", "reference", "generated"} <= set(samples.columns)
    assert samples["rougeL"].iloc[:3].is_monotonic_increasing

    served = mlflow.pyfunc.load_model(f"models:/{cfg.name}@champion")
    assert served.metadata.get_input_schema().input_names() == ["description"]
    assert {p.name for p in served.metadata.get_params_schema().params} == {
        "max_new_tokens", "num_beams", "do_sample", "temperature", "top_p", "seed"}
    requests = pd.DataFrame({"description": ["Oil prices soar to all-time record, posing new menace to US economy",
                                             "Stocks end up, but near year lows on oil worries"]})
    out = served.predict(requests, params={"max_new_tokens": 6})
    assert list(out.columns) == ["generated_text"] and len(out) == 2
    assert all(isinstance(t, str) and t for t in out["generated_text"])
    short = served.predict(requests, params={"max_new_tokens": 1})
    model = served.unwrap_python_model()
    assert all(len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) <= 2 for t in short["generated_text"])
    # MLflow drops params missing from the signature (with a warning); the model itself refuses them.
    with pytest.raises(MlflowException, match="unknown parameter 'beams'"):
        model.predict(None, requests, params={"beams": 2})
    with pytest.raises(MlflowException, match="num_beams"):
        served.predict(requests, params={"num_beams": 0})
