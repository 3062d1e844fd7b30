"""The one exception users see from the backtester: a message that says what to do next.

Bad dataset paths, unknown strategies and bad parameters all raise `BacktestError` subclasses, so
the CLI prints one line and the service answers a command with a readable error.
"""

from __future__ import annotations


class BacktestError(ValueError):
    """A backtest that cannot run as asked; the message says why and what would work."""


class DatasetError(BacktestError):
    """A dataset that cannot be found or read."""


class StrategyError(BacktestError):
    """An unknown strategy, a bad parameter, or a strategy that broke the interface."""


class Cancelled(BacktestError):
    """A job cancelled while it ran."""
