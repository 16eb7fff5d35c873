"""Training progress in the Prefect UI: log lines on the run logger and a progress artifact.

A fine-tune or pretraining run inside `training_progress(cfg, stage)` reports at each of the loop's
log points (`tlflow.training.progress`): the progress artifact `<name>-<stage>-progress` shows the
percentage done, its description the last line (step/total, loss, samples/s, ETA); the run
logger gets that line at the first and last log point and every 10 % or 60 s in between. The
artifact is updated at most every few seconds. Reporting never stops a training: when the
Prefect API cannot be reached the artifact stays as it was and training goes on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from tasks.tracking import artifact_key
from tlflow.config import PipelineConfig
from tlflow.training.progress import Cadence, TrainingProgress, progress_reporter

#: Seconds between two updates of the progress artifact (the last one is always sent).
ARTIFACT_EVERY_S = 5.0


class PrefectProgress:
    """The reporter: log lines at their `Cadence`, the progress artifact kept current."""

    def __init__(self, key: str, stage: str, cadence: Cadence | None = None):
        self.logger, self.cadence = get_run_logger(), cadence or Cadence()
        self.updated, self.failed = 0.0, False
        self.artifact = self._call(create_progress_artifact, 0.0, key=key, description=f"{stage}: starting")

    def _call(self, send, *args, **kwargs):
        try:
            return send(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - progress is never worth a failed training
            if not self.failed:
                self.logger.warning("progress artifact not updated (%s): training goes on", str(err)[:200])
            self.failed = True
            return None

    def __call__(self, progress: TrainingProgress) -> None:
        now = time.monotonic()
        if self.cadence.due(progress, now):
            self.logger.info(progress.line())
        if self.artifact is not None and (progress.finished or now - self.updated >= ARTIFACT_EVERY_S):
            self.updated = now
            self._call(update_progress_artifact, self.artifact, round(100 * progress.fraction, 1),
                       description=progress.line())


@contextmanager
def training_progress(cfg: PipelineConfig, stage: str) -> Iterator[None]:
    """Report the progress of the training loops run in this block to the Prefect UI."""
    with progress_reporter(PrefectProgress(artifact_key(cfg.name, f"{stage}-progress"), stage)):
        yield
