"""What a task type adds to the data-quality suite, handed in by the task type (`TaskType.data_checks`).

The suite itself (`tlflow.data.validation.suite`) runs the checks every task type shares (rows,
text present, not blank, length, leakage) and those described here; it never looks at task-type
names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class ProblemCheck:
    """A per-row check: `find` describes each row's problem in one line (None when the row is fine).

    The suite stores the descriptions in the derived column `column` and expects it to be null; a
    failing row is shown with its text and the description as the note.
    """

    check: str  # check name in the report, e.g. "tags form valid IOB2"
    column: str  # derived column, e.g. "iob2_error"
    source: str  # the user's column the problem is about (named in reports), e.g. "tags"
    needs: tuple[str, ...]  # columns `find` reads; the check is skipped when one is missing
    find: Callable[[pd.DataFrame, list[str]], Iterable[str | None]]  # (frame, label names) -> one per row
    needs_labels: bool = False  # only when label names are declared or inferred
    mostly: float = 1.0  # share of rows that must be fine for the check to pass (1.0: every row)
    rows: str | None = None  # boolean column: only rows where it is true are checked (None: every row)


@dataclass(frozen=True)
class TaskChecks:
    """A task type's part of the suite.

    Attributes:
        labelled: rows carry a ``label`` column: check it is present, not null, in the declared
            set, that train has every label, and the min class share.
        text_column: column the text checks (not null, not blank, length) apply to, copied into
            ``text`` when it is another one (question answering: the question).
        overlap_columns: what two rows share when one leaks into another split
            (`tlflow.data.readers.overlap_keys`).
        not_blank: (column, check name) pairs: the column must not be blank where present.
        problems: per-row checks (`ProblemCheck`).
        class_counts: the class balance of a split, (frame, label names) -> name -> count; None
            counts the ``label`` column (declared labels first).
    """

    labelled: bool = False
    text_column: str = "text"
    overlap_columns: tuple[str, ...] = ("text",)
    not_blank: tuple[tuple[str, str], ...] = ()
    problems: tuple[ProblemCheck, ...] = ()
    class_counts: Callable[[pd.DataFrame, list[str]], dict[str, int]] | None = None
