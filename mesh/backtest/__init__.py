"""The backtester: strategies on recorded live data and on history, fast and right.

    frames.py      `Bars` and `Quotes`: one symbol's columns as numpy arrays; intervals; resampling
    datasets.py    find a dataset by name or path, list datasets with their time ranges, load them
    indicators.py  moving averages, rolling windows and crossings, for built-in and user strategies
    strategies.py  the strategy interface, the built-ins, `module:object` loading, parameter parsing
    engine.py      the vectorised bar engine: a signal at bar t trades at bar t+1's open
    quotes.py      the event path: orders fill against recorded quotes (buy at the ask, sell at the bid)
    portfolio.py   several symbols as one equal-weight portfolio
    metrics.py     returns, risk and trade statistics, shared by both paths
    runner.py      one call from dataset + strategy to a `BacktestResult` (and parameter sweeps)
    report.py      the metrics table, comparisons, data/backtests/<run>/, the bus summary
    service.py     `massive run backtester`: jobs from the control channel, progress on the bus
    cli.py         `massive backtest`

Nothing heavy is imported here, so `massive` starts quickly; `run_backtest`, `list_datasets` and
`list_strategies` are imported on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "run_backtest": "mesh.backtest.runner",
    "run_many": "mesh.backtest.runner",
    "RunSpec": "mesh.backtest.runner",
    "BacktestResult": "mesh.backtest.runner",
    "BacktestError": "mesh.backtest.errors",
    "list_datasets": "mesh.backtest.datasets",
    "list_strategies": "mesh.backtest.strategies",
    "Bars": "mesh.backtest.frames",
    "Costs": "mesh.backtest.engine",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mesh.backtest' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
