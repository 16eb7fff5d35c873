"""Only a task type knows its name: no code outside tlflow/task_types/ spells a task-type name as a
string literal (to compare against it, look it up, or default to it). Whatever differs between task
types is an attribute or method of the task type (`tlflow.task_types.base.TaskType`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tlflow.task_types.base import TaskType
from tlflow.task_types.registry import TASK_TYPES, get_task_type

pytestmark = [pytest.mark.unit]

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("tlflow", "tasks", "flows")
OWNER = REPO / "tlflow" / "task_types"


def quoted(name: str) -> re.Pattern[str]:
    """The name as a whole string literal, in either quotes (also inside f-strings)."""
    return re.compile(rf"""(["']){re.escape(name)}\1""")


def offenders(name: str) -> list[str]:
    pattern = quoted(name)
    found = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            if OWNER in path.parents:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    return found


@pytest.mark.parametrize("name", [t.name for t in TASK_TYPES])
def test_no_task_type_name_outside_task_types(name):
    assert offenders(name) == [], f"'{name}' spelled outside tlflow/task_types/ (use the TaskType instead)"


def test_the_scan_finds_a_comparison():
    pattern = quoted("sentence-pair")
    assert pattern.search('if task == "sentence-pair":')
    assert pattern.search("TASKS = {'sentence-pair': 1}")
    assert not pattern.search('description="sentence-pair classification (sentence-pair)"')


@pytest.mark.parametrize("task_type", TASK_TYPES, ids=lambda t: t.name)
def test_every_task_type_declares_what_the_pipeline_asks_of_it(task_type: TaskType):
    assert get_task_type(task_type.name) is task_type
    spec = task_type.dataset_spec()
    assert spec.columns[-2:] == ["source_file", "source_row"]
    assert task_type.primary_metrics and task_type.output_names
    assert len(task_type.model_head) == 2
    assert task_type.native_format in (None, "conll", "squad")
    assert task_type.target_column is None or task_type.target_column in spec.columns
    assert set(task_type.overlap_columns) <= set(spec.columns)
    checks = task_type.data_checks()
    assert set(checks.overlap_columns) <= set(spec.columns)
    for problem in checks.problems:
        assert set(problem.needs) <= set(spec.columns)
    for field, option in task_type.Options.model_fields.items():
        assert option.description, f"{task_type.name} option {field} has no description"
