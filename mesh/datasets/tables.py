"""What a Parquet table holds, told from its column names: bars, quotes, trades or gaps.

Column names are the record fields of mesh/schema.py (and mesh/bar_schema.py for bars), so a
file is recognised whoever wrote it. Bars from elsewhere may name their start time `timestamp`
(version-1 fetched bars), `ts`, `time`, `datetime`, `date`, `window_start` or `t`; readers take
any of them as the window start.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from mesh.bar_schema import SCHEMA_VERSION


class TableKind(StrEnum):
    BARS = "bars"
    QUOTES = "quotes"
    TRADES = "trades"
    GAPS = "gaps"


BAR_PRICES = ("open", "high", "low", "close")
BAR_TIME_COLUMNS = ("ts_start", "timestamp", "ts", "time", "datetime", "date", "window_start", "t")
_KEYS = {
    TableKind.QUOTES: ("bid_price", "ask_price"),
    TableKind.TRADES: ("price", "size"),
    TableKind.GAPS: ("kind", "ts_from", "ts_to"),
}
WHAT_IS_KNOWN = (
    "bars (open, high, low, close and a time such as ts_start), quotes (bid_price, ask_price), "
    "trades (price, size) or gaps (kind, ts_from, ts_to)"
)


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
    wanted = "ts_from" if kind is TableKind.GAPS else "ts_event"
    return wanted if wanted in names else None


def bar_version(names: Collection[str]) -> int:
    """The bar schema version of a bar table: current with `ts_start`, 1 otherwise."""
    return SCHEMA_VERSION if "ts_start" in names else 1
