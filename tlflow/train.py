"""Fine-tuning loop: AdamW with linear warm-up and decay, dynamic padding, fp32, resumable.

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
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from tlflow.batching import epoch_batches, pad_batch
from tlflow.config import FinetuneConfig

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
    seconds: float
    samples: int
    tokens: int
    val_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def set_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0: every core this process may run on)."""
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def make_optimizer(model: torch.nn.Module, cfg: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and LayerNorm weights (as in BERT)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, foreach=True)


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
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    target = checkpoint_dir / f"step-{state['step']:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=checkpoint_dir))
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(state, tmp / "state.pt")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    old = sorted(p for p in checkpoint_dir.iterdir() if _STEP_DIR.match(p.name))[:-_KEEP_CHECKPOINTS]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return target


def load_checkpoint(path: Path, model: PreTrainedModel) -> dict:
    """Load weights into `model` and return the trainer state saved beside them."""
    load_model(model, str(path / "model.safetensors"))
    return torch.load(path / "state.pt", weights_only=True)


def finetune(
    model: PreTrainedModel,
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[int],
    cfg: FinetuneConfig,
    pad_id: int,
    checkpoint_dir: Path,
    evaluate: EvalCallback | None = None,
    log_metrics: MetricsCallback | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` on tokenized examples; resume from `checkpoint_dir` when it holds a checkpoint.

    Args:
        model: a model whose forward takes input_ids, attention_mask, labels and returns `.loss`.
        input_ids: token ids per example (unpadded).
        labels: label id per example.
        cfg: fine-tuning budget and optimizer settings.
        pad_id: the tokenizer's padding id.
        checkpoint_dir: folder of this run's checkpoints (keyed by config and data by the caller).
        evaluate: returns validation metrics (unprefixed); called per epoch or every
            `eval_every_steps`, and at the end.
        log_metrics: receives `{"train_loss": …}` and `{"val_<metric>": …}` with the step.
    Returns:
        TrainResult with the step counts, last train loss window, throughput and final val metrics.
    """
    set_threads(cfg.threads)
    lengths = [len(x) for x in input_ids]
    steps_per_epoch = math.ceil(len(lengths) / cfg.batch_size)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    optimizer = make_optimizer(model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)

    step = 0
    checkpoint = latest_checkpoint(checkpoint_dir)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step = int(state["step"])
    else:
        torch.manual_seed(cfg.seed)
    resumed_from = step
    log = log_metrics or (lambda metrics, step: None)
    eval_every = cfg.eval_every_steps or steps_per_epoch

    def run_eval() -> dict[str, float]:
        if evaluate is None:
            return {}
        metrics = evaluate(model)
        log({f"val_{k}": v for k, v in metrics.items()}, step)
        return metrics

    model.train()
    window_loss, window_n, last_loss = 0.0, 0, float("nan")
    samples = tokens = 0
    val_metrics: dict[str, float] = {}
    started = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc="fine-tune", unit="step", disable=not progress, leave=False)
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        batches = epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length)
        for batch in batches[offset:]:
            if step >= total_steps:
                break
            ids, mask = pad_batch([input_ids[i] for i in batch], pad_id)
            target = torch.as_tensor([labels[i] for i in batch], dtype=torch.long)
            loss = model(input_ids=ids, attention_mask=mask, labels=target).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            samples += len(batch)
            tokens += int(mask.sum())
            window_loss += float(loss.detach())
            window_n += 1
            bar.update(1)
            if step % cfg.log_every_steps == 0 or step == total_steps:
                last_loss = window_loss / window_n
                log({"train_loss": last_loss, "learning_rate": scheduler.get_last_lr()[0]}, step)
                bar.set_postfix(loss=f"{last_loss:.4f}")
                window_loss, window_n = 0.0, 0
            if step % eval_every == 0 and step != total_steps:
                val_metrics = run_eval()
            if step % cfg.checkpoint_every_steps == 0 or step == total_steps:
                state = {
                    "step": step,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                }
                save_checkpoint(checkpoint_dir, model, state)
    bar.close()
    seconds = time.perf_counter() - started
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
    )
