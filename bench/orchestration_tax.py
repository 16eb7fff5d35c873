"""Orchestration and tracking tax of the default pipeline (`make demo`: `training_pipeline` on
configs/sst2.yaml), and the cost of running it again on unchanged inputs.

Each measured run is a fresh Python process that does what `tlflow run` does (including starting
Prefect's temporary server while the libraries import, `flows.ephemeral`) working in a throw-away project
folder (`data/` linked, `data.dvc` copied, its own MLflow store, caches and Prefect home). Inside
the process the stage functions (the Prefect tasks' own functions: check-unchanged, validate,
tokenize, fine-tune, evaluate, register-and-promote) are timed; the tax is the flow call's wall
time minus the time inside them, i.e. what Prefect (flow and task runs, state changes, logs,
artifacts) and the pipeline's own MLflow run bookkeeping (lineage tags, run, params) add.
Imports are timed separately and not counted. MLflow logging during training is the time spent
in the fine-tune stage's per-step logging callback, against the training time.

Modes, alternating, `--repeats` times each:
* embedded: no Prefect server configured (Prefect's temporary local server), MLflow on SQLite,
  cold caches (a new project folder), as `make demo` on a fresh checkout;
* second: the same project again, data, config and code unchanged (tokenization cache, and the
  pipeline reports the registered version instead of training);
* server: against running Prefect and MLflow servers (`tlflow servers up` in a project folder of
  their own), cold caches; these runs share the servers' registry, so they train with
  `force=True` like a first run.

    .venv/bin/python bench/orchestration_tax.py [--repeats R --config configs/sst2.yaml]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import machine, median, wait_for_quiet

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "orchestration_tax.json"
STAGES = ("find_unchanged", "validate_data", "tokenize_data", "finetune_model", "evaluate_model",
          "register_and_promote")


def child(config: str, overrides: list[str], force: bool, result_file: Path) -> None:
    """One pipeline run in this process; writes its timings to `result_file`."""
    began = time.perf_counter()
    from tlflow.runtime import apply_defaults

    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))
    apply_defaults()
    from flows.ephemeral import start_early

    server = start_early()  # as `tlflow run` does: the temporary server starts while the rest imports
    import mlflow

    import tasks.finetune
    from flows.training import training_pipeline
    from tasks import evaluate, register, tokenize, validate
    from tlflow.config import load_config

    imported = time.perf_counter()
    spent: dict[str, float] = {}

    def timed(name, fn):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return run

    tasks_by_name = {"find_unchanged": register.find_unchanged, "validate_data": validate.validate_data,
                     "tokenize_data": tokenize.tokenize_data, "finetune_model": tasks.finetune.finetune_model,
                     "evaluate_model": evaluate.evaluate_model, "register_and_promote": register.register_and_promote}
    for name, stage in tasks_by_name.items():
        stage.fn = timed(name, stage.fn)
    tasks.finetune._log_async = timed("mlflow_step_logging", tasks.finetune._log_async)

    cfg = load_config(ROOT / config, overrides)
    start = time.perf_counter()
    server.wait()  # what of the server's start the imports did not hide counts as tax
    outcome = training_pipeline(cfg, force=force)
    wall = time.perf_counter() - start
    metrics = mlflow.MlflowClient().get_run(outcome.run_id).data.metrics
    record = {
        "wall_s": wall, "import_s": imported - began, "process_s": time.perf_counter() - began,
        "stages_s": {k: spent.get(k, 0.0) for k in STAGES}, "stage_sum_s": sum(spent.get(k, 0.0) for k in STAGES),
        "mlflow_step_logging_s": spent.get("mlflow_step_logging", 0.0),
        "train_seconds": metrics.get("train_seconds") if not outcome.reused else None,
        "reused": outcome.reused, "version": outcome.version,
        "test_accuracy": metrics.get("test_accuracy"),
    }
    record["tax_s"] = record["wall_s"] - record["stage_sum_s"]
    result_file.write_text(json.dumps(record), encoding="utf-8")


def new_project(parent: Path, name: str) -> Path:
    project = parent / name
    project.mkdir()
    (project / "data").symlink_to(ROOT / "data", target_is_directory=True)
    shutil.copy(ROOT / "data.dvc", project / "data.dvc")
    return project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_child(project: Path, config: str, overrides: list[str], env: dict[str, str], force: bool) -> dict:
    result = project / f"result-{time.monotonic_ns()}.json"
    command = [sys.executable, __file__, "--child", "--config", config, "--result", str(result)]
    command += [f"--set={o}" for o in overrides] + (["--force"] if force else [])
    subprocess.run(command, cwd=project, env=env, check=True)
    return json.loads(result.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default="configs/sst2.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--force", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.config, args.overrides, args.force, args.result)
        return
    from flows.ops import servers

    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME"))}
    base_env["TQDM_DISABLE"] = "1"  # no progress bars from the children in the log
    runs: dict[str, list[dict]] = {"embedded": [], "second": [], "server": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tlflow-tax-") as tmp:
        tmp = Path(tmp)
        server_home = new_project(tmp, "servers")
        ports = free_port(), free_port()
        here = Path.cwd()
        os.chdir(server_home)
        server_env = {**base_env, "PREFECT_HOME": str(server_home / ".prefect")}
        os.environ["PREFECT_HOME"] = server_env["PREFECT_HOME"]
        try:
            up = servers.up(*ports)
        finally:
            os.chdir(here)
        prefect_url, mlflow_url = (s.url for s in up)
        server_env.update({"PREFECT_API_URL": f"{prefect_url}/api", "MLFLOW_TRACKING_URI": mlflow_url})
        try:
            for repeat in range(args.repeats):
                project = new_project(tmp, f"embedded-{repeat}")
                env = {**base_env, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow' / 'mlflow.db'}",
                       "PREFECT_HOME": str(tmp / "prefect-home")}
                for mode, where, mode_env in (("embedded", project, env), ("second", project, env),
                                              ("server", new_project(tmp, f"server-{repeat}"), server_env)):
                    wait_for_quiet(120, 0.2)
                    # Server runs share one registry: they train anyway (force), as a first run does.
                    r = run_child(where, args.config, args.overrides, mode_env, force=mode == "server")
                    runs[mode].append(r)
                    print(f"[{repeat + 1}/{args.repeats}] {mode:8s} wall {r['wall_s']:6.1f} s, stages "
                          f"{r['stage_sum_s']:6.1f} s, tax {r['tax_s']:5.2f} s ({100 * r['tax_s'] / r['wall_s']:.1f} %)"
                          + ("" if r["reused"] else f", step logging {r['mlflow_step_logging_s']:.3f} s of "
                             f"{r['train_seconds']:.1f} s training"), flush=True)
        finally:
            os.chdir(server_home)
            try:
                servers.down()
            finally:
                os.chdir(here)

    def share(rs, part, whole):
        return median([r[part] / r[whole] for r in rs])

    summary = {
        mode: {"median_wall_s": median([r["wall_s"] for r in rs]),
               "median_stage_sum_s": median([r["stage_sum_s"] for r in rs]),
               "median_tax_s": median([r["tax_s"] for r in rs]),
               "median_tax_share": share(rs, "tax_s", "wall_s")}
        for mode, rs in runs.items()
    }
    trained = runs["embedded"] + runs["server"]
    summary["mlflow_step_logging_share_of_training"] = median(
        [r["mlflow_step_logging_s"] / r["train_seconds"] for r in trained])
    summary["second_run_share_of_first"] = median(
        [s["wall_s"] / f["wall_s"] for f, s in zip(runs["embedded"], runs["second"])])
    summary["second_run_process_share_of_first"] = median(
        [s["process_s"] / f["process_s"] for f, s in zip(runs["embedded"], runs["second"])])
    record = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/orchestration_tax.py", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine(), "settings": {"repeats": args.repeats, "config": args.config, "overrides": args.overrides},
        "runs": runs, "summary": summary, "wall_s": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print("\n| run | wall s | inside stages s | tax s | tax share |\n|---|---|---|---|---|")
    for mode in runs:
        s = summary[mode]
        print(f"| {mode} | {s['median_wall_s']:.1f} | {s['median_stage_sum_s']:.1f} | {s['median_tax_s']:.2f} "
              f"| {100 * s['median_tax_share']:.1f} % |")
    print(f"MLflow step logging: {100 * summary['mlflow_step_logging_share_of_training']:.2f} % of training time; "
          f"second run: {100 * summary['second_run_share_of_first']:.1f} % of the first run's wall time "
          f"({100 * summary['second_run_process_share_of_first']:.1f} % with process start and imports)")


if __name__ == "__main__":
    main()
