"""Data-parallel fine-tuning with 2 DDP processes (gloo) against the same training in one process:
one MLflow run and one registered version per pipeline, and the same quality within tolerance."""

import pytest
from mlflow import MlflowClient

from flows.training import training_pipeline
from tlflow.registry import tracking

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]


@pytest.mark.slow
def test_two_processes_match_one(project, prefect_server, tiny_config):
    budget = {"finetune.epochs": "3", "data.max_train_rows": "800", "data.max_eval_rows": "600"}
    single = training_pipeline(tiny_config(name="single", **budget))
    ddp = training_pipeline(tiny_config(name="ddp", **budget, **{"finetune.processes": "2"}))

    tracking.configure()
    client = MlflowClient()
    runs = client.search_runs([tracking.ensure_experiment("ddp")])
    assert len(runs) == 1  # one MLflow run for both ranks
    assert [str(v.version) for v in client.search_model_versions("name = 'ddp'")] == ["1"]
    assert ddp.version == "1" and ddp.decision.promoted
    m_ddp = runs[0].data.metrics
    m_one = client.get_run(single.run_id).data.metrics
    assert m_ddp["train/processes"] == 2 and m_ddp["train/steps"] == m_one["train/steps"]
    assert len(client.get_metric_history(ddp.run_id, "train/loss")) >= 3  # rank 0 logged as it trained
    assert min(m_ddp["test_accuracy"], m_one["test_accuracy"]) > 0.55  # both learnt something
    assert abs(m_ddp["test_accuracy"] - m_one["test_accuracy"]) <= 0.05, (m_ddp["test_accuracy"], m_one["test_accuracy"])
