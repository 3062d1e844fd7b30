"""Helpers shared by the benchmarks: free ports, the closing JSON line, medians."""

from __future__ import annotations

import json
import os
import socket
import statistics
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def report(
    bench: str, metric: str, value: float, unit: str, baseline: float, target: Any, **extra: Any
) -> None:
    """Print the closing line every bench/*.py ends with."""
    line = {
        "bench": bench,
        "metric": metric,
        "value": _significant(value),
        "unit": unit,
        "baseline": _significant(baseline),
        "ratio": round(value / baseline, 3) if baseline else None,
        "target": target,
    }
    line.update(extra)
    print(json.dumps(line))


def cpu_stolen_s() -> float:
    """CPU seconds the hypervisor has given to other machines since boot ("steal" in /proc/stat;
    0 where not reported). On a shared virtual machine the tail of a latency and a parallel
    speedup follow it, so the benches report it beside their figures."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def steal_pct(stolen_before: float, seconds: float) -> float:
    """The share of this machine's cores (in %) the hypervisor took over the last `seconds`,
    given `cpu_stolen_s()` at their start."""
    return round(100 * (cpu_stolen_s() - stolen_before) / (seconds * (os.cpu_count() or 1)), 2)


def _significant(x: float) -> float:
    """Four significant digits: a 0.04 ms baseline next to a 17 ms value keeps its own precision."""
    return float(f"{x:.4g}")


def median(values: list[float]) -> float:
    return statistics.median(values)
