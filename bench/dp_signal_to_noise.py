"""Why DP-SGD learns or not at a given budget: the clipped gradient signal against the noise.

For each `finetune.method` (what trains: full, lora, head), on `--examples` SST-2 training
sentences of `configs/sst2.yaml` at the model's initialisation (the base with a fresh head), this
computes every example's gradient of the trained weights (one backward each), clips it to `--clip`
and averages: the norm of that mean is the signal one DP-SGD step sees. The noise of a step has norm
sigma * C * sqrt(d) / B (d trained weights, B the expected batch, sigma calibrated by Opacus' RDP
accountant for epsilon over the run's steps at rate B / N, delta 1 / (10 N)). Reported per method,
batch, epochs and epsilon: signal / noise for one step and times sqrt(steps) (what accumulates
over the run when the directions stay put).

    .venv/bin/python bench/dp_signal_to_noise.py [--examples 256 --clip 1.0]

Writes bench/results/dp_signal_to_noise.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import warnings
from pathlib import Path

import torch
from benchlib import machine
from opacus.accountants.utils import get_noise_multiplier

from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.modeling.models import build_task_model, load_tokenizer
from tlflow.runtime import apply_defaults
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import check_config, task_type_for
from tlflow.training.methods import prepare_method
from tlflow.training.private import freeze_embeddings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "dp_signal_to_noise.json"
BUDGETS = [(256, 3), (1024, 5), (2048, 5), (4000, 10)]  # (expected batch, epochs)


def clipped_signal(method: str, examples: int, clip: float) -> tuple[float, torch.Tensor, int, int]:
    """The norm of the mean of the clipped per-example gradients of the weights `method` trains
    (embeddings frozen, as under DP); the unclipped norms; d; the training rows N."""
    cfg = check_config(load_config(ROOT / "configs" / "sst2.yaml", [f"finetune.method={method}"]))
    task, settings = task_type_for(cfg), TaskSettings.from_config(cfg)
    loaded = load_labelled_data(cfg.data, task.dataset_spec())
    tokenizer = load_tokenizer(cfg.model.base)
    features = task.train_features(loaded.splits["train"], loaded.label_names, tokenizer, settings)
    model = build_task_model(cfg.model, task.model_head, loaded.label_names, len(tokenizer), cfg.finetune.seed)
    prepare_method(model, cfg.finetune)
    freeze_embeddings(model)
    model.eval()  # no dropout: the gradient itself, not one draw of it
    params = [p for p in model.parameters() if p.requires_grad]
    total, norms = None, []
    for i in range(examples):
        ids = torch.tensor([features["input_ids"][i]])
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([features["labels"][i]])).loss.backward()
        grad = torch.cat([p.grad.reshape(-1) for p in params])
        norms.append(grad.norm())
        clipped = grad * min(1.0, clip / float(norms[-1]))
        total = clipped if total is None else total + clipped
    signal = float((total / examples).norm())
    return signal, torch.stack(norms), sum(p.numel() for p in params), len(features["input_ids"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--methods", nargs="+", default=["full", "lora", "head"])
    args = parser.parse_args()
    apply_defaults()
    torch.manual_seed(0)
    out = {"date": dt.date.today().isoformat(), "machine": machine(),
           "command": f".venv/bin/python bench/dp_signal_to_noise.py --examples {args.examples} --clip {args.clip}",
           "methods": {}}
    for method in args.methods:
        signal, norms, d, n = clipped_signal(method, args.examples, args.clip)
        entry = {"trained_weights": d, "per_example_norm_quartiles": torch.quantile(norms, torch.tensor([.25, .5, .75])).tolist(),
                 "clipped_mean_signal": signal, "budgets": []}
        for batch, epochs in BUDGETS:
            steps = int(epochs * n / batch)
            for epsilon in (8.0, 3.0):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sigma = get_noise_multiplier(target_epsilon=epsilon, target_delta=1 / (10 * n), sample_rate=batch / n,
                                                 steps=steps, accountant="rdp")
                noise = sigma * args.clip * math.sqrt(d) / batch
                entry["budgets"].append({"batch": batch, "epochs": epochs, "steps": steps, "epsilon": epsilon,
                                         "noise_multiplier": sigma, "noise": noise, "signal_to_noise": signal / noise,
                                         "accumulated": signal / noise * math.sqrt(steps)})
                print(f"{method:5s} d={d:>9,d} B={batch:5d} epochs={epochs:2d} steps={steps:3d} eps={epsilon:g} "
                      f"sigma={sigma:.2f} signal/noise {signal / noise:.3f} (x sqrt(steps): {signal / noise * math.sqrt(steps):.2f})",
                      flush=True)
        out["methods"][method] = entry
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
