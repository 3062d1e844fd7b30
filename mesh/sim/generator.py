"""Synthetic flow for benchmarks (`--rate`): a seeded, vectorised generator of quotes, trades and bars.

The sim's feed normally plays its history (`mesh.sim.playback`); this generator instead sends
any rate asked of it, up to a firehose, and none of its events are in the sim's history. Each
tick (20 ms by default) draws `rate x elapsed` events at once with numpy: which symbol, quote or
trade, when in the tick, at what price. Mid prices follow a random walk with the listing's
intraday volatility, starting from the last historical close. Every tick's trades also feed
per-second (`A`) and per-minute (`AM`) bars, emitted once their window has passed. Timestamps
are the current time whatever the day.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mesh.sim import frames, market, queries
from mesh.sim.source import KINDS, SYMBOLS, Batch

TRADE_SHARE = 0.3  # of events; the rest are quotes
LIVELINESS = 3.0  # intraday volatility multiple, so prices visibly move
MAX_TICK_EVENTS_FACTOR = 2  # catching up after a stall is capped at this many ticks' worth

_T, _Q, _A, _AM = (KINDS.code(k) for k in ("T", "Q", "A", "AM"))
_EXCHANGES = np.array([1, 2, 3, 4, 7, 8, 10, 11, 12, 15, 17, 19, 21])
_QUOTE_EXCHANGES = np.array([1, 7, 8, 10, 11, 12, 15, 17, 19, 21])
ID_BASE = 10**11  # trade IDs and sequence numbers have a fixed digit count
SEQ_BASE = 10**9
# ids of exactly 12 digits (from ID_BASE); quote sizes under 30 lots; feed-wide sequence numbers
_FORMAT = frames.TickFormat(
    trade_id_words=3, fixed_width_ids=True, quote_size_words=1, sorted_sequences=True
)


@dataclass
class _Window:
    """Per-symbol OHLCV accumulators for the current second or minute."""

    ev: str
    width_ms: int
    n_sym: int
    start: int = -1

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        k = self.n_sym
        self.o, self.h, self.low, self.c = (
            np.zeros(k),
            np.full(k, -np.inf),
            np.full(k, np.inf),
            np.zeros(k),
        )
        self.v, self.notional, self.n = np.zeros(k, np.int64), np.zeros(k), np.zeros(k, np.int64)

    def add(self, sym: np.ndarray, price: np.ndarray, size: np.ndarray) -> None:
        first = _first_positions(sym, self.n_sym)
        fresh = (first >= 0) & (self.n == 0)
        self.o[fresh] = price[first[fresh]]
        last = _last_positions(sym, self.n_sym)
        seen = last >= 0
        self.c[seen] = price[last[seen]]
        np.maximum.at(self.h, sym, price)
        np.minimum.at(self.low, sym, price)
        self.v += np.bincount(sym, weights=size, minlength=self.n_sym).astype(np.int64)
        self.notional += np.bincount(sym, weights=price * size, minlength=self.n_sym)
        self.n += np.bincount(sym, minlength=self.n_sym)


class LiveSource:
    """Generates the live feed for `symbols` at `rate` events per second."""

    def __init__(
        self,
        symbols: list[str],
        seed: int = market.DEFAULT_SEED,
        rate: float = 1000.0,
        tick: float = 0.02,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.symbols = list(symbols)
        self.rate = float(rate)
        self.tick = tick
        self.clock = clock
        self.rng = np.random.default_rng([seed, 99])
        k = len(self.symbols)
        self.codes = np.array([SYMBOLS.code(s) for s in self.symbols], np.int64)
        listings = [market.listing(s) for s in self.symbols]
        today = market.today_et(clock())
        self.mid = np.array([market.previous_close(seed, s, today) for s in self.symbols])
        self.vol_per_s = np.array([x.daily_vol for x in listings]) / np.sqrt(23_400) * LIVELINESS
        weights = np.array([x.activity for x in listings])
        self.cdf = np.cumsum(weights / weights.sum())
        self.cdf[-1] = 1.0
        # trade sizes drawn from a pool: 40% odd lots, else round lots with a geometric count
        pool = np.random.default_rng([seed, 98])
        odd = pool.random(4096) < 0.4
        self.size_pool = np.where(
            odd, pool.integers(1, 100, 4096), 100 * pool.geometric(0.45, 4096)
        )
        self.tape = np.array([x.tape for x in listings])
        # feed-wide counters, as on the SIP: increasing and unique per ticker, not contiguous per ticker
        self.trade_seq = SEQ_BASE
        self.quote_seq = SEQ_BASE
        self.trade_ids = ID_BASE
        self.layouts = frames.TickLayouts(self.symbols, self.tape, _FORMAT)
        self.second = _Window("A", 1000, k)
        self.minute = _Window("AM", 60_000, k)
        self.day = today
        self.day_volume = np.zeros(k, np.int64)
        self.day_notional = np.zeros(k)
        self.day_open = np.zeros(k)
        self.last_trade: dict[str, dict[str, Any]] = {}
        self.last_quote: dict[str, dict[str, Any]] = {}
        self.generated = 0
        self._last_ms: int | None = None
        self._carry = 0.0

    async def steps(self) -> AsyncIterator[LiveStep]:
        next_at = time.monotonic()
        while True:
            next_at += self.tick
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = time.monotonic()  # behind: do not try to catch up on sleep
                await asyncio.sleep(0)
            yield self.step(self.clock() // 1_000_000)

    def step(self, now_ms: int) -> LiveStep:
        """Events in (previous step, now_ms]."""
        t0 = now_ms - int(self.tick * 1000) if self._last_ms is None else self._last_ms
        self._last_ms = now_ms
        want = self.rate * max(0, now_ms - t0) / 1000 + self._carry
        cap = self.rate * self.tick * MAX_TICK_EVENTS_FACTOR
        n = int(min(want, cap))
        self._carry = min(want - n, 1.0)
        return self._make(t0, now_ms, n)

    def _make(self, t0: int, t1: int, n: int) -> LiveStep:
        rng, k = self.rng, len(self.symbols)
        step = LiveStep(self)
        start_mid = self.mid
        dt_s = max(t1 - t0, 1) / 1000
        self.mid = start_mid * np.exp(rng.standard_normal(k) * self.vol_per_s * np.sqrt(dt_s))
        if n:
            t = np.sort(rng.integers(t0 + 1, t1 + 1, n))
            sym = np.searchsorted(self.cdf, rng.random(n), side="right").clip(0, k - 1)
            frac = (t - t0) / max(t1 - t0, 1)
            mid = start_mid[sym] + (self.mid[sym] - start_mid[sym]) * frac
            spread = np.maximum(1, np.round(mid * 0.0001 * rng.uniform(0.5, 2.0, n) / 0.01))
            bid_cents = np.floor(mid * 100 - spread / 2)
            bid = np.round(bid_cents / 100, 2)
            ask = np.round((bid_cents + spread) / 100, 2)
            is_trade = rng.random(n) < TRADE_SHARE
            step.order_kinds = np.where(is_trade, _T, _Q)
            step.order_symbols = self.codes[sym]
            step.t = t
            ti = step.trade_rows = np.flatnonzero(is_trade)
            qi = step.quote_rows = np.flatnonzero(~is_trade)
            if len(ti):
                step.trades = self._trades(t[ti], sym[ti], bid[ti], ask[ti], mid[ti])
            if len(qi):
                step.quotes = self._quotes(t[qi], sym[qi], bid[qi], ask[qi])
        step.bars = self._roll_bars(step.trades, t1)
        self.generated += n + len(step.bars)
        return step

    def _trades(
        self, t: np.ndarray, sym: np.ndarray, bid: np.ndarray, ask: np.ndarray, mid: np.ndarray
    ) -> dict[str, np.ndarray]:
        rng, n = self.rng, len(t)
        r, iso = rng.random((2, n))
        price = np.where(r < 0.4, bid, np.where(r < 0.8, ask, np.round(mid, 2)))
        size = self.size_pool[rng.integers(0, len(self.size_pool), n)]
        regular = _regular_session(int(t[-1]))
        flags = (0 if regular else 1) + (iso < 0.05) * 2 + (size < 100) * 4
        seq = self.trade_seq + np.arange(1, n + 1)
        ids = self.trade_ids + np.arange(1, n + 1)
        self.trade_seq += n
        self.trade_ids += n + int(rng.integers(0, 3))
        exchange = _EXCHANGES[rng.integers(0, len(_EXCHANGES), n)]
        trades = {
            "t": t,
            "sym": sym,
            "p": price,
            "s": size,
            "x": exchange,
            "flags": flags,
            "q": seq,
            "i": ids,
        }
        self._remember_trades(trades)
        return trades

    def _quotes(
        self, t: np.ndarray, sym: np.ndarray, bid: np.ndarray, ask: np.ndarray
    ) -> dict[str, np.ndarray]:
        rng, n = self.rng, len(t)
        seq = self.quote_seq + np.arange(1, n + 1)
        self.quote_seq += n
        lots = rng.integers(1, 30, (2, n))  # round lots, as the WebSocket feed reports sizes
        venues = _QUOTE_EXCHANGES[rng.integers(0, len(_QUOTE_EXCHANGES), (2, n))]
        quotes = {
            "t": t,
            "sym": sym,
            "bp": bid,
            "ap": ask,
            "bs": lots[0],
            "as": lots[1],
            "bx": venues[0],
            "ax": venues[1],
            "q": seq,
        }
        self._remember_quotes(quotes)
        return quotes

    def _remember_trades(self, tr: dict[str, np.ndarray]) -> None:
        for j in _last_index(tr["sym"], len(self.symbols)):
            flags = int(tr["flags"][j])
            self.last_trade[self.symbols[int(tr["sym"][j])]] = {
                "p": float(tr["p"][j]), "s": int(tr["s"][j]), "x": int(tr["x"][j]), "t": int(tr["t"][j]),
                "q": int(tr["q"][j]), "i": str(int(tr["i"][j])), "c": queries.conditions_of(flags),
            }  # fmt: skip

    def _remember_quotes(self, q: dict[str, np.ndarray]) -> None:
        for j in _last_index(q["sym"], len(self.symbols)):
            self.last_quote[self.symbols[int(q["sym"][j])]] = {
                "bp": float(q["bp"][j]), "ap": float(q["ap"][j]), "bs": int(q["bs"][j]), "as": int(q["as"][j]),
                "bx": int(q["bx"][j]), "ax": int(q["ax"][j]), "t": int(q["t"][j]), "q": int(q["q"][j]),
            }  # fmt: skip

    def _roll_bars(self, trades: dict[str, np.ndarray] | None, now_ms: int) -> list[dict[str, Any]]:
        """Add this step's trades to the open windows; return the bars of windows that closed."""
        today = market.today_et(now_ms * 1_000_000)
        if today != self.day:
            self.day = today
            self.day_volume[:] = 0
            self.day_notional[:] = 0
            self.day_open[:] = 0
        bars: list[dict[str, Any]] = []
        if trades is not None:
            t, sym, price, size = trades["t"], trades["sym"], trades["p"], trades["s"]
            for win in (self.second, self.minute):
                keys = t // win.width_ms
                cuts = np.flatnonzero(np.diff(keys)) + 1
                for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(t)], strict=True):
                    key = int(keys[lo])
                    if win.start != key:
                        bars += self._flush(win)
                        win.start = key
                    if win is self.second:
                        self._add_day(sym[lo:hi], price[lo:hi], size[lo:hi])
                    win.add(sym[lo:hi], price[lo:hi], size[lo:hi])
        for win in (self.second, self.minute):
            if win.start >= 0 and now_ms // win.width_ms > win.start:
                bars += self._flush(win)
        return bars

    def _add_day(self, sym: np.ndarray, price: np.ndarray, size: np.ndarray) -> None:
        first = _first_positions(sym, len(self.symbols))
        unset = (first >= 0) & (self.day_open == 0)
        self.day_open[unset] = price[first[unset]]
        self.day_volume += np.bincount(sym, weights=size, minlength=len(self.symbols)).astype(
            np.int64
        )
        self.day_notional += np.bincount(sym, weights=price * size, minlength=len(self.symbols))

    def _flush(self, win: _Window) -> list[dict[str, Any]]:
        bars = []
        if win.start >= 0:
            s = win.start * win.width_ms
            for j in np.flatnonzero(win.n).tolist():
                v = int(win.v[j])
                n = int(win.n[j])
                bar = (
                    float(win.o[j]),
                    float(win.h[j]),
                    float(win.low[j]),
                    float(win.c[j]),
                    v,
                    round(float(win.notional[j]) / v, 4),
                    n,
                )
                day_volume = int(self.day_volume[j])
                day = (
                    day_volume,
                    round(float(self.day_notional[j]) / max(day_volume, 1), 4),
                    float(self.day_open[j]),
                )
                bars.append(frames.bar_event(win.ev, self.symbols[j], s, win.width_ms, bar, day))
        win.reset()
        win.start = -1
        return bars


class LiveStep:
    """One tick of the live generator; renders its events for a given delay."""

    def __init__(self, source: LiveSource) -> None:
        self.source = source
        self.trades: dict[str, np.ndarray] | None = None
        self.quotes: dict[str, np.ndarray] | None = None
        self.bars: list[dict[str, Any]] = []
        self.order_kinds = np.empty(0, np.int64)
        self.order_symbols = np.empty(0, np.int64)
        self.trade_rows = np.empty(0, np.int64)
        self.quote_rows = np.empty(0, np.int64)
        self.t = np.empty(0, np.int64)

    def render(self, delay_ms: int) -> Batch:
        src = self.source
        lay = src.layouts
        rows = lay.rows(len(self.t))
        if self.trades is not None:
            rows[self.trade_rows] = lay.trades(self.trades, self.trades["t"] - delay_ms)
        if self.quotes is not None:
            rows[self.quote_rows] = lay.quotes(self.quotes, self.quotes["t"] - delay_ms)
        loose, kinds, symbols = [], [], []
        for bar in self.bars:
            if delay_ms:
                bar = {**bar, "s": bar["s"] - delay_ms, "e": bar["e"] - delay_ms}
            loose.append(frames.encode_event(bar))
            kinds.append(_A if bar["ev"] == "A" else _AM)
            symbols.append(SYMBOLS.code(bar["sym"]))
        present = frozenset(
            k for k, part in ((_T, self.trades), (_Q, self.quotes)) if part is not None
        )
        return Batch(
            rows.view(np.uint8),
            self.order_kinds,
            self.order_symbols,
            loose,
            kinds,
            symbols,
            present,
        )


def _last_positions(sym: np.ndarray, k: int) -> np.ndarray:
    """Per symbol code, the index of its last occurrence in `sym` (-1 if absent)."""
    out = np.full(k, -1, np.int64)
    out[sym] = np.arange(len(sym))  # with repeated indices the last assignment wins
    return out


def _first_positions(sym: np.ndarray, k: int) -> np.ndarray:
    out = np.full(k, -1, np.int64)
    out[sym[::-1]] = np.arange(len(sym))[::-1]
    return out


def _last_index(sym: np.ndarray, k: int) -> list[int]:
    last = _last_positions(sym, k)
    return last[last >= 0].tolist()


def _regular_session(ms: int) -> bool:
    now = dt.datetime.fromtimestamp(ms / 1000, market.ET)
    minutes = now.hour * 60 + now.minute
    return market.is_trading_day(now.date()) and 570 <= minutes < 960
