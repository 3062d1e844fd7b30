"""Several symbols as one portfolio: equal capital per symbol, each run on its own, summed.

The starting cash is split equally across the symbols and never rebalanced: each symbol's
strategy trades its own share (a "sleeve") exactly as a single-symbol run would. The portfolio's
equity at any time is the sum of the sleeves' latest equity (a sleeve is at its starting cash
before its first bar), on the union of all bar close times. Metrics are computed on that sum;
per-symbol metrics are reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mesh.backtest.engine import SymbolRun


@dataclass
class Curve:
    """A portfolio's per-time columns."""

    ts: np.ndarray
    equity: np.ndarray
    cash: np.ndarray
    position_value: np.ndarray
    invested: np.ndarray  # bool: any position held


def single(run: SymbolRun) -> Curve:
    return Curve(run.ts, run.equity, run.cash, run.position_value, run.shares != 0)


def combine(runs: list[SymbolRun]) -> Curve:
    """The equal-weight portfolio of `runs` on the union of their times."""
    if len(runs) == 1:
        return single(runs[0])
    ts = np.unique(np.concatenate([r.ts for r in runs]))
    equity = np.zeros(len(ts))
    cash = np.zeros(len(ts))
    value = np.zeros(len(ts))
    invested = np.zeros(len(ts), dtype=bool)
    for r in runs:
        idx = np.searchsorted(r.ts, ts, side="right") - 1
        before = idx < 0
        idx = np.maximum(idx, 0)
        equity += np.where(before, r.initial_cash, r.equity[idx])
        cash += np.where(before, r.initial_cash, r.cash[idx])
        value += np.where(before, 0.0, r.position_value[idx])
        invested |= ~before & (r.shares[idx] != 0)
    return Curve(ts, equity, cash, value, invested)
