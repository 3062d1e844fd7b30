"""A task of several sweep runs, for bench/sweep_batching.py (module-level, so workers import it)."""

from __future__ import annotations

from typing import Any

from mesh.backtest.sweep import RunTask, run_task


def run_batch(tasks: tuple[RunTask, ...]) -> list[dict[str, Any]]:
    return [run_task(t) for t in tasks]
