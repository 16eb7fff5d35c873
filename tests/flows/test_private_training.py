"""`training_pipeline` with `finetune.privacy` (DP-SGD): the epsilon spent is logged per epoch and
tagged on the MLflow run and on the registered model version, with the DP settings."""

import pytest
from mlflow import MlflowClient

from flows.training import training_pipeline
from tlflow.registry import tracking

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]


def test_private_pipeline_tags_run_and_version_with_the_epsilon_spent(project, prefect_server, tiny_config):
    cfg = tiny_config(**{"data.max_train_rows": "200", "data.max_eval_rows": "100", "fairness.eec": "null",
                         "finetune.privacy.epsilon": "6", "finetune.privacy.max_grad_norm": "0.8",
                         "finetune.learning_rate": "5e-3"})
    outcome = training_pipeline(cfg)

    tracking.configure()
    client = MlflowClient()
    run = client.get_run(outcome.run_id)
    tags = run.data.tags
    assert 0 < float(tags["dp_epsilon"]) <= 6.0 and tags["dp_target_epsilon"] == "6"
    assert tags["dp_max_grad_norm"] == "0.8" and float(tags["dp_noise_multiplier"]) > 0
    assert tags["dp_delta"] == f"{1 / (10 * 200):.3g}" and tags["dp_sampling"] == "poisson"
    history = client.get_metric_history(outcome.run_id, "train/dp_epsilon")
    assert [m.step for m in history] == [1] and history[0].value == pytest.approx(float(tags["dp_epsilon"]), abs=1e-4)
    version = client.get_model_version(cfg.name, outcome.version)
    assert {k: v for k, v in version.tags.items() if k.startswith("dp_")} == {
        k: v for k, v in tags.items() if k.startswith("dp_")}
