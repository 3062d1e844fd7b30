"""One symbol's market data as plain numpy columns: `Bars` for signals, `Quotes` for fills.

Strategies and both engines work on these two containers only, so they never care whether the
data came from a recording, a historical download or a user's Parquet file. Times are int64
nanoseconds since the Unix epoch, UTC, as everywhere in the mesh. A bar covers [ts, ts_end).

Bars at a coarser interval are built here too (`resample`, `bars_from_ticks`), with the rules the
recorder uses: open/close are the first/last event, empty windows have no bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mesh.backtest.errors import BacktestError
from mesh.bar_schema import guess_interval
from mesh.intervals import format_ns


@dataclass
class Bars:
    """OHLCV bars of one symbol, sorted by time, one numpy array per column."""

    symbol: str
    ts: np.ndarray  # int64 ns, window start
    ts_end: np.ndarray  # int64 ns, window end (exclusive): when the bar is known
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray = field(default_factory=lambda: np.zeros(0))
    interval_ns: int = 0

    def __post_init__(self) -> None:
        n = len(self.ts)
        if len(self.volume) != n:
            self.volume = np.zeros(n)
        for name in ("ts_end", "open", "high", "low", "close"):
            if len(getattr(self, name)) != n:
                raise BacktestError(
                    f"bars for {self.symbol}: column {name} has {len(getattr(self, name))} values, ts has {n}"
                )

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, stop: int) -> Bars:
        """The first `stop` bars (what a strategy would have seen at bar stop-1)."""
        return Bars(
            self.symbol,
            self.ts[:stop],
            self.ts_end[:stop],
            self.open[:stop],
            self.high[:stop],
            self.low[:stop],
            self.close[:stop],
            self.volume[:stop],
            self.interval_ns,
        )

    @classmethod
    def from_arrays(
        cls,
        symbol: str,
        ts: np.ndarray,
        open: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray | None = None,
        ts_end: np.ndarray | None = None,
        interval_ns: int | None = None,
    ) -> Bars:
        """Bars from columns; `ts_end` defaults to ts + the interval (given, or the median spacing)."""
        ts = np.asarray(ts, dtype=np.int64)
        if interval_ns is None:
            interval_ns = infer_interval(ts)
        if ts_end is None:
            ts_end = ts + interval_ns
        return cls(
            symbol,
            ts,
            np.asarray(ts_end, dtype=np.int64),
            np.asarray(open, dtype=np.float64),
            np.asarray(high, dtype=np.float64),
            np.asarray(low, dtype=np.float64),
            np.asarray(close, dtype=np.float64),
            np.zeros(len(ts)) if volume is None else np.asarray(volume, dtype=np.float64),
            int(interval_ns),
        )


@dataclass
class Quotes:
    """Quotes (NBBO) of one symbol in arrival order: what orders fill against on the event path."""

    symbol: str
    ts: np.ndarray  # int64 ns (ts_event)
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def mid(self) -> np.ndarray:
        return (self.bid + self.ask) / 2.0

    def valid(self) -> Quotes:
        """Only two-sided, uncrossed quotes with positive prices (the ones an order could fill against)."""
        keep = (
            (self.bid > 0)
            & (self.ask > 0)
            & (self.ask >= self.bid)
            & np.isfinite(self.bid)
            & np.isfinite(self.ask)
        )
        if keep.all():
            return self
        return Quotes(
            self.symbol,
            self.ts[keep],
            self.bid[keep],
            self.ask[keep],
            self.bid_size[keep],
            self.ask_size[keep],
        )


def infer_interval(ts: np.ndarray) -> int:
    """One symbol's bar width in ns, from its bar times (mesh/bar_schema.py's rule)."""
    return guess_interval(ts).ns


def _windows(ts: np.ndarray, interval_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(window start of each window that has events, index of its first event) for sorted `ts`."""
    bucket = (ts // interval_ns) * interval_ns
    starts = (
        np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        if len(ts)
        else np.zeros(0, dtype=np.int64)
    )
    return bucket[starts], starts


def resample(bars: Bars, interval_ns: int) -> Bars:
    """Bars aggregated to a coarser interval (windows floored to the interval, UTC)."""
    if interval_ns == bars.interval_ns or len(bars) == 0:
        return bars
    if bars.interval_ns and interval_ns < bars.interval_ns:
        raise BacktestError(
            f"cannot make {format_ns(interval_ns)} bars from {format_ns(bars.interval_ns)} bars: pick --interval "
            f"{format_ns(bars.interval_ns)} or coarser"
        )
    if bars.interval_ns and interval_ns % bars.interval_ns:
        raise BacktestError(
            f"--interval {format_ns(interval_ns)} is not a multiple of the data's {format_ns(bars.interval_ns)}"
        )
    start, first = _windows(bars.ts, interval_ns)
    last = np.r_[first[1:], len(bars)] - 1
    return Bars(
        bars.symbol,
        start,
        start + interval_ns,
        bars.open[first],
        np.maximum.reduceat(bars.high, first),
        np.minimum.reduceat(bars.low, first),
        bars.close[last],
        np.add.reduceat(bars.volume, first),
        interval_ns,
    )


def bars_from_ticks(
    symbol: str, ts: np.ndarray, price: np.ndarray, size: np.ndarray | None, interval_ns: int
) -> Bars:
    """OHLCV bars from sorted ticks (trade prices, or quote mids with no size)."""
    if len(ts) == 0:
        empty = np.zeros(0)
        return Bars(
            symbol,
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            empty,
            empty,
            empty,
            empty,
            empty,
            interval_ns,
        )
    start, first = _windows(ts, interval_ns)
    last = np.r_[first[1:], len(ts)] - 1
    volume = (
        np.zeros(len(first))
        if size is None
        else np.add.reduceat(np.asarray(size, dtype=np.float64), first)
    )
    return Bars(
        symbol,
        start,
        start + interval_ns,
        price[first],
        np.maximum.reduceat(price, first),
        np.minimum.reduceat(price, first),
        price[last],
        volume,
        interval_ns,
    )
