"""Stage 1: load the dataset and run the Great Expectations suite on every split."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.tracking import artifact_key
from tlflow.config import PipelineConfig
from tlflow.data.pii.report import PiiSummary
from tlflow.data.readers import LoadedData
from tlflow.data.validation.stage import DataValidationError, check_data
from tlflow.data.version import data_version
from tlflow.registry.dataset_inputs import dataset_inputs
from tlflow.task_types.registry import task_type_for


def _log_lineage(cfg: PipelineConfig, loaded: LoadedData, data_md5: str) -> None:
    """One MLflow dataset input per split (`tlflow.registry.dataset_inputs`): digest = the split's
    data version (DVC's md5, or the content hash of files DVC does not cover), its definition and
    subset; source = its files relative to the repository with that version."""
    inputs = dataset_inputs(cfg, loaded.splits, data_md5, data_version(cfg.data), task_type_for(cfg).target_column)
    for dataset, split in inputs:
        mlflow.log_input(dataset, context=split)


def _log_pii(cfg: PipelineConfig, pii: PiiSummary) -> None:
    """Counts only (never a value): metrics, the `pii_counts` lineage tag, a one-line summary tag
    and a Prefect table."""
    mlflow.log_metrics(pii.metrics())
    mlflow.set_tags({"pii_counts": pii.digest(), "pii_summary": pii.line()[:5000]})
    create_markdown_artifact(f"## Personal data in `{cfg.name}`\n\n{pii.markdown()}",
                             key=artifact_key(cfg.name, "pii"), description="PII scan: counts per split and type")
    get_run_logger().info("PII scan (%s): %s", pii.policy, pii.line())


@task(name="validate-data", cache_policy=NO_CACHE, persist_result=False)
def validate_data(cfg: PipelineConfig, data_md5: str) -> LoadedData:
    """Load and validate; log the report, class balance and dataset lineage to the active MLflow run.

    Raises DataValidationError (after logging the report) when a check fails, so the flow stops
    before any training.
    """
    logger = get_run_logger()
    task_type = task_type_for(cfg)
    loaded, report, path = check_data(cfg, task_type.dataset_spec(), task_type.data_checks(),
                                      text_fields=task_type.text_fields)
    if report.pii is not None:
        _log_pii(cfg, report.pii)
    mlflow.log_artifact(str(path), "validation")
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "report.json"
        summary.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
        mlflow.log_artifact(str(summary), "validation")
    counts = {f"data/rows_{split}": len(ds) for split, ds in loaded.splits.items()}
    mlflow.log_metrics({**counts, "data/rows_dropped_overlap": loaded.dropped_overlap,
                        "data/rows_dropped_invalid": len(loaded.invalid),
                        "data/validation_failed_checks": len(report.failures())})
    mlflow.set_tag("validation", "passed" if report.success else "failed")
    if not report.success:
        create_markdown_artifact(
            f"## Data validation failed: `{cfg.name}`\n\n```\n{report.summary()}\n```",
            key=artifact_key(cfg.name, "validation"),
            description="Failed data checks",
        )
        raise DataValidationError(report, path)
    _log_lineage(cfg, loaded, data_md5)
    logger.info("validation passed: %s; %s", report.summary().splitlines()[0], "; ".join(report.data.lines()))
    return loaded


def train_on_validation(loaded: LoadedData) -> LoadedData:
    """`data.train_on_validation`: the validation rows join the training split (tokenized, trained
    on and fingerprinted for the gate's overlap check); said in the log and as `data/rows_trained`."""
    if "validation" not in loaded.splits:
        get_run_logger().warning("data.train_on_validation: these data have no validation split; training on the "
                                 "%d training rows", len(loaded.splits["train"]))
        return loaded
    merged = loaded.with_validation_in_train()
    mlflow.log_metric("data/rows_trained", len(merged.splits["train"]))
    get_run_logger().info("data.train_on_validation: training on %d rows (train %d + validation %d); no validation "
                          "curve", len(merged.splits["train"]), len(loaded.splits["train"]),
                          len(loaded.splits["validation"]))
    return merged
