"""The exceptions users see from the backtester: a message that says what to do next.

Unknown strategies, bad parameters and data that cannot feed the run raise `BacktestError`
subclasses, so the CLI prints one line and the service answers a command with a readable error.
A dataset that cannot be found or read raises the one `DatasetError` of mesh.datasets, the same
for every command (re-exported here for the command line).
"""

from __future__ import annotations

from mesh.datasets.errors import DatasetError as DatasetError


class BacktestError(ValueError):
    """A backtest that cannot run as asked; the message says why and what would work."""


class DataUnfit(BacktestError):
    """A dataset that was found and read but cannot feed this run (no quotes to fill on, no such symbol, no rows)."""


class StrategyError(BacktestError):
    """An unknown strategy, a bad parameter, or a strategy that broke the interface."""


class Cancelled(BacktestError):
    """A job cancelled while it ran."""
