"""Compute efficiency of fine-tuning: model FLOPs utilisation against the matmul peak measured in
the same process.

Peak: the median rate of large fp32 `torch.mm` products (`--peak-size`, default 2048 x 2048) at the
same thread count. Steps: the fine-tune stage's model (`build_task_model`, `minilm-l6` with a
sequence-classification head) and optimizer (`make_optimizer`, fused AdamW) on batches of 32 real
SST-2 training text windows of exactly 64 and 128 tokens (no padding); a step is forward,
backward, gradient clipping, optimizer step and `zero_grad`, as in `tlflow.training.loop.train_loop`
(inside `training_speedups` with the fine-tune stage's default `finetune.speedups`: the [CLS]-only
last layer, the kept word-embedding gradient, cheaper dropout masks).

FLOPs per step, two ways:
* model FLOPs (the usual MFU numerator): 6 x non-embedding parameters x tokens, plus attention
  (scores and weighted sum: 12 x layers x hidden x sequence length x tokens for forward and
  backward);
* executed FLOPs: the matmul FLOPs `torch.utils.flop_counter` counts in one real step plus the same
  attention term for the layers that compute it for every position. With the [CLS]-only last
  layer (`tlflow.training.speedups.cls_only`) the stage executes fewer FLOPs than the model formula says, so the
  executed count gives the hardware utilisation.

    .venv/bin/python bench/mfu.py [--steps N --repeats R]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path

import torch
from benchlib import machine, median, wait_for_quiet
from torch.utils.flop_counter import FlopCounterMode

from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.modeling.models import build_task_model, load_tokenizer
from tlflow.runtime import apply_defaults
from tlflow.task_types.registry import get_task_type
from tlflow.training.optimizer import backward_and_step, make_optimizer
from tlflow.training.settings import LoopSettings
from tlflow.training.speedups import training_speedups
from tlflow.training.speedups.cls_only import ClsOnlyBertLayer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "mfu.json"
BATCH = 32


def matmul_peak(size: int, repeats: int) -> float:
    """Median GFLOP/s of `size` x `size` fp32 matrix products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - began) / 1e9)
    return median(rates)


def text_windows(tokenizer, texts: list[str], length: int, count: int) -> torch.Tensor:
    """`count` rows of exactly `length` ids: [CLS] + consecutive word pieces of the texts + [SEP]."""
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        if len(stream) >= count * (length - 2):
            break
    body = length - 2
    rows = [[tokenizer.cls_token_id, *stream[i * body:(i + 1) * body], tokenizer.sep_token_id] for i in range(count)]
    return torch.tensor(rows)


def non_embedding_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def attention_flops(layers: int, hidden: int, length: int, tokens: int) -> float:
    """Forward + backward FLOPs of QK^T and AV: 3 x (2 x 2 x length x hidden) per token and layer."""
    return 12.0 * layers * hidden * length * tokens


def measure(cfg, tokenizer, ids: torch.Tensor, labels: torch.Tensor, steps: int) -> dict:
    model = build_task_model(cfg.model, get_task_type(cfg.task.type).model_head, ["negative", "positive"], len(tokenizer), 42)
    settings = LoopSettings.for_finetune(cfg.finetune, 1000)
    optimizer = make_optimizer(model, settings)
    model.train()
    batches = [(ids[i * BATCH:(i + 1) * BATCH], labels[i * BATCH:(i + 1) * BATCH]) for i in range(steps + 2)]
    mask = torch.ones_like(batches[0][0])

    # Counted with the steps' [CLS]-only last layer but plain dropout: the counter does not see
    # SDPA's attention kernel, whose FLOPs are added by formula below (with `fast_dropout` attention
    # with dropout runs as matmuls the counter would see).
    layer_only = [name for name in settings.speedups if name == "cls_only"]
    with training_speedups(model, layer_only), FlopCounterMode(display=False) as counter:
        model(input_ids=batches[0][0], attention_mask=mask, labels=batches[0][1]).loss.backward()
    optimizer.zero_grad(set_to_none=True)
    counted = counter.get_total_flops()

    # The steps as the fine-tune stage's loop runs them.
    with training_speedups(model, settings.speedups) as grads:
        def step(x, y):
            loss = model(input_ids=x, attention_mask=mask, labels=y).loss
            backward_and_step(model, loss, optimizer, None, grads, settings.max_grad_norm)

        step(*batches[1])  # warm-up (allocations, optimizer state)
        times = []
        for x, y in batches[2:]:
            began = time.perf_counter()
            step(x, y)
            times.append(time.perf_counter() - began)
        cls_only = isinstance(model.bert.encoder.layer[-1], ClsOnlyBertLayer)
    c = model.config
    length, tokens = ids.shape[1], BATCH * ids.shape[1]
    full_attention_layers = c.num_hidden_layers - cls_only
    model_flops = 6.0 * non_embedding_parameters(model) * tokens + attention_flops(
        c.num_hidden_layers, c.hidden_size, length, tokens)
    executed = counted + attention_flops(full_attention_layers, c.hidden_size, length, tokens)
    return {"step_s": median(times), "model_flops": model_flops, "executed_flops": executed,
            "counted_matmul_flops": counted, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="64,128")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per length, alternating with the peak")
    parser.add_argument("--peak-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    apply_defaults()
    torch.set_num_threads(args.threads)
    cfg = load_config(ROOT / "configs" / "sst2.yaml", ["finetune.learning_rate=1e-4"])
    tokenizer = load_tokenizer(cfg.model.base)
    train = load_labelled_data(cfg.data, get_task_type(cfg.task.type).dataset_spec()).splits["train"]
    texts = list(train["text"])
    started = time.perf_counter()
    results: dict[str, list] = {"peak_gflops": []}
    lengths = [int(x) for x in args.lengths.split(",")]
    for repeat in range(args.repeats):
        for length in lengths:
            wait_for_quiet(120, 0.2)
            results["peak_gflops"].append(matmul_peak(args.peak_size, 5))
            ids = text_windows(tokenizer, texts, length, BATCH * (args.steps + 2))
            labels = torch.randint(0, 2, (ids.shape[0],), generator=torch.Generator().manual_seed(repeat))
            r = measure(cfg, tokenizer, ids, labels, args.steps)
            results.setdefault(str(length), []).append(r)
            print(f"[{repeat + 1}/{args.repeats}] length {length}: step {r['step_s'] * 1000:.0f} ms, "
                  f"{r['model_flops'] / r['step_s'] / 1e9:.1f} model GFLOP/s, "
                  f"{r['executed_flops'] / r['step_s'] / 1e9:.1f} executed GFLOP/s, "
                  f"peak {results['peak_gflops'][-1]:.1f} GFLOP/s", flush=True)
    peak = median(results["peak_gflops"])
    summary = {"peak_gflops": peak}
    for length in lengths:
        rs = results[str(length)]
        step_s = median([r["step_s"] for r in rs])
        summary[str(length)] = {
            "step_s": step_s, "tokens_per_s": rs[0]["tokens"] / step_s,
            "model_gflops": rs[0]["model_flops"] / step_s / 1e9,
            "executed_gflops": rs[0]["executed_flops"] / step_s / 1e9,
            "mfu": rs[0]["model_flops"] / step_s / 1e9 / peak,
            "hardware_utilisation": rs[0]["executed_flops"] / step_s / 1e9 / peak,
        }
    record = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/mfu.py", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine(), "versions": {"torch": torch.__version__},
        "settings": {"batch": BATCH, "steps": args.steps, "repeats": args.repeats, "threads": args.threads,
                     "peak_size": args.peak_size, "model": cfg.model.base},
        "runs": results, "summary": summary, "wall_s": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(f"\nmatmul peak {peak:.1f} GFLOP/s ({args.threads} threads)")
    print("| sequence length | step | tokens/s | model GFLOP/s | MFU | executed GFLOP/s | utilisation |\n"
          "|---|---|---|---|---|---|---|")
    for length in lengths:
        s = summary[str(length)]
        print(f"| {length} | {s['step_s'] * 1000:.0f} ms | {s['tokens_per_s']:.0f} | {s['model_gflops']:.1f} "
              f"| {s['mfu']:.2f} | {s['executed_gflops']:.1f} | {s['hardware_utilisation']:.2f} |")


if __name__ == "__main__":
    main()
