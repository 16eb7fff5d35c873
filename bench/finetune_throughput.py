"""Fine-tuning throughput: tlflow's fine-tune stage against the Hugging Face Trainer, twice.

All three contenders fine-tune `minilm-l6` (all-MiniLM-L6-v2 with a fresh classification head) on
the same seeded, stratified 1,024 SST-2 training sentences for one epoch: batch 32, AdamW at 1e-4
with 6 % linear warm-up and weight decay 0.01, max length 128, fp32, seed 42, 2 intra-op threads.

* ours: `tlflow.finetuning.train_task_model` (the fine-tune stage: length-grouped batches, dynamic
  padding, AdamW without decay on biases/LayerNorm, checkpoint only at the end);
* trainer-padded: the Trainer as `run_glue.py` sets it up by default: every sentence padded to 128
  (`pad_to_max_length`), `default_data_collator`, random sampler;
* trainer-best: the Trainer at its best on this data: dynamic padding
  (`DataCollatorWithPadding`) and `train_sampling_strategy="group_by_length"` (the transformers 5
  name of `group_by_length`).

Throughput is training samples per second of the training call only (`TrainResult.seconds` for
ours, `train_runtime` for the Trainer); accuracy is measured afterwards on the 872-sentence SST-2
dev split with the same evaluation code for all three. Runs alternate ours, padded, best, ... and
medians are reported; each run waits for a quiet machine first.

    .venv/bin/python bench/finetune_throughput.py [--rows N --repeats R]
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
    TrainingArguments,
    default_data_collator,
)

from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.finetuning import train_task_model
from tlflow.models import load_tokenizer, resolve_base
from tlflow.runtime import apply_defaults
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import get_task_type

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "finetune_throughput.json"
CONTENDERS = ("ours", "trainer-padded", "trainer-best")


def setup(rows: int):
    cfg = load_config(ROOT / "configs" / "sst2.yaml", [
        f"data.max_train_rows={rows}", "model.max_length=128", "finetune.epochs=1", "finetune.batch_size=32",
        "finetune.learning_rate=1e-4", "finetune.warmup_ratio=0.06", "finetune.weight_decay=0.01",
        "finetune.checkpoint_every_steps=100000", "finetune.threads=2", "finetune.seed=42",
    ])
    loaded = load_labelled_data(cfg.data, cfg.task.type)
    tokenizer = load_tokenizer("minilm-l6")
    return cfg, loaded, tokenizer


def run_ours(cfg, loaded, tokenizer) -> tuple[torch.nn.Module, float]:
    task, settings = get_task_type(cfg.task.type), TaskSettings.from_config(cfg)
    features = task.train_features(loaded.splits["train"], loaded.label_names, tokenizer, settings)
    with tempfile.TemporaryDirectory() as tmp:
        model, result = train_task_model(cfg, features, None, loaded.label_names, tokenizer, "minilm-l6",
                                         Path(tmp), progress=False)
    return model, result.samples / result.seconds


def run_trainer(cfg, loaded, tokenizer, padded: bool) -> tuple[torch.nn.Module, float]:
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
            seed=f.seed, report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True,
            **({} if padded else {"train_sampling_strategy": "group_by_length"}),
        )
        collator = default_data_collator if padded else DataCollatorWithPadding(tokenizer)
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator)
        metrics = trainer.train().metrics
    return model, metrics["train_samples_per_second"]


def accuracy(model, cfg, loaded, tokenizer) -> float:
    task = get_task_type(cfg.task.type)
    return task.evaluate(model, tokenizer, loaded.splits["validation"], loaded.label_names,
                         TaskSettings.from_config(cfg)).metrics["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1024, help="SST-2 training sentences")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender, alternating")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    apply_defaults()
    torch.set_num_threads(2)
    cfg, loaded, tokenizer = setup(args.rows)
    runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for name in CONTENDERS:
            waited, load_before = wait_for_quiet(120, 0.2)
            meter = CpuMeter()
            if name == "ours":
                model, samples_per_s = run_ours(cfg, loaded, tokenizer)
            else:
                model, samples_per_s = run_trainer(cfg, loaded, tokenizer, padded=name == "trainer-padded")
            outside = meter.other_load()
            acc = accuracy(model, cfg, loaded, tokenizer)
            runs[name].append({"samples_per_s": samples_per_s, "dev_accuracy": acc, "outside_load": outside,
                               "waited_s": waited})
            print(f"[{repeat + 1}/{args.repeats}] {name:15s} {samples_per_s:7.1f} samples/s  dev acc {acc:.4f}"
                  f"  (outside load {outside:.2f} CPU)", flush=True)
            del model
            gc.collect()
    summary = {
        name: {"median_samples_per_s": median([r["samples_per_s"] for r in rs]),
               "median_dev_accuracy": median([r["dev_accuracy"] for r in rs])}
        for name, rs in runs.items()
    }
    ours = summary["ours"]
    ratios = {f"ours_vs_{n}": ours["median_samples_per_s"] / summary[n]["median_samples_per_s"]
              for n in CONTENDERS[1:]}
    record = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/finetune_throughput.py", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine(),
        "settings": {"rows": args.rows, "repeats": args.repeats, "batch_size": 32, "epochs": 1, "max_length": 128,
                     "learning_rate": 1e-4, "threads": 2, "model": "minilm-l6"},
        "runs": runs, "summary": summary, "ratios": ratios,
        "wall_s": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print("\n| contender | samples/s (median) | dev accuracy (median) |\n|---|---|---|")
    for name in CONTENDERS:
        s = summary[name]
        print(f"| {name} | {s['median_samples_per_s']:.1f} | {s['median_dev_accuracy']:.4f} |")
    print(" ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
