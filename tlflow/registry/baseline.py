"""The trivial baseline of a test split: what the promotion gate requires a new model to beat when
no floors are configured, so that a model that learned nothing never becomes champion silently.

The task type says what a model that learned nothing predicts (`TaskType.trivial_baseline`: the
majority class of the training split, all-O tags, the empty answer); a task type whose base model
can already do the task (text generation) is compared with the zero-shot base the evaluate stage
scored on the same split (`Evaluation.baseline_stats`), when it did.
"""

from __future__ import annotations

from tlflow.data.readers import LoadedData
from tlflow.registry.gate import Baseline
from tlflow.task_types.base import Evaluation, TaskType


def trivial_baseline(task_type: TaskType, loaded: LoadedData, evaluation: Evaluation | None = None) -> Baseline | None:
    """The trivial predictor on `loaded`'s test split, None when the task type has none and no
    zero-shot base was scored."""
    found = task_type.trivial_baseline(loaded.splits["test"], loaded.splits["train"], loaded.label_names)
    if found is not None:
        return Baseline(*found)
    if evaluation is not None and evaluation.baseline_stats is not None:
        return Baseline("the zero-shot base model", evaluation.baseline_stats)
    return None
