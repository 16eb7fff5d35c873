"""Load a configured dataset and run its data-quality suite: the stage before any training."""

from __future__ import annotations

from pathlib import Path

from tlflow import paths
from tlflow.config import PipelineConfig
from tlflow.data.readers import LoadedData, load_labelled_data
from tlflow.data.spec import DatasetSpec
from tlflow.data.validation.checks import TaskChecks
from tlflow.data.validation.suite import ValidationReport, validate_splits
from tlflow.errors import TlflowError

#: Where the latest validation report of each experiment is kept (besides MLflow).
REPORT_DIR = paths.REPORTS_DIR


class DataValidationError(TlflowError, RuntimeError):
    """The data failed its checks; the message lists each failed check with offending rows."""

    def __init__(self, report: ValidationReport, report_path: Path):
        self.report = report
        self.report_path = report_path
        super().__init__(f"{report.summary()}\nHTML report: {report_path}")


def check_data(
    cfg: PipelineConfig, spec: DatasetSpec, checks: TaskChecks, report_dir: Path = REPORT_DIR
) -> tuple[LoadedData, ValidationReport, Path]:
    """Load the configured dataset, validate every split and write the HTML report.

    `spec` and `checks` are the task type's (`TaskType.dataset_spec()`, `TaskType.data_checks()`).

    Returns the loaded splits, the report and the report's path; raising is the caller's choice
    (the flow stops, `tlflow validate` prints and exits non-zero).
    """
    loaded = load_labelled_data(cfg.data, spec)
    report = validate_splits(loaded.splits, loaded.label_names, cfg.validate_, checks)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"{cfg.name}-validation.html"
    path.write_text(report.to_html(), encoding="utf-8")
    return loaded, report, path
