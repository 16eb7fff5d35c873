"""Data-quality checks run on every split before training (Great Expectations 1.x).

``validate_splits`` turns each split of the reader's ``DatasetDict`` (columns ``text``, ``label``,
``source_file``, ``source_row``) into a pandas frame with two derived columns, builds one GE
``ExpectationSuite`` per split with ``build_suite`` and runs it with one ``batch.validate`` call per
chunk of ``CHUNK_ROWS`` rows (a small split is one chunk; the chunks' results are merged), in one
ephemeral GE context per ``validate_splits`` call. The result is a
``ValidationReport``: one ``CheckResult`` per expectation, offending rows named by file and line,
and the class balance of every split.

Derived columns (added by ``validate_splits``; a suite from ``build_suite`` expects them):

* ``text_stripped``: ``text.strip()``, null for null *and* blank texts, so the length check measures
  the stripped text and a blank row is reported only by "text not blank" (``text`` is a copy of
  the task's `TaskChecks.text_column` when that is another column);
* ``text_key``: `overlap_keys` of the task's ``overlap_columns``, null for null and blank texts;
  the leakage key;
* the task type's checks (`TaskChecks`, given by the task type): ``<column>_stripped`` for each
  column that must not be blank, and one column per `ProblemCheck` holding a one-line problem
  description, null when the row is fine.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from tlflow.config import ValidateConfig
from tlflow.data.formats.common import excerpt
from tlflow.data.readers import overlap_keys
from tlflow.data.text import normalize_text, strip_text
from tlflow.data.validation.checks import TaskChecks

if TYPE_CHECKING:
    import great_expectations as gx

SPLIT_ORDER = ("train", "validation", "test")
#: A text of only whitespace and invisible characters (`tlflow.data.text.INVISIBLE`) is blank.
BLANK_REGEX = r"^[\s\u200b\u200c\u200d\u2060\ufeff\u00ad\x00]*$"

# Check names (CheckResult.check). Stable: the numbers live in `observed`.
CHECK_ROWS = "rows present"
CHECK_TEXT_COLUMN = "column text present"
CHECK_LABEL_COLUMN = "column label present"
CHECK_TEXT_NOT_NULL = "text not null"
CHECK_TEXT_NOT_BLANK = "text not blank"
CHECK_TEXT_LENGTH = "text length within limits"
CHECK_LABEL_NOT_NULL = "label not null"
CHECK_LABEL_IN_SET = "label in declared set"
CHECK_LABELS_IN_TRAIN = "every declared label in train"
CHECK_LEAKAGE = "no overlap with train"
CHECK_CLASS_SHARE = "min class share"
CHECK_TRAIN_PRESENT = "train split present"

#: The likely fix of a failed check, shown once under the failures.
DROP_INVALID_HINT = "data.invalid_rows: drop leaves such rows out (counted, with their file:line, in the report)"
HINTS = {
    CHECK_LEAKAGE: "set data.drop_train_overlap: true to drop them from train",
    CHECK_TEXT_NOT_NULL: DROP_INVALID_HINT,
    CHECK_TEXT_NOT_BLANK: DROP_INVALID_HINT,
    CHECK_LABEL_NOT_NULL: DROP_INVALID_HINT,
    CHECK_LABEL_IN_SET: "declare the labels in data.label_names, or map raw values with data.label_map",
    CHECK_LABELS_IN_TRAIN: "drop the label from data.label_names, or add training rows of it",
}

# Index columns GE reports for every unexpected row; `_pos` (0-based position in the frame) lets
# the examples show the original text even when the check ran on a derived column.
_POS = "_pos"
_INDEX_COLUMNS = ["source_file", "source_row", _POS]
#: Longest excerpt of a note (a task check's problem description) in a report.
_NOTE_MAX_CHARS = 160
#: Derived column -> the user's column it comes from (reports name the latter); `_derived` adds
#: the task type's own.
_SOURCE_COLUMN = {"text_stripped": "text", "text_key": "text"}


def _derived(checks: TaskChecks) -> dict[str, str]:
    """Every derived column of a task's frames -> the user's column it comes from."""
    return {
        **_SOURCE_COLUMN,
        **{f"{column}_stripped": column for column, _ in checks.not_blank},
        **{p.column: p.source for p in checks.problems},
    }


@dataclass
class CheckResult:
    split: str  # "train"/"validation"/"test" or "all"
    check: str  # short human name, e.g. "text not blank"
    expectation: str  # GE expectation type, e.g. "expect_column_values_to_not_match_regex"
    success: bool
    observed: str  # one-line numbers, e.g. "3 of 500 rows (0.6%)"
    # Up to cfg.examples_per_failure offending rows: {"file", "row", "value"} plus an optional "note"
    # (e.g. the train row a leaked text matches). "row" is None for split-level findings.
    examples: list[dict] = field(default_factory=list)
    hint: str = ""  # the likely fix of a failure, e.g. "set data.drop_train_overlap: true ..."


@dataclass
class ValidationReport:
    success: bool
    checks: list[CheckResult]
    # split -> label -> count: declared labels in order (0 when absent), then undeclared ones;
    # null labels are not counted (the "label not null" check reports them).
    class_balance: dict[str, dict[str, int]]
    #: What the PII scan found (`tlflow.data.pii.report.PiiSummary`), None when it did not run.
    pii: Any = None
    #: Rows per split, rows dropped and the data version (`tlflow.data.validation.account.DataAccount`).
    data: Any = None

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def summary(self) -> str:
        """Short text for a terminal: the failed checks with examples, or one line of success."""
        splits = list(self.class_balance) or sorted({c.split for c in self.checks if c.split != "all"})
        if self.success:
            lines = [f"all {len(self.checks)} checks passed on splits {', '.join(splits)}"]
        else:
            failed = self.failures()
            lines = [f"data validation failed: {len(failed)} of {len(self.checks)} checks failed"]
            for c in failed:
                via = f" ({c.expectation})" if c.expectation else ""
                lines.append(f"  [{c.split}] {c.check}{via}: {c.observed}")
                lines.extend(f"      {_format_example(ex)}" for ex in c.examples)
            for hint in dict.fromkeys(c.hint for c in failed if c.hint):  # each fix once
                lines.append(f"  fix: {hint}")
        if self.data is not None:
            lines.extend(f"  {line}" for line in self.data.lines())
        for split, counts in self.class_balance.items():
            if counts:  # a task without labels has no balance to show
                total = sum(counts.values())
                parts = ", ".join(f"{label}={n} ({pct(n, total)})" for label, n in counts.items())
                lines.append(f"  class balance {split}: {parts}")
        if self.pii is not None:
            lines.append(f"  personal data (privacy.pii: {self.pii.policy}): {self.pii.line()}")
        return "\n".join(lines)

    def to_html(self) -> str:
        """Self-contained HTML report: checks, examples of failures and class balance."""
        e = html.escape
        status = "PASSED" if self.success else "FAILED"
        color = "#1a7f37" if self.success else "#cf222e"
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8"><title>Data validation report</title>',
            "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;"
            "margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;"
            "vertical-align:top}th{background:#f3f3f3}.ok{color:#1a7f37}.fail{color:#cf222e;"
            "font-weight:bold}code{white-space:pre-wrap}</style></head><body>",
            f'<h1>Data validation: <span style="color:{color}">{status}</span></h1>',
            f"<p>{len(self.checks) - len(self.failures())} of {len(self.checks)} checks passed.</p>",
            "<h2>Checks</h2>",
            "<table><tr><th>Split</th><th>Check</th><th>Expectation</th><th>Result</th>"
            "<th>Observed</th></tr>",
        ]
        for c in self.checks:
            cls, word = ("ok", "passed") if c.success else ("fail", "FAILED")
            out.append(
                f"<tr><td>{e(c.split)}</td><td>{e(c.check)}</td>"
                f"<td><code>{e(c.expectation or '-')}</code></td>"
                f'<td class="{cls}">{word}</td><td>{e(c.observed)}</td></tr>'
            )
        out.append("</table>")
        failed = [c for c in self.failures() if c.examples]
        if failed:
            out.append("<h2>Offending rows</h2>")
            for c in failed:
                out.append(f"<h3>[{e(c.split)}] {e(c.check)}</h3>")
                if c.hint:
                    out.append(f"<p>Fix: {e(c.hint)}</p>")
                out.append("<table><tr><th>File</th><th>Row</th><th>Value</th><th>Note</th></tr>")
                for ex in c.examples:
                    row = "" if ex.get("row") is None else str(ex["row"])
                    out.append(
                        f"<tr><td>{e(str(ex.get('file') or ''))}</td><td>{e(row)}</td>"
                        f"<td><code>{e(_show(ex.get('value')))}</code></td>"
                        f"<td>{e(str(ex.get('note') or ''))}</td></tr>"
                    )
                out.append("</table>")
        if self.data is not None:
            out.append(self.data.to_html())
        if any(self.class_balance.values()):
            out.append("<h2>Class balance</h2>")
        for split, counts in self.class_balance.items():
            if not counts:
                continue
            total = sum(counts.values())
            out.append(f"<h3>{e(split)} ({total} labelled rows)</h3>")
            out.append("<table><tr><th>Label</th><th>Rows</th><th>Share</th></tr>")
            for label, n in counts.items():
                out.append(f"<tr><td>{e(label)}</td><td>{n}</td><td>{pct(n, total)}</td></tr>")
            out.append("</table>")
        if self.pii is not None:
            out.append(self.pii.to_html())
        out.append("</body></html>")
        return "\n".join(out)

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {
            "success": self.success,
            "num_checks": len(self.checks),
            "num_failed": len(self.failures()),
            "checks": [_jsonable(asdict(c)) for c in self.checks],
            "class_balance": {
                split: {str(label): int(n) for label, n in counts.items()}
                for split, counts in self.class_balance.items()
            },
            **({"pii": self.pii.to_dict()} if self.pii is not None else {}),
            **({"data": self.data.to_dict()} if self.data is not None else {}),
        }


# --------------------------------------------------------------------------------------------------
# Suite


def build_suite(
    split: str,
    label_names: list[str],
    cfg: ValidateConfig,
    train_texts: set[str] | None,
    checks: TaskChecks,
) -> gx.ExpectationSuite:
    """The GE suite of one split: the shared checks plus the task type's (`checks`). Each
    expectation carries ``meta={"check": <name>}``.

    ``train_texts``: texts of the training split (raw or already normalised; they are passed
    through ``normalize_text``) for the leakage check on validation/test; None skips that check.
    The check flags rows of the split whose ``text_key`` is one of them, so a caller may pass only
    the train texts that also occur in the split (``validate_splits`` does: same verdict, and GE
    1.24 re-serialises an expectation's ``value_set`` dozens of times per validation, which with
    all 67k SST-2 train texts costs seconds per split).
    """
    import great_expectations as gx  # seconds of imports: only where data are validated

    E = gx.expectations
    expectations: list[Any] = []

    def add(expectation: Any, check: str) -> None:
        expectation.meta = {"check": check}
        expectations.append(expectation)

    add(E.ExpectTableRowCountToBeBetween(min_value=1), CHECK_ROWS)
    add(E.ExpectColumnToExist(column="text"), CHECK_TEXT_COLUMN)
    if checks.labelled:
        add(E.ExpectColumnToExist(column="label"), CHECK_LABEL_COLUMN)
    add(E.ExpectColumnValuesToNotBeNull(column="text"), CHECK_TEXT_NOT_NULL)
    add(E.ExpectColumnValuesToNotMatchRegex(column="text", regex=BLANK_REGEX), CHECK_TEXT_NOT_BLANK)
    add(
        E.ExpectColumnValueLengthsToBeBetween(
            column="text_stripped", min_value=cfg.min_chars, max_value=cfg.max_chars
        ),
        CHECK_TEXT_LENGTH,
    )
    if checks.labelled:
        add(E.ExpectColumnValuesToNotBeNull(column="label"), CHECK_LABEL_NOT_NULL)
        add(E.ExpectColumnValuesToBeInSet(column="label", value_set=list(label_names)), CHECK_LABEL_IN_SET)
        if split == "train":
            add(
                E.ExpectColumnDistinctValuesToContainSet(column="label", value_set=list(label_names)),
                CHECK_LABELS_IN_TRAIN,
            )
    for column, check in checks.not_blank:
        add(E.ExpectColumnValuesToNotBeNull(column=f"{column}_stripped"), check)
    for problem in checks.problems:
        if label_names or not problem.needs_labels:
            only = {"row_condition": f"{problem.rows}==True", "condition_parser": "pandas"} if problem.rows else {}
            add(E.ExpectColumnValuesToBeNull(column=problem.column, mostly=problem.mostly, **only), problem.check)
    if split != "train" and cfg.check_leakage and train_texts is not None:
        keys = sorted({normalize_text(t) for t in train_texts if isinstance(t, str)} - {""})
        add(E.ExpectColumnValuesToNotBeInSet(column="text_key", value_set=keys), CHECK_LEAKAGE)
    # min_class_fraction: GE 1.24 has no expectation on the share of each value of a column
    # (ExpectColumnProportionOfUniqueValues is about distinctness, ExpectColumnKlDivergence needs a
    # reference distribution), so that one check is computed in plain pandas by validate_splits.

    # Through the constructor, not suite.add_expectation(): the latter looks the suite up in the
    # current GE context's store and raises when there is none (build_suite needs no context).
    return gx.ExpectationSuite(name=f"tlflow-{split}", expectations=expectations)


# --------------------------------------------------------------------------------------------------
# Validation


#: Rows of a split validated at a time: at most one pandas frame of this many rows (with its derived
#: columns) is in memory; a larger split is validated chunk by chunk and the results are merged.
CHUNK_ROWS = 100_000


def validate_splits(splits: Any, label_names: list[str], cfg: ValidateConfig, checks: TaskChecks,
                    chunk_rows: int = CHUNK_ROWS) -> ValidationReport:
    """Run the suite (shared checks plus the task type's `checks`) on every split of ``splits`` (a
    ``datasets.DatasetDict`` or a mapping of split name to ``datasets.Dataset`` /
    ``pandas.DataFrame``) and collect the report. Never
    raises on bad data: a missing column fails its check and the checks that need it are skipped.

    A split runs in chunks of `chunk_rows` rows (one pandas frame at a time): each check's counts,
    examples and missing labels are merged over the chunks, so the report is the one a single
    frame would give. For the leakage check the held-out splits' keys are collected first and the
    training split is scanned for them, so no set of every training text is built."""
    names = [s for s in SPLIT_ORDER if s in splits] + sorted(s for s in splits if s not in SPLIT_ORDER)
    results: list[CheckResult] = []
    if "train" not in splits:
        results.append(
            CheckResult("all", CHECK_TRAIN_PRESENT, "", False, f"splits: {', '.join(names) or 'none'}")
        )
    held_out, kept_frames = {}, {}
    for name in names:
        if name != "train":
            keys, kept_frames[name] = _keys_of(splits[name], name, checks, label_names, chunk_rows)
            if keys is not None:
                held_out[name] = keys
    wanted = set().union(*held_out.values()) if "train" in splits else set()
    train_first_row: dict[str, tuple[str, int]] = {}
    train_has_keys = False
    class_balance: dict[str, dict[str, int]] = {}
    files: dict[str, set[str]] = {}
    train_rows = 0

    with quiet_gx() as context:
        source = context.data_sources.add_pandas("tlflow")
        for name in names:
            leak_candidates = None
            if name != "train" and train_has_keys and name in held_out:
                leak_candidates = held_out[name] & train_first_row.keys()
            suite = build_suite(name, label_names, cfg, leak_candidates, checks)
            batches = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
            parts: list[list[_Part]] = []
            counts: dict[str, int] = {}
            files[name] = set()
            frames = [kept_frames[name]] if kept_frames.get(name) is not None else _frames(
                splits[name], name, checks, label_names, chunk_rows)
            for df in frames:
                if name == "train" and "text_key" in df.columns:
                    train_has_keys = True
                    for key, file, row in zip(df["text_key"], df["source_file"], df["source_row"]):
                        if key in wanted and key not in train_first_row:
                            train_first_row[key] = (file, row)
                train_rows += len(df) if name == "train" else 0
                files[name] |= _file_set(df)
                _add_counts(counts, _class_counts(df, label_names, checks))
                parts.append(_run_chunk(batches, df, suite, cfg, train_first_row, checks))
            class_balance[name] = counts
            shown = ", ".join(sorted(files[name]))
            results.extend(_to_check(name, [p[i] for p in parts], cfg, checks, shown) for i in range(len(parts[0])))

    if "train" in splits and cfg.min_class_fraction > 0 and checks.labelled and _has_labels(splits["train"]):
        results.append(_class_share_check(train_rows, ", ".join(sorted(files["train"])), class_balance["train"],
                                          label_names, cfg))

    success = all(c.success for c in results)
    return ValidationReport(success=success, checks=results, class_balance=class_balance)


def _frames(split: Any, name: str, checks: TaskChecks, label_names: list[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The prepared frames of `split`, `chunk_rows` rows at a time (one empty frame for an empty split)."""
    n = len(split)
    for start in range(0, max(n, 1), chunk_rows):
        stop = min(start + chunk_rows, n)
        if isinstance(split, pd.DataFrame):
            chunk = split.iloc[start:stop]
        else:
            chunk = split if (start, stop) == (0, n) else split.select(range(start, stop))
        yield _prepare_frame(chunk, name, checks, label_names, first_row=start + 1)


def _keys_of(split: Any, name: str, checks: TaskChecks, label_names: list[str],
             chunk_rows: int) -> tuple[set[str] | None, pd.DataFrame | None]:
    """The leakage keys of a held-out split (None: it has no ``text_key``), and its prepared frame
    when it fits in one chunk (validated next without preparing it again)."""
    keys: set[str] | None = None
    frames = list(_frames(split, name, checks, label_names, chunk_rows)) if len(split) <= chunk_rows else None
    for df in frames or _frames(split, name, checks, label_names, chunk_rows):
        if "text_key" in df.columns:
            keys = (keys or set()) | set(df["text_key"].dropna())
    return keys, frames[0] if frames else None


def _has_labels(split: Any) -> bool:
    columns = split.columns if isinstance(split, pd.DataFrame) else split.column_names
    return "label" in columns


def _prepare_frame(split: Any, name: str, checks: TaskChecks, label_names: list[str],
                   first_row: int = 1) -> pd.DataFrame:
    df = split.copy() if isinstance(split, pd.DataFrame) else split.to_pandas()
    df = df.reset_index(drop=True)
    if "source_file" not in df.columns:
        df["source_file"] = name
    if "source_row" not in df.columns:
        df["source_row"] = range(first_row, first_row + len(df))
    df[_POS] = range(len(df))
    if checks.text_column != "text" and checks.text_column in df.columns:
        df["text"] = df[checks.text_column]  # the text checks (not blank, length) apply to this column
    if "text" in df.columns:
        df["text_stripped"] = _stripped(df["text"])
        has_fields = set(checks.overlap_columns) <= set(df.columns)
        keys = overlap_keys(df, checks.overlap_columns) if has_fields else [None] * len(df)
        df["text_key"] = pd.Series(keys, index=df.index, dtype=object)
    for column, _ in checks.not_blank:
        if column in df.columns:
            df[f"{column}_stripped"] = _stripped(df[column])
    for problem in checks.problems:
        if set(problem.needs) <= set(df.columns):
            df[problem.column] = _problems(problem.find(df, list(label_names)))
    return df


def _stripped(values: pd.Series) -> pd.Series:
    # Plain lists: pandas 3 turns None back into NaN in `where`/`map` on string columns.
    return pd.Series([strip_text(t) or None if isinstance(t, str) else None for t in values.tolist()],
                     index=values.index, dtype=object)


def _problems(values: Any) -> pd.Series:
    return pd.Series(list(values), dtype=object)


def _class_counts(df: pd.DataFrame, label_names: list[str], checks: TaskChecks) -> dict[str, int]:
    if checks.class_counts is not None:
        return checks.class_counts(df, label_names)
    if "label" not in df.columns:
        return {}
    counts = Counter(str(v) for v in df["label"].dropna())
    out = {label: counts.pop(label, 0) for label in label_names}
    out.update(sorted(counts.items()))
    return out


def _add_counts(total: dict[str, int], counts: dict[str, int]) -> None:
    """Add one chunk's class counts to `total` (labels in the order they first appear)."""
    for label, n in counts.items():
        total[label] = total.get(label, 0) + n


@contextmanager
def quiet_gx() -> Iterator[Any]:
    """One ephemeral GE context with progress bars and analytics off, no GE logging or warnings
    reaching the terminal, and the previously current GE context (if any) restored on exit.

    Progress bars ("Calculating Metrics: ...%" on stderr) are what GE prints by default; they are
    off through the context's ``progress_bars`` config. This GE build ships no analytics client;
    ``analytics_enabled=False`` and ``GX_ANALYTICS_ENABLED`` (setdefault) keep it that way if one
    comes back. ``get_context`` makes the new context GE's process-wide current one; the caller's
    current context is put back afterwards.
    """
    import great_expectations as gx
    from great_expectations.data_context import set_context
    from great_expectations.data_context.data_context.context_factory import project_manager
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    try:
        previous = project_manager.get_current_project()
    except Exception:  # DataContextRequiredError: no current context
        previous = None
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # Only warnings raised from GE's own modules; none occur on pandas 3 today.
            warnings.filterwarnings("ignore", module=r"great_expectations(\.|$)")
            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            )
            yield gx.get_context(mode="ephemeral", project_config=config)
    finally:
        logger.setLevel(level)
        set_context(previous)


@dataclass
class _Part:
    """One check's outcome on one chunk of a split: what `_to_check` merges over the chunks."""

    check: str
    exp: Any
    success: bool
    error: str | None = None
    observed: str = ""  # column checks: the same on every chunk
    rows: int = 0  # row count / element count of the chunk
    unexpected: int = 0
    nonnull: int = 0
    missing: list | None = None  # labels a distinct-values check found missing in this chunk
    examples: list[dict] = field(default_factory=list)


def _run_chunk(
    batches: Any,
    df: pd.DataFrame,
    suite: gx.ExpectationSuite,
    cfg: ValidateConfig,
    train_first_row: dict[str, tuple[str, int]],
    checks: TaskChecks,
) -> list[_Part]:
    """The suite on one frame: one `_Part` per expectation, in suite order."""
    derived = _derived(checks)
    # Checks on a missing column are skipped (the column-exists check fails and says so) instead
    # of letting GE turn each into a metric-resolution error with a traceback.
    present = set(df.columns)
    kept, skipped = [], Counter()
    for exp in suite.expectations:
        column = getattr(exp, "column", None)
        if column is None or exp.expectation_type == "expect_column_to_exist" or column in present:
            kept.append(exp)
        else:
            skipped[derived.get(column, column)] += 1
    chunk_suite = type(suite)(name=suite.name, expectations=kept)

    result = batches.get_batch(batch_parameters={"dataframe": df}).validate(
        chunk_suite,
        result_format={
            "result_format": "SUMMARY",
            "partial_unexpected_count": cfg.examples_per_failure,
            "unexpected_index_column_names": _INDEX_COLUMNS,
            "return_unexpected_index_query": False,
        },
    )
    by_check = {r.expectation_config.meta["check"]: r for r in result.results}
    # suite order; GE returns results in its own order
    return [_part(exp, by_check[exp.meta["check"]], df, cfg, skipped, train_first_row, checks) for exp in kept]


def _part(exp: Any, res: Any, df: pd.DataFrame, cfg: ValidateConfig, skipped: Counter,
          train_first_row: dict[str, tuple[str, int]], checks: TaskChecks) -> _Part:
    etype = exp.expectation_type
    r = res.result or {}
    part = _Part(exp.meta["check"], exp, bool(res.success), error=exception_message(res.exception_info))
    if part.error is not None:
        return part
    if etype == "expect_column_to_exist":
        if part.success:
            part.observed = "present"
        else:
            n = skipped.get(exp.column, 0)
            part.observed = f"column '{exp.column}' missing (columns: {', '.join(_user_columns(df, checks))})"
            if n:
                part.observed += f"; {n} dependent checks skipped"
    elif etype == "expect_table_row_count_to_be_between":
        part.rows = int(r.get("observed_value", len(df)))
    elif etype == "expect_column_distinct_values_to_contain_set":
        missing = r.get("partial_missing_list")
        part.missing = sorted(set(exp.value_set) - set(df["label"].dropna())) if missing is None else list(missing)
    else:
        part.unexpected, part.rows = int(r.get("unexpected_count") or 0), int(r.get("element_count") or len(df))
        part.nonnull = part.rows - int(r.get("missing_count") or 0)
        for idx in (r.get("partial_unexpected_index_list") or [])[: cfg.examples_per_failure]:
            part.examples.append(_example(idx, exp.column, df, train_first_row, checks))
    return part


def _to_check(split: str, parts: list[_Part], cfg: ValidateConfig, checks: TaskChecks, files: str) -> CheckResult:
    """One check of a split from its outcome on every chunk (`files`: the split's files, for split-level findings)."""
    first = parts[0]
    check, exp = first.check, first.exp
    etype = exp.expectation_type
    success = all(p.success for p in parts)
    examples: list[dict] = []
    errors = [p.error for p in parts if p.error is not None]
    if errors:
        observed, success = f"error: {errors[0]}", False
    elif etype == "expect_column_to_exist":
        observed = first.observed
    elif etype == "expect_table_row_count_to_be_between":
        observed = f"{sum(p.rows for p in parts)} rows"  # only an empty split is one empty chunk
    elif etype == "expect_column_distinct_values_to_contain_set":
        # missing from the split: missing from every chunk (in the first chunk's order)
        missing = [str(m) for m in first.missing if all(m in p.missing for p in parts[1:])]
        observed, success = (f"missing: {', '.join(missing)}" if missing else "all present"), not missing
        examples = [{"file": files, "row": None, "value": m} for m in missing[: cfg.examples_per_failure]]
    else:
        n, total = sum(p.unexpected for p in parts), sum(p.rows for p in parts)
        mostly = getattr(exp, "mostly", None)
        if len(parts) > 1 and mostly is not None and mostly < 1:  # the share over the whole split
            nonnull = sum(p.nonnull for p in parts)
            success = nonnull == 0 or (nonnull - n) / nonnull >= mostly
        observed = f"{n} of {total} rows ({pct(n, total)})"
        if etype == "expect_column_value_lengths_to_be_between":
            observed += f"; allowed {exp.min_value}..{exp.max_value} chars after stripping"
        if n:
            examples = [ex for p in parts for ex in p.examples][: cfg.examples_per_failure]
    hint = "" if success else HINTS.get(check) or (
        DROP_INVALID_HINT if check in {name for _, name in checks.not_blank} else "")
    return CheckResult(split, check, etype, success, observed, examples, hint)


def exception_message(info: Any) -> str | None:
    """GE puts a raised exception either at the top of exception_info or, for a failed metric,
    under one key per metric; None when nothing was raised."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "exception").splitlines()[0]
    return None


def _example(idx: dict, column: str, df: pd.DataFrame, train_first_row: dict, checks: TaskChecks) -> dict:
    pos = int(idx[_POS])
    row = df.iloc[pos]
    if column in {p.column for p in checks.problems}:  # the row's text, the problem as the note
        shown = "text" if "text" in df.columns else column
        return {"file": str(idx["source_file"]), "row": int(idx["source_row"]), "value": _clean(row[shown]),
                "note": excerpt(str(row[column]), _NOTE_MAX_CHARS)}
    shown = _derived(checks).get(column, column)
    example = {"file": str(idx["source_file"]), "row": int(idx["source_row"]), "value": _clean(row[shown])}
    if column == "text_stripped" and isinstance(row["text_stripped"], str):
        example["note"] = f"{len(row['text_stripped'])} chars"
    if column == "text_key" and len(checks.overlap_columns) > 1:  # a pair leaks as a pair: show both parts
        example["value"] = " ||| ".join(excerpt(str(row[c])) for c in checks.overlap_columns)
    if column == "text_key" and row["text_key"] in train_first_row:
        f, line = train_first_row[row["text_key"]]
        example["note"] = f"same {'pair' if len(checks.overlap_columns) > 1 else 'text'} as train {f}:{int(line)}"
    return example


def _class_share_check(
    total: int, files: str, counts: dict[str, int], label_names: list[str], cfg: ValidateConfig
) -> CheckResult:
    """The smallest class's share of the `total` training rows (in `files`). Computed without GE:
    see the comment at the end of build_suite."""
    shares = {label: counts.get(label, 0) for label in label_names}
    rare = [(label, n) for label, n in shares.items() if n < cfg.min_class_fraction * total]
    if total and shares:
        smallest = min(shares, key=shares.__getitem__)
        n = shares[smallest]
        observed = f"smallest class {smallest}: {n} of {total} rows ({pct(n, total)})"
    else:
        observed = "no labelled rows"
    observed += f"; minimum {pct(cfg.min_class_fraction * 100, 100)}"
    examples = [
        {"file": files, "row": None, "value": label, "note": f"{n} of {total} rows ({pct(n, total)})"}
        for label, n in rare[: cfg.examples_per_failure]
    ]
    return CheckResult(
        "train", CHECK_CLASS_SHARE, "", not rare and total > 0, observed, examples
    )


# --------------------------------------------------------------------------------------------------
# Formatting helpers


def pct(n: float, total: float) -> str:
    """``n`` as a share of ``total`` for reports, e.g. "12.5%" (small shares keep two digits)."""
    if not total:
        return "0%"
    p = 100.0 * n / total
    if p == 0 or p >= 0.1:
        return f"{p:.1f}%"
    return f"{p:.2g}%"


def _user_columns(df: pd.DataFrame, checks: TaskChecks) -> list[str]:
    derived = _derived(checks)
    return [str(c) for c in df.columns if c != _POS and c not in derived]


def _file_set(df: pd.DataFrame) -> set[str]:
    return {str(f) for f in df["source_file"].dropna().unique()}


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, str):
        value = excerpt(value)  # never more than a short excerpt of a data value in any report
    return value


def _show(value: Any) -> str:
    if value is None:
        return "<null>"
    return repr(value) if isinstance(value, str) and not value.strip() else str(value)


def _format_example(ex: dict) -> str:
    where = str(ex.get("file") or "")
    if ex.get("row") is not None:
        where += f":{ex['row']}"
    value = ex.get("value")
    shown = "<null>" if value is None else repr(value) if isinstance(value, str) else str(value)
    line = f"{where}: {shown}" if where else shown
    if ex.get("note"):
        line += f"  ({ex['note']})"
    return line


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
