"""Causal-LM throughput: tlflow's LoRA and full fine-tuning and its generation-based evaluation,
against the Hugging Face Trainer and `transformers.pipeline("text-generation")`, on identical work.

Task: AG News headlines (prompt: the article's description in the chat template, target: its
title), the first `--rows` rows of data/ag_news/test.csv, max length 128, fp32, `--threads`
intra-op threads. Every contender runs in its own process (so its peak RSS is its own) with the
same environment (allocator variables included, recorded), and the pairs alternate
(ours, Hugging Face, ours, Hugging Face, ...) over `--repeats` repeats in one job.

Training pairs run the IDENTICAL list of batches: the batches tlflow's loop draws for the run
(`LoopSettings.for_finetune` + `tlflow.modeling.batching.epoch_batches`: length-grouped, fixed by
the seed) -- the same row indices, in the same batches, in the same order, right-padded to the
longest row of each batch with the same pad id -- for the same steps, AdamW learning rate (linear
schedule, warm-up steps, weight decay 0.01, clipping 1.0), seed and threads:

* ours-lora / ours-full: `tlflow.training.loop.finetune` (what `train_task_model` runs) with LoRA
  (r 8, alpha 16, dropout 0.05, q_proj/v_proj) or every weight; loss on the target tokens only;
  the default speed-ups (those that apply);
* trainer-lora / trainer-full: `Trainer` with `DataCollatorForLanguageModeling(mlm=False)` (its labels:
  every non-padding token, the usual causal-LM recipe) fed those batch lists through a batch
  sampler (`get_train_dataloader` overridden), at its best otherwise: no evaluation, saving or
  logging, no progress bar, `dataloader_num_workers` 0, no pinned memory, fused AdamW, fp32.

What each contender executes is read at the model's forward (a pre-hook): a SHA-256 of every
batch's input_ids and attention_mask in order (equal digests = identical batches), non-padding
tokens, padded tokens, and the target tokens among them. Both are timed the same way: from the
first forward to the end of the last optimizer step (a global step post-hook); each tool's own
figure (the loop's `seconds`, the Trainer's `train_runtime`) is recorded beside it. The ratio of a
pair is ours' tokens/s over Hugging Face's on the same tokens, per repeat; reported as median and
min-max over repeats.

* ours-generate: the text-generation task type's evaluation `generate` (left-padded batches sorted
  by length, KV cache, greedy) on `--gen-rows` prompts;
* pipeline-generate: `pipeline("text-generation")` on the same prompts, batch size, greedy,
  `max_new_tokens` (it keeps the prompts' order: its batches are not length-sorted). Generated
  tokens are counted alike for both: per prompt, the tokens before end-of-sequence (the
  pipeline's by re-tokenizing its texts) plus the end-of-sequence token when it came before
  `max_new_tokens`.

Each contender records its threads (`torch.get_num_threads()` inside it) and the CPUs other
processes kept busy while it was timed (`benchlib.CpuMeter`). Results are appended to
bench/results/generation_throughput.json (a list of runs; old runs are kept).

    .venv/bin/python bench/generation_throughput.py [--model smollm2-135m|PATH] [--rows 64 --batch 8 --repeats 3 ...]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import CpuMeter, machine  # bench/ is on the path: this file runs as a script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "generation_throughput.json"
PAIRS = (("ours-lora", "trainer-lora"), ("ours-full", "trainer-full"), ("ours-generate", "pipeline-generate"))
PROMPT = "Write a short headline for this news article.\n\n{description}"
#: Environment variables that change allocation or threading; every contender gets (and records) the same.
ENV_KEYS = re.compile(r"MALLOC|LD_PRELOAD|OMP_|MKL_|KMP_|PYTORCH_|GOMP|TORCH_")


def rows(n: int) -> list[tuple[str, str]]:
    with open(ROOT / "data" / "ag_news" / "test.csv", encoding="utf-8", newline="") as f:
        out = [(PROMPT.format(description=r[2].replace("\\", " ")), r[1]) for r in csv.reader(f)]
    return out[:n]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_env() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items()) if ENV_KEYS.search(k)}


class Executed:
    """What reaches the model's forward while training, and when: the first forward's start, every
    optimizer step's end, a digest of the batches, token counts, and the threads in use."""

    def __init__(self, model, targets_of: dict[tuple[int, ...], int]) -> None:
        import torch
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.targets_of, self.digest = targets_of, hashlib.sha256()
        self.batches = self.tokens = self.padded_tokens = self.target_tokens = self.loss_tokens = 0
        self.first: float | None = None
        self.step_ends: list[float] = []
        self.threads = torch.get_num_threads()
        self.meter: CpuMeter | None = None
        model.register_forward_pre_hook(self._forward, with_kwargs=True)
        register_optimizer_step_post_hook(lambda *_: self.step_ends.append(time.perf_counter()))

    def _forward(self, module, args, kwargs) -> None:
        import torch

        if not module.training:
            return
        if self.first is None:
            self.first, self.meter, self.threads = time.perf_counter(), CpuMeter(), torch.get_num_threads()
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        self.digest.update(ids.numpy().tobytes() + mask.numpy().tobytes() + bytes(str(tuple(ids.shape)), "ascii"))
        self.batches += 1
        self.tokens += int(mask.sum())
        self.padded_tokens += ids.numel()
        self.loss_tokens += int((kwargs["labels"] != -100).sum())
        for row, m in zip(ids.tolist(), mask.tolist(), strict=True):
            self.target_tokens += self.targets_of[tuple(r for r, keep in zip(row, m, strict=True) if keep)]

    def report(self) -> dict:
        seconds = self.step_ends[-1] - self.first
        return {"steps": len(self.step_ends), "seconds": seconds, "batches": self.batches,
                "batches_sha256": self.digest.hexdigest(), "tokens": self.tokens, "padded_tokens": self.padded_tokens,
                "target_tokens": self.target_tokens, "loss_tokens": self.loss_tokens,
                "tokens_per_s": self.tokens / seconds, "target_tokens_per_s": self.target_tokens / seconds,
                "threads": self.threads, "other_load_cpus": self.meter.other_load()}


def train_contender(name: str, args: argparse.Namespace, model, tokenizer) -> dict:
    from tlflow.config import FinetuneConfig
    from tlflow.config.schema import LoraConfig
    from tlflow.modeling.batching import epoch_batches
    from tlflow.task_types.text_generation.task import training_example
    from tlflow.training.lora import add_lora
    from tlflow.training.settings import LoopSettings

    examples = [training_example(tokenizer, p, t, args.max_length, True) for p, t in rows(args.rows)]
    ids, labels = [x for x, _ in examples], [y for _, y in examples]
    lora = LoraConfig(r=8, alpha=16, dropout=0.05)
    cfg = FinetuneConfig(epochs=1, batch_size=args.batch, learning_rate=args.lr, warmup_ratio=0.1,
                         checkpoint_every_steps=10**6, threads=args.threads, seed=args.seed,
                         method="lora" if name.endswith("lora") else "full", lora=lora)
    settings = LoopSettings.for_finetune(cfg, len(ids))
    # the loop's batches for this one-epoch run (tlflow.training.loop._remaining_batches, epoch 0)
    batches = epoch_batches([len(x) for x in ids], settings.batch_size, settings.seed, 0, settings.group_by_length)
    assert len(batches) == settings.total_steps, "one epoch: as many batches as steps"
    peft_model = add_lora(model, lora) if name.endswith("lora") else None
    executed = Executed(model, {tuple(x): sum(1 for v in y if v != -100) for x, y in examples})
    with tempfile.TemporaryDirectory() as tmp:
        if name.startswith("ours"):
            from tlflow.training.loop import finetune

            result = finetune(model, {"input_ids": ids, "labels": labels}, cfg, tokenizer.pad_token_id, Path(tmp),
                              progress=False)
            own = {"tool_seconds": result.seconds, "tool_seconds_is": "TrainResult.seconds (the loop's step time)"}
        else:
            result = hf_trainer(peft_model or model, ids, batches, settings, tokenizer, tmp).train()
            own = {"tool_seconds": result.metrics["train_runtime"], "tool_seconds_is": "Trainer train_runtime"}
    return {**executed.report(), **own, "total_steps": settings.total_steps, "warmup_steps":
            int(settings.warmup_ratio * settings.total_steps),
            "trains_on": "target tokens" if name.startswith("ours") else "every non-padding token except the "
            "pad id (= eos here) (DataCollatorForLanguageModeling)",
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def hf_trainer(model, ids: list[list[int]], batches: list[list[int]], settings, tokenizer, out_dir: str):
    """The Trainer at its best, fed exactly `batches` (lists of row indices, in order)."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    class SameBatchesTrainer(Trainer):
        def get_train_dataloader(self) -> DataLoader:
            loader = DataLoader(self.train_dataset, batch_sampler=batches, collate_fn=self.data_collator,
                                num_workers=0)
            return self.accelerator.prepare(loader)

    tokenizer.padding_side = "right"  # as tlflow's collate pads
    targs = TrainingArguments(
        output_dir=out_dir, per_device_train_batch_size=settings.batch_size, max_steps=settings.total_steps,
        learning_rate=settings.learning_rate, lr_scheduler_type="linear",
        warmup_steps=int(settings.warmup_ratio * settings.total_steps), weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm, optim="adamw_torch_fused", seed=settings.seed, use_cpu=True,
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=False, bf16=False, fp16=False)
    return SameBatchesTrainer(model=model, args=targs, train_dataset=[{"input_ids": x} for x in ids],
                              data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))


def generate_contender(name: str, args: argparse.Namespace, model, tokenizer) -> dict:
    import torch

    from tlflow.task_types.text_generation.task import GenerationParams, generate, prompt_ids

    data = rows(args.rows + args.gen_rows)[args.rows:]
    prompts = [prompt_ids(tokenizer, p, True) for p, _ in data]
    meter, began = CpuMeter(), time.perf_counter()
    if name == "ours-generate":
        _, lengths = generate(model, tokenizer, prompts, GenerationParams(max_new_tokens=args.new_tokens), args.batch)
    else:
        from transformers import pipeline

        tokenizer.padding_side = "left"
        pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")
        texts = [tokenizer.decode(p) for p in prompts]
        outs = pipe(texts, batch_size=args.batch, max_new_tokens=args.new_tokens, do_sample=False,
                    return_full_text=False, add_special_tokens=False, pad_token_id=tokenizer.pad_token_id)
        lengths = [len(tokenizer(o[0]["generated_text"], add_special_tokens=False)["input_ids"]) for o in outs]
    seconds = time.perf_counter() - began
    # tokens decoded per prompt, counted alike for both: up to eos (ours' lengths and the pipeline's texts leave it
    # out), plus the eos itself when it came before the cap
    generated = sum(min(n + 1, args.new_tokens) for n in lengths)
    return {"generated_tokens": generated, "seconds": seconds, "generated_tokens_per_s": generated / seconds,
            "prompts": len(prompts), "threads": torch.get_num_threads(), "other_load_cpus": meter.other_load()}


def run_contender(name: str, args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from tlflow.modeling.models import load_tokenizer, resolve_base
    from tlflow.runtime import apply_defaults

    apply_defaults()
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(resolve_base(args.model), dtype=torch.float32)
    run = (generate_contender if name.endswith("generate") else train_contender)(name, args, model, tokenizer)
    return {**run, "env": run_env(), "peak_rss_mb": peak_rss_mb()}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def summarize(runs: list[dict], pairs: list[tuple[str, str]]) -> dict:
    """Per pair: ours' rate over Hugging Face's, repeat by repeat (same repeat, adjacent runs)."""
    by = {(r["repeat"], r["contender"]): r for r in runs}
    repeats = sorted({r["repeat"] for r in runs})
    out = {}
    for ours, theirs in pairs:
        key = "generated_tokens_per_s" if ours.endswith("generate") else "tokens_per_s"
        done = [(by[r, ours], by[r, theirs]) for r in repeats if (r, ours) in by and (r, theirs) in by]
        entry = {"rate": key, "ratio": spread([a[key] / b[key] for a, b in done])}
        for name in (ours, theirs):
            mine = [by[r, name] for r in repeats if (r, name) in by]
            entry[name] = {key: spread([m[key] for m in mine]), "peak_rss_mb_max": max(m["peak_rss_mb"] for m in mine),
                           "other_load_cpus": spread([m["other_load_cpus"] for m in mine]),
                           "threads": sorted({m["threads"] for m in mine})}
        if key == "tokens_per_s":
            entry["identical_batches"] = all(a["batches_sha256"] == b["batches_sha256"] and a["steps"] == b["steps"]
                                             for a, b in done)
        out[f"{ours} / {theirs}"] = entry
    return out


def other_load(meter: CpuMeter, children_cpu: float) -> float:
    """CPUs other processes kept busy since `meter` started, this job's finished children left out."""
    wall = time.perf_counter() - meter.start[0]
    return max(0.0, meter.other_load() - (sum(os.times()[2:4]) - children_cpu) / wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="base alias or a local causal-LM folder (smoke runs)")
    parser.add_argument("--rows", type=int, default=64, help="training rows (one epoch)")
    parser.add_argument("--gen-rows", type=int, default=32, help="prompts generated for")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=24, help="max_new_tokens of generation")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of every pair")
    parser.add_argument("--contenders", default=",".join(n for p in PAIRS for n in p))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one contender, print its JSON (child process)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_contender(args.one, args)), flush=True)
        return
    wanted = args.contenders.split(",")
    pairs = [p for p in PAIRS if all(n in wanted for n in p)]
    started, meter, children_cpu = time.perf_counter(), CpuMeter(), sum(os.times()[2:4])
    runs: list[dict] = []
    old = json.loads(args.output.read_text(encoding="utf-8")) if args.output.is_file() else []
    for repeat in range(args.repeats):
        for name in [n for p in pairs for n in p]:  # ours, theirs, ours, theirs, ...
            command = [sys.executable, __file__, *sys.argv[1:], "--one", name]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ))
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            r = {"repeat": repeat, "contender": name, **json.loads(line[len("RESULT "):])}
            runs.append(r)
            rate = (f"{r['tokens_per_s']:7.1f} tok/s {r['target_tokens_per_s']:6.1f} target tok/s "
                    f"{r['steps']} steps {r['batches_sha256'][:12]}" if "steps" in r
                    else f"{r['generated_tokens_per_s']:7.1f} generated tok/s")
            print(f"[{repeat}] {name:18s} {rate}  {r['seconds']:6.1f} s  RSS {r['peak_rss_mb']:5.0f} MB  "
                  f"threads {r['threads']}  other load {r['other_load_cpus']:.2f}", flush=True)
        record = job_record(args, pairs, runs, started, meter, children_cpu, complete=repeat == args.repeats - 1)
        args.output.parent.mkdir(parents=True, exist_ok=True)  # old runs kept; this job's entry completed in place
        args.output.write_text(json.dumps([*old, record], indent=2), encoding="utf-8")
    for pair, entry in record["summary"].items():
        ratio = entry["ratio"]
        print(f"{pair:36s} ratio median {ratio['median']:.2f} (min {ratio['min']:.2f}, max {ratio['max']:.2f})"
              + (f"  identical batches: {entry['identical_batches']}" if "identical_batches" in entry else ""))


def job_record(args: argparse.Namespace, pairs, runs: list[dict], started: float, meter: CpuMeter,
               children_cpu: float, complete: bool) -> dict:
    import torch
    import transformers

    envs = {json.dumps(r["env"], sort_keys=True) for r in runs}
    return {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/generation_throughput.py", *map(shlex.quote, sys.argv[1:])]),
        "complete": complete,  # false: the job stopped before its last repeat
        "machine": machine(),
        "other_load_cpus_job": other_load(meter, children_cpu),  # CPUs busy outside this job, whole job
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": __import__("peft").__version__},
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "one")},
        "env": json.loads(envs.pop()) if len(envs) == 1 else "DIFFERED between contenders",
        "summary": summarize(runs, pairs),
        "runs": runs,
        "wall_s": time.perf_counter() - started,
    }


if __name__ == "__main__":
    main()
