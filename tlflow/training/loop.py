"""Training loop shared by fine-tuning and pretraining: AdamW with linear warm-up and decay, fp32, resumable.

The loop itself is short: batches, forward, `backward_and_step`, then the run's hooks
(`_RunHooks.on_step`, which logs, validates and checkpoints at their cadence). Its parts live
beside it: `settings` (LoopSettings), `optimizer` (AdamW, schedule, the step), `checkpoints`
(write, find, resume), `speedups` (the opt-in tricks `LoopSettings.speedups` names) and
`private` (DP-SGD, when `LoopSettings.privacy` is set).

Inside `progress.progress_reporter(report)` every loop hands `report` a `TrainingProgress` at each
log point.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from tlflow.config import FinetuneConfig
from tlflow.data.features import example_lengths
from tlflow.modeling.batching import epoch_batches, training_collate
from tlflow.training.checkpoints import Progress, resume, write_checkpoint
from tlflow.training.early_stopping import STATE_KEY, EarlyStopping
from tlflow.training.label_smoothing import SmoothedLoss
from tlflow.training.optimizer import backward_and_step, make_optimizer, make_scheduler
from tlflow.training.private import PrivacyReport, PrivateTraining
from tlflow.training.progress import TrainingProgress, current_reporter
from tlflow.training.settings import LoopSettings, set_threads
from tlflow.training.speedups import training_speedups

MetricsCallback = Callable[[dict[str, float], int], None]
#: Section of the training loop's MLflow metrics (`train/loss`, `train/learning_rate`, ...): in the
#: MLflow UI they chart apart from the quality metrics (`val_*`, `test_*`), which stay unprefixed.
TRAIN_SECTION = "train/"
EvalCallback = Callable[[PreTrainedModel], dict[str, float]]
BatchBuilder = Callable[[list[int], int], dict[str, torch.Tensor]]
OutputMetrics = Callable[[Any], dict[str, float]]


@dataclass
class TrainResult:
    steps: int
    total_steps: int
    resumed_from: int
    train_loss: float
    seconds: float  # training time: validation runs and checkpoint writes inside the loop are not counted
    samples: int
    tokens: int
    val_metrics: dict[str, float] = field(default_factory=dict)
    checkpoint_seconds: float = 0.0  # writing checkpoints, this segment of the run only
    privacy: PrivacyReport | None = None  # DP-SGD runs: the plan and the epsilon spent
    early_stopping: dict[str, float] = field(default_factory=dict)  # `EarlyStopping.summary()` when it was on

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def _remaining_batches(lengths: Sequence[int], settings: LoopSettings, start: int) -> Iterator[list[int]]:
    """The batches of steps `start`..`total_steps` (example indices), epoch after epoch."""
    steps_per_epoch = math.ceil(len(lengths) / settings.batch_size)
    step = start
    while step < settings.total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        for batch in epoch_batches(lengths, settings.batch_size, settings.seed, epoch, settings.group_by_length)[offset:]:
            if step >= settings.total_steps:
                return
            yield batch
            step += 1


def _rank_slice(batch: list[int], rank: int, world: int) -> list[int]:
    """This rank's share of a batch; every rank gets at least one example of a (short, last) batch."""
    if world == 1:
        return batch
    return (batch * world)[: max(len(batch), world)][rank::world]


class _RunHooks:
    """What happens between the steps of one segment of a run: `on_step` counts and accumulates
    the log window, then calls `on_log`, `on_eval` and `on_checkpoint` at their cadence. Only the
    lead rank logs, validates and checkpoints. Validation and checkpoint writes are not training
    time."""

    def __init__(self, settings: LoopSettings, n_examples: int, checkpoint_dir: Path, core: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                 progress: Progress, evaluate: EvalCallback | None, log: MetricsCallback | None,
                 output_metrics: OutputMetrics | None, bar: tqdm, lead: bool, desc: str = "train") -> None:
        self.settings, self.checkpoint_dir, self.core = settings, checkpoint_dir, core
        self.desc, self.report = desc, (current_reporter() if lead else None)
        self.optimizer, self.scheduler, self.progress, self.bar, self.lead = optimizer, scheduler, progress, bar, lead
        self.evaluate = evaluate if lead else None
        self.log = (log if lead else None) or (lambda metrics, step: None)
        self.output_metrics = output_metrics
        self.eval_every = settings.eval_every_steps or math.ceil(n_examples / settings.batch_size)
        self.resumed_from, self.seconds_before, self.samples_before = progress.step, progress.seconds, progress.samples
        self.window: dict[str, float] = {}
        self.window_n, self.last_loss = 0, float("nan")
        self.val_metrics: dict[str, float] = {}
        self.eval_seconds = self.checkpoint_seconds = 0.0
        self.extra_state: Callable[[], dict] = dict  # what checkpoints keep besides the trainer state
        self.stopping: EarlyStopping | None = None  # set by train_loop when early stopping is on (lead rank)
        self.started = time.perf_counter()

    def training_seconds(self, now: float) -> float:
        return self.seconds_before + now - self.started - self.eval_seconds - self.checkpoint_seconds

    def on_step(self, output: Any, samples: int, tokens: int) -> None:
        progress, settings = self.progress, self.settings
        progress.step += 1
        progress.samples += samples
        progress.tokens += tokens
        self.window_n += 1
        extra = self.output_metrics(output) if self.output_metrics else {}
        for key, value in {"loss": float(output.loss.detach()), **extra}.items():
            self.window[key] = self.window.get(key, 0.0) + value
        self.bar.update(1)
        step, total = progress.step, settings.total_steps
        if step % settings.log_every_steps == 0 or step == total:
            self.on_log()
        if step % self.eval_every == 0 and step != total:
            self.on_eval()
        if self.lead and (step % settings.checkpoint_every_steps == 0 or step == total or self.stopped):
            self.on_checkpoint()

    @property
    def stopped(self) -> bool:
        """Whether early stopping has ended the run (a resumed run that had stopped trains no more)."""
        return self.stopping is not None and self.stopping.stopped

    def on_log(self) -> None:
        means = {k: v / self.window_n for k, v in self.window.items()}
        self.last_loss = means["loss"]
        self.log({**{TRAIN_SECTION + k: v for k, v in means.items()},
                  f"{TRAIN_SECTION}learning_rate": self.scheduler.get_last_lr()[0]}, self.progress.step)
        self.bar.set_postfix(loss=f"{self.last_loss:.4f}")
        self.window, self.window_n = {}, 0
        if self.report is not None:
            now = time.perf_counter()
            trained = self.training_seconds(now) - self.seconds_before
            samples = self.progress.samples - self.samples_before
            self.report(TrainingProgress(self.desc, self.progress.step, self.settings.total_steps, self.resumed_from,
                                         self.last_loss, samples / trained if trained > 0 else 0.0, now - self.started))

    def on_eval(self) -> None:
        if self.evaluate is None:
            self.val_metrics = {}
            return
        began = time.perf_counter()
        self.val_metrics = self.evaluate(self.core)
        self.eval_seconds += time.perf_counter() - began
        self.log({f"val_{k}": v for k, v in self.val_metrics.items()}, self.progress.step)
        if self.stopping is not None:
            self.stopping.update(self.progress.step, self.val_metrics, self.core)

    def on_checkpoint(self) -> None:
        saving = time.perf_counter()
        self.progress.seconds = self.training_seconds(saving)
        self.progress.extra = self.extra_state()
        if self.stopping is not None:
            self.progress.extra[STATE_KEY] = self.stopping.state_dict()
        write_checkpoint(self.checkpoint_dir, self.core, self.optimizer, self.scheduler, self.progress)
        if self.stopping is not None:
            self.stopping.forget_older()
        self.checkpoint_seconds += time.perf_counter() - saving

    def finish(self) -> TrainResult:
        """Close the bar, validate a last time; the segment's result (time of the whole training)."""
        self.bar.close()
        seconds = self.training_seconds(time.perf_counter())
        if self.stopping is None or not self.stopping.evaluated_at(self.progress.step):
            self.on_eval()
        p = self.progress
        return TrainResult(steps=p.step, total_steps=self.settings.total_steps, resumed_from=self.resumed_from,
                           train_loss=self.last_loss, seconds=seconds, samples=p.samples, tokens=p.tokens,
                           val_metrics=self.val_metrics, checkpoint_seconds=self.checkpoint_seconds)


def train_loop(
    model: PreTrainedModel,
    lengths: Sequence[int],
    make_batch: BatchBuilder,
    settings: LoopSettings,
    checkpoint_dir: Path,
    evaluate: EvalCallback | None = None,
    log_metrics: MetricsCallback | None = None,
    output_metrics: OutputMetrics | None = None,
    progress: bool = True,
    desc: str = "train",
    shard: tuple[int, int] = (0, 1),
) -> TrainResult:
    """Train `model`, resuming from `checkpoint_dir` when it holds a checkpoint.

    Args:
        model: its forward takes the tensors `make_batch` builds and returns an output with `.loss`.
        lengths: token count of every example (drives length-grouped batching).
        make_batch: (example indices, global step) -> model inputs; the step lets it draw
            reproducible randomness (e.g. masking), so a resumed run sees identical batches.
        settings: step budget, optimizer and schedule, checkpoint and logging cadence, and the
            speed-ups applied while training (all undone on return: the model is plain again).
        checkpoint_dir: folder of this run's checkpoints (keyed by config and data by the caller).
        evaluate: returns validation metrics (unprefixed); called every `eval_every_steps` and at
            the end, logged with a `val_` prefix.
        log_metrics: receives `{"train/loss": …, "train/learning_rate": …}` (plus the window means
            of `output_metrics` as `train/<name>`) every `log_every_steps`, and the validation metrics.
        output_metrics: extra per-step numbers taken from the model output (e.g. MLM accuracy).
        shard: (rank, world size) for data-parallel training (`model` wrapped in
            DistributedDataParallel): every rank walks the same batches and trains on its slice
            `batch[rank::world]`; only rank 0 writes checkpoints, evaluates and logs.
    Returns:
        TrainResult with step counts, the last logged loss, throughput and final val metrics
        (with `shard`: samples of all ranks, tokens of this rank).
    """
    rank, world = shard
    core = getattr(model, "module", model)  # the model itself inside a DistributedDataParallel wrapper
    if world == 1:
        set_threads(settings.threads)
    private = None
    if settings.privacy is not None:  # freezes the embeddings: before the optimizer is made
        private = PrivateTraining.start(core, settings.privacy, len(lengths), settings.batch_size, settings.total_steps)
    optimizer = make_optimizer(model, settings)
    scheduler = make_scheduler(optimizer, settings)
    if private is not None:
        optimizer = private.wrap(optimizer)
    done = resume(checkpoint_dir, core, optimizer, scheduler)
    if done is None:
        torch.manual_seed(settings.seed)
    elif private is not None:
        private.load_state_dict(done.extra, done.step)
    done = done or Progress()
    bar = tqdm(total=settings.total_steps, initial=done.step, desc=desc, unit="step",
               disable=not (progress and rank == 0), leave=False)
    hooks = _RunHooks(settings, len(lengths), checkpoint_dir, core, optimizer, scheduler, done, evaluate,
                      log_metrics, output_metrics, bar, lead=rank == 0, desc=desc)
    if settings.early_stopping is not None and rank == 0:
        hooks.stopping = EarlyStopping.start(settings.early_stopping, checkpoint_dir, done.extra.get(STATE_KEY))
    model.train()
    try:
        with training_speedups(core, settings.speedups, data_parallel=world > 1) as grads:
            if private is None:
                for batch in _remaining_batches(lengths, settings, done.step):
                    if hooks.stopped:
                        break
                    inputs = make_batch(_rank_slice(batch, rank, world), done.step)
                    output = model(**inputs)
                    backward_and_step(model, output.loss, optimizer, scheduler, grads, settings.max_grad_norm)
                    hooks.on_step(output, len(batch), int(inputs["attention_mask"].sum()))
            else:  # DP-SGD: Poisson batches, per-example clipping, noise (tlflow.training.private)
                hooks.extra_state = private.state_dict
                for output, samples, tokens in ([] if hooks.stopped else private.steps(
                        lengths, make_batch, settings.seed, done.step, settings.total_steps, scheduler, hooks.log)):
                    hooks.on_step(output, samples, tokens)
                    if hooks.stopped:
                        break
            result = hooks.finish()  # the last validation runs with the speed-ups too (same logits)
    finally:
        if private is not None:  # a plain model again, even after a crash
            private.close()
    if private is not None:
        result.privacy = private.report(result.steps)
    if hooks.stopping is not None:  # the weights and validation metrics of the best evaluation
        hooks.stopping.restore(core)
        result.val_metrics = hooks.stopping.best_metrics or result.val_metrics
        result.early_stopping = hooks.stopping.summary()
        hooks.log(result.early_stopping, result.steps)
    model.eval()
    return result


def finetune(
    model: PreTrainedModel,
    features: Mapping[str, Sequence],
    cfg: FinetuneConfig,
    pad_id: int,
    checkpoint_dir: Path,
    evaluate: EvalCallback | None = None,
    log_metrics: MetricsCallback | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a task model on tokenized examples with dynamic padding (see `train_loop`), with
    the speed-ups `cfg.speedups` names.

    Args:
        model: a model whose forward takes the tensors `collate` builds and returns `.loss`.
        features: column-wise examples: input_ids (unpadded) plus what the task trains on
            (labels per example or per token, token_type_ids, start/end positions); lists, or a
            saved split's memory-mapped columns (`tlflow.data.features.feature_columns`).
        cfg: fine-tuning budget, optimizer settings and speed-ups; with `label_smoothing` the loss is
            smoothed (`tlflow.training.label_smoothing`), with `early_stopping` the run stops when
            validation stops improving and ends with the best evaluation's weights.
        pad_id: the tokenizer's padding id.
    """
    input_ids = features["input_ids"]
    return train_loop(
        SmoothedLoss(model, cfg.label_smoothing) if cfg.label_smoothing else model,
        example_lengths(input_ids),
        training_collate(model, features, pad_id),
        LoopSettings.for_finetune(cfg, len(input_ids)),
        checkpoint_dir,
        evaluate=evaluate,
        log_metrics=log_metrics,
        progress=progress,
        desc="fine-tune",
        shard=(0, 1),
    )
