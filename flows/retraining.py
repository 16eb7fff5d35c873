"""`retraining_pipeline`: retrain when the data or the config changed since the champion was trained."""

from __future__ import annotations

from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from flows.run_labels import run_name, tag_run
from flows.training import training_pipeline
from tasks.register import RegistrationOutcome
from tasks.tracking import artifact_key
from tlflow.config import PipelineConfig, load_config
from tlflow.registry import tracking
from tlflow.registry.links import outcome_links
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


def _report(config: PipelineConfig, message: str, result: RegistrationOutcome | RetrainingCheck) -> str:
    """The outcome as markdown: the line, and links to the MLflow run and the model version."""
    client = MlflowClient()
    if isinstance(result, RegistrationOutcome):
        links = outcome_links(client, result.run_id, result.name, result.version)
    else:
        links = outcome_links(client, None, config.name, result.champion_version)
    return f"## {config.name}: {message}" + (f"\n\n{links}" if links else "")


def _finish(config: PipelineConfig, message: str, result: RegistrationOutcome | RetrainingCheck) -> Completed:
    """End the flow run with `message` as its state message and the outcome as an artifact."""
    tracking.configure()
    create_markdown_artifact(_report(config, message, result), key=artifact_key(config.name, "retraining"),
                             description="Retraining check and outcome")
    get_run_logger().info(message)
    return Completed(message=message, data=result)


@flow(name="retraining_pipeline", flow_run_name=run_name)
def retraining_pipeline(config: PipelineConfig = PipelineConfig()):
    """Scheduled retraining: finish early, keeping the champion, when nothing changed; otherwise run
    `training_pipeline`, whose promotion gate decides whether the new model serves. The outcome is
    the run's state message and a markdown artifact (`<name>-retraining`)."""
    apply_defaults()
    check_inputs(check_config(config))
    tag_run(config)
    check = check_for_new_data(config)
    if not check.due:
        return _finish(config, check.summary(), check)
    outcome = training_pipeline(config)
    return _finish(config, f"{check.summary()} -> {outcome.summary()}", outcome)


@flow(name="retraining_from_file", flow_run_name=run_name)
def retraining_from_file(config_file: str = "configs/sst2.yaml", overrides: list[str] | None = None):
    """`retraining_pipeline` on a YAML config of the repository (what the scheduled deployments run),
    ending with the same outcome: state message and artifact (a failed retraining fails this run too)."""
    config = load_config(config_file, overrides or [])
    tag_run(config)
    state = retraining_pipeline(config, return_state=True)
    if not state.is_completed():
        return state
    return _finish(config, state.message or "", state.result())


if __name__ == "__main__":
    retraining_pipeline()
