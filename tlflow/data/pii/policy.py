"""`privacy.pii` applied to the loaded splits, before validation reports, tokenization and any
logging: off (nothing), report (counts), redact (counts, then each finding replaced by ``<TYPE>``),
fail (`PiiFoundError` naming file:row and entity type when anything is found)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import datasets
import pandas as pd

from tlflow.config.schema import PrivacyConfig
from tlflow.data.pii import engine
from tlflow.data.pii.fields import TextFields
from tlflow.data.pii.redact import redact_frame
from tlflow.data.pii.report import CHECK_PII, PII_COLUMN, PiiFoundError, PiiSummary, row_notes
from tlflow.data.pii.scan import PiiScan, scan_splits
from tlflow.data.validation.checks import ProblemCheck, TaskChecks


@dataclass
class PiiOutcome:
    """The splits to use from here on (redacted under `redact`), the summary and the frames the
    validation suite checks (with the `PII_COLUMN` of each row)."""

    splits: datasets.DatasetDict
    summary: PiiSummary
    frames: dict[str, pd.DataFrame]


def apply_policy(splits: datasets.DatasetDict, fields: TextFields, cfg: PrivacyConfig) -> PiiOutcome | None:
    """Scan the splits' `fields` and apply `cfg.pii`; None when it is off. Raises `PiiFoundError`
    under `fail` when any row has a finding (before anything is reported or logged)."""
    if cfg.pii == "off":
        return None
    engine.check_entities(cfg.entities)
    frames = {split: ds.to_pandas() for split, ds in splits.items()}
    scan = scan_splits(frames, fields, cfg.entities, cfg.min_score)
    if cfg.pii == "fail" and any(s.findings for s in scan.splits.values()):
        raise PiiFoundError(scan)
    summary = PiiSummary.of(scan, cfg.pii, cfg.max_pii_fraction, engine.scanner_version())
    if cfg.pii == "redact":
        frames = {split: redact_frame(df, scan.splits[split], fields) for split, df in frames.items()}
        splits = datasets.DatasetDict({
            split: datasets.Dataset.from_pandas(df, features=splits[split].features, preserve_index=False)
            for split, df in frames.items()
        })
    return PiiOutcome(splits, summary, _with_notes(frames, scan))


def _with_notes(frames: dict[str, pd.DataFrame], scan: PiiScan) -> dict[str, pd.DataFrame]:
    out = {}
    for split, df in frames.items():
        df = df.reset_index(drop=True).copy()
        df[PII_COLUMN] = pd.Series(row_notes(scan, split), index=df.index, dtype=object)
        out[split] = df
    return out


def with_pii_check(checks: TaskChecks, cfg: PrivacyConfig) -> TaskChecks:
    """`checks` plus the expectation that at most `max_pii_fraction` of a split's rows have PII
    (GE ``expect_column_values_to_be_null`` on `PII_COLUMN` with ``mostly``)."""
    check = ProblemCheck(CHECK_PII, PII_COLUMN, "pii", (PII_COLUMN,), lambda df, _: df[PII_COLUMN].tolist(),
                         mostly=round(1.0 - cfg.max_pii_fraction, 9))
    return replace(checks, problems=(*checks.problems, check))
