"""OHLCV bars at 1 s and 1 min, built from the recorded quotes (mid price) and trades.

Bars are built per chunk of promoted rows and merged, so a session of any length never needs its
rows in memory at once, and a window split across two slices (or two runs of an appended session)
comes out the same as if all its rows had been aggregated together. The rules are the ones a user
applies by hand with pandas:

- a window is [ts_start, ts_end) on `ts_event`, floored to the interval, UTC; empty windows have no bar;
- open / close are the earliest / latest event by `ts_event` (ties: recording order), high / low
  the extremes;
- trade bars (`bars_1s`, `bars_1m`): volume = sum of sizes, vwap = sum(price * size) / volume,
  transactions = number of trades;
- mid bars (`mid_bars_1s`, `mid_bars_1m`): prices are (bid_price + ask_price) / 2, volume is 0,
  vwap is NaN, transactions counts quotes;
- `ts_recv` is the latest receipt time among the window's events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mesh.bar_schema import BAR_SCHEMA
from mesh.datasets.layout import bar_table
from mesh.intervals import RECORDED, Interval
from mesh.recorder.columns import QUOTES, TRADES
from mesh.times import TIME

# bar table (`bars_1s`, `mid_bars_1m`, ...) -> (source table, interval), for the recorded intervals
BAR_TABLES: dict[str, tuple[str, Interval]] = {
    bar_table(interval, mid=source == QUOTES): (source, interval)
    for source in (TRADES, QUOTES)
    for interval in RECORDED
}

# Partial bars: everything needed to merge two partial aggregates of the same window exactly.
_NUMERIC = (
    "start",
    "first_ts",
    "first_ord",
    "last_ts",
    "last_ord",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "pv",
    "count",
    "recv",
)
Partial = dict[str, Any]  # "symbol": pa.StringArray, the rest numpy arrays of equal length


def _ints(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def rows_to_partial(table: str, chunk: pa.Table, interval: Interval, ordinal_base: int) -> Partial:
    """Each row of a quotes or trades chunk as a one-event partial bar, then merged per window."""
    ts = _ints(chunk.column("ts_event"))
    n = len(ts)
    if table == TRADES:
        price = _floats(chunk.column("price"))
        size = _floats(chunk.column("size"))
    else:
        price = (_floats(chunk.column("bid_price")) + _floats(chunk.column("ask_price"))) / 2.0
        size = np.zeros(n)
    ordinal = ordinal_base + np.arange(n, dtype=np.int64)
    part: Partial = {
        "symbol": chunk.column("symbol").combine_chunks()
        if isinstance(chunk.column("symbol"), pa.ChunkedArray)
        else chunk.column("symbol"),
        "start": np.floor_divide(ts, interval.ns),
        "first_ts": ts,
        "first_ord": ordinal,
        "last_ts": ts,
        "last_ord": ordinal,
        "open": price,
        "high": price,
        "low": price,
        "close": price,
        "volume": size,
        "pv": price * size,
        "count": np.ones(n, dtype=np.int64),
        "recv": _ints(chunk.column("ts_recv")),
    }
    return merge([part])


def merge(parts: list[Partial]) -> Partial:
    """Combine partial bars (in recording order) into one partial bar per (symbol, window)."""
    parts = [p for p in parts if len(p["start"])]
    if not parts:
        return empty_partial()
    symbols = (
        pa.concat_arrays([p["symbol"] for p in parts]) if len(parts) > 1 else parts[0]["symbol"]
    )
    cols = {
        k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k]
        for k in _NUMERIC
    }
    encoded = pc.dictionary_encode(symbols)
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    start = cols["start"]

    by_first = np.lexsort((cols["first_ord"], cols["first_ts"], start, codes))
    code_s, start_s = codes[by_first], start[by_first]
    boundary = np.ones(len(by_first), dtype=bool)
    boundary[1:] = (code_s[1:] != code_s[:-1]) | (start_s[1:] != start_s[:-1])
    heads = np.flatnonzero(boundary)
    tails = np.append(heads[1:], len(by_first)) - 1

    def first(name: str) -> np.ndarray:
        return cols[name][by_first][heads]

    def reduce(ufunc: np.ufunc, name: str) -> np.ndarray:
        return ufunc.reduceat(cols[name][by_first], heads)

    by_last = np.lexsort(
        (cols["last_ord"], cols["last_ts"], start, codes)
    )  # same groups, same positions

    out: Partial = {
        "symbol": encoded.dictionary.take(pa.array(code_s[heads])),
        "start": start_s[heads],
        "first_ts": first("first_ts"),
        "first_ord": first("first_ord"),
        "last_ts": cols["last_ts"][by_last][tails],
        "last_ord": cols["last_ord"][by_last][tails],
        "open": first("open"),
        "high": reduce(np.maximum, "high"),
        "low": reduce(np.minimum, "low"),
        "close": cols["close"][by_last][tails],
        "volume": reduce(np.add, "volume"),
        "pv": reduce(np.add, "pv"),
        "count": reduce(np.add, "count"),
        "recv": reduce(np.maximum, "recv"),
    }
    return out


def empty_partial() -> Partial:
    out: Partial = {
        k: np.zeros(
            0,
            dtype=np.float64 if k in ("open", "high", "low", "close", "volume", "pv") else np.int64,
        )
        for k in _NUMERIC
    }
    out["symbol"] = pa.array([], type=pa.string())
    return out


def to_table(part: Partial, interval: Interval) -> pa.Table:
    """Finished bars, sorted by symbol then time, in the one bar schema (mesh/bar_schema.py)."""
    width = interval.ns
    order = np.lexsort(
        (
            part["start"],
            np.asarray(
                pc.rank(part["symbol"], sort_keys="ascending", tiebreaker="dense")
                if len(part["start"])
                else np.zeros(0)
            ),
        )
    )
    volume = part["volume"][order]
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(volume > 0, part["pv"][order] / volume, np.nan)
    start_ns = part["start"][order] * width
    return pa.table(
        {
            "symbol": part["symbol"].take(pa.array(order, type=pa.int64())),
            "ts_start": pa.array(start_ns, type=pa.int64()).cast(TIME),
            "ts_end": pa.array(start_ns + width, type=pa.int64()).cast(TIME),
            "open": part["open"][order],
            "high": part["high"][order],
            "low": part["low"][order],
            "close": part["close"][order],
            "volume": volume,
            "vwap": vwap,
            "transactions": part["count"][order],
            "ts_recv": pa.array(part["recv"][order], type=pa.int64()).cast(TIME),
        },
        schema=BAR_SCHEMA,
    )


class BarBuilder:
    """Keeps the merged partial bars of one session; `add` chunks as they are promoted."""

    def __init__(self) -> None:
        self.state: dict[str, Partial] = {name: empty_partial() for name in BAR_TABLES}
        self._pending: dict[str, list[Partial]] = {name: [] for name in BAR_TABLES}

    def add(self, table: str, chunk: pa.Table, ordinal_base: int) -> None:
        """Aggregate one chunk of storage rows; `ordinal_base` orders it in the recording."""
        if chunk.num_rows == 0:
            return
        for name, (source, interval) in BAR_TABLES.items():
            if source == table:
                self._pending[name].append(rows_to_partial(table, chunk, interval, ordinal_base))

    def commit(self) -> None:
        """Fold the chunks added since the last commit into the session's bars."""
        for name, pending in self._pending.items():
            if pending:
                self.state[name] = merge([self.state[name], *pending])
                pending.clear()

    def tables(self) -> dict[str, pa.Table]:
        return {name: to_table(self.state[name], BAR_TABLES[name][1]) for name in BAR_TABLES}


def ordinal(segment: int, row: int) -> int:
    """A row's position in the recording: segment number, then row within the segment."""
    return (segment << 32) + row
