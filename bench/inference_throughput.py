"""Inference throughput: the fine-tuned champion in fp32 against its optimized variants.

Four contenders score the same SST-2 test split (1,821 sentences, as `configs/sst2.yaml` defines
it, read by tlflow's `load_labelled_data`) with the task type's own `evaluate` (tokenize, batched
length-sorted inference under `torch.inference_mode`, metrics), at the same thread count:

* fp32: the model as registered (the Hugging Face model in torch);
* torch-int8: `torch.ao.quantization.quantize_dynamic` on every `nn.Linear`;
* onnx-fp32: the TorchDynamo ONNX export, run by ONNX Runtime (CPU, `intra_op_num_threads` = threads);
* onnx-int8: that graph after `onnxruntime.quantization.quantize_dynamic` (int8 weights).

The variants are built by `tlflow.serving.optimized` (what `tlflow optimize` registers). Throughput is test
sentences per second of the whole `evaluate` call; each contender is warmed up once on 64
sentences, then runs alternate fp32, torch-int8, onnx-fp32, onnx-int8, ... (each after waiting for
a quiet machine) and medians are reported (runs during which other processes kept over 0.25 CPU
busy are left out of them when clean runs exist), with accuracy and its change against fp32, the
speedup and the share of predictions that agree with fp32.

Settings: `bench/settings/inference.json` (frozen; sha256 and git state in the result; a command
line option that changes one is recorded under `settings_overridden`). The process re-executes
itself under the settings' environment (jemalloc, 2 threads) like every benchmark. Each repeat
gives one paired speedup per variant (its samples/s over fp32's in the same repeat); the pairs of
every job in the results file with the same settings, the same model (the registered version's
run), the same ONNX recipe (`tlflow.serving.optimized.ONNX_RECIPE`) and the same CPU model are pooled: a Student-t interval over the pairs and, from two jobs on, a bootstrap over jobs
and pairs. The goal is met when a variant's interval (the jobs' one when there is one) lies at or
above 2x and its accuracy is within 1 pt of fp32 in every pooled job.

    .venv/bin/python bench/inference_throughput.py [--model-uri models:/sst2@champion | --hf-dir DIR]
        [--rows N] [--repeats R] [--threads T] [--glibc]

The model comes from the project's MLflow store (`MLFLOW_TRACKING_URI`, else
`sqlite:///mlflow/mlflow.db` of the repository), or from a Hugging Face folder (`--hf-dir`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import io
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from benchlib import (
    SETTINGS_DIR,
    CpuMeter,
    allocator_loaded,
    append_job,
    environment,
    git_file_state,
    load_settings,
    machine,
    median,
    run_with_environment,
    wait_for_quiet,
)
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from stats import paired_ratios, ratio_summary
from transformers import AutoTokenizer

from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.registry import tracking
from tlflow.runtime import apply_defaults
from tlflow.serving import TaskModel, load_task_model
from tlflow.serving.optimized import (
    FP32,
    ONNX_RECIPE,
    Measurement,
    build_variant,
    choose,
    comparison_table,
    timed_evaluation,
)
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import get_task_type

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "inference_throughput.json"
PACKAGES = ("torch", "transformers", "tokenizers", "onnxruntime", "onnx", "onnxscript", "mlflow", "numpy")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def load_model(args, cfg) -> tuple[TaskModel, dict]:
    """The fp32 model and where it came from (folder, or store, URI and resolved version)."""
    settings = TaskSettings.from_config(cfg)
    if args.hf_dir is not None:
        model = get_task_type(cfg.task.type).model_head[0].from_pretrained(args.hf_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(args.hf_dir, use_fast=True)
        return TaskModel.from_parts(model, tokenizer, settings), {"hf_dir": str(args.hf_dir)}
    uri = tracking.configure()
    try:
        wrapped = load_task_model(args.model_uri, settings)
    except MlflowException as err:
        sys.exit(f"error: cannot load {args.model_uri} from {uri}: {str(err).strip().splitlines()[0]} "
                 "(`make demo` registers sst2; or give --hf-dir)")
    if wrapped.variant != FP32:
        sys.exit(f"error: {args.model_uri} is already the {wrapped.variant} variant: give the fp32 model")
    source = {"model_uri": args.model_uri, "tracking_uri": uri}
    name, _, alias = args.model_uri.removeprefix("models:/").partition("@")
    if args.model_uri.startswith("models:/") and alias:
        mv = tracking.alias_version(MlflowClient(), name, alias)
        if mv is not None:
            source.update(version=str(mv.version), run_id=mv.run_id)
    return wrapped, source


def size_mib(model, onnx_file: Path | None = None) -> float:
    """Size of what a contender runs: its ONNX file, or its serialized torch state dict."""
    if onnx_file is not None:
        return onnx_file.stat().st_size / 2**20
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 2**20


def pool_key(settings: dict, source: dict, recipe: dict, cpu: str | None) -> str:
    """Jobs with equal settings on the same model (registered version's run, or folder), whose ONNX
    variants were built and run by the same recipe (`ONNX_RECIPE`), on the same CPU model, are pooled."""
    model = {k: source.get(k) for k in ("run_id", "hf_dir")}
    return hashlib.sha256(json.dumps([settings, model, recipe, cpu], sort_keys=True).encode()).hexdigest()[:16]


def paired_speedups(runs: dict[str, list[dict]], name: str) -> list[float]:
    """`name`'s samples/s over fp32's in the same repeat (the two ran one after the other); repeats
    where either was contended are left out when clean repeats exist."""
    pairs = list(zip(runs[name], runs[FP32]))
    clean = [(v, b) for v, b in pairs if not (v["contended"] or b["contended"])]
    return paired_ratios([v["samples_per_s"] for v, _ in clean or pairs],
                         [b["samples_per_s"] for _, b in clean or pairs])


def pooled(path: Path, job: dict) -> dict:
    """Each variant's speedup over fp32, pooled over this job and every earlier one in `path` with
    the same pool key: the t interval of the per-repeat ratios and, from two jobs on, the job-and-
    repeat bootstrap interval; the goal is met by a variant whose accuracy drop is within the goal
    in every pooled job and whose interval's lower end (the job interval when there is one) is at
    least the goal speedup."""
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    earlier = earlier if isinstance(earlier, list) else [earlier]
    same = [j for j in earlier if j.get("pool_key") == job["pool_key"]] + [job]
    s, out = job["settings"], {"jobs": [j["job_id"] for j in same], "variants": {}}
    for name in s["variants"]:
        ratios = [r for j in same for r in j["paired_speedups"][name]]
        jobs = [j["job_id"] for j in same for _ in j["paired_speedups"][name]]
        summary = ratio_summary(ratios, jobs, s["ratio_confidence"])
        drop = max(-j["summary"][name][f"{j['settings']['metric']}_change_pt"] for j in same) + 0.0  # no -0.0
        low = summary.get("job_low", summary.get("low"))
        summary.update(largest_drop_pt=drop, lower_end=low,
                       meets_goal=low is not None and low >= s["goal_speedup"] and drop <= 100 * s["goal_max_drop"])
        out["variants"][name] = summary
    meeting = [n for n, v in out["variants"].items() if v["meets_goal"]]
    out["goal_met_by"] = max(meeting, key=lambda n: out["variants"][n]["geomean"]) if meeting else None
    return out


def main() -> None:
    frozen, frozen_sha = load_settings("inference")
    # jemalloc and threads, as every benchmark; --glibc drops the allocator for every contender
    glibc = "--glibc" in sys.argv[1:]
    environment_settings = {k: v for k, v in frozen["environment"].items() if not (glibc and k == "LD_PRELOAD")}
    run_with_environment(environment_settings, unset=("LD_PRELOAD",) if glibc else ())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-uri", default=frozen["model_uri"], help="MLflow model URI of the fp32 model")
    source.add_argument("--hf-dir", type=Path, help="a fine-tuned Hugging Face folder instead of --model-uri")
    parser.add_argument("--config", type=Path, default=ROOT / frozen["config"],
                        help="config whose test split is scored (and whose settings a --hf-dir model gets)")
    parser.add_argument("--rows", type=int, default=frozen["rows"], help="score only the first N test examples (0: all)")
    parser.add_argument("--repeats", type=int, default=frozen["repeats"], help="timed runs per contender, alternating")
    parser.add_argument("--threads", type=int, default=frozen["threads"], help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--variants", default=",".join(frozen["variants"]), help="comma-separated variants to compare")
    parser.add_argument("--quiet-wait", type=float, default=frozen["quiet_wait_s"],
                        help="max seconds to wait for a quiet machine")
    parser.add_argument("--glibc", action="store_true",
                        help="run every contender under glibc's malloc instead of the frozen LD_PRELOAD allocator "
                             "(recorded as an overridden setting; such jobs pool only with each other)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.hf_dir is not None:
        args.hf_dir = args.hf_dir.resolve()
    args.config, args.output = args.config.resolve(), args.output.resolve()
    os.chdir(ROOT)  # the configs' data paths and the default MLflow store are relative to the repository
    apply_defaults()
    torch.set_num_threads(args.threads)
    started, env_before = time.perf_counter(), environment()
    names = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    s = {**frozen, "model_uri": None if args.hf_dir else args.model_uri, "rows": args.rows, "repeats": args.repeats,
         "threads": args.threads, "variants": list(names), "quiet_wait_s": args.quiet_wait,
         "environment": environment_settings,
         "config": str(args.config.relative_to(ROOT)) if args.config.is_relative_to(ROOT) else str(args.config)}
    s.pop("about")
    overridden = sorted(k for k in s if s[k] != frozen.get(k))

    cfg = load_config(args.config)
    task = get_task_type(cfg.task.type)
    loaded = load_labelled_data(cfg.data, task.dataset_spec())
    test = loaded.splits["test"]
    if args.rows:
        test = test.select(range(min(args.rows, len(test))))
    fp32, model_source = load_model(args, cfg)

    contenders, build_s, sizes = {FP32: fp32.model}, {}, {}
    with tempfile.TemporaryDirectory(prefix="tlflow-bench-") as tmp:
        for name in names:
            began = time.perf_counter()
            variant = build_variant(fp32.model, cfg.task.type, name, Path(tmp), args.threads)
            build_s[name] = time.perf_counter() - began
            sizes[name] = size_mib(variant.model, variant.onnx_file)
            contenders[name] = variant.model
            print(f"built {name} in {build_s[name]:.1f}s ({sizes[name]:.1f} MiB)", flush=True)
        sizes[FP32] = size_mib(fp32.model)

        settings, labels = fp32.settings, loaded.label_names
        warm = test.select(range(min(s["warmup_rows"], len(test))))
        for model in contenders.values():
            task.evaluate(model, fp32.tokenizer, warm, labels, settings)
        reference = task.probabilities(fp32.model, fp32.tokenizer, test, settings).argmax(-1) \
            if hasattr(task, "probabilities") else None
        agreement = {}
        if reference is not None:
            for name, model in contenders.items():
                agreement[name] = float((task.probabilities(model, fp32.tokenizer, test, settings).argmax(-1)
                                         == reference).mean())

        runs: dict[str, list[dict]] = {name: [] for name in contenders}
        metrics: dict[str, dict] = {}
        for repeat in range(args.repeats):
            for name, model in contenders.items():
                waited, _ = wait_for_quiet(args.quiet_wait, s["quiet_threshold_cpu"])
                meter = CpuMeter()
                evaluation, seconds = timed_evaluation(task, model, fp32.tokenizer, test, labels, settings)
                outside = meter.other_load()
                metrics.setdefault(name, {"metrics": dict(evaluation.metrics), "headline": evaluation.headline})
                sps = len(test) / seconds
                acc = evaluation.metrics[cfg.task.primary_metric]
                runs[name].append({"samples_per_s": sps, "seconds": seconds, cfg.task.primary_metric: acc,
                                   "outside_load": outside, "waited_s": waited,
                                   "contended": outside > s["contended_cpu"]})
                print(f"[{repeat + 1}/{args.repeats}] {name:10s} {sps:7.1f} samples/s  {cfg.task.primary_metric} "
                      f"{acc:.4f}  (outside load {outside:.2f} CPU)", flush=True)
        del contenders
        gc.collect()

    metric = cfg.task.primary_metric
    kept = {name: [r for r in rs if not r["contended"]] or rs for name, rs in runs.items()}
    measured = {name: Measurement(name, metrics[name]["metrics"], tuple(metrics[name]["headline"]),
                                  tuple(r["samples_per_s"] for r in rs), len(test)) for name, rs in kept.items()}
    baseline = measured[FP32]
    candidates = [measured[n] for n in names]
    choice = choose(baseline, candidates, metric, s["goal_max_drop"], s["goal_speedup"])
    summary = {
        name: {"median_samples_per_s": m.samples_per_s, metric: m.metrics[metric],
               f"{metric}_change_pt": 100 * (m.metrics[metric] - baseline.metrics[metric]),
               "speedup": m.samples_per_s / baseline.samples_per_s, "agreement_with_fp32": agreement.get(name),
               "size_mib": sizes[name], "build_s": build_s.get(name, 0.0),
               "runs_in_median": len(kept[name]),
               "median_outside_load": median([r["outside_load"] for r in kept[name]])}
        for name, m in measured.items()
    }
    s["metric"] = metric
    machine_info = machine()
    record = {
        "job_id": f"{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}",
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/inference_throughput.py", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine_info,
        "versions": versions(),
        "settings_file": {"path": "bench/settings/inference.json", "sha256": frozen_sha,
                          **git_file_state(os.path.join(SETTINGS_DIR, "inference.json"))},
        "settings_overridden": overridden,
        "settings": {**s, "model": model_source, "test_examples": len(test), "batch_size": settings.batch_size,
                     "max_length": settings.max_length},
        "onnx_recipe": ONNX_RECIPE,
        "pool_key": pool_key(s, model_source, ONNX_RECIPE, machine_info.get("Model name")),
        "allocator": allocator_loaded(),
        "environment_before": env_before,
        "runs": runs, "summary": summary,
        "paired_speedups": {name: paired_speedups(runs, name) for name in names},
        "goal": {"speedup": s["goal_speedup"], "max_drop": s["goal_max_drop"], "met_by": choice.chosen.variant
                 if choice.chosen else None, "reason": choice.reason},
    }
    record["pooled"] = pooled(args.output, record)
    record["environment_after"] = environment()
    record["wall_s"] = time.perf_counter() - started
    append_job(args.output, record)  # every job kept: the file is a list, the newest last

    print(f"\n{comparison_table(baseline, candidates, metric)}\n")
    print(f"| contender | samples/s (median) | {metric} | change | speedup | agrees with fp32 | size |")
    print("|---|---|---|---|---|---|---|")
    for name, v in summary.items():
        agree = f"{100 * v['agreement_with_fp32']:.1f} %" if v["agreement_with_fp32"] is not None else "-"
        print(f"| {name} | {v['median_samples_per_s']:.1f} | {v[metric]:.4f} | {v[f'{metric}_change_pt']:+.2f} pt | "
              f"{v['speedup']:.2f}x | {agree} | {v['size_mib']:.1f} MiB |")
    p = record["pooled"]
    print(f"\npooled over {len(p['jobs'])} job(s) (pool key {record['pool_key']}):")
    for name, v in p["variants"].items():
        job = f", jobs [{v['job_low']:.2f}, {v['job_high']:.2f}]" if "job_low" in v else ""
        t = f" [{v['low']:.2f}, {v['high']:.2f}]" if "low" in v else ""
        print(f"  {name:10s} {v['geomean']:.2f}x{t}{job} over {v['n']} paired repeats; largest drop "
              f"{v['largest_drop_pt']:.2f} pt")
    verdict = f"met by {p['goal_met_by']}" if p["goal_met_by"] else "not met"
    print(f"goal (>= {s['goal_speedup']:.0f}x samples/s, interval's lower end, within {100 * s['goal_max_drop']:.0f} pt): "
          f"{verdict}")
    print(f"appended to {args.output} ({record['wall_s']:.0f}s)")


if __name__ == "__main__":
    main()
