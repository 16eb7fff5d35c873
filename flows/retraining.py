"""`retraining_pipeline`: retrain when the data or the config changed since the champion was trained."""

from __future__ import annotations

from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from flows.training import training_pipeline
from tasks.tracking import artifact_key
from tlflow.config import PipelineConfig, load_config
from tlflow.registry import tracking
from tlflow.registry.retraining import RetrainingCheck, check_retraining
from tlflow.runtime import apply_defaults
from tlflow.task_types.registry import check_config, check_inputs


@task(name="check-for-new-data", cache_policy=NO_CACHE, persist_result=False)
def check_for_new_data(config: PipelineConfig) -> RetrainingCheck:
    """Data version (data.dvc), raw-file content and config hash against the champion's tags."""
    tracking.configure()
    check = check_retraining(MlflowClient(), config)
    get_run_logger().info(check.summary())
    return check


@flow(name="retraining_pipeline")
def retraining_pipeline(config: PipelineConfig = PipelineConfig()):
    """Scheduled retraining: finish early, keeping the champion, when nothing changed; otherwise run
    `training_pipeline`, whose promotion gate decides whether the new model serves."""
    apply_defaults()
    check_inputs(check_config(config))
    check = check_for_new_data(config)
    key = artifact_key(config.name, "retraining")
    if not check.due:
        create_markdown_artifact(f"## {config.name}: {check.summary()}", key=key, description="Retraining check")
        return Completed(message=check.summary(), data=check)
    outcome = training_pipeline(config)
    create_markdown_artifact(
        f"## {config.name}: {check.summary()}\n\nResult: {outcome.summary()}",
        key=key, description="Retraining check and outcome",
    )
    return outcome


@flow(name="retraining_from_file")
def retraining_from_file(config_file: str = "configs/sst2.yaml", overrides: list[str] | None = None):
    """`retraining_pipeline` on a YAML config of the repository (what the scheduled deployments run)."""
    return retraining_pipeline(load_config(config_file, overrides or []))


if __name__ == "__main__":
    retraining_pipeline()
