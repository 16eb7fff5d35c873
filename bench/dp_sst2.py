"""Differentially private fine-tuning on SST-2: test accuracy and seconds per epoch at epsilon 8 and
3 against ordinary fine-tuning, in one job through the library (no Prefect).

All runs fine-tune `minilm-l6` on the training sentences of `configs/sst2.yaml` (8,000 rows, one
epoch, max length 66, the config's speed-ups) with the fine-tune stage's own code
(`tlflow.training.finetuning.train_task_model`) and score the labelled SST-2 test split (1,821
sentences) with the task's evaluation:

* non-private: the config as it is (batch 32, AdamW at 1e-4, 6 % warm-up, global clipping 1.0);
* DP at each epsilon: `finetune.privacy` (DP-SGD through Opacus: Poisson batches of expected size
  `--dp-batch`, per-example clipping at `--clip`, Gaussian noise calibrated by the RDP accountant
  to spend (epsilon, delta = 1 / (10 N)) over the epoch; embeddings frozen) at learning rate
  `--dp-lr`, everything else as in the config.

Reported per run: test accuracy and macro-F1, training seconds (validation and checkpoint writes
excluded; one epoch, so seconds per epoch), steps, and for DP the noise multiplier and the epsilon
the accountant reports after the last step. The machine is shared: outside CPU load is recorded.

    .venv/bin/python bench/dp_sst2.py [--rows N --epsilons 8 3 --dp-batch 128 --dp-lr 5e-4 --dp-epochs 1
                                      --dp-method full|lora|head --clip 1.0 --twin]

Each job is appended to bench/results/dp_sst2.json (a list of jobs), after every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchlib import CpuMeter, machine

from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.modeling.models import load_tokenizer
from tlflow.runtime import apply_defaults
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import check_config, task_type_for
from tlflow.training.finetuning import train_task_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "dp_sst2.json"


def run(overrides: list[str], rows: int | None) -> dict:
    """Fine-tune once with `overrides` on configs/sst2.yaml; the test scores and training numbers."""
    sets = [*overrides, "finetune.checkpoint_every_steps=100000"]
    if rows:
        sets.append(f"data.max_train_rows={rows}")
    cfg = check_config(load_config(ROOT / "configs" / "sst2.yaml", sets))
    task, settings = task_type_for(cfg), TaskSettings.from_config(cfg)
    loaded = load_labelled_data(cfg.data, task.dataset_spec())
    tokenizer = load_tokenizer(cfg.model.base)
    features = task.train_features(loaded.splits["train"], loaded.label_names, tokenizer, settings)
    meter = CpuMeter()
    with tempfile.TemporaryDirectory() as tmp:
        model, result = train_task_model(cfg, features, None, loaded.label_names, tokenizer, cfg.model.base,
                                         Path(tmp), progress=False)
    outside = meter.other_load()
    scores = task.evaluate(model, tokenizer, loaded.splits["test"], loaded.label_names, settings).metrics
    record = {
        "overrides": overrides, "train_rows": len(features["input_ids"]), "steps": result.steps,
        "train_seconds": result.seconds, "seconds_per_epoch": result.seconds / cfg.finetune.epochs,
        "batch_size": cfg.finetune.batch_size, "learning_rate": cfg.finetune.learning_rate,
        "test_accuracy": scores["accuracy"], "test_macro_f1": scores.get("macro_f1"), "train_loss": result.train_loss,
        "outside_load": outside,
    }
    if result.privacy is not None:
        record.update({k: v for k, v in result.privacy.tags().items()})
        record["epsilon_spent"] = result.privacy.epsilon_spent
        record["noise_multiplier"] = result.privacy.plan.noise_multiplier
    return record


def save(output: Path, job: dict) -> None:
    """Append (or update) this job in the results file, a list of jobs: earlier jobs are kept."""
    jobs = json.loads(output.read_text(encoding="utf-8")) if output.exists() else []
    jobs = [jobs] if isinstance(jobs, dict) else jobs
    jobs = [j for j in jobs if j.get("started") != job["started"]] + [job]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(jobs, indent=2), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="training rows (default: the config's 8,000)")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[8.0, 3.0])
    parser.add_argument("--dp-batch", type=int, default=128, help="expected Poisson batch size of the DP runs")
    parser.add_argument("--dp-lr", type=float, default=5e-4, help="peak learning rate of the DP runs")
    parser.add_argument("--dp-epochs", type=float, default=1.0, help="epochs of the DP runs")
    parser.add_argument("--dp-method", choices=["full", "lora", "head"], default="full",
                        help="what trains in the DP runs: every weight but the embeddings, LoRA adapters + head, or "
                        "the head alone on the frozen encoder (linear probe)")
    parser.add_argument("--clip", type=float, default=1.0, help="per-example clipping norm of the DP runs")
    parser.add_argument("--twin", action="store_true",
                        help="also run the DP settings without privacy (same method, batch, lr, epochs): the cost of "
                        "the noise and clipping alone")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    apply_defaults()
    started = time.perf_counter()
    dp_settings = [f"finetune.batch_size={args.dp_batch}", f"finetune.learning_rate={args.dp_lr}",
                   f"finetune.epochs={args.dp_epochs}", f"finetune.method={args.dp_method}"]
    plans = [("non-private", [])]
    if args.twin:
        plans.append((f"non-private {args.dp_method}, DP settings", dp_settings))
    plans += [(f"dp eps={eps:g}", [*dp_settings, f"finetune.privacy.epsilon={eps}",
                                   f"finetune.privacy.max_grad_norm={args.clip}"]) for eps in args.epsilons]
    job = {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/dp_sst2.py", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine(),
        "versions": {"torch": torch.__version__, "opacus": __import__("opacus").__version__},
        "settings": {"config": "configs/sst2.yaml", "dp_batch_size": args.dp_batch, "dp_learning_rate": args.dp_lr,
                     "dp_epochs": args.dp_epochs, "dp_method": args.dp_method, "dp_max_grad_norm": args.clip,
                     "accountant": "rdp", "delta": "1 / (10 x training rows)"},
        "runs": [],
    }
    for name, overrides in plans:
        record = {"run": name, **run(overrides, args.rows)}
        job["runs"].append(record)
        job["wall_s"] = time.perf_counter() - started
        save(args.output, job)  # after every run: a job stopped half-way keeps what it measured
        print(f"{name:34s} test acc {record['test_accuracy']:.4f}  {record['seconds_per_epoch']:7.1f} s/epoch  "
              f"sigma {record.get('noise_multiplier', 0):.3f}  eps {record.get('epsilon_spent', float('inf')):.3f}  "
              f"(outside load {record['outside_load']:.2f} CPU)", flush=True)
        gc.collect()


if __name__ == "__main__":
    main()
