"""Scaling of the pipeline's data stages with the number of training rows: wall time and peak RSS
per stage at 10k, 100k and 1M rows (settings: `bench/settings/scaling.json`).

SST-2 has 67,349 training sentences, so every size's training file is drawn from them with
replacement (seeded), and each drawn sentence gets, with probability `perturb_probability`, one
seeded word-level edit (drop a word, swap two neighbouring words, or repeat a word) so that the
large files are not just copies; labels are kept. Dev and test are SST-2's own. The file goes into
a throw-away project folder (`data/sst2-<rows>/train.tsv`) with a copy of configs/sst2.yaml
pointing at it (`data.max_train_rows: null`, every row used; `privacy.pii: off`, since the PII
scan runs at a few hundred rows per second and has its own benchmark, `bench/pii_scan_cost.py`).

Each size runs in a fresh process (cwd: its project folder, cold caches) calling the library
functions the pipeline's stages call, in order:

* read: `load_labelled_data` (what validate-data reads), on all rows;
* read_validate: `check_data` (read + the Great Expectations suite + HTML report: the whole
  validate-data stage's library call), on all rows;
* tokenize: the task type's `train_features` through `tokenize_cached` (the tokenize stage: chunks of
  `tlflow.data.cache.CHUNK_ROWS` rows appended to an Arrow file), on all rows;
* load_features: `feature_columns(load_tokenized(...)["train"])`, what the fine-tune stage does first
  (the saved split memory-mapped, rows decoded per batch), on all rows;
* finetune: `train_task_model` for a fixed budget of `finetune_steps` optimizer steps (the first
  steps of an epoch over all feature rows, read memory-mapped; no validation): fine-tuning 1M rows
  on 2 cores would take hours, and its time per step does not depend on the rows; this shows only
  that the loop's memory and time stay flat while it plans an epoch over the larger data.

Peak RSS and peak anonymous RSS (`RssAnon`: without the pages of memory-mapped files, which are
file cache) are sampled every 20 ms (this process plus its children) and reported per stage (peak
during the stage, and the value when it started). The stages run one after the other in one
process, as in the pipeline (which keeps the loaded splits for evaluation and registration), so a
stage's peak includes what earlier stages still hold, and memory they freed but the allocator did
not return; `added_mb` (peak minus the RSS at the stage's start) is the stage's own addition. A
stage whose peak grows with the rows holds them in memory; the result says so
(`memory_growth_mb_per_100k_rows`, on the peak; `anon_growth_mb_per_100k_rows`, on the anonymous
peak, which `memory_flat` judges; `added_growth_mb_per_100k_rows`, on the addition). Time growth is
the exponent of time against rows between the two largest sizes (1 = linear).

    .venv/bin/python bench/scaling.py [--sizes 2000,4000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml
from benchlib import (  # bench/ is sys.path[0]
    allocator_loaded,
    append_job,
    environment,
    git_file_state,
    load_settings,
    run_with_environment,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scaling.json"
STAGES = ("read", "read_validate", "tokenize", "load_features", "finetune")
DATA_STAGES = ("read", "read_validate", "tokenize", "load_features")


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def perturb(words: list[str], rng: random.Random) -> list[str]:
    """One word-level edit: drop a word, swap two neighbours, or repeat a word."""
    if len(words) < 2:
        return words + words
    i = rng.randrange(len(words) - 1)
    edit = rng.randrange(3)
    if edit == 0:
        return words[:i] + words[i + 1:]
    if edit == 1:
        return words[:i] + [words[i + 1], words[i]] + words[i + 2:]
    return words[:i + 1] + [words[i]] + words[i + 1:]


def write_train(source: Path, target: Path, rows: int, seed: int, probability: float,
                held_out: set[str] = frozenset()) -> dict:
    """`rows` training rows drawn with replacement from `source` (a header + `sentence<TAB>label`
    TSV), each perturbed with `probability` (an edit that would give a text of `held_out`, the
    lower-cased dev and test sentences, is not applied: the leakage check would fail); returns counts."""
    lines = source.read_text(encoding="utf-8").splitlines()
    header, body = lines[0], [line.split("\t") for line in lines[1:] if line.strip()]
    rng = random.Random(seed)
    perturbed = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as f:
        f.write(header + "\n")
        for _ in range(rows):
            sentence, label = body[rng.randrange(len(body))]
            if rng.random() < probability:
                edited = " ".join(perturb(sentence.split(), rng))
                if edited.strip().lower() not in held_out:
                    sentence = edited
                    perturbed += 1
            f.write(f"{sentence}\t{label}\n")
    return {"rows": rows, "perturbed_rows": perturbed, "source_rows": len(body), "bytes": target.stat().st_size}


def make_project(parent: Path, rows: int, settings: dict) -> tuple[Path, dict]:
    """A project folder with the sampled data and a config reading it."""
    project = parent / f"rows-{rows}"
    folder = project / "data" / f"sst2-{rows}"
    sst2 = ROOT / "data" / "sst2"
    held_out = {line.split("\t")[0].strip().lower() for name in ("dev.tsv", "test.tsv")
                for line in (sst2 / name).read_text(encoding="utf-8").splitlines()[1:]}
    made = write_train(sst2 / "train.tsv", folder / "train.tsv", rows, settings["data_seed"],
                       settings["perturb_probability"], held_out)
    for name in ("dev.tsv", "test.tsv"):
        shutil.copy(sst2 / name, folder / name)
    cfg = yaml.safe_load((ROOT / settings["config"]).read_text(encoding="utf-8"))
    cfg["data"]["files"] = {"train": f"{folder.relative_to(project)}/train.tsv",
                            "validation": f"{folder.relative_to(project)}/dev.tsv",
                            "test": f"{folder.relative_to(project)}/test.tsv"}
    cfg["data"]["max_train_rows"] = None
    cfg.setdefault("privacy", {})["pii"] = "off"
    cfg["name"] = f"sst2-scaling-{rows}"
    (project / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return project, made


# ---------------------------------------------------------------------------------------------
# Measuring (child process)
# ---------------------------------------------------------------------------------------------


def anonymous_rss(pid: int) -> int:
    """Resident anonymous memory of `pid` in bytes (`RssAnon` of /proc/<pid>/status): the heap and
    other private memory, without the pages of memory-mapped files (which the kernel can drop and
    read back)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples the resident memory (all of it, and the anonymous part) of this process and its
    children every `interval` seconds; `mark()` starts a new window and returns the previous
    window's peaks."""

    def __init__(self, interval: float = 0.02) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.peak_anon = 0
        self.mark()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def sample(self) -> tuple[int, int]:
        """(RSS, anonymous RSS) of the process and its children."""
        rss, anon = self.process.memory_info().rss, anonymous_rss(self.process.pid)
        for child in self.process.children(recursive=True):
            try:
                rss, anon = rss + child.memory_info().rss, anon + anonymous_rss(child.pid)
            except (psutil.Error, OSError):
                pass
        return rss, anon

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            rss, anon = self.sample()
            self.peak, self.peak_anon = max(self.peak, rss), max(self.peak_anon, anon)

    def mark(self) -> dict[str, float]:
        """Peaks since the last mark and the values now, in MB; the next window starts now."""
        rss, anon = self.sample()
        out = {"peak_rss_mb": max(self.peak, rss) / 2**20, "rss_end_mb": rss / 2**20,
               "peak_anon_mb": max(self.peak_anon, anon) / 2**20, "anon_end_mb": anon / 2**20}
        self.peak, self.peak_anon = rss, anon
        return out


def child(config: Path, settings: dict, result_file: Path) -> None:
    began = time.perf_counter()
    from tlflow import paths
    from tlflow.config import load_config
    from tlflow.data.cache import load_tokenized, tokenize_cached
    from tlflow.data.features import feature_columns
    from tlflow.data.readers import load_labelled_data
    from tlflow.data.spec import without_meta
    from tlflow.data.validation.stage import check_data
    from tlflow.modeling.models import load_tokenizer
    from tlflow.runtime import apply_defaults
    from tlflow.task_types.base import TaskSettings
    from tlflow.task_types.registry import task_type_for
    from tlflow.training.finetuning import train_task_model

    apply_defaults()
    imported = time.perf_counter() - began
    cfg = load_config(config)
    task_type = task_type_for(cfg)
    sampler = RssSampler()
    stages: dict[str, dict] = {}

    def timed(name: str, fn):
        gc.collect()
        before = sampler.mark()
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
        stage = stages[name] = {"seconds": seconds, "rss_start_mb": before["rss_end_mb"],
                                "anon_start_mb": before["anon_end_mb"], **sampler.mark()}
        print(f"  {name:14s} {seconds:8.2f} s  peak RSS {stage['peak_rss_mb']:7.0f} MB (start "
              f"{stage['rss_start_mb']:.0f} MB), anonymous {stage['peak_anon_mb']:7.0f} MB (start "
              f"{stage['anon_start_mb']:.0f} MB)", flush=True)
        return out

    spec = task_type.dataset_spec()
    read = timed("read", lambda: load_labelled_data(cfg.data, spec, cfg.evaluate.slices))
    rows = {split: len(ds) for split, ds in read.splits.items()}
    del read
    loaded, report, _ = timed("read_validate", lambda: check_data(cfg, spec, task_type.data_checks(),
                                                                  text_fields=task_type.text_fields))
    if not report.success:
        raise RuntimeError(f"{config}: validation failed:\n{report.summary()}")
    tokenizer = load_tokenizer(cfg.model.base)
    task_settings = TaskSettings.from_config(cfg)
    built = timed("tokenize", lambda: tokenize_cached(
        without_meta(loaded.splits["train"]),
        lambda chunk: task_type.train_features(chunk, loaded.label_names, tokenizer, task_settings),
        paths.TOKENIZED_DIR, f"scaling-{rows['train']}"))
    features = timed("load_features", lambda: feature_columns(load_tokenized(built.path)["train"]))
    # the first `finetune_steps` steps of an epoch over every row: the loop holds all rows' lengths and batches
    steps_per_epoch = math.ceil(len(features["input_ids"]) / cfg.finetune.batch_size)
    epochs = (settings["finetune_steps"] - 0.5) / steps_per_epoch  # ceil(epochs * steps_per_epoch) = finetune_steps
    train_cfg = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"epochs": epochs})})
    _, result = timed("finetune", lambda: train_task_model(
        train_cfg, features, None, loaded.label_names, tokenizer, cfg.model.base, paths.CHECKPOINTS_DIR / "scaling",
        progress=False))
    sampler.stop.set()
    record = {"rows": rows, "import_s": imported, "stages": stages, "finetune_steps": result.steps,
              "finetune_rows": result.steps * cfg.finetune.batch_size, "finetune_epoch_rows": len(features["input_ids"]),
              "process_peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
              "process_peak_anon_mb": max(s["peak_anon_mb"] for s in stages.values())}
    result_file.write_text(json.dumps(record), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def summarise(runs: list[dict]) -> dict:
    """Time exponent between the two largest sizes, and memory growth per 100k rows, per stage."""
    runs = sorted(runs, key=lambda r: r["train_rows"])
    small, large = runs[-2], runs[-1]
    out = {}
    for stage in STAGES:
        a, b = small["stages"][stage], large["stages"][stage]
        rows_ratio = large["train_rows"] / small["train_rows"]
        exponent = math.log(b["seconds"] / a["seconds"]) / math.log(rows_ratio) if a["seconds"] > 0 else None
        per_100k = (large["train_rows"] - small["train_rows"]) / 1e5
        growth = (b["peak_rss_mb"] - a["peak_rss_mb"]) / per_100k
        added_growth = ((b["peak_rss_mb"] - b["rss_start_mb"]) - (a["peak_rss_mb"] - a["rss_start_mb"])) / per_100k
        anon_growth = (b["peak_anon_mb"] - a["peak_anon_mb"]) / per_100k if "peak_anon_mb" in a else None
        out[stage] = {
            "seconds": {r["train_rows"]: r["stages"][stage]["seconds"] for r in runs},
            "peak_rss_mb": {r["train_rows"]: r["stages"][stage]["peak_rss_mb"] for r in runs},
            "us_per_row": {r["train_rows"]: 1e6 * r["stages"][stage]["seconds"] / r["train_rows"] for r in runs},
            "time_exponent": exponent,
            "added_mb": {r["train_rows"]: r["stages"][stage]["peak_rss_mb"] - r["stages"][stage]["rss_start_mb"]
                         for r in runs},
            "memory_growth_mb_per_100k_rows": growth,
            "added_growth_mb_per_100k_rows": added_growth,
            "peak_anon_mb": {r["train_rows"]: r["stages"][stage].get("peak_anon_mb") for r in runs},
            "anon_growth_mb_per_100k_rows": anon_growth,
        }
        if stage in DATA_STAGES:
            out[stage]["linear"] = exponent is not None and exponent <= 1.15
        # under 20 MB per 100k rows (about 200 B a row), judged on the anonymous memory: pages of the
        # memory-mapped feature files are file cache the kernel can drop, not memory the process holds
        out[stage]["memory_flat"] = (anon_growth if anon_growth is not None else growth) <= 20.0
    return out


def main() -> None:
    settings, settings_sha = load_settings("scaling")
    run_with_environment(settings.get("environment", {}))  # the frozen allocator and threads, children included
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated training rows; smoke runs only")
    parser.add_argument("--finetune-steps", type=int, help="fine-tuning step budget; smoke runs only")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.finetune_steps:
        settings["finetune_steps"] = args.finetune_steps
    if args.child:
        child(args.child, settings, args.result)
        return
    overrides = {"finetune_steps": args.finetune_steps} if args.finetune_steps else {}
    if args.sizes:
        settings["sizes"] = overrides["sizes"] = [int(x) for x in args.sizes.split(",")]
    started = time.perf_counter()
    env_before = environment()
    runs = []
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "MLFLOW_TRACKING_URI": "", "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI")
    with tempfile.TemporaryDirectory(prefix="tlflow-scaling-") as tmp:
        for rows in settings["sizes"]:
            made_at = time.perf_counter()
            project, made = make_project(Path(tmp), rows, settings)
            print(f"{rows:,} rows: data written in {time.perf_counter() - made_at:.1f} s "
                  f"({made['perturbed_rows']:,} perturbed, {made['bytes'] / 2**20:.1f} MB)", flush=True)
            result = project / "result.json"
            wall = time.perf_counter()
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(project / "config.yaml"),
                            "--result", str(result), f"--finetune-steps={settings['finetune_steps']}"],
                           cwd=project, env=env, check=True)
            record = json.loads(result.read_text(encoding="utf-8"))
            record.update(train_rows=record["rows"]["train"], requested_rows=rows, data=made,
                          process_wall_s=time.perf_counter() - wall)
            runs.append(record)
            shutil.rmtree(project)
    summary = summarise(runs) if len(runs) >= 2 else {}
    job = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/scaling.py", *map(shlex.quote, sys.argv[1:])]),
        "environment_before": env_before, "environment_after": environment(), "machine": env_before["machine"],
        "settings_file": "bench/settings/scaling.json", "settings_sha256": settings_sha,
        "settings_git": git_file_state(ROOT / "bench" / "settings" / "scaling.json"), "allocator": allocator_loaded(),
        "settings_overridden": overrides, "settings": settings,
        "data_note": "training rows drawn with replacement from SST-2 train (67,349 sentences) with seeded "
                     "word-level perturbation (drop / swap neighbours / repeat one word); dev and test are SST-2's",
        "measured": {"read, read_validate, tokenize, load_features": "all rows of each size",
                     "finetune": f"the first {settings['finetune_steps']} optimizer steps of an epoch over all rows",
                     "memory": "peak RSS and peak anonymous RSS (RssAnon: without memory-mapped file pages), "
                               "process and children, sampled every 20 ms; memory_flat judged on the anonymous"},
        "runs": runs, "summary": summary, "wall_s": time.perf_counter() - started,
    }
    jobs = append_job(args.output, job)
    heads = " | ".join(f"{r['train_rows']:,} rows s / RSS MB / anon MB" for r in runs)
    print(f"\n| stage | {heads} | time exponent | MB per 100k rows (RSS / anonymous) |")
    print("|---|" + "---|" * (len(runs) + 2))
    for stage in STAGES:
        cells = " | ".join(f"{r['stages'][stage]['seconds']:.2f} / {r['stages'][stage]['peak_rss_mb']:.0f} / "
                           f"{r['stages'][stage]['peak_anon_mb']:.0f}" for r in runs)
        s = summary.get(stage, {})
        exponent = s.get("time_exponent")
        print(f"| {stage} | {cells} | {exponent:.2f} | {s['memory_growth_mb_per_100k_rows']:.0f} / "
              f"{s['anon_growth_mb_per_100k_rows']:.0f} |" if exponent is not None else f"| {stage} | {cells} | | |")
    print(f"total {job['wall_s']:.0f} s; appended job {jobs} to {args.output}")


if __name__ == "__main__":
    main()
