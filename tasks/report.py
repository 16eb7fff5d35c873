"""Tasks of the transfer-learning report: collect each variant's numbers, publish the comparison."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.register import RegistrationOutcome
from tasks.tracking import artifact_key
from tlflow.config import PipelineConfig
from tlflow.evaluation.transfer import VariantResult, plot_report, report_markdown


@task(name="collect-variant", cache_policy=NO_CACHE, persist_result=False)
def collect_variant(cfg: PipelineConfig, variant: str, outcome: RegistrationOutcome) -> VariantResult:
    """Primary test metric and training times of one variant's pipeline run (and its pretraining
    child run, if any)."""
    client = MlflowClient()
    run = client.get_run(outcome.run_id)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{outcome.run_id}'"
    )
    pretrain_seconds = sum(c.data.metrics.get("pretrain/seconds", 0.0) for c in children)
    return VariantResult(
        variant=variant,
        score=run.data.metrics[f"test_{cfg.task.primary_metric}"],
        finetune_seconds=run.data.metrics.get("train/seconds", 0.0),
        pretrain_seconds=pretrain_seconds,
        run_id=outcome.run_id,
    )


def encoder_path(outcome: RegistrationOutcome) -> str:
    """Folder of the encoder a pipeline run fine-tuned (its `encoder_path` tag)."""
    return MlflowClient().get_run(outcome.run_id).data.tags["encoder_path"]


@task(name="publish-report", cache_policy=NO_CACHE, persist_result=False)
def publish_report(cfg: PipelineConfig, results: list[VariantResult]) -> str:
    """Table (markdown + JSON) and bar chart to MLflow (`transfer/`) and a Prefect artifact."""
    metric = cfg.task.primary_metric
    table = report_markdown(metric, results)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "transfer.md").write_text(table + "\n", encoding="utf-8")
        (Path(tmp) / "transfer.json").write_text(json.dumps([r.__dict__ for r in results], indent=2), encoding="utf-8")
        plot_report(metric, results, Path(tmp) / "transfer.png")
        mlflow.log_artifacts(tmp, "transfer")
    mlflow.log_metrics({f"{r.variant}_test_{metric}": r.score for r in results})
    create_markdown_artifact(
        f"## Transfer learning: {cfg.name}\n\n{table}\n",
        key=artifact_key(cfg.name, "transfer"),
        description="Same fine-tuning budget from four starting points",
    )
    return table
