"""Task type by name (config `task.type`)."""

from __future__ import annotations

from tlflow.task_types.base import TaskType
from tlflow.task_types.classification import SentencePair, TextClassification
from tlflow.task_types.question_answering import QuestionAnswering
from tlflow.task_types.token_classification import TokenClassification

TASK_TYPES: dict[str, TaskType] = {
    t.name: t for t in (TextClassification(), SentencePair(), TokenClassification(), QuestionAnswering())
}


def get_task_type(name: str) -> TaskType:
    """The task type called `name`; ValueError listing the known ones otherwise."""
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown task type '{name}' (known: {', '.join(TASK_TYPES)})") from None
