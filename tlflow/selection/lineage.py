"""The tags that say which model selection chose a model: on the winner's run and its registered version."""

from __future__ import annotations

from collections.abc import Mapping

#: Study name, trial number, candidate base, the selection's MLflow run and what the winner was retrained on.
SELECTION_TAGS = ("selection_study", "selection_trial", "selection_candidate", "selection_run_id",
                  "selection_retrain_on")


def selection_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The selection tags among `tags` (e.g. a run's), for its model version."""
    return {k: str(tags[k]) for k in SELECTION_TAGS if tags.get(k)}
