"""What the PII scan (`privacy.pii: report`, the default) adds to the SST-2 demo (`make demo`:
`training_pipeline` on configs/sst2.yaml, 8,000 train rows + dev + test), in one job.

Two measurements, `--repeats` times each:

* pipeline: the whole pipeline in a fresh process and project folder (as `tlflow run` does;
  `orchestration_tax.run_child`), alternating ``privacy.pii=off`` and ``privacy.pii=report``; the
  scan's cost in the pipeline is the validate-data stage's seconds with the scan minus without;
* scan: `tlflow.data.pii.policy.apply_policy` alone on the demo's loaded splits in this process
  (the first repeat includes building the analyzer and loading spaCy's pipeline, as every run does).

The goal: the scan adds at most 15 % to the pipeline's wall time with pii off.

    .venv/bin/python bench/pii_scan_cost.py [--repeats 3 --config configs/sst2.yaml]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from benchlib import CpuMeter, machine, median, wait_for_quiet
from orchestration_tax import new_project, run_child

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "pii_scan_cost.json"
GOAL = 0.15


def scan_seconds(config: str, repeats: int) -> tuple[list[float], dict]:
    """Seconds of `apply_policy` (report) on the config's splits; the first repeat builds the engine."""
    os.chdir(ROOT)
    from tlflow.config import load_config
    from tlflow.data.pii import engine
    from tlflow.data.pii.policy import apply_policy
    from tlflow.data.readers import load_labelled_data
    from tlflow.task_types.registry import check_config, task_type_for

    cfg = check_config(load_config(config, ["privacy.pii=report"]))
    task_type = task_type_for(cfg)
    loaded = load_labelled_data(cfg.data, task_type.dataset_spec())
    out, summary = [], None
    for _ in range(repeats):
        engine.analyzer.cache_clear()
        began = time.perf_counter()
        result = apply_policy(loaded.splits, task_type.text_fields, cfg.privacy)
        out.append(time.perf_counter() - began)
        summary = result.summary
    return out, {"rows": {s: len(ds) for s, ds in loaded.splits.items()}, "found": summary.line()}


def interval(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default="configs/sst2.yaml")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME"))}
    base_env.update(TQDM_DISABLE="1", HF_HUB_OFFLINE="1")
    runs: dict[str, list[dict]] = {"off": [], "report": []}
    with tempfile.TemporaryDirectory(prefix="tlflow-pii-") as tmp:
        tmp = Path(tmp)
        for repeat in range(args.repeats):
            for policy in runs:
                project = new_project(tmp, f"{policy}-{repeat}")
                env = {**base_env, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow' / 'mlflow.db'}",
                       "PREFECT_HOME": str(tmp / "prefect-home")}
                wait_for_quiet(120, 0.2)
                meter = CpuMeter(with_children=True)
                r = run_child(project, args.config, [f"privacy.pii={policy}"], env, force=True)
                r["outside_load"] = round(meter.other_load(), 2)
                runs[policy].append(r)
                print(f"[{repeat + 1}/{args.repeats}] pii={policy:6s} wall {r['wall_s']:6.1f} s, validate "
                      f"{r['stages_s']['validate_data']:5.1f} s (outside load {r['outside_load']:.2f} CPU)", flush=True)
    scans, found = scan_seconds(args.config, args.repeats)
    print("scan alone:", ", ".join(f"{s:.1f} s" for s in scans), flush=True)

    off_wall = [r["wall_s"] for r in runs["off"]]
    added = [rep["stages_s"]["validate_data"] - off["stages_s"]["validate_data"]
             for off, rep in zip(runs["off"], runs["report"])]
    shares = [a / off["wall_s"] for a, off in zip(added, runs["off"])]
    summary = {
        "pipeline_off_wall_s": {"median": median(off_wall), "interval": interval(off_wall)},
        "pipeline_report_wall_s": {"median": median([r["wall_s"] for r in runs["report"]]),
                                   "interval": interval([r["wall_s"] for r in runs["report"]])},
        "scan_in_pipeline_s": {"median": median(added), "interval": interval(added)},
        "scan_alone_s": {"median": median(scans), "interval": interval(scans), "first_with_engine_load": scans[0]},
        "added_share": {"median": median(shares), "interval": interval(shares)},
        "goal_share": GOAL,
        "goal_met": max(shares) <= GOAL,
        "scanned": found,
    }
    record = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/pii_scan_cost.py", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine(),
        "settings": {"repeats": args.repeats, "config": args.config},
        "runs": runs,
        "scan_alone_s": scans,
        "summary": summary,
        "wall_s": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
