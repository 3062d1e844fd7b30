"""The stored columns of quotes, trades, gaps and paper trading's orders, fills and P&L: what
every writer of them puts in Parquet.

The recorder writes them slice by slice, gap backfills write the same tables, and readers find
them by these names. Column names are the record fields of mesh/schema.py; prices are float64,
sizes, ids and sequences int64, times `timestamp[ns, tz=UTC]`. Bars have their own module,
mesh/bar_schema.py.
"""

from __future__ import annotations

import pyarrow as pa

from mesh.times import TIME

QUOTES = "quotes"
TRADES = "trades"
GAPS = "gaps"
ORDERS = "orders"  # paper trading's records (mesh.schema Order, Fill, Pnl), one row per message
FILLS = "fills"
PNL = "pnl"
PAPER_TABLES = (ORDERS, FILLS, PNL)

STORAGE: dict[str, pa.Schema] = {
    QUOTES: pa.schema(
        [
            ("symbol", pa.string()),
            ("bid_price", pa.float64()),
            ("bid_size", pa.int64()),
            ("ask_price", pa.float64()),
            ("ask_size", pa.int64()),
            ("bid_exchange", pa.int64()),
            ("ask_exchange", pa.int64()),
            ("condition", pa.int64()),
            ("tape", pa.int64()),
            ("sequence", pa.int64()),
            ("ts_event", TIME),
            ("ts_recv", TIME),
        ]
    ),
    TRADES: pa.schema(
        [
            ("symbol", pa.string()),
            ("price", pa.float64()),
            ("size", pa.int64()),
            ("exchange", pa.int64()),
            ("trade_id", pa.string()),
            ("conditions", pa.list_(pa.int64())),
            ("tape", pa.int64()),
            ("sequence", pa.int64()),
            ("ts_event", TIME),
            ("ts_recv", TIME),
        ]
    ),
    # ingest's Gap records plus where the recorder saw them; kind "bus" for sequence gaps on the
    # bus, "recorder" for a recorder that stopped without finishing its session.
    GAPS: pa.schema(
        [
            ("symbol", pa.string()),
            ("kind", pa.string()),
            ("from_sequence", pa.int64()),
            ("to_sequence", pa.int64()),
            ("ts_from", TIME),
            ("ts_to", TIME),
            ("reason", pa.string()),
            ("source", pa.string()),
            ("topic", pa.string()),
            ("missing", pa.int64()),
        ]
    ),
    # a paper session's records as they went out on `strat.<kind>.<name>`; `name` is the session
    ORDERS: pa.schema(
        [
            ("name", pa.string()),
            ("symbol", pa.string()),
            ("qty", pa.float64()),
            ("target", pa.float64()),
            ("bar_end", TIME),
            ("ts_decided", TIME),
            ("order_id", pa.int64()),
        ]
    ),
    FILLS: pa.schema(
        [
            ("name", pa.string()),
            ("symbol", pa.string()),
            ("order_id", pa.int64()),
            ("qty", pa.float64()),
            ("price", pa.float64()),
            ("ref_price", pa.float64()),
            ("fee", pa.float64()),
            ("ts_event", TIME),
            ("position", pa.float64()),
            ("cash", pa.float64()),
        ]
    ),
    PNL: pa.schema(
        [
            ("name", pa.string()),
            ("symbol", pa.string()),
            ("ts", TIME),
            ("position", pa.float64()),
            ("cash", pa.float64()),
            ("equity", pa.float64()),
            ("initial_cash", pa.float64()),
            ("fills", pa.int64()),
        ]
    ),
}
