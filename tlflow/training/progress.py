"""Where a training run stands, for whoever watches it.

Fine-tuning and pretraining run the same loop (`tlflow.training.loop`); inside
`progress_reporter(report)` it hands `report` a `TrainingProgress` at each of its log points
(`log_every_steps`), from the lead rank only. The caller decides what to do with it (the Prefect
tasks log a line and keep a progress artifact current); nothing here knows who watches. A context
variable rather than one more argument through every stage, the way `lock.lock_notices` hands out
lock notices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingProgress:
    """Where a training run stands at a log point."""

    desc: str  # the stage: "fine-tune", "pretrain"
    step: int
    total_steps: int
    resumed_from: int  # the step this segment of the run started at (0: from scratch)
    loss: float  # mean training loss of the last log window
    samples_per_second: float  # this segment, training time only
    elapsed_seconds: float  # wall time of this segment, validation and checkpoint writes included

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 1.0

    @property
    def eta_seconds(self) -> float | None:
        """The remaining steps at this segment's wall-clock pace; None before a step was timed."""
        done = self.step - self.resumed_from
        return max(0, self.total_steps - self.step) * self.elapsed_seconds / done if done > 0 else None


    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    def line(self) -> str:
        """One line for a log: `fine-tune: step 120/600 (20%), loss 0.4123, 85.3 samples/s, ETA 4m10s`."""
        eta = self.eta_seconds
        return (f"{self.desc}: step {self.step}/{self.total_steps} ({self.fraction:.0%}), loss {self.loss:.4f}, "
                f"{self.samples_per_second:.1f} samples/s, "
                + ("done" if self.finished else f"ETA {duration(eta)}" if eta is not None else "ETA unknown"))


def duration(seconds: float) -> str:
    """`35s`, `4m10s`, `1h02m`."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class Cadence:
    """When a progress report is worth a log line: the first and the last, then whenever
    `every_fraction` more of the run is done or `every_s` seconds have passed since the last line."""

    every_s: float = 60.0
    every_fraction: float = 0.1
    _last_time: float | None = None
    _last_fraction: float = 0.0

    def due(self, progress: TrainingProgress, now: float) -> bool:
        if not (self._last_time is None or progress.finished or now - self._last_time >= self.every_s
                or progress.fraction - self._last_fraction >= self.every_fraction - 1e-9):
            return False
        self._last_time, self._last_fraction = now, progress.fraction
        return True


ProgressCallback = Callable[[TrainingProgress], None]
_REPORT: ContextVar[ProgressCallback | None] = ContextVar("tlflow_training_progress", default=None)


@contextmanager
def progress_reporter(report: ProgressCallback) -> Iterator[None]:
    """Hand the progress of every training loop run in this block (and context) to `report`."""
    token = _REPORT.set(report)
    try:
        yield
    finally:
        _REPORT.reset(token)


def current_reporter() -> ProgressCallback | None:
    """The reporter of the enclosing `progress_reporter` block (None outside one)."""
    return _REPORT.get()
