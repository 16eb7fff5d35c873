"""Differentially private fine-tuning: DP-SGD through Opacus (`finetune.privacy`).

What changes in the loop when `LoopSettings.privacy` is set (everything else stays: AdamW and its
schedule, checkpoints, validation, the speed-ups):

* Sampling: every step draws a Poisson batch, each training example joining independently with
  probability q = batch_size / N (the semantics of Opacus' `DPDataLoader`, which the accountant's
  epsilon assumes). The draw is a pure function of (seed, step), so a resumed run sees the batches
  the uninterrupted one would have. Length grouping does not apply; inside one batch the examples
  are sorted by length and cut into `physical_batch_size` chunks (less padding, same sum).
* Gradients: Opacus' `GradSampleModule` computes per-example gradients; its `DPOptimizer` (around
  the loop's AdamW) clips each to `max_grad_norm`, sums them over the batch, adds Gaussian noise
  N(0, (sigma * max_grad_norm)^2) and divides by the expected batch size. The loop's own global
  clipping is off.
* Embeddings: every `nn.Embedding` (word, position, token type) is frozen: they are not trained,
  so they need no per-example gradients (the usual choice for BERT-style encoders, and cheaper).
  With `finetune.method: lora` or `head` only the adapters or the head train, and the noise is
  spread over far fewer weights (tag `dp_trained_weights`).
* Accounting: sigma is calibrated by Opacus' `get_noise_multiplier` so that the whole run's steps
  at rate q spend at most (epsilon, delta); the accountant (rdp or prv) records every step, its
  history is saved in every checkpoint and restored on resume.

Noise and sampling use ordinary pseudo-random generators (Opacus without `secure_mode`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from torch import nn

from tlflow.config import ConfigError
from tlflow.config.schema import DifferentialPrivacyConfig

#: The tags (run and model version) and the per-epoch metric that report a private training.
EPSILON_METRIC = "train/dp_epsilon"  # the `dp_epsilon` tag holds the final value
TAG_PREFIX = "dp_"


@contextmanager
def _expected_warnings() -> Iterator[None]:
    """Silence what is expected here: PyTorch's note that a layer's full backward hook fires without
    input gradients (the first layer after the frozen embeddings) and the RDP accountant's advice
    to widen its orders (a large epsilon)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        warnings.filterwarnings("ignore", message="Optimal order is the", category=UserWarning)
        yield


@dataclass(frozen=True)
class PrivacyPlan:
    """The DP-SGD parameters of one fine-tuning run, calibrated before it starts."""

    epsilon: float  # the target: the whole run spends at most this
    delta: float
    max_grad_norm: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    expected_batch_size: int
    accountant: str
    physical_batch_size: int

    @classmethod
    def calibrate(cls, cfg: DifferentialPrivacyConfig, n_examples: int, batch_size: int, steps: int) -> PrivacyPlan:
        """The noise multiplier that spends (epsilon, delta) over `steps` Poisson batches of
        expected size `batch_size` out of `n_examples` (delta default: 1 / (10 n_examples))."""
        if batch_size >= n_examples:
            raise ConfigError(f"finetune.batch_size: {batch_size} must be below the {n_examples} training rows "
                              "for differentially private fine-tuning (sampling rate < 1)")
        delta = cfg.delta if cfg.delta is not None else 1.0 / (10 * n_examples)
        rate = batch_size / n_examples
        try:
            with _expected_warnings():
                sigma = get_noise_multiplier(target_epsilon=cfg.epsilon, target_delta=delta, sample_rate=rate,
                                             steps=steps, accountant=cfg.accountant)
        except ValueError:
            raise ConfigError(f"finetune.privacy.epsilon: {cfg.epsilon:g} cannot be met over {steps} steps "
                              f"(sampling rate {rate:.4g}, delta {delta:.3g})") from None
        return cls(epsilon=cfg.epsilon, delta=delta, max_grad_norm=cfg.max_grad_norm, noise_multiplier=sigma,
                   sample_rate=rate, steps=steps, expected_batch_size=batch_size, accountant=cfg.accountant,
                   physical_batch_size=cfg.physical_batch_size)


@dataclass(frozen=True)
class PrivacyReport:
    """What a private run spent: its plan and the accountant's epsilon after `steps` steps."""

    plan: PrivacyPlan
    epsilon_spent: float
    steps: int
    trained_weights: int  # the weights that got noised updates (everything else frozen)

    def tags(self) -> dict[str, str]:
        """Run and model-version tags (`dp_*`)."""
        p = self.plan
        return {
            "dp_epsilon": f"{self.epsilon_spent:.4f}", "dp_target_epsilon": f"{p.epsilon:g}", "dp_delta": f"{p.delta:.3g}",
            "dp_noise_multiplier": f"{p.noise_multiplier:.4f}", "dp_max_grad_norm": f"{p.max_grad_norm:g}",
            "dp_sample_rate": f"{p.sample_rate:.6g}", "dp_steps": str(self.steps), "dp_accountant": p.accountant,
            "dp_sampling": "poisson", "dp_frozen": "embeddings", "dp_trained_weights": str(self.trained_weights),
        }


def privacy_tags(tags: dict[str, str]) -> dict[str, str]:
    """The `dp_*` tags among a run's `tags` (what a registered version of the run carries)."""
    return {k: v for k, v in tags.items() if k.startswith(TAG_PREFIX)}


def poisson_batch(n_examples: int, sample_rate: float, seed: int, step: int) -> list[int]:
    """The examples of step `step`: each joins with probability `sample_rate`, independently (a
    pure function of seed and step; possibly empty)."""
    draw = np.random.default_rng((seed, step)).random(n_examples)
    return np.flatnonzero(draw < sample_rate).tolist()


def physical_chunks(batch: Sequence[int], lengths: Sequence[int], size: int) -> list[list[int]]:
    """`batch` sorted by length and cut into chunks of at most `size` examples."""
    ordered = sorted(batch, key=lambda i: lengths[i])
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def freeze_embeddings(model: nn.Module) -> list[nn.Parameter]:
    """Stop every trainable `nn.Embedding` of `model` from training; the parameters frozen."""
    frozen = [p for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


class PrivateTraining:
    """DP-SGD for one run of the loop: per-example gradient hooks on `model`, the `DPOptimizer`
    around its optimizer, the accountant. `freeze_embeddings` must have run before the optimizer
    was made (`start`); `close` leaves a plain model."""

    def __init__(self, model: nn.Module, plan: PrivacyPlan, frozen: list[nn.Parameter]) -> None:
        self.plan, self.frozen = plan, frozen
        self.model = model
        self.trained_weights = sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())
        self.module = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        self.accountant = create_accountant(mechanism=plan.accountant)
        self.optimizer: DPOptimizer | None = None

    @classmethod
    def start(cls, model: nn.Module, cfg: DifferentialPrivacyConfig, n_examples: int, batch_size: int,
              steps: int) -> PrivateTraining:
        """Calibrate the noise and freeze the embeddings (before the optimizer is made)."""
        plan = PrivacyPlan.calibrate(cfg, n_examples, batch_size, steps)
        return cls(model, plan, freeze_embeddings(model))

    def wrap(self, optimizer: torch.optim.Optimizer) -> DPOptimizer:
        """The optimizer that clips, sums and noises per-example gradients before `optimizer` steps."""
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=self.plan.noise_multiplier,
                                     max_grad_norm=self.plan.max_grad_norm,
                                     expected_batch_size=self.plan.expected_batch_size, loss_reduction="mean")
        return self.optimizer

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the accountant's history."""
        return {"dp_accountant": self.accountant.state_dict()}

    def load_state_dict(self, state: dict[str, Any], step: int) -> None:
        """Restore the accountant of a checkpoint at `step` (its history must count `step` steps)."""
        saved = state.get("dp_accountant")
        counted = sum(int(n) for _, _, n in (saved or {}).get("history", []))
        if saved is None or counted != step:
            raise RuntimeError(f"checkpoint at step {step} holds an accountant of {counted} steps: "
                               "the privacy spent cannot be restored")
        self.accountant.load_state_dict(saved)

    def epsilon(self) -> float:
        """The accountant's epsilon so far (at the plan's delta)."""
        if not len(self.accountant):
            return 0.0
        with _expected_warnings():
            return float(self.accountant.get_epsilon(delta=self.plan.delta))

    def report(self, steps: int) -> PrivacyReport:
        return PrivacyReport(self.plan, self.epsilon(), steps, self.trained_weights)

    def _step(self, batch: list[int], lengths: Sequence[int], make_batch: Callable[[list[int], int], dict],
              step: int) -> tuple[Any, int]:
        """One DP-SGD step over `batch` (chunked); the mean loss and the tokens seen."""
        optimizer = self.optimizer
        chunks = physical_chunks(batch, lengths, self.plan.physical_batch_size)
        if not chunks:  # an empty Poisson batch still steps: the update is noise only
            for p in optimizer.params:
                p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
        loss_sum, tokens = 0.0, 0
        for i, chunk in enumerate(chunks):
            inputs = make_batch(chunk, step)
            output = self.module(**inputs)
            with _expected_warnings():
                output.loss.backward()
            loss_sum += float(output.loss.detach()) * len(chunk)
            tokens += int(inputs["attention_mask"].sum())
            if i < len(chunks) - 1:  # clip and sum this chunk's examples; noise once, after the last
                optimizer.signal_skip_step(do_skip=True)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.accountant.step(noise_multiplier=self.plan.noise_multiplier, sample_rate=self.plan.sample_rate)
        loss = loss_sum / len(batch) if batch else float("nan")
        return SimpleNamespace(loss=torch.tensor(loss)), tokens

    def steps(self, lengths: Sequence[int], make_batch: Callable[[list[int], int], dict], seed: int, start: int,
              total: int, scheduler: torch.optim.lr_scheduler.LRScheduler,
              log: Callable[[dict[str, float], int], None]) -> Iterator[tuple[Any, int, int]]:
        """Steps `start`..`total` (yields the output, examples and tokens of each); logs the
        accountant's epsilon as `train/dp_epsilon` at every epoch's end (MLflow step: the epoch)."""
        steps_per_epoch = math.ceil(len(lengths) / self.plan.expected_batch_size)  # as LoopSettings counts
        for step in range(start, total):
            batch = poisson_batch(len(lengths), self.plan.sample_rate, seed, step)
            output, tokens = self._step(batch, lengths, make_batch, step)
            scheduler.step()
            if (step + 1) % steps_per_epoch == 0 or step + 1 == total:
                log({EPSILON_METRIC: self.epsilon()}, math.ceil((step + 1) / steps_per_epoch))
            yield output, len(batch), tokens

    def close(self) -> None:
        """Remove the hooks and Opacus' attributes; the embeddings trainable again (as loaded)."""
        self.module.to_standard_module()
        for p in self.frozen:
            p.requires_grad_(True)
