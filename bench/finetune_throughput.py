"""Fine-tuning throughput and time to accuracy: tlflow's fine-tune stage against the Hugging Face
Trainer, twice.

All three contenders fine-tune `minilm-l6` (all-MiniLM-L6-v2 with a fresh classification head) on
the same seeded, stratified SST-2 training sentences (default 1,536) for one epoch: batch 32,
AdamW at 1e-4 with 6 % linear warm-up and weight decay 0.01, gradient clipping 1.0, max length
128, fp32, 2 intra-op threads; repeat r uses seed `--seed` (42) + r for all three (head
initialisation, batch order, dropout), so accuracies are medians over seeds, not one seed's luck.

* ours: the fine-tune stage's model and loop (`build_task_model` + `tlflow.training.loop.finetune`, what
  `train_task_model` runs): length-grouped batches, dynamic padding, fused AdamW without decay on
  biases/LayerNorm, the speed-ups of `finetune.speedups` (all on by default): the sequence
  classifier's last layer computed for [CLS] only (`cls_only`),
  the word-embedding gradient kept between steps (`kept_embedding_grad`), cheaper dropout masks
  (`fast_dropout`), one resumable checkpoint after the last step (its write, ~0.5 s, is recorded
  apart and not counted as training time: the Trainers here save nothing);
* trainer-padded: the Trainer as `run_glue.py` sets it up by default: every sentence padded to 128
  (`pad_to_max_length`), `default_data_collator`, random sampler;
* trainer-best: the Trainer at its best on this data: dynamic padding
  (`DataCollatorWithPadding`) and `train_sampling_strategy="group_by_length"` (the transformers 5
  name of `group_by_length`).

Every `--eval-every` steps each contender's model is scored on the 872-sentence SST-2 dev split by
the same evaluation code (tlflow's task evaluation); that time is taken out of the training time.
Reported per run: samples/s (training time only), training seconds until dev accuracy first
reaches `--target`, and the final dev accuracy. Runs alternate ours, padded, best, ... and medians
are reported; each run waits for a quiet machine first.

    .venv/bin/python bench/finetune_throughput.py [--rows N --repeats R --eval-every S --seed S --target A]
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
from benchlib import CpuMeter, machine, median, wait_for_quiet
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.modeling.models import build_task_model, load_tokenizer, resolve_base
from tlflow.runtime import apply_defaults
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import get_task_type
from tlflow.training.loop import finetune

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "finetune_throughput.json"
CONTENDERS = ("ours", "trainer-padded", "trainer-best")
SEED = 42
TARGET = 0.75  # dev accuracy every contender reaches within 1,536 sentences


class Curve:
    """Dev accuracy against training seconds: evaluation time is measured and left out."""

    def __init__(self, score) -> None:
        self.score, self.points, self.eval_seconds = score, [], 0.0
        self.checkpoint_seconds = 0.0  # ours writes a resumable checkpoint after the last step; not training time
        self.started = time.perf_counter()

    def __call__(self, model, step: int) -> float:
        began = time.perf_counter()
        train_seconds = began - self.started - self.eval_seconds
        acc = self.score(model)
        self.eval_seconds += time.perf_counter() - began
        self.points.append({"step": step, "train_seconds": train_seconds, "dev_accuracy": acc})
        return acc



def setup(rows: int, eval_every: int):
    cfg = load_config(ROOT / "configs" / "sst2.yaml", [
        f"data.max_train_rows={rows}", "model.max_length=128", "finetune.epochs=1", "finetune.batch_size=32",
        "finetune.learning_rate=1e-4", "finetune.warmup_ratio=0.06", "finetune.weight_decay=0.01",
        "finetune.max_grad_norm=1.0", "finetune.checkpoint_every_steps=100000", "finetune.threads=2",
        f"finetune.seed={SEED}", f"finetune.eval_every_steps={eval_every}",
    ])
    loaded = load_labelled_data(cfg.data, get_task_type(cfg.task.type).dataset_spec())
    tokenizer = load_tokenizer("minilm-l6")
    return cfg, loaded, tokenizer


def scorer(cfg, loaded, tokenizer):
    task, settings = get_task_type(cfg.task.type), TaskSettings.from_config(cfg)
    dev = loaded.splits["validation"]
    return lambda model: task.evaluate(model, tokenizer, dev, loaded.label_names, settings).metrics["accuracy"]


def run_ours(cfg, loaded, tokenizer, curve: Curve) -> tuple[float, int]:
    task, settings = get_task_type(cfg.task.type), TaskSettings.from_config(cfg)
    features = task.train_features(loaded.splits["train"], loaded.label_names, tokenizer, settings)
    model = build_task_model(cfg.model, task.model_head, loaded.label_names, len(tokenizer), cfg.finetune.seed)
    calls = []

    def evaluate(m):
        calls.append(None)
        return {"accuracy": curve(m, len(calls) * cfg.finetune.eval_every_steps)}

    curve.started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = finetune(model, features, cfg.finetune, tokenizer.pad_token_id, Path(tmp), evaluate=evaluate,
                          progress=False)
    curve.points[-1]["step"] = result.steps  # the last call is the final evaluation
    curve.checkpoint_seconds = result.checkpoint_seconds
    return result.samples / result.seconds, result.steps


class _EvalEvery(TrainerCallback):
    def __init__(self, curve: Curve, every: int, model) -> None:
        self.curve, self.every, self.model = curve, every, model

    def on_train_begin(self, args, state, control, **kwargs):
        self.curve.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 and state.global_step != state.max_steps:
            self.curve(self.model, state.global_step)


def run_trainer(cfg, loaded, tokenizer, curve: Curve, padded: bool) -> tuple[float, int]:
    names = loaded.label_names
    torch.manual_seed(cfg.finetune.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_base("minilm-l6"), num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, dtype=torch.float32,
    )
    train = loaded.splits["train"]
    index = {n: i for i, n in enumerate(names)}
    enc = tokenizer(list(train["text"]), truncation=True, max_length=128,
                    padding="max_length" if padded else False)
    data = Dataset.from_dict({**enc, "labels": [index[x] for x in train["label"]]})
    f = cfg.finetune
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=f.batch_size, num_train_epochs=f.epochs,
            learning_rate=f.learning_rate, warmup_steps=f.warmup_ratio, weight_decay=f.weight_decay,  # a ratio when < 1
            max_grad_norm=f.max_grad_norm, seed=f.seed, report_to=[], save_strategy="no", logging_strategy="no",
            use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
            **({} if padded else {"train_sampling_strategy": "group_by_length"}),
        )
        collator = default_data_collator if padded else DataCollatorWithPadding(tokenizer)
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator,
                          callbacks=[_EvalEvery(curve, f.eval_every_steps, model)])
        output = trainer.train()
    seconds = output.metrics["train_runtime"] - curve.eval_seconds
    curve(model, output.global_step)
    return len(data) * f.epochs / seconds, output.global_step


def time_to(points: list[dict], target: float) -> float | None:
    """Training seconds at the first evaluation with dev accuracy >= `target` (None: never)."""
    return next((p["train_seconds"] for p in points if p["dev_accuracy"] >= target), None)


def summarize(runs: dict[str, list[dict]], target: float) -> tuple[dict, dict]:
    """Medians per contender (seconds to `target` only when every run reached it) and ours' ratios."""
    def median_or_none(values):
        reached = [v for v in values if v is not None]
        return median(reached) if reached and len(reached) == len(values) else None

    summary = {
        name: {"median_samples_per_s": median([r["samples_per_s"] for r in rs]),
               "median_dev_accuracy": median([r["dev_accuracy"] for r in rs]),
               "median_seconds_to_target": median_or_none([time_to(r["curve"], target) for r in rs]),
               "runs_reaching_target": sum(time_to(r["curve"], target) is not None for r in rs)}
        for name, rs in runs.items()
    }
    ratios = {}
    if "ours" in summary:
        ours = summary["ours"]
        for n in [c for c in summary if c != "ours"]:
            ratios[f"ours_vs_{n}_samples_per_s"] = ours["median_samples_per_s"] / summary[n]["median_samples_per_s"]
            if ours["median_seconds_to_target"] and summary[n]["median_seconds_to_target"]:
                ratios[f"ours_vs_{n}_time_to_target"] = (summary[n]["median_seconds_to_target"]
                                                         / ours["median_seconds_to_target"])
            ratios[f"ours_minus_{n}_accuracy_points"] = 100 * (ours["median_dev_accuracy"]
                                                               - summary[n]["median_dev_accuracy"])
    return summary, ratios


def print_table(record: dict) -> None:
    target, summary = record["settings"]["target_accuracy"], record["summary"]
    print(f"\n| contender | samples/s | s to dev acc {target:.2f} | final dev accuracy |\n|---|---|---|---|")
    for name, s in summary.items():
        t = s["median_seconds_to_target"]
        print(f"| {name} | {s['median_samples_per_s']:.1f} | {'-' if t is None else f'{t:.1f}'} "
              f"({s['runs_reaching_target']}/{len(record['runs'][name])} runs) | {s['median_dev_accuracy']:.4f} |")
    print(" ".join(f"{k} {v:.2f}" for k, v in record["ratios"].items()))


def resummarize(path: Path, target: float) -> None:
    """Recompute the time-to-accuracy columns of a results file for another target, from its
    recorded dev curves (no training)."""
    record = json.loads(path.read_text(encoding="utf-8"))
    for rs in record["runs"].values():
        for r in rs:
            r["seconds_to_target"] = time_to(r["curve"], target)
    record["summary"], record["ratios"] = summarize(record["runs"], target)
    record["settings"]["target_accuracy"] = target
    record["resummarized"] = {"date": dt.date.today().isoformat(), "target_accuracy": target}
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print_table(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1536, help="SST-2 training sentences")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender, alternating")
    parser.add_argument("--eval-every", type=int, default=16, help="steps between dev evaluations")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the first repeat (repeat r: seed + r)")
    parser.add_argument("--target", type=float, default=TARGET, help="dev accuracy for the time-to-accuracy column")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--resummarize", type=Path, metavar="JSON",
                        help="recompute a results file's time to --target from its dev curves, without training")
    args = parser.parse_args()
    if args.resummarize:
        resummarize(args.resummarize, args.target)
        return
    apply_defaults()
    torch.set_num_threads(2)
    contenders = args.contenders.split(",")
    cfg, loaded, tokenizer = setup(args.rows, args.eval_every)
    score = scorer(cfg, loaded, tokenizer)
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    started = time.perf_counter()
    for repeat in range(args.repeats):
        # Each repeat uses its own seed (the same for all contenders): accuracy medians over seeds.
        cfg_r = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"seed": args.seed + repeat})})
        for name in contenders:
            waited, _ = wait_for_quiet(120, 0.2)
            meter = CpuMeter()
            curve = Curve(score)
            if name == "ours":
                samples_per_s, steps = run_ours(cfg_r, loaded, tokenizer, curve)
            else:
                samples_per_s, steps = run_trainer(cfg_r, loaded, tokenizer, curve, padded=name == "trainer-padded")
            outside = meter.other_load()
            final = curve.points[-1]["dev_accuracy"]
            to_target = time_to(curve.points, args.target)
            runs[name].append({"seed": args.seed + repeat, "samples_per_s": samples_per_s, "steps": steps,
                               "dev_accuracy": final, "seconds_to_target": to_target, "curve": curve.points,
                               "final_checkpoint_seconds": curve.checkpoint_seconds,
                               "outside_load": outside, "waited_s": waited})
            print(f"[{repeat + 1}/{args.repeats}] {name:15s} {samples_per_s:7.1f} samples/s  dev acc {final:.4f}  "
                  f"to {args.target:.2f}: {'-' if to_target is None else f'{to_target:.1f} s'}"
                  f"  (outside load {outside:.2f} CPU)", flush=True)
            gc.collect()
    summary, ratios = summarize(runs, args.target)
    record = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/finetune_throughput.py", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine(),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "settings": {"rows": args.rows, "repeats": args.repeats, "batch_size": 32, "epochs": 1, "max_length": 128,
                     "learning_rate": 1e-4, "threads": 2, "model": "minilm-l6", "eval_every": args.eval_every,
                     "target_accuracy": args.target, "first_seed": args.seed},
        "runs": runs, "summary": summary, "ratios": ratios,
        "wall_s": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print_table(record)


if __name__ == "__main__":
    main()
