"""Single-text classification."""

from tlflow.task_types.text_classification.task import TextClassification

__all__ = ["TextClassification"]
