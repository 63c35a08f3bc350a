"""Shared helpers for the benchmarks and the runner (bench/run_all.py).

Convention: a benchmark script may print, as its LAST line, `BENCH_JSON ` followed by a JSON
list of figures, each {area, name, value, unit, goal, baseline, baseline_name, met, command}:
- value, baseline: numbers (or null), in `unit`;
- goal: human text such as ">= 0.8x bare paho" or "0" (null: no goal, just reported);
- met: true / false / null (no goal); a missed goal is reported as MISSED, never hidden.
bench/run_all.py collects these lines and rewrites docs/performance.md.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

MARK = "BENCH_JSON "


def figure(
    area: str,
    name: str,
    value: float | None,
    unit: str,
    *,
    goal: str | None = None,
    met: bool | None = None,
    baseline: float | None = None,
    baseline_name: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    return {
        "area": area,
        "name": name,
        "value": value,
        "unit": unit,
        "goal": goal,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "met": met,
        "command": command or "python " + " ".join(sys.argv),
    }


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """The fastest of `runs` timed calls, in seconds (the least disturbed by a shared machine)."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def emit(figures: list[dict[str, Any]]) -> None:
    """Print the final BENCH_JSON line (call it last)."""
    print(MARK + json.dumps(figures, ensure_ascii=False), flush=True)


def parse(stdout: str) -> list[dict[str, Any]] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            data = json.loads(line[len(MARK) :])
            return data if isinstance(data, list) else [data]
    return None


def machine() -> str:
    model = ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):  # noqa: SIM115
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} cpus"
        + (f" ({model})" if model else "")
        + f", Python {platform.python_version()}"
    )


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (and its reaped children are NOT included), seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
