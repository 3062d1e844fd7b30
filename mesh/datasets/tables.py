"""What a Parquet table holds, told from its column names: bars, quotes, trades, gaps, or paper
trading's orders, fills and P&L.

Column names are the record fields of mesh/schema.py (and mesh/bar_schema.py for bars), so a
file is recognised whoever wrote it. Bars from elsewhere may name their start time `timestamp`
(version-1 fetched bars), `ts`, `time`, `datetime`, `date`, `window_start` or `t`; readers take
any of them as the window start.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

import pyarrow as pa

from mesh.bar_schema import SCHEMA_VERSION


class TableKind(StrEnum):
    BARS = "bars"
    QUOTES = "quotes"
    TRADES = "trades"
    GAPS = "gaps"
    ORDERS = "orders"
    FILLS = "fills"
    PNL = "pnl"


PAPER_KINDS = (TableKind.ORDERS, TableKind.FILLS, TableKind.PNL)


BAR_PRICES = ("open", "high", "low", "close")
BAR_TIME_COLUMNS = ("ts_start", "timestamp", "ts", "time", "datetime", "date", "window_start", "t")
_KEYS = {
    TableKind.QUOTES: ("bid_price", "ask_price"),
    TableKind.TRADES: ("price", "size"),
    TableKind.GAPS: ("kind", "ts_from", "ts_to"),
    TableKind.ORDERS: ("name", "order_id", "target", "ts_decided"),
    TableKind.FILLS: ("name", "order_id", "ref_price", "ts_event"),
    TableKind.PNL: ("name", "equity", "initial_cash", "ts"),
}
WHAT_IS_KNOWN = (
    "bars (open, high, low, close and a time such as ts_start), quotes (bid_price, ask_price), "
    "trades (price, size), gaps (kind, ts_from, ts_to), orders (name, order_id, target, "
    "ts_decided), fills (name, order_id, ref_price, ts_event) or pnl (name, equity, "
    "initial_cash, ts)"
)
_EVENT_TIME = {
    TableKind.GAPS: "ts_from",
    TableKind.ORDERS: "ts_decided",
    TableKind.PNL: "ts",
}


def classify(names: Collection[str]) -> TableKind | None:
    """The kind of table these columns make, or None if they make none we know."""
    names = set(names)
    if all(c in names for c in BAR_PRICES) and bar_time_column(names) is not None:
        return TableKind.BARS
    for kind, keys in _KEYS.items():
        if all(c in names for c in keys):
            return kind
    return None


def bar_time_column(names: Collection[str]) -> str | None:
    """The column holding each bar's start, by preference (`ts_start` first)."""
    return next((c for c in BAR_TIME_COLUMNS if c in names), None)


def event_time_column(kind: TableKind, names: Collection[str]) -> str | None:
    """The column a table's time range is read from."""
    if kind is TableKind.BARS:
        return bar_time_column(names)
    wanted = _EVENT_TIME.get(kind, "ts_event")
    return wanted if wanted in names else None


def bar_version(names: Collection[str]) -> int:
    """The bar schema version of a bar table: current with `ts_start`, 1 otherwise."""
    return SCHEMA_VERSION if "ts_start" in names else 1


# Columns whose values every reader does arithmetic on: numbers (int, float or decimal). A column
# of another type (prices written as text, a flag column named `size`) makes the file unreadable
# for every command, so opening a dataset refuses it, naming the column.
_NUMBERS = {
    TableKind.BARS: (*BAR_PRICES, "volume", "vwap", "transactions"),
    TableKind.QUOTES: ("bid_price", "ask_price", "bid_size", "ask_size"),
    TableKind.TRADES: ("price", "size"),
    TableKind.GAPS: ("missing",),
    TableKind.ORDERS: ("qty", "target", "order_id"),
    TableKind.FILLS: ("order_id", "qty", "price", "ref_price", "fee", "position", "cash"),
    TableKind.PNL: ("position", "cash", "equity", "initial_cash", "fills"),
}
_TIMES = {
    TableKind.BARS: ("ts_end", "ts_recv"),  # plus the start column, whatever its name
    TableKind.QUOTES: ("ts_event", "ts_recv"),
    TableKind.TRADES: ("ts_event", "ts_recv"),
    TableKind.GAPS: ("ts_from", "ts_to"),
    TableKind.ORDERS: ("ts_decided", "bar_end"),
    TableKind.FILLS: ("ts_event",),
    TableKind.PNL: ("ts",),
}


def wrong_types(kind: TableKind, schema: pa.Schema) -> list[str]:
    """`close is string (expected a number)` for each known column of a type no reader can use.

    Times may be timestamps, dates or numbers (mesh/times.py tells the unit); a column that
    holds only nulls (type null) is allowed wherever the column itself is optional.
    """
    times = list(_TIMES[kind])
    if kind is TableKind.BARS:
        times.insert(0, bar_time_column(schema.names) or "ts_start")
    required = {*BAR_PRICES, times[0]} if kind is TableKind.BARS else set(_KEYS[kind])
    found = []
    for name, wanted, fits in (
        *((n, "a number", _is_number) for n in _NUMBERS[kind]),
        *((n, "a timestamp or a number", _is_time) for n in times),
        ("symbol", "text", _is_text),
        *((("name", "text", _is_text),) if kind in PAPER_KINDS else ()),
    ):
        index = schema.get_field_index(name)
        if index < 0:
            continue
        kind_of = schema.field(index).type
        if pa.types.is_null(kind_of) and name not in required and name not in ("symbol", "name"):
            continue
        if not fits(kind_of):
            found.append(f"{name} is {kind_of} (expected {wanted})")
    return found


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _is_time(t: pa.DataType) -> bool:
    return (
        pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
    )


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_text(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def key_columns(kind: TableKind, names: Collection[str]) -> list[str]:
    """Columns every row must fill: its symbol and the time that orders it, and for quotes and
    trades when they have one the time it was received, by which a replay paces them (gaps:
    none, as a gap of the whole feed names no symbol; paper tables: also the session's name)."""
    if kind is TableKind.GAPS:
        return []
    times = [event_time_column(kind, names)]
    if kind in (TableKind.QUOTES, TableKind.TRADES):
        times.append("ts_recv")
    first = ("name", "symbol") if kind in PAPER_KINDS else ("symbol",)
    return [c for c in (*first, *times) if c is not None and c in names]


def empty_rows(name: str, empty: int, rows: int, *, nan: bool = False) -> str:
    """`symbol is null in 3 of 10 rows`: what is wrong with a key column."""
    return f"{name} is {'null or NaN' if nan else 'null'} in {empty:,} of {rows:,} rows"
