"""Causal-LM throughput: tlflow's LoRA and full fine-tuning and its generation-based evaluation,
against the Hugging Face Trainer and `transformers.pipeline("text-generation")`.

Task: AG News headlines (prompt: the article's description in the chat template, target: its
title), the first `--rows` rows of data/ag_news/test.csv, max length 128, fp32, `--threads`
intra-op threads. Every contender runs in its own process (so its peak RSS is its own) on the
same rows, batch size, step count, AdamW learning rate and seed:

* ours-lora / ours-full: `tlflow.training.loop.finetune` (what `train_task_model` runs) with
  `finetune.method: lora` (r 8, alpha 16, q_proj/v_proj) or full; loss on the target tokens only;
  length-grouped batches, dynamic padding, the default speed-ups (those that apply);
* trainer-lora / trainer-full: `Trainer` with `DataCollatorForLanguageModeling(mlm=False)`, the
  usual causal-LM recipe, which trains on *all* tokens (prompt included): its labels are the inputs.
  Both token rates are given for every contender: target tokens/s (what our loss counts) and all
  tokens/s (non-padding tokens through the model);
* ours-generate: the text-generation task type's evaluation `generate` (left-padded batches sorted
  by length, KV cache, greedy) on `--gen-rows` prompts;
* pipeline-generate: `pipeline("text-generation")` on the same prompts, batch size, greedy,
  `max_new_tokens`. Generated tokens are counted up to end-of-sequence (the pipeline's by
  re-tokenizing its texts).

Results are appended to bench/results/generation_throughput.json (a list of runs).

    .venv/bin/python bench/generation_throughput.py [--model smollm2-135m|PATH] [--rows 64 --batch 8 ...]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "generation_throughput.json"
TRAINING = ("ours-lora", "ours-full", "trainer-lora", "trainer-full")
GENERATION = ("ours-generate", "pipeline-generate")
PROMPT = "Write a short headline for this news article.\n\n{description}"


def rows(n: int) -> list[tuple[str, str]]:
    with open(ROOT / "data" / "ag_news" / "test.csv", encoding="utf-8", newline="") as f:
        out = [(PROMPT.format(description=r[2].replace("\\", " ")), r[1]) for r in csv.reader(f)]
    return out[:n]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_contender(name: str, args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from tlflow.config import FinetuneConfig
    from tlflow.config.schema import LoraConfig
    from tlflow.modeling.models import load_tokenizer, resolve_base
    from tlflow.runtime import apply_defaults
    from tlflow.task_types.text_generation.task import GenerationParams, generate, prompt_ids, training_example
    from tlflow.training.lora import add_lora

    apply_defaults()
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(resolve_base(args.model), dtype=torch.float32)
    lora = LoraConfig(r=8, alpha=16, dropout=0.05)
    if name in GENERATION:
        data = rows(args.rows + args.gen_rows)[args.rows:]
        prompts = [prompt_ids(tokenizer, p, True) for p, _ in data]
        began = time.perf_counter()
        if name == "ours-generate":
            _, lengths = generate(model, tokenizer, prompts, GenerationParams(max_new_tokens=args.new_tokens),
                                  args.batch)
            generated = sum(lengths)
        else:
            from transformers import pipeline

            tokenizer.padding_side = "left"
            pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")
            texts = [tokenizer.decode(p) for p in prompts]
            outs = pipe(texts, batch_size=args.batch, max_new_tokens=args.new_tokens, do_sample=False,
                        return_full_text=False, add_special_tokens=False, pad_token_id=tokenizer.pad_token_id)
            generated = sum(len(tokenizer(o[0]["generated_text"], add_special_tokens=False)["input_ids"]) + 1
                            for o in outs)  # + the end-of-sequence token it stopped at (or one over the cap)
        seconds = time.perf_counter() - began
        return {"generated_tokens": generated, "seconds": seconds, "generated_tokens_per_s": generated / seconds,
                "prompts": len(prompts), "peak_rss_mb": peak_rss_mb()}

    examples = [training_example(tokenizer, p, t, args.max_length, True) for p, t in rows(args.rows)]
    ids = [x for x, _ in examples]
    target_tokens = sum(sum(1 for y in labels if y != -100) for _, labels in examples)
    all_tokens = sum(len(x) for x in ids)
    steps = -(-args.rows // args.batch)
    if name.endswith("lora"):
        peft_model = add_lora(model, lora)
    if name.startswith("ours"):
        from tlflow.training.loop import finetune

        cfg = FinetuneConfig(epochs=1, batch_size=args.batch, learning_rate=args.lr, warmup_ratio=0.1,
                             checkpoint_every_steps=10**6, threads=args.threads, seed=args.seed,
                             method="lora" if name.endswith("lora") else "full", lora=lora)
        with tempfile.TemporaryDirectory() as tmp:
            result = finetune(model, {"input_ids": ids, "labels": [y for _, y in examples]}, cfg,
                              tokenizer.pad_token_id, Path(tmp), progress=False)
        seconds, done = result.seconds, result.steps
    else:
        from datasets import Dataset
        from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

        train = Dataset.from_dict({"input_ids": ids})
        with tempfile.TemporaryDirectory() as tmp:
            targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch, max_steps=steps,
                                      learning_rate=args.lr, warmup_steps=int(0.1 * steps), weight_decay=0.01, seed=args.seed,
                                      save_strategy="no", report_to=[], logging_strategy="no", use_cpu=True,
                                      dataloader_num_workers=0, disable_tqdm=True)
            trainer = Trainer(model=peft_model if name.endswith("lora") else model, args=targs, train_dataset=train,
                              data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
            out = trainer.train()
        seconds, done = out.metrics["train_runtime"], out.global_step
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"steps": done, "seconds": seconds, "target_tokens": target_tokens, "all_tokens": all_tokens,
            "target_tokens_per_s": target_tokens / seconds, "all_tokens_per_s": all_tokens / seconds,
            "trains_on": "target tokens" if name.startswith("ours") else "all tokens (DataCollatorForLanguageModeling)",
            "trainable_params": trainable, "peak_rss_mb": peak_rss_mb()}


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
    parser.add_argument("--contenders", default=",".join(TRAINING + GENERATION))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one contender, print its JSON (child process)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_contender(args.one, args)), flush=True)
        return
    started = time.perf_counter()
    results = {}
    for name in args.contenders.split(","):
        command = [sys.executable, __file__, *sys.argv[1:], "--one", name]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(line[len("RESULT "):])
        r = results[name]
        rate = (f"{r['target_tokens_per_s']:8.1f} target tok/s {r['all_tokens_per_s']:8.1f} all tok/s"
                if "steps" in r else f"{r['generated_tokens_per_s']:8.1f} generated tok/s")
        print(f"{name:18s} {rate}  {r['seconds']:7.1f} s  peak RSS {r['peak_rss_mb']:7.0f} MB", flush=True)
    import torch
    import transformers
    from benchlib import machine  # bench/ is on the path: this file runs as a script

    record = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/generation_throughput.py", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": __import__("peft").__version__},
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "one")},
        "results": results,
        "wall_s": time.perf_counter() - started,
    }
    runs = json.loads(args.output.read_text(encoding="utf-8")) if args.output.is_file() else []
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps([*runs, record], indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
