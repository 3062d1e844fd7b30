"""The one bar schema: every bar anyone writes, live, recorded, fetched or backfilled.

A bar is the window [ts_start, ts_end) of one symbol. The recorder's 1 s and 1 min bars, fetched
history at any interval, gap backfills and what the backtester reads all have exactly these
columns and types, so one DuckDB glob, `massive kdb load` and the backtester see one table
whatever wrote it. The bus's `Bar` record (mesh/schema.py) has the same fields.

| column | type | meaning |
|---|---|---|
| `symbol` | string | ticker, Massive's spelling |
| `ts_start` | timestamp[ns, UTC] | window start (1d bars: 00:00 New York on the trading date) |
| `ts_end` | timestamp[ns, UTC] | window end, exclusive (1d bars: the next 00:00 New York) |
| `open`, `high`, `low`, `close` | float64 | prices; fetched history split-adjusted unless asked otherwise (the manifest's `adjusted`), recordings as traded |
| `volume` | float64 | shares (mid-price bars: 0) |
| `vwap` | float64 | volume-weighted price; NaN when it cannot be known |
| `transactions` | int64 | trades in the window (mid-price bars: quotes) |
| `ts_recv` | timestamp[ns, UTC], nullable | when the mesh last received an event of the window; null for history |

`SCHEMA_VERSION` is written into every manifest (`schema_version`). Version 1 is what the mesh
wrote before: recordings had these columns already, fetched history had one `timestamp` column
(the window start) instead of `ts_start`/`ts_end`/`ts_recv`. `to_current` reads either into the
current schema, so old datasets keep working without being rewritten, and `massive data migrate`
rewrites them for engines that read Parquet directly.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from mesh.intervals import Interval
from mesh.times import TIME, ns_column, to_ns

SCHEMA_VERSION = 2

BAR_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string()),
        pa.field("ts_start", TIME),
        pa.field("ts_end", TIME),
        pa.field("open", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("low", pa.float64()),
        pa.field("close", pa.float64()),
        pa.field("volume", pa.float64()),
        pa.field("vwap", pa.float64()),
        pa.field("transactions", pa.int64()),
        pa.field("ts_recv", TIME),
    ]
)
BAR_COLUMNS = tuple(BAR_SCHEMA.names)

# The columns that make a table a bar table, in either version.
_CURRENT_KEY = {"symbol", "ts_start", "open", "high", "low", "close"}
_V1_FETCHED_KEY = {"timestamp", "open", "high", "low", "close"}

_ET = ZoneInfo("America/New_York")


class BarSchemaError(ValueError):
    """A table that is not bars of any known version."""


def is_bar_table(names: set[str] | list[str] | tuple[str, ...]) -> bool:
    names = set(names)
    return _CURRENT_KEY <= names or _V1_FETCHED_KEY <= names


def version_of(names: set[str] | list[str] | tuple[str, ...]) -> int:
    """1 for a fetched table with `timestamp`, 2 for the current columns."""
    names = set(names)
    if "ts_start" in names:
        return SCHEMA_VERSION
    if "timestamp" in names:
        return 1
    raise BarSchemaError("not a bar table: no ts_start or timestamp column")


def empty() -> pa.Table:
    return BAR_SCHEMA.empty_table()


def window_ends(starts_ns: np.ndarray, interval: Interval) -> np.ndarray:
    """Each window's end: start + width, or for daily bars the next 00:00 New York."""
    starts_ns = np.asarray(starts_ns, dtype=np.int64)
    if not interval.is_daily:
        return starts_ns + np.int64(interval.ns)
    ends = np.empty_like(starts_ns)
    cache: dict[int, int] = {}
    for i, start in enumerate(starts_ns.tolist()):
        end = cache.get(start)
        if end is None:
            day = dt.datetime.fromtimestamp(start / 1e9, _ET).date() + dt.timedelta(days=1)
            end = int(dt.datetime(day.year, day.month, day.day, tzinfo=_ET).timestamp()) * 10**9
            cache[start] = end
        ends[i] = end
    return ends


def from_columns(
    symbol: pa.Array | list[str],
    starts_ns: np.ndarray,
    interval: Interval,
    *,
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    vwap: np.ndarray,
    transactions: np.ndarray,
    recv_ns: np.ndarray | None = None,
) -> pa.Table:
    """A bar table in `BAR_SCHEMA` from plain columns; `recv_ns=None` writes null `ts_recv`."""
    starts_ns = np.asarray(starts_ns, dtype=np.int64)
    n = len(starts_ns)
    recv = pa.nulls(n, TIME) if recv_ns is None else ns_column(recv_ns)
    return pa.table(
        {
            "symbol": pa.array(symbol, type=pa.string()),
            "ts_start": ns_column(starts_ns),
            "ts_end": ns_column(window_ends(starts_ns, interval)),
            "open": pa.array(open, type=pa.float64()),
            "high": pa.array(high, type=pa.float64()),
            "low": pa.array(low, type=pa.float64()),
            "close": pa.array(close, type=pa.float64()),
            "volume": pa.array(volume, type=pa.float64()),
            "vwap": pa.array(vwap, type=pa.float64()),
            "transactions": pa.array(transactions, type=pa.int64()),
            "ts_recv": recv,
        },
        schema=BAR_SCHEMA,
    )


def to_current(table: pa.Table, interval: Interval | None = None) -> pa.Table:
    """Any version's bars -> `BAR_SCHEMA` (columns in order, extra columns dropped).

    A version-1 fetched table needs its `interval` to know where each window ends; without one,
    the interval is taken as the smallest step between consecutive bars of a symbol.
    """
    names = set(table.column_names)
    if version_of(names) == SCHEMA_VERSION:
        return _cast_current(table)
    starts = to_ns(table.column("timestamp"))
    if interval is None:
        interval = guess_interval(starts, _symbols(table))
    symbol = (
        table.column("symbol").cast(pa.string())
        if "symbol" in names
        else pa.array([""] * table.num_rows, type=pa.string())
    )
    n = table.num_rows

    def floats(name: str, fill: float) -> np.ndarray:
        if name not in names:
            return np.full(n, fill)
        return table.column(name).cast(pa.float64()).fill_null(fill).to_numpy()

    return from_columns(
        symbol.combine_chunks() if isinstance(symbol, pa.ChunkedArray) else symbol,
        starts,
        interval,
        open=floats("open", np.nan),
        high=floats("high", np.nan),
        low=floats("low", np.nan),
        close=floats("close", np.nan),
        volume=floats("volume", 0.0),
        vwap=floats("vwap", np.nan),
        transactions=(
            table.column("transactions").cast(pa.int64()).fill_null(0).to_numpy()
            if "transactions" in names
            else np.zeros(n, dtype=np.int64)
        ),
    )


def _symbols(table: pa.Table) -> np.ndarray | None:
    if "symbol" not in table.column_names:
        return None
    return np.asarray(table.column("symbol").to_numpy(zero_copy_only=False), dtype=object)


def _cast_current(table: pa.Table) -> pa.Table:
    columns = []
    for field in BAR_SCHEMA:
        if field.name in table.column_names:
            column = table.column(field.name)
            if pa.types.is_timestamp(field.type) and not pa.types.is_timestamp(column.type):
                column = ns_column(to_ns(column))
            columns.append(column.cast(field.type))
        elif field.name == "ts_recv":
            columns.append(pa.nulls(table.num_rows, TIME))
        elif field.name in ("volume",):
            columns.append(pa.array(np.zeros(table.num_rows)))
        elif field.name == "vwap":
            columns.append(pa.array(np.full(table.num_rows, np.nan)))
        elif field.name == "transactions":
            columns.append(pa.array(np.zeros(table.num_rows, dtype=np.int64)))
        elif field.name == "ts_end":
            width = guess_interval(to_ns(table.column("ts_start")), _symbols(table))
            ends = window_ends(to_ns(table.column("ts_start")), width)
            columns.append(ns_column(ends))
        else:
            raise BarSchemaError(f"bar table has no {field.name} column")
    return pa.Table.from_arrays(columns, schema=BAR_SCHEMA)


def guess_interval(starts: np.ndarray, symbols: np.ndarray | None = None) -> Interval:
    """The width of bars whose file does not say: the smallest step between a symbol's bars.

    `symbols` (one per start) keeps each symbol's bars apart. Steps of 20 hours or more are days
    (weekends and holidays make daily steps uneven); with fewer than two bars, one minute.
    """
    starts = np.asarray(starts, dtype=np.int64)
    if len(starts) >= 2:
        if symbols is not None:
            order = np.lexsort((starts, symbols))
            same = symbols[order][1:] == symbols[order][:-1]
            steps = np.diff(starts[order])[same]
        else:
            steps = np.diff(np.sort(starts))
        steps = steps[steps > 0]
        if steps.size:
            step = int(steps.min())
            if step >= 20 * 3600 * 10**9:  # daily bars: overnight gaps are still days
                step = 86_400 * 10**9
            return Interval(step)
    return Interval(60 * 10**9)
