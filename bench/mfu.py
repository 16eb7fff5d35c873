"""Compute efficiency of fine-tuning: executed-FLOP utilisation (MFU) of the fine-tune loop's
steps against a peak measured on the model's own matrix products, interleaved with the steps.

Steps: the fine-tune stage's model (`build_task_model`), optimizer and schedule (`make_optimizer`,
`make_scheduler`) with the settings of `configs/sst2.yaml` (batch 32, fp32, its `finetune.speedups`:
the [CLS]-only last layer, the kept word-embedding gradient, cheaper dropout masks); a step is
forward and `backward_and_step` (backward, clipping, fused AdamW, schedule, zeroing) inside
`training_speedups`, as `tlflow.training.loop.train_loop` runs it. Three conditions:
* `64`, `128`: batches of 32 real SST-2 training text windows of exactly that many tokens (no padding);
* `sst2`: the loop's own length-grouped, dynamically padded batches of the config's training data
  (`epoch_batches` with the config's seed, as `train_loop` draws them), a different slice of the
  epoch in each repeat.

Executed FLOPs: `torch.utils.flop_counter.FlopCounterMode` over a real, untimed step of the same
model in the same speed-up context, once per batch shape (the count depends on the shapes alone).
It counts the matrix products that run: the [CLS]-only last layer's skipped positions are not
counted, and attention is counted once, as what executes: with `fast_dropout` the training
attention runs as two matmuls the counter sees; SDPA's CPU kernel, which this torch build's
counter does not know, is given torch's own SDPA formulas (`CPU_SDPA_FLOPS`). Element-wise work
(softmax, LayerNorm, GELU, dropout, the optimizer update) is not counted, as usual for MFU.

Peak: the model's own linear-layer products at the largest fixed length (32 x 128 = 4,096 rows:
forward, input-gradient and weight-gradient GEMMs of the hidden x hidden, hidden x intermediate and
intermediate x hidden weights, fp32), best of `peak_best_of` runs each, combined as the rate of
their FLOP-weighted mix. A probe runs before the first step and after every step; each step is
divided by the higher of its two neighbouring probes. Smaller products (attention's per-head
matmuls, shorter batches) run slower than this peak, so it is the demanding one.

Settings: `bench/settings/mfu.json` (frozen; stored in the result with its sha256; `--repeats`
and `--steps` override it for a smoke run and are recorded as overrides). Every job is appended to
`bench/results/mfu.json` (a list of jobs).

    .venv/bin/python bench/mfu.py [--repeats R] [--steps N] [--output PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import load_settings, run_with_environment

if __name__ == "__main__":  # the frozen allocator and thread settings apply from process start, before torch loads
    run_with_environment(load_settings("mfu")[0].get("environment", {}))

import torch  # noqa: E402
from benchlib import CpuMeter, allocator_loaded, append_job, environment, git_file_state, median, wait_for_quiet
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.modeling.batching import collate, epoch_batches
from tlflow.modeling.models import build_task_model, load_tokenizer
from tlflow.runtime import apply_defaults
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import get_task_type
from tlflow.training.optimizer import backward_and_step, make_optimizer, make_scheduler
from tlflow.training.settings import LoopSettings
from tlflow.training.speedups import training_speedups

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "mfu.json"
SETTINGS = ROOT / "bench" / "settings" / "mfu.json"
aten = torch.ops.aten


def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


#: SDPA's CPU kernel and its backward, which `FlopCounterMode` does not count on torch 2.13 (its
#: registry holds the CUDA kernels only): torch's own SDPA formulas. Ops the counter knows keep its formula.
CPU_SDPA_FLOPS = {
    op: formula for op, formula in (
        (getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None), _cpu_sdpa),
        (getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None), _cpu_sdpa_backward),
    ) if op is not None
}


class Step:
    """One training step of the fine-tune loop on a model, with the loop's optimizer, schedule and
    speed-ups; `count` runs it under the FLOP counter once per batch shape (kept in `counts`, which
    steps of other models of the same architecture may share), `timed` runs it timed."""

    def __init__(self, model: torch.nn.Module, settings: LoopSettings, grads,
                 counts: dict[tuple[int, ...], dict] | None = None) -> None:
        self.model, self.settings, self.grads = model, settings, grads
        self.optimizer = make_optimizer(model, settings)
        self.scheduler = make_scheduler(self.optimizer, settings)
        self.counts = {} if counts is None else counts

    def __call__(self, inputs: dict[str, torch.Tensor]) -> None:
        loss = self.model(**inputs).loss
        backward_and_step(self.model, loss, self.optimizer, self.scheduler, self.grads, self.settings.max_grad_norm)

    def timed(self, inputs: dict[str, torch.Tensor]) -> float:
        began = time.perf_counter()
        self(inputs)
        return time.perf_counter() - began

    def count(self, inputs: dict[str, torch.Tensor]) -> dict:
        """Executed FLOPs of a step on a batch of this shape: total and by operator."""
        shape = tuple(inputs["input_ids"].shape)
        if shape not in self.counts:
            with FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as counter:
                self(inputs)
            by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
            self.counts[shape] = {"flops": counter.get_total_flops(), "by_op": by_op}
        return self.counts[shape]


class PeakProbe:
    """The model's linear-layer GEMMs at `rows` rows (fp32, its own weight shapes and layouts):
    forward `addmm(b, x, W^T)`, input gradient `dy @ W`, weight gradient `dy^T @ x`, per weight
    shape weighted by how often a layer uses it (4 x hidden x hidden: query, key, value, attention
    output; 1 x hidden x intermediate; 1 x intermediate x hidden)."""

    def __init__(self, config, rows: int, best_of: int) -> None:
        h, i = config.hidden_size, config.intermediate_size
        self.rows, self.best_of = rows, best_of
        generator = torch.Generator().manual_seed(0)
        self.products: list[tuple[str, int, float, Callable[[], torch.Tensor]]] = []
        for (fan_in, fan_out), uses in {(h, h): 4, (h, i): 1, (i, h): 1}.items():
            x, dy = torch.randn(rows, fan_in, generator=generator), torch.randn(rows, fan_out, generator=generator)
            w, b = torch.randn(fan_out, fan_in, generator=generator), torch.randn(fan_out, generator=generator)
            flops = 2.0 * rows * fan_in * fan_out
            self.products += [
                (f"forward [{rows},{fan_in}]x[{fan_in},{fan_out}]", uses, flops,
                 lambda x=x, w=w, b=b: torch.addmm(b, x, w.t())),
                (f"input grad [{rows},{fan_out}]x[{fan_out},{fan_in}]", uses, flops, lambda dy=dy, w=w: dy @ w),
                (f"weight grad [{fan_out},{rows}]x[{rows},{fan_in}]", uses, flops, lambda dy=dy, x=x: dy.t() @ x),
            ]
        self.best_gflops: dict[str, float] = {}  # per product, over the whole job

    def __call__(self) -> float:
        """GFLOP/s of the FLOP-weighted mix, each product at its best of `best_of` runs."""
        total_flops = total_seconds = 0.0
        for name, uses, flops, run in self.products:
            best = math.inf
            for _ in range(self.best_of):
                began = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - began)
            total_flops += uses * flops
            total_seconds += uses * best
            self.best_gflops[name] = max(self.best_gflops.get(name, 0.0), flops / best / 1e9)
        return total_flops / total_seconds / 1e9


def text_windows(tokenizer, texts: list[str], length: int, count: int) -> torch.Tensor:
    """`count` rows of exactly `length` ids: [CLS] + consecutive word pieces of the texts + [SEP]."""
    body = length - 2
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        if len(stream) >= count * body:
            break
    if len(stream) < count * body:
        raise ValueError(f"the training texts hold {len(stream)} word pieces, fewer than {count} windows of {body}")
    rows = [[tokenizer.cls_token_id, *stream[i * body:(i + 1) * body], tokenizer.sep_token_id] for i in range(count)]
    return torch.tensor(rows)


def fixed_batches(tokenizer, texts: list[str], length: int, batch: int, count: int, seed: int) -> list[dict]:
    ids = text_windows(tokenizer, texts, length, batch * count)
    labels = torch.randint(0, 2, (ids.shape[0],), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": ids[k * batch:(k + 1) * batch], "attention_mask": torch.ones(batch, length, dtype=torch.long),
             "labels": labels[k * batch:(k + 1) * batch]} for k in range(count)]


def loop_batches(features: dict, settings: LoopSettings, pad_id: int, first: int, count: int) -> list[dict]:
    """Batches `first`..`first + count` of the loop's first epoch, collated as the loop does."""
    lengths = [len(x) for x in features["input_ids"]]
    order = epoch_batches(lengths, settings.batch_size, settings.seed, 0, settings.group_by_length)
    if first + count > len(order):
        raise ValueError(f"the epoch has {len(order)} batches; asked for {first}..{first + count}")
    return [collate(features, indices, pad_id) for indices in order[first:first + count]]


def measure(model: torch.nn.Module, settings: LoopSettings, batches: list[dict], warmup: int,
            probe: PeakProbe, counts: dict[tuple[int, ...], dict]) -> list[dict]:
    """Warm-up, FLOP counts of the batch shapes not in `counts` yet, then probe, step, probe, step,
    ..., probe; per step its executed FLOPs, time, neighbouring peak and MFU."""
    model.train()
    with training_speedups(model, settings.speedups) as grads:
        step = Step(model, settings, grads, counts)
        for inputs in batches[:warmup]:
            step(inputs)
        timed = batches[warmup:]
        for inputs in timed:
            step.count(inputs)
        peaks = [probe()]
        seconds = []
        for inputs in timed:
            seconds.append(step.timed(inputs))
            peaks.append(probe())
    rows = []
    for k, (inputs, s) in enumerate(zip(timed, seconds)):
        counted = step.count(inputs)
        peak = max(peaks[k], peaks[k + 1])
        rows.append({"shape": list(inputs["input_ids"].shape), "tokens": int(inputs["attention_mask"].sum()),
                     "executed_flops": counted["flops"], "step_s": s, "peak_gflops": peak,
                     "executed_gflops": counted["flops"] / s / 1e9, "mfu": counted["flops"] / s / 1e9 / peak})
    return rows


def median_interval(values: list[float], confidence: float) -> tuple[float, float]:
    """Distribution-free interval of the median: the k-th smallest and k-th largest values, k the
    largest rank whose binomial tail P(Bin(n, 1/2) <= k - 1) stays within (1 - confidence) / 2
    (the whole range when there are too few values for that)."""
    xs, n = sorted(values), len(values)
    k = 1
    while k < n / 2 and sum(math.comb(n, j) for j in range(k + 1)) / 2**n <= (1 - confidence) / 2:
        k += 1
    return xs[k - 1], xs[n - k]


def summarise(runs: list[dict], confidence: float) -> dict:
    steps = [row for run in runs for row in run["steps"]]
    mfu = [row["mfu"] for row in steps]
    low, high = median_interval(mfu, confidence)
    flops = [row["executed_flops"] for row in steps]
    return {
        "steps": len(steps), "mfu_median": median(mfu), "mfu_low": low, "mfu_high": high,
        "confidence": confidence, "mfu_repeat_medians": [median([r["mfu"] for r in run["steps"]]) for run in runs],
        "executed_flops_per_step_median": median(flops), "executed_flops_per_step_range": [min(flops), max(flops)],
        "step_s_median": median([row["step_s"] for row in steps]),
        "executed_gflops_median": median([row["executed_gflops"] for row in steps]),
        "peak_gflops_median": median([row["peak_gflops"] for row in steps]),
        "tokens_per_step_median": median([row["tokens"] for row in steps]),
        "padded_tokens_per_step_median": median([math.prod(row["shape"]) for row in steps]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help="override the frozen setting (smoke runs)")
    parser.add_argument("--steps", type=int, help="override every condition's timed steps (smoke runs)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON list the job is appended to")
    args = parser.parse_args()
    frozen, digest = load_settings("mfu")
    run_with_environment(frozen.get("environment", {}))  # a no-op here when started as a script
    apply_defaults()
    overrides = {k: v for k, v in (("repeats", args.repeats), ("steps", args.steps)) if v is not None}
    s = {**frozen, **overrides}
    steps = {name: args.steps or n for name, n in frozen["steps"].items()}
    torch.set_num_threads(s["threads"])
    before = environment()
    started = time.perf_counter()

    cfg = load_config(ROOT / s["config"])
    task, task_settings = get_task_type(cfg.task.type), TaskSettings.from_config(cfg)
    tokenizer = load_tokenizer(cfg.model.base)
    loaded = load_labelled_data(cfg.data, task.dataset_spec())
    train = loaded.splits["train"]
    features = task.train_features(train, loaded.label_names, tokenizer, task_settings)
    settings = LoopSettings.for_finetune(cfg.finetune, len(features["input_ids"]))
    batch = settings.batch_size
    texts = list(train["text"])

    def new_model(seed: int) -> torch.nn.Module:
        return build_task_model(cfg.model, task.model_head, loaded.label_names, len(tokenizer), seed)

    probe = PeakProbe(new_model(s["seed"]).config, batch * max(s["fixed_lengths"]), s["peak_best_of"])
    conditions = [str(n) for n in s["fixed_lengths"]] + ["sst2"]
    runs: dict[str, list[dict]] = {c: [] for c in conditions}
    counts: dict[tuple[int, ...], dict] = {}  # executed FLOPs per batch shape, counted once per job
    job_meter = CpuMeter()
    warmup = s["warmup_steps"]
    for repeat in range(s["repeats"]):
        for condition in conditions:
            n = steps[condition]
            if condition == "sst2":
                batches = loop_batches(features, settings, tokenizer.pad_token_id, repeat * (n + warmup), n + warmup)
            else:
                batches = fixed_batches(tokenizer, texts, int(condition), batch, n + warmup, s["seed"] + repeat)
            waited, _ = wait_for_quiet(s["quiet_wait_s"], s["quiet_threshold_cpu"])
            meter = CpuMeter()
            rows = measure(new_model(s["seed"] + repeat), settings, batches, warmup, probe, counts)
            outside = meter.other_load()
            runs[condition].append({"repeat": repeat, "steps": rows, "outside_load": outside, "waited_s": waited})
            print(f"[{repeat + 1}/{s['repeats']}] {condition}: MFU {median([r['mfu'] for r in rows]):.2f} "
                  f"(step {median([r['step_s'] for r in rows]) * 1000:.0f} ms, "
                  f"{median([r['executed_gflops'] for r in rows]):.1f} executed GFLOP/s, "
                  f"peak {median([r['peak_gflops'] for r in rows]):.1f} GFLOP/s; outside load {outside:.2f} CPU)",
                  flush=True)

    summary = {c: summarise(runs[c], s["confidence"]) for c in conditions}
    record = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/mfu.py", *map(shlex.quote, sys.argv[1:])]),
        "method": "executed FLOPs (FlopCounterMode over the loop's step) / step time / interleaved best-of-N "
                  "peak of the model's own linear-layer GEMMs",
        "settings": {"file": str(SETTINGS.relative_to(ROOT)), "sha256": digest, **git_file_state(SETTINGS),
                     "values": frozen, "overrides": overrides, "speedups": list(settings.speedups),
                     "batch_size": batch, "model": cfg.model.base, "train_rows": len(features["input_ids"])},
        "machine": before["machine"],
        "environment": {"before": before, "after": environment(), "allocator": allocator_loaded(),
                        "torch_threads": torch.get_num_threads(), "outside_load_job": job_meter.other_load()},
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "flop_counter": {"cpu_sdpa_formula_for": [str(op) for op in CPU_SDPA_FLOPS], "counts_by_shape": {
            "x".join(map(str, shape)): c for shape, c in sorted(counts.items())}},
        "peak": {"rows": probe.rows, "best_of": s["peak_best_of"],
                 "best_gflops_per_product": probe.best_gflops},
        "runs": runs, "summary": summary, "wall_s": time.perf_counter() - started,
    }
    jobs = append_job(args.output, record)
    print(f"\n{args.output}: job {jobs} appended; {torch.get_num_threads()} threads, "
          f"allocator {record['environment']['allocator']}")
    print("| condition | executed GFLOP per step | step | executed GFLOP/s | peak GFLOP/s "
          f"| **MFU** (median, {s['confidence']:.0%} interval) |\n|---|---:|---:|---:|---:|---:|")
    for c in conditions:
        m = summary[c]
        print(f"| {c} | {m['executed_flops_per_step_median'] / 1e9:.1f} | {m['step_s_median'] * 1000:.0f} ms "
              f"| {m['executed_gflops_median']:.1f} | {m['peak_gflops_median']:.1f} "
              f"| **{m['mfu_median']:.2f}** ({m['mfu_low']:.2f}-{m['mfu_high']:.2f}) |")


if __name__ == "__main__":
    main()
