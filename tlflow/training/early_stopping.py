"""Early stopping on a validation metric, with the best weights kept on disk and restored at the end.

Fed one evaluation at a time (`update`), it keeps the weights of the best one under
`<checkpoint_dir>/best/step-NNNNNNN/` and says when `patience` evaluations in a row have not
improved on it by more than `min_delta` (higher is better: every primary metric is). Its state (best
score, step and metrics, evaluations without a gain, whether it stopped) travels in every
checkpoint's `Progress.extra`, so a resumed run stops where the uninterrupted one would, and
restores the same best weights. A best folder is removed only once a newer checkpoint no longer
names it (`forget_older`).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tlflow.config.schema import EarlyStoppingConfig
from tlflow.data.atomic import atomic_dir
from tlflow.errors import TlflowError
from tlflow.training.checkpoints import load_weights, save_weights

#: Key of the early-stopping state in a checkpoint's `Progress.extra`.
STATE_KEY = "early_stopping"
_BEST = re.compile(r"^step-(\d+)$")


class EarlyStoppingError(TlflowError, ValueError):
    """The watched metric is not among the validation metrics."""


@dataclass
class EarlyStopping:
    """Best-so-far of one run's validation metric, and whether to stop."""

    metric: str
    patience: int
    min_delta: float
    folder: Path  # holds the best weights, one `step-N` folder each
    best_score: float | None = None
    best_step: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    evals_without_gain: int = 0
    stopped: bool = False
    last_step: int = -1  # step of the last evaluation fed in

    @classmethod
    def start(cls, cfg: EarlyStoppingConfig, checkpoint_dir: Path, saved: dict | None = None) -> EarlyStopping:
        """A fresh tracker for `cfg` (its `metric` resolved), or the one a checkpoint saved."""
        if not cfg.metric:
            raise ValueError("early stopping needs the metric it watches (finetune.early_stopping.metric)")
        stopping = cls(cfg.metric, cfg.patience, cfg.min_delta, Path(checkpoint_dir) / "best")
        if saved:
            stopping.best_score = saved["best_score"]
            stopping.best_step = int(saved["best_step"])
            stopping.best_metrics = dict(saved["best_metrics"])
            stopping.evals_without_gain = int(saved["evals_without_gain"])
            stopping.stopped = bool(saved["stopped"])
            stopping.last_step = int(saved["last_step"])
        return stopping

    def state_dict(self) -> dict:
        """What a checkpoint keeps (plain numbers, loadable with `torch.load(weights_only=True)`)."""
        state = asdict(self)
        del state["metric"], state["patience"], state["min_delta"], state["folder"]
        return state

    def best_path(self) -> Path:
        return self.folder / f"step-{self.best_step:07d}"

    def update(self, step: int, metrics: dict[str, float], model: torch.nn.Module) -> bool:
        """Feed the evaluation at `step`: a new best saves `model`'s weights. True once training
        should stop (`patience` evaluations without a gain of more than `min_delta`)."""
        if self.metric not in metrics:
            raise EarlyStoppingError(f"finetune.early_stopping.metric: '{self.metric}' is not a validation metric "
                                     f"(validation gives: {', '.join(sorted(metrics))})")
        self.last_step = step
        score = float(metrics[self.metric])
        if self.best_score is None or score - self.min_delta > self.best_score:
            self.best_score, self.best_step, self.best_metrics = score, step, dict(metrics)
            self.evals_without_gain = 0
            with atomic_dir(self.best_path()) as tmp:
                save_weights(model, tmp / "model.safetensors")
        else:
            self.evals_without_gain += 1
            self.stopped = self.evals_without_gain >= self.patience
        return self.stopped

    def evaluated_at(self, step: int) -> bool:
        """Whether the evaluation at `step` has been fed in already (e.g. the one that stopped)."""
        return self.last_step == step

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best evaluation's weights into `model` (nothing when none was fed in)."""
        if self.best_score is not None:
            load_weights(model, self.best_path() / "model.safetensors")

    def forget_older(self) -> None:
        """Remove best folders other than the current one: call after a checkpoint naming it is written."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if _BEST.match(path.name) and path != self.best_path():
                shutil.rmtree(path, ignore_errors=True)

    def summary(self) -> dict[str, float]:
        """Metrics for the run: the step whose weights were kept and whether training stopped early
        (`train/early_stopping_best_step`, `train/early_stopped`), and that evaluation's metrics as
        `best_val_<metric>`."""
        return {"train/early_stopping_best_step": float(self.best_step), "train/early_stopped": float(self.stopped),
                **{f"best_val_{k}": v for k, v in self.best_metrics.items()}}
