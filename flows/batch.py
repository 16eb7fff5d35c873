"""`batch_predict`: predictions of a registered model (by alias) for a file of requests."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.run_labels import run_name
from tasks.tracking import artifact_key
from tlflow.monitoring.recording import recorder_for
from tlflow.registry import tracking
from tlflow.registry.descriptions import experiment_description
from tlflow.registry.registration import RegistryError, check_model
from tlflow.runtime import apply_defaults
from tlflow.serving.batch_files import read_requests, write_predictions
from tlflow.serving.model_loading import load_served_model


@flow(name="batch_predict", flow_run_name=run_name)
def batch_predict(name: str, input_file: str, output_file: str, alias: str = "champion",
                  record: bool = True) -> str:
    """Predict every request in `input_file` with `models:/<name>@<alias>` and write the requests,
    the predictions and the model name, version and alias to `output_file`; the run is recorded in
    MLflow (experiment `<name>-batch`). With `record`, the predictions' descriptors are appended to
    the model's prediction window, which the `monitoring` flow checks for drift."""
    apply_defaults()
    tracking.configure()
    client = MlflowClient()
    check_model(client, name)
    version = tracking.alias_version(client, name, alias)
    if version is None:
        raise RegistryError(f"model '{name}' has no alias '{alias}'")
    requests = read_requests(input_file)
    # this installation's TaskModel over the version's files; its stored code is checked, never run
    recorder = recorder_for(client, name, str(version.version), alias, "batch") if record else None
    model = load_served_model(f"models:/{name}/{version.version}", recorder)
    predictions = model.predict(requests)
    out = requests.reset_index(drop=True).join(predictions.add_prefix("prediction_"))
    out["model_name"], out["model_version"], out["model_alias"] = name, str(version.version), alias
    with mlflow.start_run(experiment_id=tracking.ensure_experiment(f"{name}-batch", experiment_description(f"{name}-batch")), run_name=f"batch {alias}"):
        mlflow.log_params({"model_name": name, "model_version": str(version.version), "model_alias": alias,
                           "input_file": input_file, "output_file": output_file})
        mlflow.set_tags({"model_uri": f"models:/{name}/{version.version}", "data_md5": tracking.data_version()})
        path = write_predictions(out, output_file)
        mlflow.log_metric("rows", len(out))
    create_markdown_artifact(
        f"## Batch predictions: {name} v{version.version} (@{alias})\n\n{len(out)} rows -> `{output_file}`",
        key=artifact_key(name, "batch"), description="Batch inference",
    )
    get_run_logger().info("%d predictions of %s v%s written to %s", len(out), name, version.version, path)
    return str(path)
