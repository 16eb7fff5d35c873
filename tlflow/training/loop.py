"""Training loop shared by fine-tuning and pretraining: AdamW with linear warm-up and decay, fp32, resumable.

A checkpoint (weights, optimizer, scheduler, RNG state, step) is written every
`checkpoint_every_steps` and at the end. Batches are a pure function of (seed, epoch), so a run
that restarts after a kill loads the last checkpoint and continues with exactly the batches it
had not yet seen.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from tlflow.config import FinetuneConfig, PretrainConfig
from tlflow.data.atomic import atomic_dir
from tlflow.modeling.batching import collate, epoch_batches
from tlflow.training.speedups.fast_dropout import fast_dropout
from tlflow.training.speedups.kept_embedding_grad import DenseGrads, KeptEmbeddingGrad, kept_embedding_grad

MetricsCallback = Callable[[dict[str, float], int], None]
EvalCallback = Callable[[PreTrainedModel], dict[str, float]]

_STEP_DIR = re.compile(r"^step-(\d+)$")
_KEEP_CHECKPOINTS = 2


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

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def set_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0: every core this process may run on)."""
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


@dataclass(frozen=True)
class LoopSettings:
    """What the training loop needs to know, whichever stage (fine-tuning, pretraining) runs it."""

    total_steps: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    checkpoint_every_steps: int
    seed: int
    max_grad_norm: float = 1.0
    group_by_length: bool = True
    eval_every_steps: int = 0
    log_every_steps: int = 20
    threads: int = 0

    @classmethod
    def for_finetune(cls, cfg: FinetuneConfig, n_examples: int) -> LoopSettings:
        """Steps from `epochs` (fractions allowed) over `n_examples`."""
        steps_per_epoch = math.ceil(n_examples / cfg.batch_size)
        return cls(
            total_steps=max(1, math.ceil(cfg.epochs * steps_per_epoch)),
            eval_every_steps=cfg.eval_every_steps or steps_per_epoch,
            **cfg.model_dump(include={
                "batch_size", "learning_rate", "weight_decay", "warmup_ratio", "checkpoint_every_steps", "seed",
                "max_grad_norm", "group_by_length", "log_every_steps", "threads",
            }),
        )


    @classmethod
    def for_pretrain(cls, cfg: PretrainConfig) -> LoopSettings:
        """`max_steps` steps; held-out scoring at the end; about ten log points."""
        return cls(
            total_steps=cfg.max_steps,
            eval_every_steps=cfg.max_steps,
            log_every_steps=max(1, min(20, cfg.max_steps // 10)),
            **cfg.model_dump(include={
                "batch_size", "learning_rate", "weight_decay", "warmup_ratio", "checkpoint_every_steps", "seed",
            }),
        )


def make_optimizer(model: torch.nn.Module, settings: LoopSettings) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and LayerNorm weights (as in BERT)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=settings.learning_rate, fused=True)


@contextmanager
def training_speedups(model: torch.nn.Module, data_parallel: bool = False) -> Iterator[KeptEmbeddingGrad | DenseGrads]:
    """What the loop changes while a model trains, all undone on exit; yields what zeroes the
    gradients after each optimizer step (`.zero_grad(optimizer)`).

    The word-embedding gradient is kept between steps (`kept_embedding_grad`; not for
    data-parallel ranks, whose DistributedDataParallel reduces dense gradients) and dropout draws
    cheaper masks (`fast_dropout`). Neither changes what is computed: same gradients, same
    dropout probability; see the two modules.
    """
    grads = DenseGrads() if data_parallel else kept_embedding_grad(model)
    with grads, fast_dropout(model):
        yield grads


def backward_and_step(
    model: torch.nn.Module,
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    grads: KeptEmbeddingGrad | DenseGrads,
    max_grad_norm: float,
) -> None:
    """The second half of a training step: backward, gradient clipping, optimizer and schedule
    step, gradients zeroed by `grads` (what `training_speedups` yields)."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    grads.zero_grad(optimizer)


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    if not checkpoint_dir.is_dir():
        return None
    steps = [
        (int(m.group(1)), p)
        for p in checkpoint_dir.iterdir()
        if (m := _STEP_DIR.match(p.name)) and (p / "state.pt").is_file()
    ]
    return max(steps)[1] if steps else None


def save_checkpoint(checkpoint_dir: Path, model: PreTrainedModel, state: dict) -> Path:
    """Write weights (safetensors) and trainer state atomically; keep the newest two."""
    target = checkpoint_dir / f"step-{state['step']:07d}"
    with atomic_dir(target) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
    old = sorted(p for p in checkpoint_dir.iterdir() if _STEP_DIR.match(p.name))[:-_KEEP_CHECKPOINTS]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return target


def load_checkpoint(path: Path, model: PreTrainedModel) -> dict:
    """Load weights into `model` and return the trainer state saved beside them."""
    load_model(model, str(path / "model.safetensors"))
    return torch.load(path / "state.pt", weights_only=True)


BatchBuilder = Callable[[list[int], int], dict[str, torch.Tensor]]
OutputMetrics = Callable[[Any], dict[str, float]]


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
        settings: step budget, optimizer and schedule, checkpoint and logging cadence.
        checkpoint_dir: folder of this run's checkpoints (keyed by config and data by the caller).
        evaluate: returns validation metrics (unprefixed); called every `eval_every_steps` and at
            the end, logged with a `val_` prefix.
        log_metrics: receives `{"train_loss": …, "learning_rate": …}` (plus the window means of
            `output_metrics`) every `log_every_steps`, and the validation metrics.
        output_metrics: extra per-step numbers taken from the model output (e.g. MLM accuracy).
        shard: (rank, world size) for data-parallel training (`model` wrapped in
            DistributedDataParallel): every rank walks the same batches and trains on its slice
            `batch[rank::world]`; only rank 0 writes checkpoints, evaluates and logs.
    Returns:
        TrainResult with step counts, the last logged loss, throughput and final val metrics
        (with `shard`: samples of all ranks, tokens of this rank).
    """
    rank, world = shard
    lead = rank == 0
    core = getattr(model, "module", model)  # the model itself inside a DistributedDataParallel wrapper
    if world == 1:
        set_threads(settings.threads)
    steps_per_epoch = math.ceil(len(lengths) / settings.batch_size)
    total_steps = settings.total_steps
    optimizer = make_optimizer(model, settings)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(settings.warmup_ratio * total_steps), total_steps
    )

    # Work done before a resume counts: a resumed (or already finished) run reports the whole
    # training's time and throughput, not only the last segment's.
    step = samples = tokens = 0
    seconds_before = 0.0
    checkpoint = latest_checkpoint(checkpoint_dir)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, core)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, samples, tokens = int(state["step"]), int(state.get("samples", 0)), int(state.get("tokens", 0))
        seconds_before = float(state.get("seconds", 0.0))
    else:
        torch.manual_seed(settings.seed)
    resumed_from = step
    log = (log_metrics if lead else None) or (lambda metrics, step: None)
    eval_every = settings.eval_every_steps or steps_per_epoch

    # Validation and checkpoint writes inside the loop are not training time.
    eval_seconds = checkpoint_seconds = 0.0

    def run_eval() -> dict[str, float]:
        nonlocal eval_seconds
        if evaluate is None or not lead:
            return {}
        began = time.perf_counter()
        metrics = evaluate(core)
        eval_seconds += time.perf_counter() - began
        log({f"val_{k}": v for k, v in metrics.items()}, step)
        return metrics

    model.train()
    window: dict[str, float] = {}
    window_n, last_loss = 0, float("nan")
    val_metrics: dict[str, float] = {}
    started = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc=desc, unit="step", disable=not (progress and lead), leave=False)
    with training_speedups(core, data_parallel=world > 1) as grads:
        while step < total_steps:
            epoch, offset = divmod(step, steps_per_epoch)
            batches = epoch_batches(lengths, settings.batch_size, settings.seed, epoch, settings.group_by_length)
            for batch in batches[offset:]:
                if step >= total_steps:
                    break
                if world > 1:  # every rank needs at least one example of a (short, last) batch
                    mine = (batch * world)[: max(len(batch), world)][rank::world]
                inputs = make_batch(mine if world > 1 else batch, step)
                output = model(**inputs)
                backward_and_step(model, output.loss, optimizer, scheduler, grads, settings.max_grad_norm)
                step += 1
                samples += len(batch)
                tokens += int(inputs["attention_mask"].sum())
                window_n += 1
                extra = output_metrics(output) if output_metrics else {}
                for key, value in {"train_loss": float(output.loss.detach()), **extra}.items():
                    window[key] = window.get(key, 0.0) + value
                bar.update(1)
                if step % settings.log_every_steps == 0 or step == total_steps:
                    means = {k: v / window_n for k, v in window.items()}
                    last_loss = means["train_loss"]
                    log({**means, "learning_rate": scheduler.get_last_lr()[0]}, step)
                    bar.set_postfix(loss=f"{last_loss:.4f}")
                    window, window_n = {}, 0
                if step % eval_every == 0 and step != total_steps:
                    val_metrics = run_eval()
                if lead and (step % settings.checkpoint_every_steps == 0 or step == total_steps):
                    saving = time.perf_counter()
                    state = {
                        "step": step,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": torch.get_rng_state(),
                        "samples": samples,
                        "tokens": tokens,
                        "seconds": seconds_before + saving - started - eval_seconds - checkpoint_seconds,
                    }
                    save_checkpoint(checkpoint_dir, core, state)
                    checkpoint_seconds += time.perf_counter() - saving
    bar.close()
    seconds = seconds_before + time.perf_counter() - started - eval_seconds - checkpoint_seconds
    val_metrics = run_eval()
    model.eval()
    return TrainResult(
        steps=step,
        total_steps=total_steps,
        resumed_from=resumed_from,
        train_loss=last_loss,
        seconds=seconds,
        samples=samples,
        tokens=tokens,
        val_metrics=val_metrics,
        checkpoint_seconds=checkpoint_seconds,
    )


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
    """Fine-tune a task model on tokenized examples with dynamic padding (see `train_loop`).

    Args:
        model: a model whose forward takes the tensors `collate` builds and returns `.loss`.
        features: column-wise examples: input_ids (unpadded) plus what the task trains on
            (labels per example or per token, token_type_ids, start/end positions).
        cfg: fine-tuning budget and optimizer settings.
        pad_id: the tokenizer's padding id.
    """
    input_ids = features["input_ids"]
    return train_loop(
        model,
        [len(x) for x in input_ids],
        lambda batch, step: collate(features, batch, pad_id),
        LoopSettings.for_finetune(cfg, len(input_ids)),
        checkpoint_dir,
        evaluate=evaluate,
        log_metrics=log_metrics,
        progress=progress,
        desc="fine-tune",
    )
