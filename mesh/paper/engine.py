"""One symbol traded live by a strategy, exactly as the backtester trades the recording of it.

The backtester, on a recording with quotes, builds bars from quote mids, asks the strategy for a
target at every bar's close, and fills each change of target against the quote in force when the
order arrives (mesh/backtest/quotes.py). `SymbolTrader` does the same one quote at a time, with
the same pieces (`order_quantity`, `Execution`, the book), so the backtest of the session's
recording gives the same fills:

- a quote in a later bar window closes the open bar (or the clock does, `grace_ns` after the
  window's end, when no quote comes); the strategy then sees every bar so far;
- an order arrives at the bar's end plus the latency; the quote in force then is known once a
  quote stamped after that time comes (which also proves there is a bar to fill in): the order
  is sized on it and takes it first, then, with size caps, the quotes that follow, until the
  next order;
- positions are marked at the mid of the last quote before each bar's end.

A quote stamped before one already taken is late: it is counted and left out (the backtest,
which sorts the recording, would use it; `paper compare` explains such differences).
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mesh.backtest.engine import Costs, _Book
from mesh.backtest.frames import Bars
from mesh.backtest.quotes import Execution, order_quantity
from mesh.backtest.strategies import Strategy
from mesh.schema import Fill, Order, Pnl


@dataclass(frozen=True)
class Settings:
    """How a paper session trades (the backtester's options of the same names)."""

    interval_ns: int
    cash: float  # this symbol's share of the session's cash
    costs: Costs
    whole_shares: bool = False
    cap_size: bool = False
    latency_ns: int = 0
    grace_ns: int = 250_000_000  # how long the clock waits past a bar's end for a late quote


@dataclass
class _Quote:
    ts: int
    bid: float
    ask: float
    bid_size: float
    ask_size: float


@dataclass
class _Pending:
    order_id: int
    goal: float
    signal_bar: int
    t0: int  # when the order reaches the market (bar end + latency)
    bar_end: int
    decided_ns: int  # wall clock when the strategy decided it
    closed_mono: float  # monotonic time the bar's close became known


class _Columns:
    """Growing bar columns (capacity doubles), handed to the strategy as views."""

    NAMES = ("ts", "ts_end", "open", "high", "low", "close")

    def __init__(self) -> None:
        self.n = 0
        self.cols: dict[str, np.ndarray] = {
            "ts": np.zeros(1024, np.int64),
            "ts_end": np.zeros(1024, np.int64),
            **{k: np.zeros(1024) for k in ("open", "high", "low", "close")},
        }
        self.zeros = np.zeros(1024)

    def append(self, values: tuple[int, int, float, float, float, float]) -> None:
        if self.n == len(self.zeros):
            size = 2 * self.n
            self.cols = {k: np.resize(v, size) for k, v in self.cols.items()}
            self.zeros = np.zeros(size)
        for name, value in zip(self.NAMES, values, strict=True):
            self.cols[name][self.n] = value
        self.n += 1

    def bars(self, symbol: str, interval_ns: int) -> Bars:
        n, c = self.n, self.cols
        return Bars(
            symbol,
            c["ts"][:n],
            c["ts_end"][:n],
            c["open"][:n],
            c["high"][:n],
            c["low"][:n],
            c["close"][:n],
            self.zeros[:n],
            interval_ns,
        )


class SymbolTrader:
    """A strategy's paper trading in one symbol: quotes and the clock in, orders, fills and P&L out.

    Records for the bus collect in `out` (drained by the caller). A strategy that raises
    propagates its `StrategyError` from `on_quote`/`on_clock`; the caller stops the session.
    """

    def __init__(
        self,
        name: str,
        symbol: str,
        strategy: Strategy,
        params: dict[str, Any],
        settings: Settings,
        *,
        book: _Book | None = None,
        held: float = 0.0,
        orders: int = 0,
    ) -> None:
        self.name, self.symbol = name, symbol
        self.strategy, self.params, self.settings = strategy, params, settings
        self.book = book or _Book(settings.cash, settings.costs.fee)
        self.held = held  # the target in force (the last order's)
        self.orders = orders  # orders so far (ids run on from a restart)
        self.columns = _Columns()
        self.window: int | None = None  # start of the open bar's window
        self.open_bar: list[float] = []  # open, high, low, close of the open window
        self.bar_ends: list[int] = []  # closed bars' ends, for a fill's bar number
        self.last: _Quote | None = None
        self.pending: list[_Pending] = []
        self.working: Execution | None = None
        self.working_id = 0
        self.deadline: int | None = None  # the working order stops taking quotes from here
        self.first_ts = 0  # the first quote taken (ns), and the last
        self.last_ts = 0
        self.fills = self.late_quotes = self.unfilled = self.lagging_bars = 0
        self.decision_s = 0.0  # the last bar's close -> decision, seconds
        self.out: list[Order | Fill | Pnl] = []
        self.start_shares, self.start_cash = self.book.shares, self.book.cash
        self.fill_times: list[int] = []  # each fill's time, and the book's (shares, cash) after it
        self.fills_before = len(self.book.fills["qty"])  # a resumed book's journalled fills
        self.fill_states: list[tuple[float, float]] = []

    # --- input ---------------------------------------------------------------------------------

    def on_quote(
        self, ts: int, bid: float, ask: float, bid_size: float, ask_size: float, closed_mono: float
    ) -> None:
        """One quote of the symbol, in arrival order (`closed_mono`: when it arrived)."""
        bid, ask, bid_size, ask_size = float(bid), float(ask), float(bid_size), float(ask_size)
        if not (bid > 0 and ask > 0 and ask >= bid and math.isfinite(bid) and math.isfinite(ask)):
            return  # one-sided, crossed or empty: no order could fill against it (Quotes.valid)
        if ts < self.last_ts or (self.bar_ends and ts < self.bar_ends[-1]):
            self.late_quotes += 1
            return
        window = ts - ts % self.settings.interval_ns
        self._start_pending(before=ts)
        if self.window is not None and window > self.window:
            self._close_bar(closed_mono)
            self._start_pending(before=ts)
        self._offer(ts, bid, ask, bid_size, ask_size)
        self.last = _Quote(ts, bid, ask, bid_size, ask_size)
        if not self.first_ts:
            self.first_ts = ts
        self.last_ts = ts
        mid = (bid + ask) / 2.0
        if self.window is None:
            self.window = window
            self.open_bar = [mid, mid, mid, mid]
        else:
            bar = self.open_bar
            bar[1] = max(bar[1], mid)
            bar[2] = min(bar[2], mid)
            bar[3] = mid

    def on_clock(self, event_now: int, now_mono: float) -> None:
        """The market's time is `event_now` (ns); every quote stamped `grace_ns` before it has
        come. An order that arrives inside the open bar starts at the quote in force (the bar
        holds its fill); then the open bar closes if its end has passed. An order arriving after
        it waits for a quote: a fill needs a bar to show in, as in the backtest."""
        known = event_now - self.settings.grace_ns
        if self.window is not None:
            end = self.window + self.settings.interval_ns
            self._start_pending(before=min(known + 1, end))
            if known >= end:
                self._close_bar(now_mono)

    def finish(self) -> None:
        """The session stops: orders no quote came for, and what is left of a working one, stay
        unfilled (the backtest of the recording has no bar after its last quote to fill them)."""
        if self.working is not None and not self.working.done:
            self.unfilled += 1
        self.working = None
        self.unfilled += len(self.pending)
        self.pending.clear()

    # --- the pieces ----------------------------------------------------------------------------

    def _close_bar(self, closed_mono: float) -> None:
        assert self.window is not None
        s = self.settings
        end = self.window + s.interval_ns
        o, h, low, c = self.open_bar
        self.columns.append((self.window, end, o, h, low, c))
        self.bar_ends.append(end)
        self.window = None
        bars = self.columns.bars(self.symbol, s.interval_ns)
        target = self.strategy.signals(bars, self.params)
        goal = float(target[-1]) if len(target) else math.nan
        if not math.isnan(goal) and goal != self.held:
            self.held = goal
            self.orders += 1
            t0 = end + s.latency_ns
            self.pending.append(
                _Pending(
                    self.orders, goal, len(self.bar_ends) - 1, t0, end, time.time_ns(), closed_mono
                )
            )
            if self.working is not None and self.deadline is None:
                self.deadline = t0
        self._decided(closed_mono)
        # the bar's P&L follows its decision (a subscriber sees the decision made): the book as
        # of the bar's end, marked at the last mid before it (an order may have filled since)
        mark = (self.last.bid + self.last.ask) / 2.0 if self.last is not None else c
        k = bisect.bisect_left(self.fill_times, end)
        shares, cash = self.fill_states[k - 1] if k else (self.start_shares, self.start_cash)
        self.out.append(
            Pnl(
                name=self.name,
                symbol=self.symbol,
                ts=end,
                position=shares,
                cash=cash,
                equity=cash + shares * mark,
                initial_cash=s.cash,
                fills=self.fills_before + k,
            )
        )

    def _decided(self, closed_mono: float) -> None:
        self.decision_s = time.monotonic() - closed_mono
        if self.decision_s > self.settings.interval_ns / 1e9:
            self.lagging_bars += 1

    def _start_pending(self, before: int) -> None:
        """Start each order whose quote in force is known: every quote up to its arrival came."""
        while self.pending and self.pending[0].t0 < before:
            p = self.pending.pop(0)
            if self.working is not None and not self.working.done:
                self.unfilled += 1  # the new order replaces what is left of the old one
            self.working = None
            quote = self.last
            if quote is None:
                self.unfilled += 1
                continue
            s = self.settings
            qty = order_quantity(
                self.book, p.goal, quote.bid, quote.ask, s.costs.fee, s.whole_shares
            )
            self.out.append(
                Order(
                    name=self.name,
                    symbol=self.symbol,
                    qty=qty,
                    target=p.goal,
                    bar_end=p.bar_end,
                    ts_decided=p.decided_ns,
                    order_id=p.order_id,
                )
            )
            if qty == 0:
                continue
            order = Execution(
                self.book, p.signal_bar, qty, p.t0, cap_size=s.cap_size, whole_shares=s.whole_shares
            )
            self.working, self.working_id = order, p.order_id
            self.deadline = self.pending[0].t0 if self.pending else None
            self._take(order, order.when(quote.ts), quote)

    def _offer(self, ts: int, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        order = self.working
        if order is None or (self.deadline is not None and ts >= self.deadline):
            return
        self._take(order, ts, _Quote(ts, bid, ask, bid_size, ask_size))

    def _take(self, order: Execution, t: int, quote: _Quote) -> None:
        bar = bisect.bisect_right(self.bar_ends, t)  # the bar the fill first shows in
        before = len(self.book.fills["qty"])
        order.offer(t, quote.bid, quote.ask, quote.bid_size, quote.ask_size, bar)
        if len(self.book.fills["qty"]) > before:
            f = self.book.fills
            self.fills += 1
            self.fill_times.append(t)
            self.fill_states.append((self.book.shares, self.book.cash))
            self.out.append(
                Fill(
                    name=self.name,
                    symbol=self.symbol,
                    order_id=self.working_id,
                    qty=f["qty"][-1],
                    price=f["price"][-1],
                    ref_price=f["ref_price"][-1],
                    fee=f["fee"][-1],
                    ts_event=t,
                    position=self.book.shares,
                    cash=self.book.cash,
                )
            )
        if order.done:
            self.working = None
