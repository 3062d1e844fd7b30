"""The event path: orders fill against recorded quotes, at the real spread.

Signals still come from bars (so every strategy runs unchanged), but each order is executed
against the quote stream: the target set at the close of bar t becomes an order at that bar's end
time (plus an optional latency), and fills against the quote in force at that instant (the last
quote stamped at or before it): a buy at the ask, a sell at the bid. When the side changes, the
old position is closed first, then the new one opened with what that left.

With `cap_size`, a fill takes at most the size quoted on its side; the rest of the order walks
forward through the following quotes until it is filled or the next order replaces it (what is
left then is reported as unfilled). Without it, the whole order fills at the one quote.

Positions are marked at the mid of the quote in force at each bar's close. Commission (bps) is
charged as on bars; there is no slippage parameter: the half-spread paid against the mid is the
cost, reported as `slippage_paid`.
"""

from __future__ import annotations

import math

import numpy as np

from mesh.backtest.engine import (
    NO_COSTS,
    Costs,
    SymbolRun,
    _Book,
    assemble,
    change_points,
    held_targets,
    size,
)
from mesh.backtest.frames import Bars, Quotes


def simulate_quotes(
    bars: Bars,
    target: np.ndarray,
    quotes: Quotes,
    cash: float = 100_000.0,
    costs: Costs = NO_COSTS,
    whole_shares: bool = False,
    cap_size: bool = False,
    latency_ns: int = 0,
) -> SymbolRun:
    """Run one symbol's targets, filling each order against `quotes` (see the module docstring)."""
    n = len(bars)
    held = held_targets(target)
    points = change_points(held)
    q_ts = quotes.ts
    bid, ask = quotes.bid.tolist(), quotes.ask.tolist()
    bid_size, ask_size = quotes.bid_size.tolist(), quotes.ask_size.tolist()
    q_times = q_ts.tolist()
    nq = len(q_ts)
    decide = bars.ts_end[np.maximum(points - 1, 0)] + int(
        latency_ns
    )  # when each order reaches the market
    in_force = np.searchsorted(q_ts, decide, side="right") - 1
    book = _Book(cash, costs.fee)
    orders = unfilled = partial = 0
    bar_ends = bars.ts_end

    def fill_bar(ts: int) -> int:
        return int(np.searchsorted(bar_ends, ts, side="right"))

    def execute(signal_bar: int, qty: float, start: int, t0: int, deadline: int) -> float:
        """Fill `qty` from quote `start` on; returns what could not be filled."""
        nonlocal partial
        remaining = qty
        j = start
        first = True
        while remaining != 0 and j < nq:
            t = max(t0, q_times[j]) if first else q_times[j]
            if not first and t >= deadline:
                break
            price = ask[j] if remaining > 0 else bid[j]
            avail = (ask_size[j] if remaining > 0 else bid_size[j]) if cap_size else math.inf
            take = remaining if abs(remaining) <= avail else math.copysign(float(avail), remaining)
            if whole_shares:
                take = math.copysign(math.floor(abs(take)), take)
            if take != 0:
                bar = fill_bar(t)
                if bar >= n:
                    break
                book.fill(bar, t, signal_bar, take, price, (bid[j] + ask[j]) / 2.0)
                remaining -= take
                if remaining != 0 and abs(remaining) < 1e-12 * abs(qty):
                    remaining = 0.0
            if remaining != 0:
                partial += 1 if first else 0
            first = False
            j += 1
        return remaining

    for k, (bar, goal) in enumerate(zip(points.tolist(), held[points].tolist(), strict=True)):
        orders += 1
        t0 = int(decide[k])
        deadline = int(decide[k + 1]) if k + 1 < len(points) else int(bar_ends[-1])
        j = int(in_force[k])
        if j < 0:  # no quote yet: the order waits for the first one
            j = int(np.searchsorted(q_ts, t0, side="left"))
        if j >= nq:
            unfilled += 1
            continue
        mid = (bid[j] + ask[j]) / 2.0
        if book.shares != 0 and (goal == 0 or (goal > 0) != (book.shares > 0)):
            # close first: the new position is sized on the cash the close leaves (both legs hit the same side)
            price = bid[j] if book.shares > 0 else ask[j]
            equity = book.cash + book.shares * price - abs(book.shares) * price * costs.fee
            keep = 0.0
        else:
            equity = book.cash + book.shares * mid
            keep = book.shares
        want = 0.0
        if goal != 0:
            buying = goal * equity > keep * mid
            want = size(goal, equity, ask[j] if buying else bid[j], costs.fee, whole_shares)
        qty = want - book.shares
        if qty != 0 and execute(bar - 1, qty, j, t0, deadline) != 0:
            unfilled += 1

    mark = _marks(bars, quotes)
    fills, trades = book.finish(n - 1, int(bar_ends[-1]) if n else 0, float(mark[-1]) if n else 0.0)
    run = assemble(bars.symbol, bars.ts_end, mark, held, fills, trades, cash)
    run.extra = {
        "orders": orders,
        "orders_unfilled": unfilled,
        "orders_partly_filled_at_first_quote": partial,
    }
    return run


def _marks(bars: Bars, quotes: Quotes) -> np.ndarray:
    """The mid of the last quote before each bar's end (the bar's close where no quote came yet)."""
    idx = np.searchsorted(quotes.ts, bars.ts_end, side="left") - 1
    mid = quotes.mid
    return (
        np.where(idx >= 0, mid[np.maximum(idx, 0)], bars.close)
        if len(quotes)
        else bars.close.copy()
    )
