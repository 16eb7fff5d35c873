"""OpenMP's wait policy on a busy machine: fine-tuning steps of the demo model (`minilm-l6`, SST-2,
batch 32, max length 66, AdamW, fp32, torch's default threads) with libgomp's default policy
(a thread that waits for its siblings spins) against `OMP_WAIT_POLICY=PASSIVE` (it sleeps), beside
`--busy` busy-loop processes at nice 0 (0: a quiet machine).

Each repeat runs one child process per policy (the policy is read when torch loads libgomp, so it
cannot change inside a process), in alternating order; the children train on the same batches from
the same seed, and the script checks that every step's loss is equal under both policies (the
policy changes scheduling, not arithmetic). Reported: seconds per step of each child (after 2
untimed warm-up steps), per-repeat ratios default / passive with an interval, the load average
before and after. Appends one job to `bench/results/busy_cpu_wait_policy.json`.

    .venv/bin/python bench/busy_cpu_wait_policy.py --busy 10 --steps 8 --repeats 3
    .venv/bin/python bench/busy_cpu_wait_policy.py --busy 0 --steps 40 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchlib import append_job, environment, ratio_interval

RESULTS = Path(__file__).parent / "results" / "busy_cpu_wait_policy.json"
POLICIES = {"default": None, "passive": "PASSIVE"}
BATCH, MAX_LENGTH, WARMUP = 32, 66, 2
LOOP = "import time\nend = time.monotonic() + 3600\nwhile time.monotonic() < end:\n    pass\n"


def child(steps: int) -> dict:
    """Train `steps` + WARMUP steps on the first SST-2 training rows; seconds per timed step and every loss."""
    import csv

    import torch
    from transformers import AutoModelForSequenceClassification

    from tlflow.modeling.models import load_tokenizer, resolve_base

    torch.manual_seed(0)
    with open("data/sst2/train.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[: BATCH * (steps + WARMUP)]
    tokenizer = load_tokenizer("minilm-l6")
    model = AutoModelForSequenceClassification.from_pretrained(resolve_base("minilm-l6"), num_labels=2)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses, times = [], []
    for i in range(steps + WARMUP):
        batch = rows[i * BATCH:(i + 1) * BATCH]
        enc = tokenizer([r["sentence"] for r in batch], truncation=True, max_length=MAX_LENGTH, padding=True,
                        return_tensors="pt")
        labels = torch.tensor([int(r["label"]) for r in batch])
        start = time.perf_counter()
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    return {"seconds_per_step": sum(times) / len(times), "step_seconds": times, "losses": losses,
            "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def run_child(policy: str | None, steps: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(steps)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=10, help="busy-loop processes beside the runs (0: quiet)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per child")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of children (alternating order)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.steps)))
        return

    loops = [subprocess.Popen([sys.executable, "-S", "-c", LOOP]) for _ in range(args.busy)]
    try:
        time.sleep(10 if loops else 0)
        before = environment()
        runs: dict[str, list[dict]] = {name: [] for name in POLICIES}
        for repeat in range(args.repeats):
            order = list(POLICIES) if repeat % 2 == 0 else list(reversed(POLICIES))
            for name in order:
                runs[name].append(run_child(POLICIES[name], args.steps))
                print(f"repeat {repeat} {name}: {runs[name][-1]['seconds_per_step']:.3f} s/step", flush=True)
        after = environment()
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()

    same = all(d["losses"] == p["losses"] for d, p in zip(runs["default"], runs["passive"]))
    ratios = [d["seconds_per_step"] / p["seconds_per_step"] for d, p in zip(runs["default"], runs["passive"])]
    job = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                          time.gmtime()),
        "settings": {"busy_loops": args.busy, "steps": args.steps, "warmup": WARMUP, "repeats": args.repeats,
                     "batch": BATCH, "max_length": MAX_LENGTH, "base": "minilm-l6"},
        "environment_before": before, "environment_after": after,
        "seconds_per_step": {name: [r["seconds_per_step"] for r in rs] for name, rs in runs.items()},
        "threads": {name: sorted({r["threads"] for r in rs}) for name, rs in runs.items()},
        "losses_equal": same, "ratio_default_over_passive": ratio_interval(ratios),
    }
    kept = append_job(RESULTS, job)
    print(json.dumps({k: job[k] for k in ("seconds_per_step", "losses_equal", "ratio_default_over_passive")},
                     indent=2))
    print(f"appended to {RESULTS} ({kept} jobs)")
    if not same:
        raise SystemExit("the losses differ between the policies")


if __name__ == "__main__":
    main()
