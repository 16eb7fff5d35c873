"""The counterfactual EEC audit in the training flow (metrics, `fairness/` artifacts, the gate's
max_counterfactual_gap, the run summary) and `tlflow audit fairness` / `tlflow audit slices` on a
registered version."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.training import training_pipeline
from tlflow.registry import tracking

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]

AUDIT = {"name": "fair-tiny", "data.max_train_rows": "200", "data.max_eval_rows": "100",
         "fairness.eec.label_map": "{joy: positive, anger: negative, fear: negative, sadness: negative}",
         "fairness.eec.bootstrap_samples": "200", "promote.max_counterfactual_gap": "0.00001"}
ARTIFACTS = {"fairness/eec_gaps.md", "fairness/eec_gaps.json", "fairness/eec_gaps.png", "fairness/eec_predictions.csv"}


def test_audit_in_the_flow_gates_promotion_and_the_cli_audits_a_version(project, prefect_server, tiny_config):
    outcome = training_pipeline(tiny_config(**AUDIT))
    # A random tiny model is not exactly fair: a bound of 1e-5 rejects it, with the check's numbers.
    assert not outcome.decision.promoted and outcome.decision.alias == "challenger"
    check = next(c for c in outcome.decision.checks if c.name == "max_counterfactual_gap")
    assert not check.passed and "largest gap" in check.detail and "(allowed 1e-05)" in check.detail

    tracking.configure()
    client = MlflowClient()
    run = client.get_run(outcome.run_id)
    for key in ("eec_gap_gender_positive", "eec_gap_low_race_negative", "eec_gap_high_gender_positive",
                "eec_mean_female_positive", "eec_accuracy_european"):
        assert key in run.data.metrics, key
    low, gap, high = (run.data.metrics[f"eec_gap{p}_gender_positive"] for p in ("_low", "", "_high"))
    assert low <= gap <= high
    assert {a.path for a in client.list_artifacts(outcome.run_id, "fairness")} == ARTIFACTS
    description = client.get_model_version("fair-tiny", outcome.version).description
    assert "Counterfactual fairness audit (EEC)" in description and "| gender/positive | female − male |" in description

    result = CliRunner().invoke(app, ["audit", "fairness", "fair-tiny", "--alias", "challenger"])
    assert result.exit_code == 0, result.output
    assert "fair-tiny v1" in result.output and "| race/positive | African-American − European |" in result.output
    # Same weights, config and seed: the same gap, logged a second time into the version's run.
    history = client.get_metric_history(outcome.run_id, "eec_gap_gender_positive")
    assert len(history) == 2 and history[1].value == pytest.approx(gap, abs=1e-6)

    result = CliRunner().invoke(app, ["audit", "fairness", "no-such-model"])
    assert result.exit_code == 1 and result.output.strip() == "error: no registered model 'no-such-model'"
    result = CliRunner().invoke(app, ["audit", "fairness", "fair-tiny"])  # no champion: the gate said no
    assert result.exit_code == 1 and result.output.strip() == "error: model 'fair-tiny' has no version with alias 'champion'"

    # `tlflow audit slices`: the same version re-scored on its config's test split, per slice.
    result = CliRunner().invoke(app, ["audit", "slices", "fair-tiny", "--version", outcome.version])
    assert result.exit_code == 0, result.output
    assert f"accuracy {run.data.metrics['test_accuracy']:.4f}" in result.output
    assert "| `length=q1` |" in result.output
    assert f"| {run.data.metrics['test_accuracy__length:q1']:.4f} |" in result.output
    assert {a.path for a in client.list_artifacts(outcome.run_id, "audit")} == {"audit/slices.json", "audit/slices.png"}
