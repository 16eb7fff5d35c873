"""The benchmark table in README.md, from `bench/results/*.json` (the last `make bench` step).

Each row gives the measured ratio against its goal, the date, the machine and the command of the
run that wrote the JSON; a benchmark without results is listed as not run. The fine-tuning and
inference jobs carry their own pooled summaries; the pretraining and tax rows are pooled here, over
every job with the newest job's frozen settings on the same CPU model (`stats.same_method_jobs`),
with an interval that resamples jobs and pairs once there are two. The table sits between the
markers `<!-- bench:start -->` and `<!-- bench:end -->` of README.md.

    .venv/bin/python bench/report.py [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stats import pooled_ratio_summary, same_method_jobs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
#: Settings of `bench/tax.json` that only say how many pairs a job runs: tax jobs differing in them alone pool.
TAX_COUNTS = ("pairs", "logging_pairs")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _met(ok: bool) -> str:
    return "**met**" if ok else "not met"


def _interval(q: dict, digits: int = 2) -> str:
    """The job-and-pair interval when several jobs pooled, else the pairs' t interval."""
    low, high = (q["job_low"], q["job_high"]) if "job_low" in q else (q.get("low"), q.get("high"))
    return f" [{low:.{digits}f}, {high:.{digits}f}]" if low is not None else ""


def _jobs(q: dict) -> str:
    return f" over {q['jobs']} jobs" if q.get("jobs", 1) > 1 else ""


def pretraining(r: dict, history: list[dict]) -> tuple[str, str, str, str]:
    if "comparisons" not in r:  # a job of the earlier method (line-by-line baseline only, one seed)
        return ("Pretraining throughput (MLM)", "earlier method, superseded: rerun `bench/pretrain_throughput.py`",
                "", "")
    m, c = r["median"], r["comparisons"]
    pool = same_method_jobs(history, r)
    parts, ok = [], r["goal_met"]
    for other, label in (("packed", "run_mlm default (group_texts, 128-token blocks)"),
                         ("line_by_line", "run_mlm --line_by_line")):
        if other in c:
            q = pooled_ratio_summary(pool, lambda j, o=other: j.get("comparisons", {}).get(o, {})
                                     .get("pair_ratios_tokens_per_s", []))
            diffs = [d for j in pool for d in j["comparisons"].get(other, {})
                     .get("heldout_loss_diff_per_seed", {}).get("packed", [])]
            loss = sum(diffs) / len(diffs)
            parts.append(f"{q['geomean']:.2f}x{_interval(q)} non-pad tokens/s vs {label} "
                         f"({m['ours']['tokens_per_s']:,.0f} vs {m[other]['tokens_per_s']:,.0f} in the newest job; "
                         f"{q['n']} seed pair(s){_jobs(q)}), held-out loss {loss:+.3f} nats")
            if other == "packed":
                ok = q["geomean"] >= 1.8 and q["n"] >= 3 and loss <= 0.0
    return ("Pretraining throughput (MLM, 4-layer BERT, same tokens)", "; ".join(parts),
            ">= 1.8x the packed default at equal or lower loss, >= 3 seeds", _met(ok))


def _stopped_steps(r: dict, history: list[dict], contender: str) -> str:
    """The step counts of the pool's runs of `contender` that stopped early ("100" or "100 and 250")."""
    pool = set(r["pooled"]["jobs"])
    steps = sorted({run["work"]["steps"] for j in history if j.get("job_id") in pool for run in j["runs"]
                    if run["contender"] == contender and run.get("speed_only")})
    return " and ".join(map(str, steps))


def finetuning(r: dict, history: list[dict]) -> tuple[str, str, str, str]:
    if "pooled" not in r:  # a job of the earlier method (unequal batches, glibc malloc, 1,536 rows)
        return ("Fine-tuning throughput", "earlier method, superseded: rerun `bench/finetune_throughput.py`", "", "")
    p, s = r["pooled"], r["settings"]
    parts, ok = [], True
    for other, label, goal in (("trainer-identical", "Trainer at its best on identical batches", 1.3),
                               ("trainer-run-glue", "run_glue (dynamic padding, random order)", None),
                               ("trainer-padded-128", "run_glue padded to 128 (footnote)", None)):
        v = p["ours_vs"].get(other)
        if v is None:
            continue
        q, t = v["samples_per_s_ratio"], v.get("test_accuracy_tost_pt")
        interval = _interval(q)
        acc = (f", test accuracy {t['mean_difference']:+.2f} pt [{t['low']:+.2f}, {t['high']:+.2f}]"
               f"{' over ' + str(v['accuracy_seeds']) + ' seeds' if 'accuracy_seeds' in v else ''}"
               f"{' (equivalent)' if t['equivalent'] else ''}") if t else ""
        stopped = f" (first {_stopped_steps(r, history, other)} steps, speed only)" if v.get("speed_only") else ""
        parts.append(f"{q['geomean']:.2f}x{interval} samples/s vs {label}{stopped}, {v['pairs']} pairs{acc}")
        if goal is not None:
            ok &= q["geomean"] >= goal and bool(t and t["equivalent"])
    b = p.get("budget", {})
    if b.get("median_dev_gain_last_half_pt") is not None:
        parts.append(f"dev accuracy gained over the 2nd half {b['median_dev_gain_last_half_pt']:+.1f} pt (median): "
                     f"{'plateaued' if b['plateaued'] else 'not plateaued'} at <= {b['plateau_max_gain_pt']} pt")
    return (f"Fine-tuning minilm-l6 on {s['rows']:,} SST-2 rows, {s['epochs']:g} epoch(s), jemalloc for all, "
            f"{len(p['jobs'])} job(s)", "; ".join(parts),
            f">= 1.3x the Trainer on identical batches, test accuracy equivalent at +-{s['equivalence_margin_pt']} pt",
            _met(ok))


def step_speedups(r: dict, history: list[dict]) -> tuple[str, str, str, str]:
    s = r["summary"]
    return ("Fine-tune loop step speed-ups (kept embedding gradient with rows-only clipping, cheaper dropout masks), steps interleaved",
            f"{s['median_ratio_of_sums']:.2f}x (median per-step ratio {s['median_step_ratio']:.2f})",
            "part of the 1.3x above", "")


def mfu(r: dict, history: list[dict]) -> tuple[str, str, str, str]:
    s = r["summary"]
    if "sst2" not in s:  # a job of the earlier method (model FLOPs against a 2048² matmul)
        return ("Fine-tuning compute efficiency", "earlier method, superseded: rerun `bench/mfu.py`", "", "")
    goals = {"128": 0.7, "sst2": 0.6}
    parts = [f"{'real SST-2 batches' if c == 'sst2' else f'length {c}'}: **{v['mfu_median']:.2f}** "
             f"({v['mfu_low']:.2f}-{v['mfu_high']:.2f})" for c, v in s.items()]
    ok = all(s[c]["mfu_median"] >= g for c, g in goals.items() if c in s)
    return ("Fine-tuning executed-FLOP MFU vs the model's own GEMM peak, interleaved",
            f"peak {min(v['peak_gflops_median'] for v in s.values()):.0f}-"
            f"{max(v['peak_gflops_median'] for v in s.values()):.0f} GFLOP/s; " + "; ".join(parts),
            ">= 0.7 at 128, >= 0.6 on SST-2", _met(ok))


def orchestration(r: dict, history: list[dict]) -> tuple[str, str, str, str]:
    s = r["summary"]
    if "end_to_end_ratio" not in s:  # a job of the earlier method (time outside the stages, imports excluded)
        return ("Orchestration and tracking tax", "earlier method, superseded: rerun `bench/orchestration_tax.py`",
                "", "")
    pool = [j for j in same_method_jobs(history, r, counts=TAX_COUNTS) if "end_to_end_ratio" in j.get("summary", {})]
    e = pooled_ratio_summary(pool, lambda j: [t["wall_s"] / p["wall_s"] for t, p in
                                              zip(j["runs"]["tlflow_run"], j["runs"]["plain"])])
    lg = pooled_ratio_summary(pool, lambda j: [w["wall_s"] / o["wall_s"] for w, o in
                                               zip(j["logging_runs"]["with_logging"],
                                                   j["logging_runs"]["without_logging"])])
    interval = _interval(e, 3)
    second = f"; unchanged second run {s['second_run_median_s']:.1f} s" if s.get("second_run_median_s") else ""
    return ("Orchestration + tracking tax end to end: `tlflow run` vs a plain script of the same stages "
            f"({r['settings']['overrides'][0] if r['settings']['overrides'] else r['settings']['config']})",
            f"{e['geomean']:.3f}x{interval} wall time ({s['tlflow_run_median_s']:.1f} vs {s['plain_median_s']:.1f} s "
            f"in the newest job; {e['n']} pairs{_jobs(e)}, processes included); fine-tuning with / without MLflow "
            f"logging {lg['geomean']:.3f}x{_interval(lg, 3)}" + second, "<= 1.05x", _met(e["geomean"] <= 1.05))


def scaling(r: dict, history: list[dict]) -> tuple[str, str, str, str]:
    s = r["summary"]
    sizes = sorted({int(n) for v in s.values() for n in v["seconds"]})
    anon = all(v.get("anon_growth_mb_per_100k_rows") is not None for v in s.values())
    growth = "anon_growth_mb_per_100k_rows" if anon else "memory_growth_mb_per_100k_rows"
    parts = [f"{stage} x{v['time_exponent']:.2f}, {v[growth]:+.0f} MB/100k rows" for stage, v in s.items()]
    ok = all(v.get("linear", True) and v["memory_flat"] for v in s.values())
    return (f"Scaling of the data stages, {', '.join(f'{n:,}' for n in sizes)} training rows (SST-2 resampled and "
            "perturbed; fine-tune at a fixed step budget)",
            f"time exponent / peak-{'anonymous-memory' if anon else 'RSS'} growth: " + "; ".join(parts),
            "time exponent <= 1.15, memory flat", _met(ok))


def _variant_parts(pooled: dict) -> list[str]:
    parts = []
    for name, v in pooled["variants"].items():
        interval = (f" [{v['job_low']:.2f}, {v['job_high']:.2f}]" if "job_low" in v
                    else f" [{v['low']:.2f}, {v['high']:.2f}]" if "low" in v else "")
        parts.append(f"{name} {v['geomean']:.2f}x{interval} (largest drop {v['largest_drop_pt'] + 0.0:.2f} pt)")
    return parts


def latest_frozen(history: list[dict]) -> dict:
    """The newest job run on the frozen settings as they are (else the newest job)."""
    frozen = [j for j in history if not j.get("settings_overridden")]
    return (frozen or history)[-1]


def inference(r: dict, history: list[dict]) -> tuple[str, str, str, str]:
    """The frozen allocator's job (`r`, see `HEADLINE`), and the newest `--glibc` cross-check after it."""
    s, metric = r["summary"], r["settings"]["metric"]
    what = (f"Inference on the SST-2 test split: fp32 vs int8 / ONNX Runtime ({r['settings']['test_examples']:,} "
            "sentences)")
    if "pooled" not in r:  # a job before the frozen settings: one job, medians, no interval
        parts = [f"{name} {v['speedup']:.2f}x ({v[f'{metric}_change_pt']:+.2f} pt)" for name, v in s.items()
                 if name != "fp32"]
        return what, "; ".join(parts), ">= 2x within 1 pt", _met(r["goal"]["met_by"] is not None)
    p = r["pooled"]
    n = next(iter(p["variants"].values()))["n"]
    allocator = "jemalloc" if "jemalloc" in str(r.get("allocator", "")) else "the frozen allocator"
    measured = (f"{allocator} for every contender: " + "; ".join(_variant_parts(p))
                + f"; {n} paired repeats over {len(p['jobs'])} job(s)")
    later = history[history.index(r) + 1:] if r in history else []
    glibc = [j for j in later if j.get("settings_overridden") == ["environment"] and "pooled" in j]
    if glibc:
        g = glibc[-1]["pooled"]
        verdict = f"met by {g['goal_met_by']}" if g["goal_met_by"] else "not met"
        measured += (". Cross-check, glibc malloc for every contender (`--glibc`): " + "; ".join(_variant_parts(g))
                     + f", over {len(g['jobs'])} job(s): {verdict}")
    return what, measured, ">= 2x (interval's lower end) within 1 pt", _met(p["goal_met_by"] is not None)


#: Benchmarks whose row describes another job than the newest (a cross-check may be appended after it).
HEADLINE = {"inference_throughput": latest_frozen}

BENCHES = {
    "pretrain_throughput": pretraining,
    "finetune_throughput": finetuning,
    "step_speedups": step_speedups,
    "mfu": mfu,
    "orchestration_tax": orchestration,
    "scaling": scaling,
    "inference_throughput": inference,
}


def table() -> str:
    rows, machines = [], []
    for name, row in BENCHES.items():
        r = _load(name)
        history = r if isinstance(r, list) else [r] if r else []
        if isinstance(r, list):  # every job appended: the row shows the latest (or its HEADLINE job)
            r = HEADLINE.get(name, lambda jobs: jobs[-1])(r)
        if r is None:
            rows.append((f"`bench/{name}.py`", "not run yet", "", "", "", "", ""))
            continue
        what, measured, goal, met = row(r, history)
        m = r.get("machine", {})
        machine = f"{m.get('Model name', '?')}, {m.get('nproc', '?')} cores, {m.get('Hypervisor vendor', '')}"
        machines += [machine] if machine not in machines else []
        rows.append((what, measured, goal, met, str(r["date"])[:10], machine, f"`{r['command']}`"))
    several = len(machines) > 1  # then every row names its machine
    head = ["benchmark", "measured", "goal", "", "date", *(["machine"] if several else []), "command"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c for i, c in enumerate(cells) if several or i != 5) + " |" for cells in rows]
    lines += ["", f"Machine: {'; '.join(machines)} (fp32, 2 threads); times from different machines do not compare. "
              "Details, per-run numbers and what limits each ratio: `bench/README.md` and `bench/results/*.json`."
              if several else f"Machine: {machines[0] if machines else '?'} (fp32, 2 threads). Details, per-run "
              "numbers and what limits each ratio: `bench/README.md` and `bench/results/*.json`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    text = args.readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{args.readme}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{START}\n{table()}\n{END}{tail}", encoding="utf-8")
    print(table())


if __name__ == "__main__":
    main()
