"""`monitoring`: drift of the champion's predictions; retraining when it exceeds `monitoring.threshold`."""

from __future__ import annotations

from prefect import flow, get_run_logger, tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
from prefect.deployments import run_deployment
from prefect.states import Completed

from flows.retraining import retraining_pipeline
from flows.run_labels import run_name, tag_run
from tasks.monitoring import check_drift, record_retraining
from tlflow.config import PipelineConfig, load_config
from tlflow.runtime import apply_defaults
from tlflow.task_types.registry import check_config, check_inputs

#: Tag of the retraining runs that drift started.
DRIFT_TAG = "trigger:drift"


def retraining_deployment(name: str) -> str | None:
    """`FLOW/DEPLOYMENT` of the retraining deployment of config `name` (tagged `retraining` and
    `name`, as prefect.yaml's `retrain-*`), None when the server has none."""
    with get_client(sync_client=True) as client:
        found = client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["retraining", name])))
        if not found:
            return None
        return f"{client.read_flow(found[0].flow_id).name}/{found[0].name}"


def trigger_retraining(config: PipelineConfig) -> str:
    """Start the retraining of `config`: a run of its deployment (left to the work pool) when one
    exists, else `retraining_pipeline` here as a subflow; returns the flow run's id."""
    deployment = retraining_deployment(config.name)
    if deployment is not None:
        run = run_deployment(deployment, timeout=0, tags=[DRIFT_TAG])
        get_run_logger().info("retraining started: deployment %s, flow run %s", deployment, run.name)
        return str(run.id)
    with tags(DRIFT_TAG):
        state = retraining_pipeline(config, return_state=True)
    return str(state.state_details.flow_run_id)


@flow(name="monitoring", flow_run_name=run_name)
def monitoring_pipeline(config: PipelineConfig = PipelineConfig(), window: str | None = None):
    """Compare the champion's latest predictions (`window`: a window folder or file; default the
    model's folder under `monitoring.windows_dir`) with its training rows (Evidently report in the
    MLflow experiment `<name>-monitoring` and the artifact `<name>-monitoring`), and trigger
    retraining when the drift score exceeds `monitoring.threshold`. The outcome is the run's state
    message; the check is its result."""
    apply_defaults()
    check_inputs(check_config(config))
    tag_run(config)
    check, run_id = check_drift(config, window)
    if not check.due:
        return Completed(message=check.summary(), data=check)
    flow_run_id = trigger_retraining(config)
    record_retraining(check, run_id, flow_run_id)
    return Completed(message=f"{check.summary()} (flow run {flow_run_id})", data=check)


@flow(name="monitoring_from_file", flow_run_name=run_name)
def monitoring_from_file(config_file: str = "configs/sst2.yaml", overrides: list[str] | None = None,
                         window: str | None = None):
    """`monitoring_pipeline` on a YAML config of the repository (what the scheduled deployments run)."""
    return monitoring_pipeline(load_config(config_file, overrides or []), window, return_state=True)


if __name__ == "__main__":
    monitoring_pipeline()
