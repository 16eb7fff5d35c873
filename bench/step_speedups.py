"""What the training loop's step speed-ups bring: fine-tuning steps with and without
`kept_embedding_grad` and `fast_dropout` (`tlflow.training.speedups.training_speedups`),
interleaved step by step in one process.

The speed-ups (the kept word-embedding gradient, cheaper dropout masks) are worth a few per
cent, less than this VM's drift between whole runs (±10 %), so the two contenders do not run
one after the other: each step of one is followed by the same batch's step of the other (the
order swaps every step), and both see the same drift. Both are `minilm-l6` with the fine-tune
stage's model (`build_task_model` with the `cls_only` speed-up), optimizer and schedule, on the
settings of `finetune_throughput.py` (1,536 stratified SST-2 training sentences, batch 32,
length-grouped batches, AdamW 1e-4, fp32, 2 threads); a step is collate, forward and
`backward_and_step`, as in `tlflow.training.loop.train_loop`. "without" (`cls_only` alone)
zeroes gradients with `optimizer.zero_grad(set_to_none=True)` and keeps `nn.Dropout` and SDPA's
own dropout.

Each repeat trains a fresh pair for one epoch (seed 42 + r for both); reported per repeat: the
ratio of the two contenders' summed step times, and the median of the per-step ratios; and the
medians over the repeats.

    .venv/bin/python bench/step_speedups.py [--rows N --repeats R]     # each job appended to the results file
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import shlex
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from benchlib import load_settings, run_with_environment

if __name__ == "__main__":  # the fine-tuning benchmark's allocator and threads, from process start
    run_with_environment(load_settings("finetune")[0].get("environment", {}))

import torch  # noqa: E402
from benchlib import CpuMeter, allocator_loaded, append_job, machine, median, wait_for_quiet  # noqa: E402
from finetune_throughput import ROOT, prepare  # noqa: E402

from tlflow.modeling.batching import collate, epoch_batches  # noqa: E402
from tlflow.modeling.models import build_task_model  # noqa: E402
from tlflow.runtime import apply_defaults  # noqa: E402
from tlflow.task_types.registry import get_task_type  # noqa: E402
from tlflow.training.optimizer import backward_and_step, make_optimizer, make_scheduler  # noqa: E402
from tlflow.training.settings import LoopSettings  # noqa: E402
from tlflow.training.speedups import training_speedups  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "step_speedups.json"
CONTENDERS = ("with", "without")
#: The speed-ups of each contender: both compute the last layer for [CLS] only, as the fine-tune stage does.
SPEEDUPS = {"with": ("cls_only", "kept_embedding_grad", "fast_dropout"), "without": ("cls_only",)}


def one_epoch(cfg, features, loaded, tokenizer, seed: int) -> dict[str, list[float]]:
    """Step times of both contenders over one epoch, interleaved."""
    lengths = [len(x) for x in features["input_ids"]]
    settings = LoopSettings.for_finetune(cfg.finetune.model_copy(update={"seed": seed}), len(lengths))
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with ExitStack() as stack:
        steppers = {}
        for name in CONTENDERS:
            model = build_task_model(cfg.model, get_task_type(cfg.task.type).model_head, loaded.label_names, len(tokenizer), seed).train()
            optimizer = make_optimizer(model, settings)
            scheduler = make_scheduler(optimizer, settings)
            grads = stack.enter_context(training_speedups(model, SPEEDUPS[name]))
            steppers[name] = (model, optimizer, scheduler, grads)
        torch.manual_seed(seed)
        for i, batch in enumerate(epoch_batches(lengths, settings.batch_size, seed, 0)):
            for name in (CONTENDERS if i % 2 == 0 else CONTENDERS[::-1]):
                model, optimizer, scheduler, grads = steppers[name]
                began = time.perf_counter()
                loss = model(**collate(features, batch, tokenizer.pad_token_id)).loss
                backward_and_step(model, loss, optimizer, scheduler, grads, settings.max_grad_norm)
                times[name].append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1536, help="SST-2 training sentences")
    parser.add_argument("--repeats", type=int, default=3, help="epochs, each with a fresh pair of models")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    apply_defaults()
    torch.set_num_threads(2)
    frozen, _ = load_settings("finetune")
    seed = frozen["first_seed"]
    cfg, _, loaded, tokenizer, _, features = prepare({**frozen, "rows": args.rows, "dev_eval_every_steps": 0}, seed)
    runs = []
    started = time.perf_counter()
    for repeat in range(args.repeats):
        waited, _ = wait_for_quiet(120, 0.2)
        meter = CpuMeter()
        times = one_epoch(cfg, features, loaded, tokenizer, seed + repeat)
        outside = meter.other_load()
        sums = {name: sum(t) for name, t in times.items()}
        run = {"seed": seed + repeat, "steps": len(times["with"]), "seconds": sums,
               "samples_per_s": {name: args.rows / s for name, s in sums.items()},
               "ratio_of_sums": sums["without"] / sums["with"],
               "median_step_ratio": median([b / a for a, b in zip(times["with"], times["without"])]),
               "step_seconds": times, "outside_load": outside, "waited_s": waited}
        runs.append(run)
        print(f"[{repeat + 1}/{args.repeats}] with {sums['with']:.1f} s, without {sums['without']:.1f} s: "
              f"{run['ratio_of_sums']:.3f}x (median step ratio {run['median_step_ratio']:.3f})"
              f"  (outside load {outside:.2f} CPU)", flush=True)
        gc.collect()
    summary = {"median_ratio_of_sums": median([r["ratio_of_sums"] for r in runs]),
               "median_step_ratio": median([r["median_step_ratio"] for r in runs]),
               "median_samples_per_s": {n: median([r["samples_per_s"][n] for r in runs]) for n in CONTENDERS}}
    record = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/step_speedups.py", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine(),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "settings": {"rows": args.rows, "repeats": args.repeats, "batch_size": cfg.finetune.batch_size,
                     "threads": torch.get_num_threads(), "model": cfg.model.base, "allocator": allocator_loaded()},
        "runs": runs, "summary": summary, "wall_s": time.perf_counter() - started,
    }
    kept = append_job(args.output, record)
    print(f"\nsteps with the speed-ups: {summary['median_ratio_of_sums']:.3f}x faster (ratio of summed step times, "
          f"median of {args.repeats}); median per-step ratio {summary['median_step_ratio']:.3f}; job {kept} appended to {args.output}")


if __name__ == "__main__":
    main()
