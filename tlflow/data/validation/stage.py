"""Load a configured dataset and run its data-quality suite: the stage before any training."""

from __future__ import annotations

from pathlib import Path

from tlflow import paths
from tlflow.config import PipelineConfig
from tlflow.data.pii.fields import TextFields
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
    cfg: PipelineConfig, spec: DatasetSpec, checks: TaskChecks, report_dir: Path = REPORT_DIR,
    text_fields: TextFields | None = None,
) -> tuple[LoadedData, ValidationReport, Path]:
    """Load the configured dataset, scan it for personal data (`cfg.privacy`), validate every split
    and write the HTML report.

    `spec`, `checks` and `text_fields` are the task type's (`TaskType.dataset_spec()`,
    `TaskType.data_checks()`, `TaskType.text_fields`; default: a ``text`` column). The scan covers
    the rows the pipeline uses (after `max_train_rows`/`max_eval_rows`); under ``privacy.pii:
    redact`` the returned splits (and the report) hold the redacted texts; under ``fail`` a finding
    raises `PiiFoundError` (file:row and entity type, never the value) before anything is written.

    Returns the loaded splits, the report and the report's path; raising is the caller's choice
    (the flow stops, `tlflow validate` prints and exits non-zero).
    """
    from tlflow.data.pii.policy import apply_policy, with_pii_check  # Presidio and spaCy: only when validating

    loaded = load_labelled_data(cfg.data, spec, cfg.evaluate.slices)  # + meta_<column> of the evaluation slices
    frames = loaded.splits
    pii = apply_policy(loaded.splits, text_fields or TextFields(), cfg.privacy)
    if pii is not None:
        loaded.splits, frames, checks = pii.splits, pii.frames, with_pii_check(checks, cfg.privacy)
    report = validate_splits(frames, loaded.label_names, cfg.validate_, checks)
    report.pii = pii.summary if pii is not None else None
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"{cfg.name}-validation.html"
    path.write_text(report.to_html(), encoding="utf-8")
    return loaded, report, path
