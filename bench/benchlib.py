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


