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

    def execute(signal_bar: int, qty: float, start: int, t0: int, deadline: int) -> float:
        """Fill `qty` from quote `start` on; returns what could not be filled."""
        nonlocal partial
        order = Execution(book, signal_bar, qty, t0, cap_size=cap_size, whole_shares=whole_shares)
        for j in range(start, nq):
            t = order.when(q_times[j])
            if order.quotes_seen and t >= deadline:
                break
            bar = int(np.searchsorted(bar_ends, t, side="right"))  # the bar it first shows in
            if bar >= n:
                break
            order.offer(t, bid[j], ask[j], bid_size[j], ask_size[j], bar)
            if order.done:
                break
        partial += order.partly_at_first
        return order.remaining

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
        qty = order_quantity(book, goal, bid[j], ask[j], costs.fee, whole_shares)
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


def order_quantity(
    book: _Book, goal: float, bid: float, ask: float, fee: float, whole_shares: bool
) -> float:
    """Signed shares to trade so that `book` holds `goal` of its equity, priced at this quote.

    When the side changes, the old position is closed first and the new one sized on the cash
    the close leaves (both legs hit the same side); otherwise the equity is marked at the mid.
    """
    shares, mid = book.shares, (bid + ask) / 2.0
    if shares != 0 and (goal == 0 or (goal > 0) != (shares > 0)):
        price = bid if shares > 0 else ask
        equity = book.cash + shares * price - abs(shares) * price * fee
        keep = 0.0
    else:
        equity = book.cash + shares * mid
        keep = shares
    want = 0.0
    if goal != 0:
        buying = goal * equity > keep * mid
        want = size(goal, equity, ask if buying else bid, fee, whole_shares)
    return want - shares


class Execution:
    """One order working against quotes in time order: a buy takes the ask, a sell the bid.

    The backtest offers it the recorded quotes, the paper trader (mesh/paper) the live ones, so
    both fill alike. The first quote offered fills at the order's arrival time `t0` (or the
    quote's, if it came later); with `cap_size` each quote gives at most its size, and the rest
    waits for the next quote.
    """

    def __init__(
        self,
        book: _Book,
        signal_bar: int,
        qty: float,
        t0: int,
        *,
        cap_size: bool = False,
        whole_shares: bool = False,
    ) -> None:
        self.book = book
        self.signal_bar = signal_bar
        self.qty = self.remaining = qty
        self.t0 = t0
        self.cap_size = cap_size
        self.whole_shares = whole_shares
        self.quotes_seen = 0
        self.partly_at_first = False

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def when(self, quote_ts: int) -> int:
        """The time a fill against a quote stamped `quote_ts` happens."""
        return max(self.t0, quote_ts) if self.quotes_seen == 0 else quote_ts

    def offer(
        self, t: int, bid: float, ask: float, bid_size: float, ask_size: float, bar: int
    ) -> float:
        """Fill what the quote allows at time `t` (from `when`) into bar `bar`; the shares filled."""
        remaining = self.remaining
        price = ask if remaining > 0 else bid
        avail = (ask_size if remaining > 0 else bid_size) if self.cap_size else math.inf
        take = remaining if abs(remaining) <= avail else math.copysign(float(avail), remaining)
        if self.whole_shares:
            take = math.copysign(math.floor(abs(take)), take)
        if take != 0:
            self.book.fill(bar, t, self.signal_bar, take, price, (bid + ask) / 2.0)
            remaining -= take
            if remaining != 0 and abs(remaining) < 1e-12 * abs(self.qty):
                remaining = 0.0
        if remaining != 0 and self.quotes_seen == 0:
            self.partly_at_first = True
        self.quotes_seen += 1
        self.remaining = remaining
        return take


def _marks(bars: Bars, quotes: Quotes) -> np.ndarray:
    """The mid of the last quote before each bar's end (the bar's close where no quote came yet)."""
    idx = np.searchsorted(quotes.ts, bars.ts_end, side="left") - 1
    mid = quotes.mid
    return (
        np.where(idx >= 0, mid[np.maximum(idx, 0)], bars.close)
        if len(quotes)
        else bars.close.copy()
    )
