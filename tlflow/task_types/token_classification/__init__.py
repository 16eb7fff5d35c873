"""Named-entity recognition: one IOB2 tag per word."""

from tlflow.task_types.token_classification.task import TokenClassification, repair_iob2

__all__ = ["TokenClassification", "repair_iob2"]
