"""Resumable checkpoints: weights (safetensors) plus trainer state (optimizer, scheduler, RNG,
progress), written atomically into `step-NNNNNNN/` folders, the newest two kept.

A model with frozen parameters (LoRA: the base is frozen) checkpoints only its trainable ones;
the frozen ones are rebuilt from the base checkpoint when the run restarts, so a LoRA checkpoint is
the size of its adapters.

Batches are a pure function of (seed, epoch), so a run that restarts after a kill loads the last
checkpoint and continues with exactly the batches it had not yet seen.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from tlflow.data.atomic import atomic_dir

_STEP_DIR = re.compile(r"^step-(\d+)$")
_KEEP_CHECKPOINTS = 2


@dataclass
class Progress:
    """How far a training run is; saved in every checkpoint, so a resumed (or already finished)
    run reports the whole training's counts and time, not only its last segment's."""

    step: int = 0
    samples: int = 0
    tokens: int = 0
    seconds: float = 0.0  # training time up to the checkpoint (validation and checkpoint writes excluded)
    extra: dict = field(default_factory=dict)  # state of what else the run keeps (the DP accountant)


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


def _frozen(model: torch.nn.Module) -> bool:
    return any(not p.requires_grad for p in model.parameters())


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (each tensor once), contiguous copies for safetensors."""
    seen: set[int] = set()
    state = {}
    for name, param in model.named_parameters():
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            state[name] = param.detach().contiguous().clone()
    return state


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Every weight (safetensors `save_model`), or only the trainable ones when some are frozen."""
    if _frozen(model):
        save_file(trainable_state(model), str(path), metadata={"tlflow": "trainable-only"})
    else:
        save_model(model, str(path))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load what `save_weights` wrote: a trainable-only file must name exactly the model's
    trainable parameters (a mismatch is an error, not a silent partial load)."""
    if not _frozen(model):
        load_model(model, str(path))
        return
    tensors = load_file(str(path))
    expected = set(trainable_state(model))
    if set(tensors) != expected:
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise RuntimeError(f"checkpoint {path} does not match the model's trainable weights "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)


def save_checkpoint(checkpoint_dir: Path, model: torch.nn.Module, state: dict) -> Path:
    """Write weights (safetensors) and trainer state atomically; keep the newest two."""
    target = checkpoint_dir / f"step-{state['step']:07d}"
    with atomic_dir(target) as tmp:
        save_weights(model, tmp / "model.safetensors")
        torch.save(state, tmp / "state.pt")
    old = sorted(p for p in checkpoint_dir.iterdir() if _STEP_DIR.match(p.name))[:-_KEEP_CHECKPOINTS]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return target


def load_checkpoint(path: Path, model: torch.nn.Module) -> dict:
    """Load weights into `model` and return the trainer state saved beside them."""
    load_weights(model, path / "model.safetensors")
    return torch.load(path / "state.pt", weights_only=True)


def write_checkpoint(
    checkpoint_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: Progress,
) -> Path:
    """Checkpoint a run at `progress.step`: weights, optimizer, scheduler, global RNG, progress
    (with its `extra` state)."""
    state = {
        "step": progress.step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "samples": progress.samples,
        "tokens": progress.tokens,
        "seconds": progress.seconds,
        "extra": progress.extra,
    }
    return save_checkpoint(checkpoint_dir, model, state)


def resume(
    checkpoint_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> Progress | None:
    """Load the newest checkpoint of `checkpoint_dir` into the model, optimizer, scheduler and
    global RNG; its progress, or None when there is no checkpoint (nothing is changed)."""
    checkpoint = latest_checkpoint(checkpoint_dir)
    if checkpoint is None:
        return None
    state = load_checkpoint(checkpoint, model)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return Progress(int(state["step"]), int(state.get("samples", 0)), int(state.get("tokens", 0)),
                    float(state.get("seconds", 0.0)), dict(state.get("extra", {})))
