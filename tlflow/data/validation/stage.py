"""Load a configured dataset and run its data-quality suite: the stage before any training."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import pandas as pd

from tlflow import paths
from tlflow.config import PipelineConfig
from tlflow.data.pii.fields import TextFields
from tlflow.data.readers import LoadedData, load_labelled_data
from tlflow.data.row_store import RowFile, frames_of
from tlflow.data.spec import DatasetSpec
from tlflow.data.validation.account import DataAccount
from tlflow.data.validation.checks import TaskChecks
from tlflow.data.validation.suite import ValidationReport, validate_splits
from tlflow.data.version import data_version
from tlflow.errors import TlflowError

#: Where the latest validation report of each experiment is kept (besides MLflow).
REPORT_DIR = paths.REPORTS_DIR
#: What a report shows instead of the value of a row the PII scan did not see (under redact).
UNSCANNED_VALUE = "<not scanned for personal data: value not shown>"


class DataValidationError(TlflowError, RuntimeError):
    """The data failed its checks; the message lists each failed check with offending rows."""

    def __init__(self, report: ValidationReport, report_path: Path):
        self.report = report
        self.report_path = report_path
        headline, *details = report.summary().splitlines()
        super().__init__("\n".join([headline + _first_offence(report), *details, f"HTML report: {report_path}"]))


def _first_offence(report: ValidationReport) -> str:
    """Where the failed checks point first: `, first at FILE:ROW (CHECK)` (FILE alone when no check
    names a row; `` when none names a file), so that the error's first line says where to look."""
    examples = [(check, ex) for check in report.failures() for ex in check.examples if ex.get("file")]
    for check, example in sorted(examples, key=lambda pair: pair[1].get("row") is None):
        row = f":{example['row']}" if example.get("row") is not None else ""
        return f", first at {example['file']}{row} ({check.check})"
    return ""


def check_data(
    cfg: PipelineConfig, spec: DatasetSpec, checks: TaskChecks, report_dir: Path = REPORT_DIR,
    text_fields: TextFields | None = None,
) -> tuple[LoadedData, ValidationReport, Path]:
    """Load the configured dataset, scan it for personal data (`cfg.privacy`), validate every split
    and write the HTML report.

    `spec`, `checks` and `text_fields` are the task type's (`TaskType.dataset_spec()`,
    `TaskType.data_checks()`, `TaskType.text_fields`; default: a ``text`` column). The suite checks
    the whole data, before `max_train_rows`/`max_eval_rows` sampling (`LoadedData.validated`); the
    scan covers the rows the pipeline uses (after them), and its check counts those rows only. Under
    ``privacy.pii: redact`` the returned splits (and the report) hold the redacted texts, and the
    report shows no value of a row the scan did not see; under ``fail`` a finding raises
    `PiiFoundError` (file:row and entity type, never the value) before anything is written. The
    report also gives the rows per split, the rows dropped by `data.drop_train_overlap` and
    `data.invalid_rows`, and the data version (`tlflow.data.version`).

    Returns the loaded splits, the report and the report's path; raising is the caller's choice
    (the flow stops, `tlflow validate` prints and exits non-zero).
    """
    from tlflow.data.pii.policy import apply_policy, with_pii_check  # Presidio and spaCy: only when validating

    loaded = load_labelled_data(cfg.data, spec, cfg.evaluate.slices)  # + meta_<column> of the evaluation slices
    frames: Mapping[str, Any] = loaded.validated
    pii = apply_policy(loaded.splits, text_fields or TextFields(), cfg.privacy)
    if pii is not None:
        loaded.splits, frames, checks = pii.splits, pii.frames, with_pii_check(checks, cfg.privacy)
        if loaded.whole is not None:
            frames, checks = _scanned_within_whole(loaded.whole, pii.frames), _pii_on_scanned_rows(checks)
    report = validate_splits(frames, loaded.label_names, cfg.validate_, checks)
    if pii is not None and loaded.whole is not None and cfg.privacy.pii == "redact":
        _hide_unscanned(report, pii.frames)
    report.pii = pii.summary if pii is not None else None
    report.data = DataAccount.of(loaded, cfg.data, data_version(cfg.data))
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"{cfg.name}-validation.html"
    path.write_text(report.to_html(), encoding="utf-8")
    return loaded, report, path


#: Column of the validated frames: whether the PII scan saw the row (it sees the rows used).
SCANNED = "pii_scanned"


def _scanned_within_whole(whole: Any, scanned: dict[str, pd.DataFrame]) -> dict[str, datasets.Dataset]:
    """The whole splits, each row the scan saw replaced by its scanned version (redacted texts and
    the `PII_COLUMN` note), the others with no note; `SCANNED` says which is which. Rows are
    matched by (source_file, source_row). Each split is written a chunk at a time to its own
    memory-mapped file (`RowFile`): only the scanned rows (the sample) are held."""
    from tlflow.data.pii.report import PII_COLUMN

    out = {}
    for split, dataset in whole.items():
        seen = scanned[split]
        at = {key: i for i, key in enumerate(zip(seen["source_file"], seen["source_row"]))}
        replaced = [c for c in seen.columns if c not in ("source_file", "source_row")]
        features = datasets.Features({**dataset.features, PII_COLUMN: datasets.Value("string"),
                                      SCANNED: datasets.Value("bool")})
        with RowFile(features) as rows:
            for df in frames_of(dataset):
                positions = [at.get(key) for key in zip(df["source_file"], df["source_row"])]
                for column in replaced:
                    mine = df[column].tolist() if column in df.columns else [None] * len(df)
                    theirs = seen[column]
                    df[column] = pd.Series([mine[i] if p is None else theirs.iat[p] for i, p in enumerate(positions)],
                                           index=df.index, dtype=object)
                df[SCANNED] = [p is not None for p in positions]
                rows.append(df)
            out[split] = rows.dataset()
    return out


def _pii_on_scanned_rows(checks: TaskChecks) -> TaskChecks:
    """`checks` with the PII share counted over the scanned rows only."""
    from tlflow.data.pii.report import PII_COLUMN

    return replace(checks, problems=tuple(replace(p, rows=SCANNED) if p.column == PII_COLUMN else p
                                          for p in checks.problems))


def _hide_unscanned(report: ValidationReport, scanned: dict[str, pd.DataFrame]) -> None:
    """Under ``privacy.pii: redact``, no value of a row the scan did not see (outside the sampled
    rows, `scanned`) reaches the report: its examples keep file and row only."""
    seen = {(str(f), int(r)) for df in scanned.values() for f, r in zip(df["source_file"], df["source_row"])}
    for check in report.checks:
        for example in check.examples:
            if example.get("row") is not None and (str(example.get("file")), int(example["row"])) not in seen:
                example["value"] = UNSCANNED_VALUE
