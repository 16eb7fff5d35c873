"""A model that learned nothing never becomes champion when no floors are configured: a real
classifier that predicts the majority class for every sentence, scored on real SST-2 rows and run
through the gate in a real MLflow store, is registered as challenger with the reason; and the
training flow wires it all: the epochs a small split needs, the fingerprint, the baseline check."""

from collections import Counter

import mlflow
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from transformers import BertConfig, BertForSequenceClassification

from flows.training import training_pipeline
from tests.prefect_reads import flow_run_logs
from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.modeling.models import load_tokenizer
from tlflow.registry import fingerprint, ledger, registration, tracking
from tlflow.registry.baseline import trivial_baseline
from tlflow.registry.lineage import Lineage
from tlflow.serving import log_task_model
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import check_config, task_type_for

pytestmark = [pytest.mark.integration, pytest.mark.needs_data]

NAME = "useless"


def _majority_model(tokenizer, label_names: list[str], majority: str) -> BertForSequenceClassification:
    """A real classifier whose head ignores its input: every sentence gets `majority`."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=len(label_names), id2label=dict(enumerate(label_names)),
        label2id={k: i for i, k in enumerate(label_names)},
    ))
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([5.0 if k == majority else 0.0 for k in label_names]))
    return model.eval()


def test_a_majority_class_model_is_not_promoted(project):
    cfg = check_config(load_config("configs/sst2.yaml", [
        f"name={NAME}", "data.max_train_rows=400", "data.max_eval_rows=300", "model.max_length=32",
        "promote.bootstrap_samples=200",
    ]))
    task = task_type_for(cfg)
    loaded = load_labelled_data(cfg.data, task.dataset_spec(), cfg.evaluate.slices)
    majority = Counter(loaded.splits["train"]["label"]).most_common(1)[0][0]
    tokenizer = load_tokenizer("minilm-l6")
    model = _majority_model(tokenizer, loaded.label_names, majority)
    settings = TaskSettings.from_config(cfg)
    evaluation = task.evaluate(model, tokenizer, loaded.splits["test"], loaded.label_names, settings)
    tracking.configure()
    client = MlflowClient()
    with mlflow.start_run(experiment_id=tracking.ensure_experiment(NAME)):
        uri = log_task_model(model, tokenizer, settings, pd.DataFrame({"text": ["fine", "dull"]}))
    new = registration.scores_of(cfg, evaluation, loaded.label_names, trivial_baseline(task, loaded, evaluation))

    outcome = registration.register_and_promote(client, cfg, uri, new, lambda v: None, Lineage(data_md5="x"), "test",
                                                lambda v, d: d.reason)
    decision = outcome.decision
    assert decision.alias == "challenger" and registration.aliases(client, NAME)["champion"] is None
    assert decision.reason.startswith(f"trivial_baseline failed: accuracy {decision.new_score:.4f} vs majority class "
                                      f"'{majority}' {decision.new_score:.4f}")
    minority = next(k for k in loaded.label_names if k != majority)
    assert f"warning: F1 0 for {minority}" in decision.reason
    assert [(e.action, e.version) for e in ledger.entries(client, NAME)] == [("rejected", "1")]

    floored = cfg.model_copy(update={"promote": cfg.promote.model_copy(update={"floors": {"accuracy": 0.4}})})
    again = registration.register_and_promote(client, floored, uri, new, lambda v: None, Lineage(data_md5="x"),
                                              "test", lambda v, d: d.reason)
    assert again.decision.promoted  # floors set by hand are the bar: the user said what is good enough


@pytest.mark.flow
@pytest.mark.slow  # a whole pipeline run (about a minute on two busy cores)
def test_a_small_split_gets_more_epochs_and_a_model_that_learned_nothing_stays_challenger(
        project, prefect_server, tiny_config):
    # 400 rows at batch 32: 13 steps an epoch, raised to 3 epochs by min_steps 30; the tiny model
    # still learns nothing and predicts one class: the run says so and the gate does not promote it.
    cfg = tiny_config(**{"name": "budget", "finetune.min_steps": "30", "promote.trivial_baseline": "true",
                         "data.max_eval_rows": "300", "fairness.eec": "null"})
    outcome = training_pipeline(cfg)
    tracking.configure()
    client = MlflowClient()
    run = client.get_run(outcome.run_id)
    assert run.data.metrics["train/epochs"] == 3 and run.data.metrics["train/steps"] == 39
    assert run.data.params["finetune.epochs"] == "1.0" and run.data.params["finetune.min_steps"] == "30"
    assert fingerprint.load_fingerprint(outcome.run_id).rows == 400

    decision = outcome.decision
    assert not decision.promoted and registration.aliases(client, "budget")["champion"] is None
    assert decision.reason.startswith("trivial_baseline failed: accuracy") and "vs majority class" in decision.reason
    assert "warning: F1 0 for" in decision.reason
    assert client.get_model_version("budget", outcome.version).tags["checks"] == "0 passed, 1 failed: trivial_baseline"
    logged = ledger.entries(client, "budget")[-1].decision["checks"]
    assert [(c["name"], c["passed"]) for c in logged] == [("trivial_baseline", False)]
    assert logged[0]["detail"].startswith("accuracy")
    with get_client(sync_client=True) as prefect:
        logs = flow_run_logs(prefect, run.data.tags["prefect_flow_run_id"])
    assert any("finetune.epochs raised from 1 to 3 (39 steps) to reach finetune.min_steps 30" in m for m in logs), logs
    assert any(m.startswith("validation accuracy never improved on its first value") for m in logs), logs
