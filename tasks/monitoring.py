"""Drift of the champion's prediction window against its training rows, recorded in MLflow
(experiment `<name>-monitoring`, the Evidently report as `monitoring/drift.html`) and Prefect."""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.tracking import artifact_key, flow_run_url
from tlflow.config import PipelineConfig
from tlflow.monitoring import decision
from tlflow.monitoring.drift import compare
from tlflow.monitoring.reference import reference_window
from tlflow.monitoring.window import model_folder, read_window
from tlflow.registry import tracking
from tlflow.registry.registration import version_config
from tlflow.serving.model_loading import load_task_model


@task(name="check-drift", cache_policy=NO_CACHE, persist_result=False)
def check_drift(config: PipelineConfig, window: str | None = None) -> tuple[decision.MonitoringCheck, str]:
    """Compare the latest `monitoring.window` predictions of the champion (at `window`, default its
    folder under `monitoring.windows_dir`) with its training rows; returns the check and its MLflow run id."""
    tracking.configure()
    client, settings = MlflowClient(), config.monitoring
    champion = tracking.alias_version(client, config.name, tracking.CHAMPION)
    version = str(champion.version) if champion is not None else None
    path = Path(window) if window else model_folder(settings.windows_dir, config.name)
    current = read_window(path, settings.window, version) if version and (window or path.exists()) else None
    check = decision.not_judged(config.name, version, 0 if current is None else len(current), settings)
    if check is None:
        model = load_task_model(f"models:/{config.name}/{version}")
        reference = reference_window(version_config(client, champion), model, settings.reference_rows, settings.seed)
        result = compare(reference.frame, current)
        cooldown = decision.last_trigger(client, config.name, version, settings.cooldown_hours)
        check = decision.MonitoringCheck(config.name, version, len(current), settings.threshold, result, cooldown)
    experiment = tracking.ensure_experiment(decision.monitoring_experiment(config.name))
    with mlflow.start_run(experiment_id=experiment, run_name=f"drift v{version or '-'}") as run:
        mlflow.log_params({"window": str(path), "threshold": settings.threshold, "window_rows": settings.window,
                           "reference_rows": settings.reference_rows})
        mlflow.set_tags({decision.VERSION_TAG: version or "", "summary": check.summary()[:4900],
                         **({"prefect_flow_run_url": url} if (url := flow_run_url()) else {})})
        if check.result is not None:
            mlflow.log_metrics(check.result.metrics())
            mlflow.log_text(check.result.html, "monitoring/drift.html")
    table = check.result.table() if check.result is not None else ""
    create_markdown_artifact(f"## {config.name}: {check.summary()}\n\n{table}", key=artifact_key(config.name, "monitoring"),
                             description="Drift of the champion's predictions")
    get_run_logger().info(check.summary())
    return check, run.info.run_id


@task(name="record-retraining", cache_policy=NO_CACHE, persist_result=False)
def record_retraining(check: decision.MonitoringCheck, monitoring_run_id: str, flow_run_id: str) -> None:
    """The reason on the champion version and the monitoring run: drift triggered retraining."""
    tracking.configure()
    client = MlflowClient()
    decision.record_trigger(client, check.model, check, flow_run_id)
    client.set_tag(monitoring_run_id, decision.TRIGGERED_TAG, "true")
    client.set_tag(monitoring_run_id, decision.FLOW_RUN_TAG, flow_run_id)
