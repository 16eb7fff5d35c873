"""torch.compile as a lever for the fine-tune loop: compile time, and steady-state steps against eager.

Two copies of the fine-tune stage's model (`build_task_model`, same seed) train on the loop's own
SST-2 batches (`configs/sst2.yaml`: batch 32, length-grouped, dynamically padded, its
`finetune.speedups`), each inside `training_speedups` with its own optimizer and schedule, a step
being forward and `backward_and_step` as `tlflow.training.loop.train_loop` runs it (`mfu.Step`).
One copy runs eager, the other under `torch.compile(model, dynamic=True)` (inductor, the default
mode; dynamic shapes because every batch has its own length).

Measured:
* compile time: the compiled copy's first step (tracing, inductor's code generation and C++
  compilation) less its median steady step, and the steps after it until the warm-up ends
  (recompilations for new shapes land there);
* steady state: after `warmup_steps` on both copies, `timed_steps` batches, each stepped by the eager
  copy then by the compiled copy (interleaved, so drift hits both); per batch the speed ratio
  eager time / compiled time, summarised as a geometric mean with a Student-t interval;
* amortised: the speed ratio over `amortise_over_steps` steps (the fine-tuning benchmark's 750)
  with the compile time included, and the steps needed to earn the compile time back;
* dynamo's counters: graph breaks with their reasons, frames, unique graphs.

Settings: `bench/settings/compile.json` (frozen, sha256 stored). Every job is appended to
`bench/results/compile_trial.json`. Not part of `make bench`: it is a measurement of a lever that
was not kept (bench/README, "torch.compile").

    .venv/bin/python bench/compile_trial.py [--output PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

from benchlib import load_settings, run_with_environment

if __name__ == "__main__":  # the frozen allocator and threads before torch loads
    run_with_environment(load_settings("compile")[0].get("environment", {}))

import torch  # noqa: E402
from benchlib import (  # noqa: E402
    CpuMeter,
    allocator_loaded,
    append_job,
    environment,
    git_file_state,
    median,
    wait_for_quiet,
)
from mfu import Step, loop_batches  # noqa: E402
from stats import ratio_summary  # noqa: E402

from tlflow.config import load_config  # noqa: E402
from tlflow.data.readers import load_labelled_data  # noqa: E402
from tlflow.modeling.models import build_task_model, load_tokenizer  # noqa: E402
from tlflow.runtime import apply_defaults  # noqa: E402
from tlflow.task_types.base import TaskSettings  # noqa: E402
from tlflow.task_types.registry import get_task_type  # noqa: E402
from tlflow.training.settings import LoopSettings  # noqa: E402
from tlflow.training.speedups import training_speedups  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ROOT / "bench" / "settings" / "compile.json"
RESULTS = ROOT / "bench" / "results" / "compile_trial.json"


def dynamo_counters() -> dict[str, dict[str, int]]:
    """Dynamo's counters so far (graph breaks by reason, frames, unique graphs, ...), by category."""
    from torch._dynamo.utils import counters

    return {category: {str(k): int(n) for k, n in c.items()} for category, c in counters.items() if c}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON list the job is appended to")
    args = parser.parse_args()
    s, digest = load_settings("compile")
    apply_defaults()
    torch.set_num_threads(s["threads"])
    before, started = environment(), time.perf_counter()

    cfg = load_config(ROOT / s["config"])
    task, task_settings = get_task_type(cfg.task.type), TaskSettings.from_config(cfg)
    tokenizer = load_tokenizer(cfg.model.base)
    loaded = load_labelled_data(cfg.data, task.dataset_spec())
    features = task.train_features(loaded.splits["train"], loaded.label_names, tokenizer, task_settings)
    settings = LoopSettings.for_finetune(cfg.finetune, len(features["input_ids"]))
    warmup, timed = s["warmup_steps"], s["timed_steps"]
    batches = loop_batches(features, settings, tokenizer.pad_token_id, 0, warmup + timed)

    def new_model() -> torch.nn.Module:
        return build_task_model(cfg.model, task.model_head, loaded.label_names, len(tokenizer), s["seed"]).train()

    eager_model, compiled_model = new_model(), new_model()
    waited, _ = wait_for_quiet(s["quiet_wait_s"], s["quiet_threshold_cpu"])
    meter = CpuMeter()
    with training_speedups(eager_model, settings.speedups) as eager_grads, \
            training_speedups(compiled_model, settings.speedups) as compiled_grads:
        eager = Step(eager_model, settings, eager_grads)
        compiled = Step(compiled_model, settings, compiled_grads)
        compiled.model = torch.compile(compiled_model, dynamic=s["dynamic"])
        print("compiling (the first compiled step) ...", flush=True)
        compiled_warmup = [compiled.timed(b) for b in batches[:warmup]]
        eager_warmup = [eager.timed(b) for b in batches[:warmup]]
        print(f"compiled warm-up steps: {', '.join(f'{x:.2f}' for x in compiled_warmup)} s", flush=True)
        eager_s, compiled_s = [], []
        for b in batches[warmup:]:
            eager_s.append(eager.timed(b))
            compiled_s.append(compiled.timed(b))
    outside = meter.other_load()

    ratios = [e / c for e, c in zip(eager_s, compiled_s)]
    steady = ratio_summary(ratios, confidence=s["confidence"])
    eager_step, compiled_step = median(eager_s), median(compiled_s)
    compile_s = sum(compiled_warmup) - warmup * compiled_step  # what the warm-up cost beyond steady steps
    n = s["amortise_over_steps"]
    gain = eager_step - compiled_step
    summary = {
        "compile_s": compile_s, "first_step_s": compiled_warmup[0],
        "eager_step_median_s": eager_step, "compiled_step_median_s": compiled_step,
        "steady_speedup": steady,
        "amortised_speedup": n * eager_step / (compile_s + n * compiled_step),
        "break_even_steps": compile_s / gain if gain > 0 else None,
        "dynamo_counters": dynamo_counters(),
    }
    record = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/compile_trial.py", *map(shlex.quote, sys.argv[1:])]),
        "settings": {"file": str(SETTINGS.relative_to(ROOT)), "sha256": digest, **git_file_state(SETTINGS),
                     "values": s, "speedups": list(settings.speedups), "batch_size": settings.batch_size,
                     "model": cfg.model.base},
        "machine": before["machine"],
        "environment": {"before": before, "after": environment(), "allocator": allocator_loaded(),
                        "torch_threads": torch.get_num_threads(), "outside_load": outside, "waited_s": waited},
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "steps": {"eager_warmup_s": eager_warmup, "compiled_warmup_s": compiled_warmup, "eager_s": eager_s,
                  "compiled_s": compiled_s, "tokens": [int(b["attention_mask"].sum()) for b in batches[warmup:]]},
        "summary": summary, "wall_s": time.perf_counter() - started,
    }
    jobs = append_job(args.output, record)
    print(f"\n{args.output}: job {jobs} appended ({record['wall_s']:.0f} s; outside load {outside:.2f} CPU)")
    print(f"compile time {compile_s:.1f} s (first step {compiled_warmup[0]:.1f} s)")
    print(f"steady state: eager {1000 * eager_step:.0f} ms, compiled {1000 * compiled_step:.0f} ms a step; "
          f"speed-up {steady['geomean']:.3f}x [{steady['low']:.3f}, {steady['high']:.3f}] over {steady['n']} steps")
    even = summary["break_even_steps"]
    print(f"amortised over {n} steps: {summary['amortised_speedup']:.3f}x; "
          + (f"compile time earned back after {even:.0f} steps" if even else "never earned back"))
    for category, values in summary["dynamo_counters"].items():
        print(f"dynamo {category}: " + "; ".join(f"{k} x{n}" for k, n in values.items()))


if __name__ == "__main__":
    main()
