"""Fine-tuning throughput and accuracy: tlflow's fine-tune loop against the Hugging Face Trainer on
identical work, with paired seeds.

Every contender fine-tunes `minilm-l6` (all-MiniLM-L6-v2 with a fresh classification head) on the
same seeded, stratified SST-2 training sentences of `configs/sst2.yaml` (8,000 by default) with
the same budget, optimizer settings (AdamW, fused, no decay on biases and LayerNorm; linear
warm-up and decay), fp32 and threads. The settings are frozen in `bench/settings/finetune.json`
(read at start, stored in the result with the file's hash and git commit).

* ours: the fine-tune stage's model and loop (`build_task_model` + `tlflow.training.loop.finetune`):
  length-grouped batches, dynamic padding and the speed-ups of `finetune.speedups` (`cls_only`,
  `kept_embedding_grad`, `fast_dropout`); its one checkpoint after the last step is timed apart.
* trainer-identical: the Trainer at its best on identical work: it trains on the very batches the
  loop trains on (the loop's own batch lists, handed to the Trainer as a batch sampler), with
  dynamic padding (`DataCollatorWithPadding`); the result records both batch lists' hash and the
  padded tokens, which must match ours.
* trainer-run-glue: `run_glue.py`'s behaviour with `--pad_to_max_length False`: dynamic padding,
  random order, no length grouping.
* trainer-padded-128 (footnote, `--footnote`): `run_glue.py`'s default, every row padded to 128.

A contender named in `speed_only_steps` (run_glue's behaviour, three times slower than the others)
runs the same schedule but stops after that many steps: its samples/s counts, its accuracy is
left out of the equivalence tests.

Each run is its own process started by this script with the same environment (the allocator
preloaded by `LD_PRELOAD`, jemalloc from Debian's libjemalloc2; the same thread counts); every
run records from inside `torch.get_num_threads()` and the allocator mapped into it. Runs of one
seed form a pair (the seed sets head initialisation, batch order and dropout for all); the order
of the contenders rotates from seed to seed, and each run waits for a quiet machine first.

Reported: samples/s (training time only: dev evaluations and checkpoint writes left out) as
per-pair ratios with a Student-t interval (pooled over every job with the same settings, the same
code under test and the same CPU model, `pool_key`, with a job-and-pair bootstrap interval once
there are two jobs), accuracy on the 1,821-sentence SST-2
test split with a two one-sided test of equivalence at +-`equivalence_margin_pt` (paired by seed),
and the dev accuracy curve (every `dev_eval_every_steps`) to show whether the budget has
converged: the budget counts as plateaued when the median dev accuracy gained over the second half
of the runs is at most `plateau_max_gain_pt`. Each job is appended to
`bench/results/finetune_throughput.json` (a list; nothing is overwritten).

    .venv/bin/python bench/finetune_throughput.py [--seeds N] [--footnote]
    .venv/bin/python bench/finetune_throughput.py --quick     # smoke run: 256 rows, 2 seeds
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    CpuMeter,
    allocator_loaded,
    append_job,
    environment,
    git_file_state,
    load_settings,
    median,
    wait_for_quiet,
)
from stats import paired_ratios, ratio_summary, tost_paired

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "finetune_throughput.json"
QUICK_RESULTS = ROOT / "bench" / "results" / "finetune_throughput_quick.json"
SETTINGS = "finetune"
SETTINGS_FILE = ROOT / "bench" / "settings" / f"{SETTINGS}.json"
OURS = "ours"
TRAINERS = ("trainer-identical", "trainer-run-glue", "trainer-padded-128")
#: Settings that do not change what one run measures: jobs differing only in these are pooled.
NOT_POOLING_KEYS = ("about", "quick", "seeds", "first_seed", "baseline_seeds", "contenders", "footnote_contenders",
                    "speed_only_steps", "plateau_max_gain_pt")


# ------------------------------------------------------------------ one run (in its own process)

def prepare(s: dict, seed: int):
    """Config, data, tokenizer, task and the tokenized training features of one run."""
    from tlflow.config import load_config
    from tlflow.data.readers import load_labelled_data
    from tlflow.modeling.models import load_tokenizer
    from tlflow.task_types.base import TaskSettings
    from tlflow.task_types.registry import get_task_type

    cfg = load_config(ROOT / s["config"], [
        f"data.max_train_rows={s['rows']}", f"model.base={s['model']}", f"model.max_length={s['max_length']}",
        f"finetune.epochs={s['epochs']}", f"finetune.batch_size={s['batch_size']}",
        f"finetune.learning_rate={s['learning_rate']}", f"finetune.warmup_ratio={s['warmup_ratio']}",
        f"finetune.weight_decay={s['weight_decay']}", f"finetune.max_grad_norm={s['max_grad_norm']}",
        "finetune.checkpoint_every_steps=100000000", f"finetune.threads={s['threads']}", f"finetune.seed={seed}",
        f"finetune.eval_every_steps={s['dev_eval_every_steps'] or 100000000}",
    ])
    task = get_task_type(cfg.task.type)
    loaded = load_labelled_data(cfg.data, task.dataset_spec())
    tokenizer = load_tokenizer(s["model"])
    settings = TaskSettings.from_config(cfg)
    features = task.train_features(loaded.splits["train"], loaded.label_names, tokenizer, settings)
    return cfg, task, loaded, tokenizer, settings, features


def loop_batches(features: dict, cfg) -> list[list[int]]:
    """Every batch (example indices) the fine-tune loop trains on, in order: the loop's own
    `_remaining_batches` over its own `LoopSettings`."""
    from tlflow.training.loop import _remaining_batches
    from tlflow.training.settings import LoopSettings

    lengths = [len(x) for x in features["input_ids"]]
    return list(_remaining_batches(lengths, LoopSettings.for_finetune(cfg.finetune, len(lengths)), 0))


def work_of(batches: list[list[int]], lengths: list[int]) -> dict:
    """What a list of batches costs: steps, real and padded tokens, and a hash of the batches."""
    return {"steps": len(batches), "samples": sum(map(len, batches)),
            "real_tokens": sum(lengths[i] for b in batches for i in b),
            "padded_tokens": sum(len(b) * max(lengths[i] for i in b) for b in batches),
            "batches_sha256": hashlib.sha256(json.dumps(batches).encode()).hexdigest()}


class Clock:
    """Training seconds and the dev accuracy curve; evaluation time is measured and left out."""

    def __init__(self, score) -> None:
        self.score, self.points, self.eval_seconds = score, [], 0.0
        self.started = self.stopped = time.perf_counter()

    def start(self) -> None:
        self.started, self.eval_seconds = time.perf_counter(), 0.0

    def stop(self) -> None:
        self.stopped = time.perf_counter()

    @property
    def train_seconds(self) -> float:
        return self.stopped - self.started - self.eval_seconds

    def evaluate(self, model, step: int) -> float:
        began = time.perf_counter()
        trained = began - self.started - self.eval_seconds
        acc = self.score(model)
        self.eval_seconds += time.perf_counter() - began
        self.points.append({"step": step, "train_seconds": trained, "dev_accuracy": acc})
        return acc


def run_ours(s: dict, seed: int) -> dict:
    from tlflow.modeling.models import build_task_model
    from tlflow.training.loop import finetune

    cfg, task, loaded, tokenizer, settings, features = prepare(s, seed)
    dev = loaded.splits["validation"]
    clock = Clock(lambda m: task.evaluate(m, tokenizer, dev, loaded.label_names, settings).metrics["accuracy"])
    model = build_task_model(cfg.model, task.model_head, loaded.label_names, len(tokenizer), seed)
    every = s["dev_eval_every_steps"]
    batches = loop_batches(features, cfg)
    threads_inside = []

    def evaluate(m):
        import torch

        threads_inside.append(torch.get_num_threads())
        step = min(len(clock.points) * every + every, len(batches)) if every else len(batches)
        return {"accuracy": clock.evaluate(m, step)}

    with tempfile.TemporaryDirectory() as tmp:
        result = finetune(model, features, cfg.finetune, tokenizer.pad_token_id, Path(tmp), evaluate=evaluate,
                          progress=False)
    clock.points[-1]["step"] = result.steps  # the last call is the loop's final evaluation
    clock.points[-1]["train_seconds"] = result.seconds
    return finish(s, task, loaded, tokenizer, settings, model, result.samples / result.seconds, result.seconds,
                  clock, work_of(batches, [len(x) for x in features["input_ids"]]),
                  {"final_checkpoint_seconds": result.checkpoint_seconds, "torch_threads_training": threads_inside[-1]})


class LoopBatchSampler:
    """A batch sampler that yields the fine-tune loop's batches: epoch e (the e-th iteration)
    gives `epoch_batches(lengths, batch_size, seed, e)`, as the loop's `_remaining_batches` does.
    The batches handed out are kept, to compare with the loop's."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.epoch, self.served = 0, []

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        from tlflow.modeling.batching import epoch_batches

        batches = epoch_batches(self.lengths, self.batch_size, self.seed, self.epoch)
        self.epoch += 1
        for batch in batches:
            self.served.append(batch)
            yield batch


class CountingCollator:
    """Wraps a collator and records the samples, real and padded tokens of every batch it builds."""

    def __init__(self, inner) -> None:
        self.inner, self.batches = inner, []

    def __call__(self, features):
        batch = self.inner(features)
        mask = batch["attention_mask"]
        self.batches.append((mask.shape[0], int(mask.sum()), mask.numel()))
        return batch

    def work(self, steps: int) -> dict:
        """The first `steps` batches (the Trainer builds one batch ahead of the step it trains)."""
        used = self.batches[:steps]
        return {"steps": len(used), "samples": sum(b[0] for b in used), "real_tokens": sum(b[1] for b in used),
                "padded_tokens": sum(b[2] for b in used)}


def run_trainer(s: dict, seed: int, kind: str) -> dict:
    import torch
    from datasets import Dataset
    from torch.utils.data import DataLoader
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from tlflow.modeling.models import resolve_base
    from tlflow.training.settings import LoopSettings, set_threads

    cfg, task, loaded, tokenizer, settings, features = prepare(s, seed)
    set_threads(s["threads"])
    dev = loaded.splits["validation"]
    clock = Clock(lambda m: task.evaluate(m, tokenizer, dev, loaded.label_names, settings).metrics["accuracy"])
    names = loaded.label_names
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_base(s["model"]), num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, dtype=torch.float32,
    )
    lengths = [len(x) for x in features["input_ids"]]
    total_steps = LoopSettings.for_finetune(cfg.finetune, len(lengths)).total_steps
    data = Dataset.from_dict({"input_ids": features["input_ids"], "labels": features["labels"]})
    padding = {"padding": "max_length", "max_length": s["max_length"]} if kind == "trainer-padded-128" else {}
    collator = CountingCollator(DataCollatorWithPadding(tokenizer, **padding))
    sampler = LoopBatchSampler(lengths, s["batch_size"], seed) if kind == "trainer-identical" else None
    every = s["dev_eval_every_steps"]
    last_step = min(total_steps, s.get("speed_only_steps", {}).get(kind, total_steps))
    threads_inside = []

    class Timing(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock.start()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == last_step:  # the schedule is the full run's; a speed-only run stops here
                threads_inside.append(torch.get_num_threads())
                clock.stop()
                control.should_training_stop = True
            elif every and state.global_step % every == 0:
                clock.evaluate(model, state.global_step)

    class IdenticalBatches(Trainer):
        """The Trainer fed the loop's batch lists through a batch sampler."""

        def get_train_dataloader(self) -> DataLoader:
            return DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                              num_workers=0)

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=s["batch_size"], max_steps=total_steps,
            learning_rate=s["learning_rate"], warmup_steps=s["warmup_ratio"],  # a ratio when < 1
            weight_decay=s["weight_decay"], max_grad_norm=s["max_grad_norm"], seed=seed, report_to=[],
            save_strategy="no", logging_strategy="no", use_cpu=True, dataloader_num_workers=0,
            disable_tqdm=True, remove_unused_columns=False,
        )
        trainer = (IdenticalBatches if sampler else Trainer)(
            model=model, args=args, train_dataset=data, data_collator=collator, callbacks=[Timing()])
        output = trainer.train()
    clock.evaluate(model, output.global_step)
    seconds = clock.train_seconds
    clock.points[-1]["train_seconds"] = seconds
    work = {**collator.work(output.global_step),
            "batches_sha256": hashlib.sha256(json.dumps(sampler.served[:output.global_step]).encode()).hexdigest()
            if sampler else None}
    return finish(s, task, loaded, tokenizer, settings, model, work["samples"] / seconds, seconds, clock, work,
                  {"optimizer": str(args.optim), "torch_threads_training": threads_inside[-1],
                   "speed_only": last_step < total_steps})


def finish(s, task, loaded, tokenizer, settings, model, samples_per_s, seconds, clock, work, extra) -> dict:
    """The run's record: speed, work, dev curve, test accuracy (with the per-sentence outcomes,
    packed as hex) and what the process ran with."""
    import numpy as np
    import torch
    import transformers

    test = task.evaluate(model, tokenizer, loaded.splits["test"], loaded.label_names, settings)
    correct = test.stats[:, 0].astype(bool)
    return {"samples_per_s": samples_per_s, "train_seconds": seconds, "work": work,
            "dev_curve": clock.points, "dev_accuracy": clock.points[-1]["dev_accuracy"],
            "test_accuracy": float(test.metrics["accuracy"]), "test_examples": int(len(correct)),
            "test_correct_hex": np.packbits(correct).tobytes().hex(),
            "process": {"torch_threads": torch.get_num_threads(), "allocator": allocator_loaded(),
                        "ld_preload": os.environ.get("LD_PRELOAD", ""), "pid": os.getpid(),
                        "torch": torch.__version__, "transformers": transformers.__version__},
            **extra}


def worker(spec: str) -> None:
    """Run one contender with one seed; the record goes to the file `out` as JSON."""
    job = json.loads(spec)
    from tlflow.runtime import apply_defaults

    apply_defaults()
    s, seed, name = job["settings"], job["seed"], job["contender"]
    record = run_ours(s, seed) if name == OURS else run_trainer(s, seed, name)
    Path(job["out"]).write_text(json.dumps(record), encoding="utf-8")


# ------------------------------------------------------------------ the job (this process)

def run_one(name: str, seed: int, s: dict, env: dict) -> dict:
    """One contender and seed in a fresh process with `env`, after waiting for a quiet machine;
    with the outside load before, during and after."""
    waited, load_before = wait_for_quiet(s["quiet_wait_s"], s["quiet_threshold_cpu"])
    loadavg_before = os.getloadavg()
    meter = CpuMeter(with_children=True)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        spec = json.dumps({"contender": name, "seed": seed, "settings": s, "out": str(out)})
        proc = subprocess.run([sys.executable, __file__, "--worker", spec], env=env, cwd=ROOT)
        if proc.returncode != 0 or not out.is_file():
            raise SystemExit(f"{name} (seed {seed}) failed with exit code {proc.returncode}")
        record = json.loads(out.read_text(encoding="utf-8"))
    during = meter.other_load()
    after = CpuMeter()
    time.sleep(1.0)
    record.update(contender=name, seed=seed, process_wall_s=time.perf_counter() - began, waited_s=waited,
                  load={"outside_before": load_before, "outside_during": during, "outside_after": after.other_load(),
                        "loadavg_before": list(loadavg_before), "loadavg_after": list(os.getloadavg())})
    return record


def child_env(s: dict) -> dict:
    env = dict(os.environ, **s["environment"], HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    for lib in filter(None, env.get("LD_PRELOAD", "").split(":")):
        if not Path(lib).is_file():
            raise SystemExit(f"{SETTINGS_FILE}: environment.LD_PRELOAD names {lib}, which is missing "
                             "(install it: apt-get install -y libjemalloc2)")
    return env


#: The library code "ours" runs (the loop, its optimizer and speed-ups, the model and batching code).
CODE_UNDER_TEST = ("tlflow/training", "tlflow/modeling")


def code_sha256() -> str:
    """Hash of every Python file of `CODE_UNDER_TEST` (paths and contents, sorted)."""
    digest = hashlib.sha256()
    for folder in CODE_UNDER_TEST:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def pool_key(s: dict, code: str, cpu: str | None) -> str:
    """Hash of what defines one run: the settings, the code under test (`code_sha256`) and the CPU
    model. Jobs with equal keys are pooled."""
    kept = {k: v for k, v in s.items() if k not in NOT_POOLING_KEYS}
    return hashlib.sha256(json.dumps([kept, code, cpu], sort_keys=True).encode()).hexdigest()[:16]


def compare(runs: list[dict], jobs: list[str], other: str, s: dict) -> dict | None:
    """Ours against `other` over the seeds both ran in the same job: speed ratios and TOST on
    test accuracy (points)."""
    by = {}
    for r, job in zip(runs, jobs):
        by.setdefault((job, r["seed"]), {})[r["contender"]] = r
    pairs = [(k[0], v[OURS], v[other]) for k, v in by.items() if OURS in v and other in v]
    if not pairs:
        return None
    out = {"pairs": len(pairs),
           "samples_per_s_ratio": ratio_summary(paired_ratios([p[1]["samples_per_s"] for p in pairs],
                                                              [p[2]["samples_per_s"] for p in pairs]),
                                                [p[0] for p in pairs], s["ratio_confidence"]),
           "padded_tokens_ratio": median([per_sample(p[2]["work"]) / per_sample(p[1]["work"]) for p in pairs]),
           "identical_batches": all(p[1]["work"]["batches_sha256"] == p[2]["work"]["batches_sha256"] for p in pairs),
           "speed_only": any(p[2].get("speed_only") for p in pairs)}
    # A run stopped early is not scored against ours. A seed trains to the same weights in every job
    # (deterministic training), so its accuracies count once: the first job's pair of each seed.
    scored = {}
    for p in pairs:
        if not p[2].get("speed_only"):
            scored.setdefault(p[1]["seed"], p)
    if len(scored) >= 2:
        out["accuracy_seeds"] = len(scored)
        out["test_accuracy_tost_pt"] = tost_paired([100 * p[1]["test_accuracy"] for p in scored.values()],
                                                   [100 * p[2]["test_accuracy"] for p in scored.values()],
                                                   s["equivalence_margin_pt"], s["tost_alpha"])
    return out


def per_sample(work: dict) -> float:
    """Padded tokens per sample trained: comparable between a full run and one stopped early."""
    return work["padded_tokens"] / work["samples"]


def summarize(runs: list[dict], jobs: list[str], s: dict) -> dict:
    names = list(dict.fromkeys(r["contender"] for r in runs))
    per = {n: {"runs": sum(r["contender"] == n for r in runs),
               "median_samples_per_s": median([r["samples_per_s"] for r in runs if r["contender"] == n]),
               "median_test_accuracy": median([r["test_accuracy"] for r in runs if r["contender"] == n]),
               "median_dev_accuracy": median([r["dev_accuracy"] for r in runs if r["contender"] == n]),
               "median_dev_gain_last_half_pt": median([plateau(r["dev_curve"]) for r in runs if r["contender"] == n])}
           for n in names}
    versus = {n: compare(runs, jobs, n, s) for n in names if n != OURS}
    full = [r for r in runs if not r.get("speed_only")]
    gain = median([plateau(r["dev_curve"]) for r in full]) if full else None
    limit = s.get("plateau_max_gain_pt")
    return {"contenders": per, "ours_vs": {k: v for k, v in versus.items() if v},
            "budget": {"median_dev_gain_last_half_pt": gain, "plateau_max_gain_pt": limit,
                       "plateaued": None if gain is None or limit is None else gain <= limit}}


def plateau(curve: list[dict]) -> float:
    """Dev accuracy gained (points) over the second half of the run: near 0 when converged."""
    last = curve[-1]
    mid = min(curve, key=lambda p: abs(p["step"] - last["step"] / 2))
    return 100 * (last["dev_accuracy"] - mid["dev_accuracy"])


def convert_legacy(path: Path) -> None:
    """A results file of the single-job format (before identical batches) becomes a list whose
    first entry keeps that job's data under `legacy`."""
    if not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(old, dict):
        entry = {"date": old.get("date"), "command": old.get("command"), "machine": old.get("machine", {}),
                 "legacy": old, "note": "single-job format of 2026-12-01: unequal batches, glibc malloc, 1,536 rows"}
        path.write_text(json.dumps([entry], indent=2) + "\n", encoding="utf-8")


def pooled(path: Path, key: str, job: dict) -> dict:
    """Summary over this job and every earlier job in `path` with the same pool key."""
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    same = [j for j in earlier if j.get("pool_key") == key] + [job]
    runs = [r for j in same for r in j["runs"]]
    ids = [j["job_id"] for j in same for _ in j["runs"]]
    return {"jobs": [j["job_id"] for j in same], **summarize(runs, ids, job["settings"])}


def print_table(job: dict) -> None:
    p, s = job["pooled"], job["settings"]
    b = p["budget"]
    gain = "n/a" if b["median_dev_gain_last_half_pt"] is None else f"{b['median_dev_gain_last_half_pt']:+.1f} pt"
    print(f"\n{len(p['jobs'])} job(s) pooled, {s['rows']:,} rows, {s['epochs']} epoch(s); median dev gain over the "
          f"2nd half {gain} (plateaued at <= {b['plateau_max_gain_pt']} pt: {b['plateaued']})")
    print("| contender | runs | samples/s | test accuracy | dev accuracy | dev gain, 2nd half (pt) |\n|---|---|---|---|---|---|")
    for name, c in p["contenders"].items():
        print(f"| {name} | {c['runs']} | {c['median_samples_per_s']:.1f} | {c['median_test_accuracy']:.4f} | "
              f"{c['median_dev_accuracy']:.4f} | {c['median_dev_gain_last_half_pt']:+.1f} |")
    for name, v in p["ours_vs"].items():
        r = v["samples_per_s_ratio"]
        line = (f"ours vs {name}: {r['geomean']:.2f}x samples/s over {v['pairs']} pairs "
                f"(range {r['min']:.2f}-{r['max']:.2f}")
        if "low" in r:
            line += f", {100 * r['confidence']:.0f} % interval {r['low']:.2f}-{r['high']:.2f}"
        line += f"), padded tokens {v['padded_tokens_ratio']:.3f}x ours, identical batches {v['identical_batches']}"
        line += ", speed only (stopped early)" if v.get("speed_only") else ""
        t = v.get("test_accuracy_tost_pt")
        if t:
            line += (f"; test accuracy {t['mean_difference']:+.2f} pt, {100 * t['interval_confidence']:.0f} % "
                     f"interval [{t['low']:+.2f}, {t['high']:+.2f}] over {v['accuracy_seeds']} seeds, "
                     f"equivalent at +-{t['margin']} pt: "
                     f"{t['equivalent']} (p {t['p']:.3f})")
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, help="paired seeds (default: the settings' `seeds`)")
    parser.add_argument("--first-seed", type=int, help="seed of the first pair (default: the settings')")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run with the settings' `quick` overrides, appended to "
                        f"{QUICK_RESULTS.relative_to(ROOT)}")
    parser.add_argument("--footnote", action="store_true", help="also run the footnote contenders (pad to 128)")
    parser.add_argument("--contenders", help="comma-separated subset of the settings' contenders")
    parser.add_argument("--output", type=Path, help="results file (a list of jobs; appended)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    s, sha = load_settings(SETTINGS)
    frozen = {"path": str(SETTINGS_FILE.relative_to(ROOT)), "sha256": sha, **git_file_state(SETTINGS_FILE)}
    if args.quick:
        s = {**s, **s["quick"]}
    s = {**s, **{k: v for k, v in (("seeds", args.seeds), ("first_seed", args.first_seed)) if v is not None}}
    names = args.contenders.split(",") if args.contenders else s["contenders"]
    names += s["footnote_contenders"] if args.footnote else []
    unknown = [n for n in names if n not in (OURS, *TRAINERS)]
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}: choose from {[OURS, *TRAINERS]}")
    output = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    env = child_env(s)
    convert_legacy(output)
    job_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    env_before, started = environment(), time.perf_counter()
    code = code_sha256()  # before any run: the code the runs import
    runs = []
    for i in range(s["seeds"]):
        seed = s["first_seed"] + i
        order = names[i % len(names):] + names[: i % len(names)]  # rotated: no contender always first
        for name in order:
            if i >= s["baseline_seeds"].get(name, s["seeds"]):
                continue
            r = run_one(name, seed, s, env)
            runs.append(r)
            print(f"[seed {seed}] {name:18s} {r['samples_per_s']:7.1f} samples/s  test acc {r['test_accuracy']:.4f}  "
                  f"dev acc {r['dev_accuracy']:.4f}  threads {r['process']['torch_threads']} "
                  f"{r['process']['allocator']}  outside load {r['load']['outside_during']:.2f} CPU", flush=True)
    job = {"job_id": job_id, "date": dt.date.today().isoformat(),
           "command": " ".join([".venv/bin/python", "bench/finetune_throughput.py", *map(shlex.quote, sys.argv[1:])]),
           "quick": args.quick, "settings": s, "settings_file": frozen, "code_sha256": code,
           "pool_key": pool_key(s, code, env_before["machine"].get("Model name")),
           "machine": env_before["machine"], "environment": {"before": env_before, "after": environment(),
                                                              "child": {k: env[k] for k in s["environment"]}},
           "wall_s": time.perf_counter() - started, "runs": runs}
    job["job_summary"] = summarize(runs, [job_id] * len(runs), s)
    job["pooled"] = pooled(output, job["pool_key"], job)
    append_job(output, job)
    print_table(job)


if __name__ == "__main__":
    main()
