"""Addresses of runs and model versions in the MLflow UI, for the summaries shown elsewhere (the
Prefect UI's artifacts and state messages).

The MLflow UI of a tracking server (`MLFLOW_TRACKING_URI=http://...`) is the server itself; the
embedded SQLite store has none until `mlflow ui` serves it, and `tracking.ui_command` prints that
command with port 5000, so its links point at `LOCAL_MLFLOW_UI`.
"""

from __future__ import annotations

from urllib.parse import quote

from mlflow import MlflowClient

from tlflow.registry import tracking

#: Where the `mlflow ui` command that `tracking.ui_command` prints serves the embedded store.
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"


def mlflow_ui() -> str:
    """Base address of the MLflow UI of the configured store."""
    uri = tracking.tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_MLFLOW_UI


def run_url(experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui()}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(name: str, version: str) -> str:
    return f"{mlflow_ui()}/#/models/{quote(name, safe='')}/versions/{version}"


def outcome_links(client: MlflowClient, run_id: str | None, name: str | None = None,
                  version: str | None = None) -> str:
    """Markdown links to the MLflow run and (when given) the model version, e.g.
    `[MLflow run 3f2a9c1e](...) · [sst2 v4](...)`; empty when there is neither."""
    links = []
    if run_id:
        links.append(f"[MLflow run {run_id[:8]}]({run_url(client.get_run(run_id).info.experiment_id, run_id)})")
    if name and version:
        links.append(f"[{name} v{version}]({model_version_url(name, version)})")
    return " · ".join(links)
