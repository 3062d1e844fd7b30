"""Record field -> q column -> q type: the mapping between our batches and kdb+ tables, in one place.

Everything else follows from `TABLES`: the encoder builds `.u.upd` column lists in this order,
`q/sym.q` is checked against `render_sym_q()`, and `docs/kdb.md` shows the same table. kdb+tick
wants `time` (timespan) and `sym` (symbol) first; after those come the record's fields under their
own names, in schema order (mesh/schema.py, docs/protocol.md), except where q forbids the name.
Market data comes as columnar batches; paper trading's records (`Order`, `Fill`, `Pnl`) one per
message, each one row.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from mesh.schema import BarBatch, Fill, Order, Pnl, QuoteBatch, TradeBatch

NS_PER_DAY = 86_400_000_000_000


@dataclass(frozen=True)
class QType:
    """A q column type: its name in the KX docs, the wire type of the column, its sym.q declaration."""

    name: str
    wire: int  # type byte of the column on the wire (0 = general list)
    declare: str  # empty-column expression in sym.q
    item: int | None = None  # for general lists: the type of every item


TIMESPAN = QType("timespan", 16, "`timespan$()")
SYMBOL = QType("symbol", 11, "`symbol$()")
FLOAT = QType("float", 9, "`float$()")
LONG = QType("long", 7, "`long$()")
TIMESTAMP = QType("timestamp", 12, "`timestamp$()")
BOOLEAN = QType("boolean", 1, "`boolean$()")
STRING = QType("string", 0, "()", item=10)  # one char vector per row (kdb+'s usual type for ids)
LONG_LIST = QType("long list", 0, "()", item=7)  # one long vector per row


@dataclass(frozen=True)
class QColumn:
    """One q column: its name, its type, the record field it comes from and how."""

    name: str
    type: QType
    source: str  # the batch field it is built from
    time_of_day: bool = False  # the value is `source` modulo one day (kdb+tick's `time` column)
    remark: str = ""  # why the column is not named after its field

    @property
    def note(self) -> str:
        if self.remark:
            return self.remark
        if self.time_of_day:
            return f"time of day of `{self.source}`, UTC"
        if self.type in (TIMESTAMP,):
            return "ns UTC; 0 becomes a null (0Np)"
        return ""


@dataclass(frozen=True)
class QTable:
    name: str
    batch: type[msgspec.Struct]
    columns: tuple[QColumn, ...]
    per_message: bool = False  # one record per bus message (one row), not a columnar batch

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _plain(
    batch: type[msgspec.Struct], skip: tuple[str, ...], types: dict[str, QType]
) -> tuple[QColumn, ...]:
    """The batch's own fields in schema order, `symbol` renamed `sym` (it comes second)."""
    fields = [f for f in batch.__struct_fields__ if f not in skip]
    return tuple(QColumn(f, types[f], f) for f in fields)


QUOTE = QTable(
    "quote",
    QuoteBatch,
    (
        QColumn("time", TIMESPAN, "ts_event", time_of_day=True),
        QColumn("sym", SYMBOL, "symbol"),
        *_plain(
            QuoteBatch,
            ("symbol",),
            {
                "bid_price": FLOAT,
                "bid_size": LONG,
                "ask_price": FLOAT,
                "ask_size": LONG,
                "bid_exchange": LONG,
                "ask_exchange": LONG,
                "condition": LONG,
                "tape": LONG,
                "sequence": LONG,
                "ts_event": TIMESTAMP,
                "ts_recv": TIMESTAMP,
            },
        ),
    ),
)

TRADE = QTable(
    "trade",
    TradeBatch,
    (
        QColumn("time", TIMESPAN, "ts_event", time_of_day=True),
        QColumn("sym", SYMBOL, "symbol"),
        *_plain(
            TradeBatch,
            ("symbol",),
            {
                "price": FLOAT,
                "size": LONG,
                "exchange": LONG,
                "trade_id": STRING,
                "conditions": LONG_LIST,
                "tape": LONG,
                "sequence": LONG,
                "ts_event": TIMESTAMP,
                "ts_recv": TIMESTAMP,
            },
        ),
    ),
)

BAR = QTable(
    "bar",
    BarBatch,
    (
        QColumn("time", TIMESPAN, "ts_start", time_of_day=True),
        QColumn("sym", SYMBOL, "symbol"),
        # `interval` and `replaces` are per batch on the bus and per row in q, so that one
        # table holds 1s and 1m bars and an RDB can apply replacements.
        *_plain(
            BarBatch,
            ("symbol",),
            {
                "interval": SYMBOL,
                "ts_start": TIMESTAMP,
                "ts_end": TIMESTAMP,
                "open": FLOAT,
                "high": FLOAT,
                "low": FLOAT,
                "close": FLOAT,
                "volume": FLOAT,
                "vwap": FLOAT,
                "transactions": LONG,
                "ts_recv": TIMESTAMP,
                "replaces": BOOLEAN,
            },
        ),
    ),
)

# paper trading (`strat.*`): one row per message; `sym` is the record's symbol and `name` the
# paper session, so that one table holds every session
ORDER = QTable(
    "order",
    Order,
    (
        QColumn("time", TIMESPAN, "ts_decided", time_of_day=True),
        QColumn("sym", SYMBOL, "symbol"),
        *_plain(
            Order,
            ("symbol",),
            {
                "name": SYMBOL,
                "qty": FLOAT,
                "target": FLOAT,
                "bar_end": TIMESTAMP,
                "ts_decided": TIMESTAMP,
                "order_id": LONG,
            },
        ),
    ),
    per_message=True,
)

FILL = QTable(
    "fill",
    Fill,
    (
        QColumn("time", TIMESPAN, "ts_event", time_of_day=True),
        QColumn("sym", SYMBOL, "symbol"),
        *_plain(
            Fill,
            ("symbol",),
            {
                "name": SYMBOL,
                "order_id": LONG,
                "qty": FLOAT,
                "price": FLOAT,
                "ref_price": FLOAT,
                "fee": FLOAT,
                "ts_event": TIMESTAMP,
                "position": FLOAT,
                "cash": FLOAT,
            },
        ),
    ),
    per_message=True,
)

PNL = QTable(
    "pnl",
    Pnl,
    (
        QColumn("time", TIMESPAN, "ts", time_of_day=True),
        QColumn("sym", SYMBOL, "symbol"),
        *_plain(
            Pnl,
            ("symbol", "fills"),
            {
                "name": SYMBOL,
                "ts": TIMESTAMP,
                "position": FLOAT,
                "cash": FLOAT,
                "equity": FLOAT,
                "initial_cash": FLOAT,
            },
        ),
        # `fills` is a q keyword (forward fill), which a column cannot be named
        QColumn("fill_count", LONG, "fills", remark="`fills` is a q keyword"),
    ),
    per_message=True,
)

TABLES: dict[str, QTable] = {t.name: t for t in (QUOTE, TRADE, BAR, ORDER, FILL, PNL)}
TABLE_BY_BATCH: dict[type, QTable] = {t.batch: t for t in TABLES.values()}
BATCH_FIELDS = ("interval", "replaces")  # BarBatch fields that are one value per message


def render_sym_q() -> list[str]:
    """The table definitions `q/sym.q` must contain, one line per table."""
    lines = []
    for table in TABLES.values():
        cols = []
        for col in table.columns:
            declare = "`g#`symbol$()" if col.name == "sym" else col.type.declare
            cols.append(f"{col.name}:{declare}")
        lines.append(f"{table.name}:([]{';'.join(cols)})")
    return lines


def mapping_rows() -> list[tuple[str, str, str, str, str]]:
    """(table, record field, q column, q type, note) rows, for docs and `massive kdb schema`."""
    return [
        (t.name, c.source, c.name, c.type.name, c.note) for t in TABLES.values() for c in t.columns
    ]
