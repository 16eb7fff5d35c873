"""Helpers shared by the benchmarks: outside-load detection, machine description, medians."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time


class CpuMeter:
    """CPU time of the whole machine (/proc/stat) and of this process over a window: the share of
    the machine that other processes used tells whether a run was measured under outside load.
    `with_children`: this process's finished children (a pipeline run as a subprocess) count as its own."""

    def __init__(self, with_children: bool = False) -> None:
        self.with_children = with_children
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / tick  # all but idle and iowait
        own = sum(os.times()[:4 if self.with_children else 2])
        return time.perf_counter(), busy, own

    def other_load(self) -> float:
        """Mean number of CPUs that other processes kept busy since the start (0 = quiet machine)."""
        wall, busy, own = (b - a for a, b in zip(self.start, self._sample()))
        return max(0.0, (busy - own) / wall) if wall > 0 else 0.0


class Contended(RuntimeError):
    """Raised inside a run whose recent steps shared the CPUs with other processes."""


class Watchdog:
    """Checked after every step: raises `Contended` when, over the last >= 10 s, other processes kept
    more than `limit` CPUs busy (a 2-thread run on 2 cores then slows down several-fold, so it is
    stopped early and timed again rather than run to the end). `limit=None` never raises."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.meter = CpuMeter()

    def check(self) -> None:
        if self.limit is None or time.perf_counter() - self.meter.start[0] < 5.0:
            return
        load = self.meter.other_load()
        self.meter = CpuMeter()
        if load > self.limit:
            raise Contended(f"outside load {load:.2f} CPU")


def wait_for_quiet(max_wait: float, threshold: float) -> tuple[float, float]:
    """Wait (at most `max_wait` s) until other processes use under `threshold` CPUs for 2 s in a row.
    Returns (seconds waited, last measured outside load)."""
    started = time.perf_counter()
    quiet = 0
    load = 0.0
    while True:
        meter = CpuMeter()
        time.sleep(1.0)
        load = meter.other_load()
        quiet = quiet + 1 if load < threshold else 0
        waited = time.perf_counter() - started
        if quiet >= 2 or waited >= max_wait:
            return waited, load


def machine() -> dict:
    info = {"nproc": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or 0)}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        for key in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Hypervisor vendor",
                    "L2 cache", "L3 cache"):
            if key in fields:
                info[key] = fields[key]
        flags = fields.get("Flags", "").split()
        info["avx512f"] = "avx512f" in flags
        info["avx512_bf16"] = "avx512_bf16" in flags
    except OSError:
        pass
    info["platform"] = platform.platform()
    return info


def median(values):
    return statistics.median(values)




# ---------------------------------------------------------------------------------------------
# Frozen settings, appended results, environment, ratio intervals
# ---------------------------------------------------------------------------------------------

SETTINGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "settings")
ALLOCATOR_ENV = ("LD_PRELOAD", "GLIBC_TUNABLES", "MALLOC_CONF", "MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_",
                 "MALLOC_MMAP_THRESHOLD_", "TCMALLOC_RELEASE_RATE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def load_settings(name: str) -> tuple[dict, str]:
    """The committed settings of a benchmark (`bench/settings/<name>.json`) and their sha256, so a
    result names exactly what it ran with."""
    import hashlib
    import json

    path = os.path.join(SETTINGS_DIR, f"{name}.json")
    with open(path, "rb") as f:
        raw = f.read()
    return json.loads(raw), hashlib.sha256(raw).hexdigest()


def append_job(path, job: dict) -> int:
    """Append one job's result to the JSON list at `path` (an older single-job file becomes the
    list's first entry); never overwrites an earlier job. Returns the number of jobs now kept."""
    import json
    from pathlib import Path

    path = Path(path)
    jobs: list = []
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        jobs = old if isinstance(old, list) else [old]
    jobs.append(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jobs, indent=2) + "\n", encoding="utf-8")
    return len(jobs)


def environment() -> dict:
    """What a result depends on besides the code: the machine, torch's threads, allocator settings
    and the load average when it is called (call at the start and at the end of a job)."""
    info = {"machine": machine(), "loadavg": list(os.getloadavg()),
            "allocator_env": {k: os.environ[k] for k in ALLOCATOR_ENV if k in os.environ}}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def ratio_interval(ratios, confidence: float = 0.95) -> dict:
    """Per-pair ratios summarised as their geometric mean with a Student-t interval on the log
    ratios (pairs are independent repeats), plus median and range."""
    import math

    from scipy import stats

    logs = [math.log(r) for r in ratios]
    n = len(logs)
    out = {"n": n, "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
           "geomean": math.exp(statistics.fmean(logs)), "confidence": confidence}
    if n >= 2:
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(logs) / math.sqrt(n)
        out["low"], out["high"] = math.exp(statistics.fmean(logs) - half), math.exp(statistics.fmean(logs) + half)
    return out


def allocator_loaded() -> str:
    """The malloc implementation mapped into this process: "jemalloc" or "tcmalloc" (preloaded
    or linked), else "glibc"."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
        maps = f.read()
    for name in ("jemalloc", "tcmalloc"):
        if f"lib{name}" in maps:
            return name
    return "glibc"


def git_file_state(path) -> dict:
    """The last commit that touched `path` and whether the working copy differs from it (a settings
    file is frozen only when `committed` is true)."""
    cwd = os.path.dirname(os.path.abspath(path))
    run = lambda *a: subprocess.run(["git", *a], cwd=cwd, capture_output=True, text=True)  # noqa: E731
    commit = run("log", "-1", "--format=%H", "--", os.path.abspath(path)).stdout.strip() or None
    dirty = bool(run("status", "--porcelain", "--", os.path.abspath(path)).stdout.strip())
    return {"git_commit": commit, "committed": commit is not None and not dirty}


def run_with_environment(env: dict[str, str], unset: tuple[str, ...] = ()) -> None:
    """Make this process run with the environment variables `env` (a benchmark's frozen allocator
    and thread settings) and without those of `unset`: when any differs, re-execute the same command
    so (an `LD_PRELOAD` allocator only takes effect at process start). Call first thing in `main`."""
    import sys

    missing = {k: v for k, v in env.items() if os.environ.get(k) != v}
    extra = [k for k in unset if k in os.environ]
    if not missing and not extra:
        return
    for key, value in missing.items():
        if key == "LD_PRELOAD" and not os.path.exists(value):
            raise SystemExit(f"frozen setting environment.LD_PRELOAD: {value} does not exist on this machine")
    kept = {k: v for k, v in os.environ.items() if k not in extra}
    os.execve(sys.executable, [sys.executable, *sys.argv], {**kept, **missing})
