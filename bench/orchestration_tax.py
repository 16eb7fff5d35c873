"""Orchestration and tracking tax of the demo pipeline, end to end: `tlflow run` against a plain
Python script of the same stages (`bench/plain_pipeline.py`), and the cost of MLflow logging in
the fine-tuning loop. Settings: `bench/settings/tax.json` (frozen; sha256 in the result).

End to end (`pairs` alternating pairs, the order flipping each pair): both contenders run as fresh
processes, timed from the parent around the subprocess (process start, imports, Prefect's
temporary server, every stage, the tracking work inside the stage bodies, exit), on the same config
(`config` with `overrides`: the demo with fewer training rows so that the pairs fit the
benchmark budget; at 4,800 rows one epoch is 150 steps, the demo's `min_steps`, so no epoch is
added), each in a new project folder (`data/` linked, cold tokenization and checkpoint caches):
* `tlflow run`: Prefect flow and task runs with their temporary local server, MLflow on SQLite in
  the project folder (created by the run, as on a fresh checkout; no champion yet, so the gate
  re-scores none), model logging, registration and promotion. The Prefect home is shared by the
  job's runs and initialised once before the first pair (not timed), so the first pair does not
  pay Prefect's database creation;
* plain: `bench/plain_pipeline.py`, the same library stage functions without Prefect and MLflow
  (the model is saved with save_pretrained instead of being logged and registered).
The tax is the per-pair ratio of wall times (tlflow / plain) with a t interval on the log ratios
(`benchlib.ratio_interval`). After each `tlflow run` the same command runs once more on the
unchanged project (`second`: the pipeline reports the registered version and trains nothing).

MLflow logging (`logging_pairs` pairs in one process, the order flipping each pair): the
fine-tune stage's library call `train_task_model` on `logging_rows` training rows (one epoch) with
the stage's per-step MLflow callback (`tasks.finetune._log_async`, then the flush the stage does)
and with a callback that drops the metrics (`plain_pipeline.keep_metrics`: the loop computes the
same validation and gap metrics, nothing is sent), inside one MLflow run on SQLite; fresh
checkpoint folder each time.

    .venv/bin/python bench/orchestration_tax.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    allocator_loaded,
    append_job,
    environment,
    git_file_state,
    load_settings,
    median,
    ratio_interval,
    run_with_environment,
    wait_for_quiet,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "orchestration_tax.json"
TLFLOW = ROOT / ".venv" / "bin" / "tlflow"


def new_project(parent: Path, name: str) -> Path:
    project = parent / name
    project.mkdir()
    (project / "data").symlink_to(ROOT / "data", target_is_directory=True)
    shutil.copy(ROOT / "data.dvc", project / "data.dvc")
    return project


def timed_process(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall time of `command` as a fresh process; its output goes to `cwd/output.log` (shown on failure)."""
    log = cwd / "output.log"
    start = time.perf_counter()
    with log.open("ab") as out:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if done.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"{shlex.join(command)} failed with exit code {done.returncode}:\n{tail}")
    return wall


# ---------------------------------------------------------------------------------------------
# MLflow logging cost (child process)
# ---------------------------------------------------------------------------------------------


def logging_child(settings: dict, result_file: Path) -> None:
    """Fine-tuning with and without the stage's MLflow callback, alternating, in this process."""
    from tlflow.runtime import apply_defaults

    apply_defaults()
    import mlflow
    from plain_pipeline import keep_metrics

    from tasks.finetune import _log_async
    from tlflow import paths
    from tlflow.config import load_config
    from tlflow.data.cache import load_tokenized, tokenize_cached
    from tlflow.data.features import feature_columns
    from tlflow.data.spec import without_meta
    from tlflow.data.validation.stage import check_data
    from tlflow.modeling.models import load_tokenizer
    from tlflow.task_types.base import TaskSettings
    from tlflow.task_types.registry import task_type_for
    from tlflow.training.finetuning import train_task_model

    cfg = load_config(ROOT / settings["config"], [*settings["overrides"], f"data.max_train_rows={settings['logging_rows']}"])
    cfg = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"epochs": 1})})
    task_type = task_type_for(cfg)
    loaded, report, _ = check_data(cfg, task_type.dataset_spec(), task_type.data_checks(),
                                   text_fields=task_type.text_fields)
    tokenizer = load_tokenizer(cfg.model.base)
    settings_ = TaskSettings.from_config(cfg)
    built = tokenize_cached(without_meta(loaded.splits["train"]),
                            lambda rows: task_type.train_features(rows, loaded.label_names, tokenizer, settings_),
                            paths.TOKENIZED_DIR, "logging")
    features = feature_columns(load_tokenized(built.path)["train"])
    runs: dict[str, list[dict]] = {"with_logging": [], "without_logging": []}
    mlflow.set_experiment("logging-cost")
    with mlflow.start_run():
        for pair in range(settings["logging_pairs"]):
            order = ("with_logging", "without_logging") if pair % 2 == 0 else ("without_logging", "with_logging")
            for mode in order:
                wait_for_quiet(settings["max_wait_s"], settings["max_load_cpus"])
                with tempfile.TemporaryDirectory(prefix="ckpt-") as ckpt:
                    start = time.perf_counter()
                    _, result = train_task_model(cfg, features, loaded.splits["validation"], loaded.label_names,
                                                 tokenizer, cfg.model.base, Path(ckpt),
                                                 _log_async if mode == "with_logging" else keep_metrics,
                                                 progress=False, train_rows=loaded.splits["train"])
                    if mode == "with_logging":
                        mlflow.flush_async_logging()
                    wall = time.perf_counter() - start
                runs[mode].append({"pair": pair, "wall_s": wall, "train_seconds": result.seconds,
                                   "steps": result.steps})
                print(f"  logging pair {pair + 1}: {mode:16s} {wall:6.1f} s ({result.steps} steps)", flush=True)
    result_file.write_text(json.dumps(runs), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main() -> None:
    settings, settings_sha = load_settings("tax")
    run_with_environment(settings.get("environment", {}))  # the frozen allocator and threads, children included
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, help="end-to-end pairs; smoke runs only")
    parser.add_argument("--logging-pairs", type=int, help="logging pairs; smoke runs only")
    parser.add_argument("--logging-rows", type=int, help="training rows of the logging pairs; smoke runs only")
    parser.add_argument("--set", dest="overrides", action="append", help="config override key=value; smoke runs only")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--logging-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    overridden = {k: v for k, v in (("pairs", args.pairs), ("logging_pairs", args.logging_pairs),
                                    ("logging_rows", args.logging_rows),
                                    ("overrides", args.overrides and settings["overrides"] + args.overrides))
                  if v is not None}
    settings.update(overridden)
    if args.logging_child:
        logging_child(settings, args.logging_child)
        return

    started = time.perf_counter()
    env_before = environment()
    config = str(ROOT / settings["config"])
    sets = [f"--set={o}" for o in settings["overrides"]]
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME"))}
    base_env.update(TQDM_DISABLE="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
    runs: dict[str, list[dict]] = {"tlflow_run": [], "plain": [], "second": []}
    with tempfile.TemporaryDirectory(prefix="tlflow-tax-") as tmp:
        tmp = Path(tmp)
        prefect_env = {**base_env, "PREFECT_HOME": str(tmp / "prefect-home")}
        warm = time.perf_counter()  # Prefect's database, once (not timed in the pairs)
        subprocess.run([sys.executable, "-c", "from tlflow.runtime import apply_defaults; apply_defaults(); "
                        "from prefect import flow; flow(name='warm-up')(lambda: None)()"],
                       cwd=tmp, env=prefect_env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        prefect_init_s = time.perf_counter() - warm
        for pair in range(settings["pairs"]):
            order = ("tlflow_run", "plain") if pair % 2 == 0 else ("plain", "tlflow_run")
            for mode in order:
                project = new_project(tmp, f"{mode}-{pair}")
                waited, load_before = wait_for_quiet(settings["max_wait_s"], settings["max_load_cpus"])
                if mode == "tlflow_run":
                    command = [str(TLFLOW), "run", config, *sets]
                else:
                    command = [sys.executable, str(ROOT / "bench" / "plain_pipeline.py"), config, *sets,
                               "--output", str(project / "plain-output")]
                wall = timed_process(command, project, prefect_env)
                runs[mode].append({"pair": pair, "wall_s": wall, "waited_for_quiet_s": waited,
                                   "outside_load_before": load_before, "loadavg_after": os.getloadavg()[0]})
                print(f"[{pair + 1}/{settings['pairs']}] {mode:10s} {wall:6.1f} s", flush=True)
                if mode == "tlflow_run" and settings["second_run"]:
                    wall = timed_process(command, project, prefect_env)
                    runs["second"].append({"pair": pair, "wall_s": wall})
                    print(f"[{pair + 1}/{settings['pairs']}] second     {wall:6.1f} s (unchanged inputs)", flush=True)
                shutil.rmtree(project)
        logging_project = new_project(tmp, "logging")
        result = logging_project / "logging.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--logging-child", str(result)]
        command += [f"--set={o}" for o in (args.overrides or [])]
        command += [f"--logging-pairs={args.logging_pairs}"] if args.logging_pairs else []
        command += [f"--logging-rows={args.logging_rows}"] if args.logging_rows else []
        subprocess.run(command, cwd=logging_project, check=True,
                       env={**prefect_env, "MLFLOW_TRACKING_URI": f"sqlite:///{logging_project / 'mlflow.db'}"})
        logging_runs = json.loads(result.read_text(encoding="utf-8"))

    tax = [t["wall_s"] / p["wall_s"] for t, p in zip(runs["tlflow_run"], runs["plain"])]
    logging = [w["wall_s"] / o["wall_s"] for w, o in zip(logging_runs["with_logging"], logging_runs["without_logging"])]
    summary = {
        "end_to_end_ratio": ratio_interval(tax),
        "end_to_end_tax_share": {k: v - 1 for k, v in ratio_interval(tax).items() if k in ("median", "geomean",
                                                                                             "low", "high")},
        "tlflow_run_median_s": median([r["wall_s"] for r in runs["tlflow_run"]]),
        "plain_median_s": median([r["wall_s"] for r in runs["plain"]]),
        "second_run_median_s": median([r["wall_s"] for r in runs["second"]]) if runs["second"] else None,
        "logging_ratio": ratio_interval(logging),
    }
    summary["goal_met"] = summary["end_to_end_tax_share"]["geomean"] <= 0.05
    job = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/orchestration_tax.py", *map(shlex.quote, sys.argv[1:])]),
        "environment_before": env_before, "environment_after": environment(), "machine": env_before["machine"],
        "settings_file": "bench/settings/tax.json", "settings_sha256": settings_sha,
        "settings_git": git_file_state(ROOT / "bench" / "settings" / "tax.json"), "allocator": allocator_loaded(),
        "settings_overridden": overridden, "settings": settings, "prefect_init_s": prefect_init_s,
        "runs": runs, "logging_runs": logging_runs, "summary": summary,
        "goal": "tlflow run / plain script of the same stages <= 1.05 end to end (orchestration + tracking tax <= 5 %)",
        "wall_s": time.perf_counter() - started,
    }
    jobs = append_job(args.output, job)
    e, lg = summary["end_to_end_ratio"], summary["logging_ratio"]
    print(f"\ntlflow run {summary['tlflow_run_median_s']:.1f} s vs plain {summary['plain_median_s']:.1f} s (medians): "
          f"ratio {e['geomean']:.3f} [{e.get('low', float('nan')):.3f}, {e.get('high', float('nan')):.3f}] over "
          f"{e['n']} pairs; goal <= 1.05 {'met' if summary['goal_met'] else 'NOT met'}")
    print(f"fine-tuning with / without MLflow logging: {lg['geomean']:.3f} [{lg.get('low', float('nan')):.3f}, "
          f"{lg.get('high', float('nan')):.3f}] over {lg['n']} pairs")
    print(f"total {job['wall_s']:.0f} s; appended job {jobs} to {args.output}")


if __name__ == "__main__":
    main()
