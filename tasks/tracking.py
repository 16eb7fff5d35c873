"""The one MLflow run of a flow run, opened by the flow and shared by its tasks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from prefect.runtime import flow_run

from tlflow.config import PipelineConfig
from tlflow.registry import tracking
from tlflow.registry.lineage import Lineage


def lineage_tags(cfg: PipelineConfig) -> dict[str, str]:
    """Tags every run and model version carries (ARCHITECTURE.md: tracking conventions): the
    `Lineage` of `cfg` now, in this flow run."""
    return Lineage.of(cfg, prefect_flow_run_id=str(flow_run.id or "none")).tags()


@contextmanager
def pipeline_run(cfg: PipelineConfig, tags: dict[str, str], stage: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Open the MLflow run of this flow run: experiment = config name, params = flattened config,
    lineage tags. Tasks called inside log to it; an exception marks it FAILED. Opened while
    another run is active (a stage inside a pipeline), it is a nested child run named `stage`."""
    tracking.configure()
    experiment_id = tracking.ensure_experiment(cfg.name)
    nested = mlflow.active_run() is not None
    name = (stage if nested and stage else flow_run.name) or stage
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags, nested=nested) as run:
        mlflow.log_params(cfg.flat())
        mlflow.log_dict(cfg.to_dict(), "config.yaml")
        try:
            yield run
        finally:
            mlflow.flush_async_logging()


def artifact_key(name: str, suffix: str) -> str:
    """Prefect artifact key for an experiment (lowercase letters, digits and dashes only)."""
    clean = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return f"{clean}-{suffix}"


def record_tags(tags: dict[str, str]) -> None:
    """Add tags to the active MLflow run (e.g. lineage learnt mid-flow, like `encoder_version`)."""
    mlflow.set_tags(tags)
