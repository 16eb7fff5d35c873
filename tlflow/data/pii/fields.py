"""Which columns of a task type's canonical table hold free text (handed in by the task type:
`tlflow.task_types.base.TaskType.text_fields`); the PII scan and redaction never look at
task-type names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextFields:
    """The text columns of one task type's splits.

    Attributes:
        texts: plain string columns, scanned and redacted as they are.
        words: columns holding a list of words (token classification): scanned as the words joined
            by spaces; every word inside a finding becomes ``<TYPE>``, so the list keeps its length
            and any column aligned with it (the tags) stays valid.
        joined: (column, words column) pairs: the column is the words joined by spaces and is
            rebuilt from the redacted words (not scanned on its own).
        json_objects: columns holding a JSON object of strings (a prompt template's fields): each
            string value is scanned and redacted.
        answers: (context column, answer texts column, answer starts column): the answers are
            spans of the context; after the context is redacted, each start is moved and each
            answer text re-read from the redacted context.
    """

    texts: tuple[str, ...] = ("text",)
    words: tuple[str, ...] = ()
    joined: tuple[tuple[str, str], ...] = ()
    json_objects: tuple[str, ...] = ()
    answers: tuple[str, str, str] | None = None

    def columns(self) -> tuple[str, ...]:
        """Every scanned column, in report order."""
        return (*self.texts, *self.words, *self.json_objects)
