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

    .venv/bin/python bench/inference_throughput.py [--model-uri models:/sst2@champion | --hf-dir DIR]
        [--rows N] [--repeats R] [--threads T]

The model comes from the project's MLflow store (`MLFLOW_TRACKING_URI`, else
`sqlite:///mlflow/mlflow.db` of the repository), or from a Hugging Face folder (`--hf-dir`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import io
import os
import platform
import shlex
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from benchlib import CpuMeter, append_job, machine, median, wait_for_quiet
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from transformers import AutoTokenizer

from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.registry import tracking
from tlflow.runtime import apply_defaults
from tlflow.serving import TaskModel, load_task_model
from tlflow.serving.optimized import (
    FP32,
    VARIANTS,
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
GOAL_SPEEDUP, GOAL_DROP = 2.0, 0.01
#: A timed run during which other processes kept more CPUs busy than this is left out of the
#: medians when the contender has runs without (it is still listed in the JSON, flagged).
CONTENDED = 0.25


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-uri", default="models:/sst2@champion", help="MLflow model URI of the fp32 model")
    source.add_argument("--hf-dir", type=Path, help="a fine-tuned Hugging Face folder instead of --model-uri")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "sst2.yaml",
                        help="config whose test split is scored (and whose settings a --hf-dir model gets)")
    parser.add_argument("--rows", type=int, default=0, help="score only the first N test examples (0: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender, alternating")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants to compare")
    parser.add_argument("--quiet-wait", type=float, default=120, help="max seconds to wait for a quiet machine")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.hf_dir is not None:
        args.hf_dir = args.hf_dir.resolve()
    args.config, args.output = args.config.resolve(), args.output.resolve()
    os.chdir(ROOT)  # the configs' data paths and the default MLflow store are relative to the repository
    apply_defaults()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    cfg = load_config(args.config)
    loaded = load_labelled_data(cfg.data, get_task_type(cfg.task.type).dataset_spec())
    test = loaded.splits["test"]
    if args.rows:
        test = test.select(range(min(args.rows, len(test))))
    task = get_task_type(cfg.task.type)
    fp32, model_source = load_model(args, cfg)
    names = tuple(v.strip() for v in args.variants.split(",") if v.strip())

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
        warm = test.select(range(min(64, len(test))))
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
                waited, _ = wait_for_quiet(args.quiet_wait, 0.2)
                meter = CpuMeter()
                evaluation, seconds = timed_evaluation(task, model, fp32.tokenizer, test, labels, settings)
                outside = meter.other_load()
                metrics.setdefault(name, {"metrics": dict(evaluation.metrics), "headline": evaluation.headline})
                sps = len(test) / seconds
                acc = evaluation.metrics[cfg.task.primary_metric]
                runs[name].append({"samples_per_s": sps, "seconds": seconds, cfg.task.primary_metric: acc,
                                   "outside_load": outside, "waited_s": waited, "contended": outside > CONTENDED})
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
    choice = choose(baseline, candidates, metric, GOAL_DROP, GOAL_SPEEDUP)
    summary = {
        name: {"median_samples_per_s": m.samples_per_s, metric: m.metrics[metric],
               f"{metric}_change_pt": 100 * (m.metrics[metric] - baseline.metrics[metric]),
               "speedup": m.samples_per_s / baseline.samples_per_s, "agreement_with_fp32": agreement.get(name),
               "size_mib": sizes[name], "build_s": build_s.get(name, 0.0),
               "runs_in_median": len(kept[name]),
               "median_outside_load": median([r["outside_load"] for r in kept[name]])}
        for name, m in measured.items()
    }
    record = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/inference_throughput.py", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine(),
        "versions": versions(),
        "settings": {"model": model_source, "config": str(args.config.relative_to(ROOT)) if args.config.is_relative_to(
            ROOT) else str(args.config), "test_examples": len(test), "repeats": args.repeats, "threads": args.threads,
            "batch_size": settings.batch_size, "max_length": settings.max_length, "metric": metric},
        "runs": runs, "summary": summary,
        "goal": {"speedup": GOAL_SPEEDUP, "max_drop": GOAL_DROP, "met_by": choice.chosen.variant if choice.chosen
                 else None, "reason": choice.reason},
        "wall_s": time.perf_counter() - started,
    }
    append_job(args.output, record)  # every job kept: the file is a list, the newest last

    print(f"\n{comparison_table(baseline, candidates, metric)}\n")
    print(f"| contender | samples/s (median) | {metric} | change | speedup | agrees with fp32 | size |")
    print("|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        agree = f"{100 * s['agreement_with_fp32']:.1f} %" if s["agreement_with_fp32"] is not None else "-"
        print(f"| {name} | {s['median_samples_per_s']:.1f} | {s[metric]:.4f} | {s[f'{metric}_change_pt']:+.2f} pt | "
              f"{s['speedup']:.2f}x | {agree} | {s['size_mib']:.1f} MiB |")
    verdict = "met" if choice.chosen else "not met"
    print(f"\ngoal (>= {GOAL_SPEEDUP:.0f}x samples/s within {100 * GOAL_DROP:.0f} pt): {verdict}: {choice.reason}")
    print(f"appended to {args.output} ({record['wall_s']:.0f}s)")


if __name__ == "__main__":
    main()
