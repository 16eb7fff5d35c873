"""Training progress in the Prefect UI: log lines on the run logger and a progress artifact.

The tokenize stage reports the rows it has turned into features the same way (`rows_progress`:
artifact `<name>-tokenize-progress`, a line per chunk at the same cadence).

A fine-tune or pretraining run inside `training_progress(cfg, stage)` reports at each of the loop's
log points (`tlflow.training.progress`): the progress artifact `<name>-<stage>-progress` shows the
percentage done, its description the last line (step/total, loss, samples/s, ETA); the run
logger gets that line at the first and last log point and every 10 % or 60 s in between. The
artifact is updated at most every few seconds. Reporting never stops a training: when the
Prefect API cannot be reached the artifact stays as it was and training goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from tasks.tracking import artifact_key
from tlflow.config import PipelineConfig
from tlflow.training.progress import Cadence, TrainingProgress, duration, progress_reporter

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

    def __call__(self, progress: TrainingProgress | RowsProgress) -> None:
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


@dataclass(frozen=True)
class RowsProgress:
    """Rows a data stage has done, in the shape `PrefectProgress` reports (fraction, finished, line)."""

    stage: str
    done: int
    total: int
    seconds: float

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def line(self) -> str:
        """`tokenize: 200,000/1,000,000 rows (20%), 11,234 rows/s, ETA 1m11s`."""
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        eta = (self.total - self.done) / rate if rate else None
        return (f"{self.stage}: {self.done:,}/{self.total:,} rows ({self.fraction:.0%}), {rate:,.0f} rows/s, "
                + ("done" if self.finished else f"ETA {duration(eta)}" if eta is not None else "ETA unknown"))


def rows_progress(cfg: PipelineConfig, stage: str) -> Callable[[int, int], None]:
    """`on_chunk(done, total)` for a data stage: the stage's progress artifact and log lines. The
    artifact is made at the first chunk (a stage served from its cache reports nothing)."""
    started, reporter = time.monotonic(), []

    def on_chunk(done: int, total: int) -> None:
        if not reporter:
            reporter.append(PrefectProgress(artifact_key(cfg.name, f"{stage}-progress"), stage))
        reporter[0](RowsProgress(stage, done, total, time.monotonic() - started))

    return on_chunk
