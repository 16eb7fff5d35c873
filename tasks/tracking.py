"""The one MLflow run of a flow run, opened by the flow and shared by its tasks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow import MlflowClient
from prefect import get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.urls import url_for

from tlflow.config import PipelineConfig
from tlflow.errors import TlflowError
from tlflow.registry import tracking
from tlflow.registry.abandoned_runs import close_abandoned_runs, owner_tags
from tlflow.registry.descriptions import NOTE_TAG, experiment_description, run_description
from tlflow.registry.lineage import Lineage


def lineage_tags(cfg: PipelineConfig) -> dict[str, str]:
    """Tags every run and model version carries (ARCHITECTURE.md: tracking conventions): the
    `Lineage` of `cfg` now, in this flow run."""
    return Lineage.of(cfg, prefect_flow_run_id=str(flow_run.id or "none")).tags()


@contextmanager
def pipeline_run(cfg: PipelineConfig, tags: dict[str, str], stage: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Open the MLflow run of this flow run: experiment = config name, params = flattened config,
    lineage tags, the owning process. Tasks called inside log to it; an exception marks it FAILED;
    a top-level run that ends well gets its description (`tlflow.registry.descriptions`).
    Opened while another run is active (a stage inside a pipeline), it is a nested child run named
    `stage`; a top-level run, as it starts, marks the runs of dead processes in its experiment
    KILLED (`tlflow.registry.abandoned_runs`)."""
    tracking.configure()
    experiment_id = tracking.ensure_experiment(cfg.name, experiment_description(cfg.name))
    nested = mlflow.active_run() is not None
    name = (stage if nested and stage else flow_run.name) or stage
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags={**tags, **owner_tags()},
                          nested=nested) as run:
        if not nested and (closed := close_abandoned_runs(MlflowClient(), experiment_id, run.info.run_id)):
            get_run_logger().warning(f"marked {len(closed)} run(s) of dead processes KILLED: {', '.join(closed)}")
        mlflow.log_params(cfg.flat())
        mlflow.log_dict(cfg.to_dict(), "config.yaml")
        if url := flow_run_url():  # from the MLflow run to its flow run in the Prefect UI
            mlflow.set_tag("prefect_flow_run_url", url)
        try:
            yield run
            if not nested:  # the description of a run that ended well (a failure's note is its own)
                mlflow.set_tag(NOTE_TAG, run_description(cfg, tags.get("data_md5", "unknown"), flow_run.flow_name))
        except Exception as err:  # the run ends FAILED, saying why in its description
            reason = failure_line(err)
            mlflow.set_tags({FAILURE_TAG: reason, NOTE_TAG: f"FAILED: {reason}"})
            raise
        finally:
            mlflow.flush_async_logging()


#: Tag of a FAILED run: the one line of the error that stopped it (also its description).
FAILURE_TAG = "failure"


def failure_line(err: BaseException) -> str:
    """The first line of `err` (a user-facing error's own words; others prefixed with their type)."""
    line = (str(err).splitlines() or [""])[0]
    return (line if isinstance(err, TlflowError) else f"{type(err).__name__}: {line}")[:5000]


#: Where `prefect server start --port 4200` (the command `tlflow` prints) shows a temporary server's runs.
LOCAL_PREFECT_UI = "http://127.0.0.1:4200"


def flow_run_url() -> str | None:
    """This flow run's page in the Prefect UI: the configured server's (`PREFECT_UI_URL`, derived
    from `PREFECT_API_URL`), else the local UI's; None outside a flow run."""
    if flow_run.id is None:
        return None
    return url_for("flow-run", obj_id=flow_run.id, default_base_url=LOCAL_PREFECT_UI)


def artifact_key(name: str, suffix: str) -> str:
    """Prefect artifact key for an experiment (lowercase letters, digits and dashes only)."""
    clean = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return f"{clean}-{suffix}"


def record_tags(tags: dict[str, str]) -> None:
    """Add tags to the active MLflow run (e.g. lineage learnt mid-flow, like `encoder_version`)."""
    mlflow.set_tags(tags)
