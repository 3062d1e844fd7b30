"""Typed records for everything that travels on the bus.

Market data travels in columnar batches (`QuoteBatch`, `TradeBatch`, `BarBatch`): one schema per
message, one list per field, so that a publisher builds a message with a few list operations and a
subscriber hands the columns straight to Arrow or kdb+ without touching each event in Python. The
row records (`Quote`, `Trade`, `Bar`) are what a user iterates over (`batch.rows()`).

Units, everywhere: times are int64 nanoseconds since the Unix epoch, UTC; prices are floats in the
instrument's currency (USD); sizes and volumes are shares (ingest converts the WebSocket's round
lots).

Batch fields carry mesh.bounds' limits as msgspec constraints (`Count`, `Price`, `Time`, ...), so
the typed decode checks every value as it reads it.

Evolution rules (msgspec's, adopted word for word): any new field must have a default and is
appended at the end; fields are never reordered; a change of meaning bumps `PROTOCOL_VERSION`.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, ClassVar

import msgspec

from mesh.bounds import (
    Amount,
    Codes,
    Count,
    MaybeTime,
    Money,
    Name,
    Price,
    QuotePrice,
    ShortText,
    Text,
    Time,
)

PROTOCOL_VERSION = 1

_Int64 = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]  # mesh.bounds owns the other limits


class Header(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The envelope every bus message carries: who sent it, in what order, when."""

    v: int  # protocol version
    src: Annotated[str, msgspec.Meta(max_length=64)]  # source service name, e.g. "ingest"
    seq: _Int64  # per (source, topic) sequence number, starting at 1 for each process
    ts_send: _Int64  # when the source published it, ns UTC


# --- row records -------------------------------------------------------------------------------


class Quote(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A National Best Bid and Offer update."""

    symbol: str
    bid_price: float
    bid_size: int  # shares
    ask_price: float
    ask_size: int
    bid_exchange: int  # Massive exchange id
    ask_exchange: int
    condition: int = 0
    tape: int = 0  # 1 NYSE, 2 AMEX, 3 Nasdaq
    sequence: int = 0  # Massive's per-symbol sequence number
    ts_event: int  # SIP time, ns UTC
    ts_recv: int  # when ingest received it, ns UTC


class Trade(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A trade print."""

    symbol: str
    price: float
    size: int  # shares
    exchange: int
    trade_id: str
    conditions: list[int] = []
    tape: int = 0
    sequence: int = 0
    ts_event: int
    ts_recv: int


class Bar(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An OHLCV bar over [ts_start, ts_end)."""

    symbol: str
    ts_start: int  # window start, ns UTC
    ts_end: int  # window end (exclusive), ns UTC
    open: float
    high: float
    low: float
    close: float
    volume: float  # shares traded in the window
    vwap: float
    transactions: int  # trades in the window (0 when the source does not say)
    ts_recv: int = 0


class Gap(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Events known to be missing for one symbol, so a recorder can note them and a fetcher backfill them."""

    symbol: str
    kind: str  # "quote" or "trade"
    from_sequence: int  # last sequence seen before the gap
    to_sequence: int  # first sequence seen after it
    ts_from: int  # ns UTC of the last event before the gap
    ts_to: int  # ns UTC of the first event after it
    reason: str  # e.g. "reconnect"


# --- batches (what travels) --------------------------------------------------------------------


def _as_list(column: Any) -> list[Any]:
    """A column as Python values (numpy columns from mesh.columnar become ints and floats)."""
    return column.tolist() if hasattr(column, "tolist") else column  # type: ignore[no-any-return]


class _Batch(msgspec.Struct, array_like=True, frozen=True, tag=True, gc=False):
    row_type: ClassVar[type]

    def __len__(self) -> int:
        return len(self.symbol)  # type: ignore[attr-defined]

    def columns(self) -> dict[str, list[Any]]:
        """Field name -> column list, in schema order."""
        return {name: getattr(self, name) for name in self.__struct_fields__}

    def rows(self) -> Iterator[Any]:
        """The batch as row records, one per event."""
        names = self.__struct_fields__
        cls = self.row_type
        for values in zip(*(_as_list(getattr(self, name)) for name in names), strict=True):
            yield cls(**dict(zip(names, values, strict=True)))

    @classmethod
    def from_rows(cls, rows: list[Any]) -> Any:
        names = cls.__struct_fields__
        return cls(**{name: [getattr(row, name) for row in rows] for name in names})


class QuoteBatch(_Batch, tag="quotes", frozen=True):
    """Many `Quote`s as columns (topic `md.quote.<market>`)."""

    row_type: ClassVar[type] = Quote
    symbol: list[Name]
    bid_price: list[QuotePrice]
    bid_size: list[Count]
    ask_price: list[QuotePrice]
    ask_size: list[Count]
    bid_exchange: list[Count]
    ask_exchange: list[Count]
    condition: list[Count]
    tape: list[Count]
    sequence: list[Count]
    ts_event: list[Time]
    ts_recv: list[MaybeTime]


class TradeBatch(_Batch, tag="trades", frozen=True):
    """Many `Trade`s as columns (topic `md.trade.<market>`)."""

    row_type: ClassVar[type] = Trade
    symbol: list[Name]
    price: list[Price]
    size: list[Count]
    exchange: list[Count]
    trade_id: list[ShortText]
    conditions: list[Codes]
    tape: list[Count]
    sequence: list[Count]
    ts_event: list[Time]
    ts_recv: list[MaybeTime]


class BarBatch(_Batch, tag="bars", frozen=True):
    """Many `Bar`s of one interval as columns (topics `md.bar1s.<market>`, `md.bar1m.<market>`).

    `replaces` is true when the source re-sent bars for windows it had already published (Massive
    rebroadcasts revised aggregates with the same start time): a consumer overwrites the bar with the
    same (symbol, ts_start) instead of adding a new one.
    """

    row_type: ClassVar[type] = Bar
    interval: Name  # "1s" or "1m"
    symbol: list[Name]
    ts_start: list[Time]
    ts_end: list[Time]
    open: list[Price]
    high: list[Price]
    low: list[Price]
    close: list[Price]
    volume: list[Amount]
    vwap: list[Amount]
    transactions: list[Count]
    ts_recv: list[MaybeTime]
    replaces: bool = False

    def columns(self) -> dict[str, list[Any]]:
        return {
            name: getattr(self, name)
            for name in self.__struct_fields__
            if name not in ("interval", "replaces")
        }

    def rows(self) -> Iterator[Bar]:
        names = [name for name in self.__struct_fields__ if name not in ("interval", "replaces")]
        for values in zip(*(_as_list(getattr(self, name)) for name in names), strict=True):
            yield Bar(**dict(zip(names, values, strict=True)))

    @classmethod
    def from_rows(cls, rows: list[Any], interval: str = "1m", replaces: bool = False) -> BarBatch:
        names = [name for name in cls.__struct_fields__ if name not in ("interval", "replaces")]
        return cls(
            interval=interval,
            replaces=replaces,
            **{name: [getattr(row, name) for row in rows] for name in names},
        )


class GapBatch(_Batch, tag="gaps", frozen=True):
    """`Gap` records as columns (topic `md.gap.<market>`)."""

    row_type: ClassVar[type] = Gap
    symbol: list[ShortText]
    kind: list[Name]
    from_sequence: list[Count]
    to_sequence: list[Count]
    ts_from: list[MaybeTime]
    ts_to: list[MaybeTime]
    reason: list[Text]


# --- service messages --------------------------------------------------------------------------


class Heartbeat(msgspec.Struct, array_like=True, frozen=True, tag="heartbeat"):
    """Once a second from every service (topic `sys.heartbeat.<service>`): alive, and how it is doing."""

    service: str
    instance: str  # random per process: a restart shows as a new instance
    pid: int
    state: str  # "ok", "degraded", "disabled", "error", "stopping"
    started: int  # ns UTC
    interval: float  # seconds between heartbeats
    counters: dict[str, Any]  # flat name -> number or short string
    message: str = ""  # human-readable detail for the state


class Stats(msgspec.Struct, array_like=True, frozen=True, tag="stats"):
    """A service's detailed statistics (topic `sys.stats.<service>`), once a second."""

    service: str
    stats: dict[str, Any]


class JobState(StrEnum):
    """Where a job is: waiting, running, or finished one of three ways (the wire carries the value)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Done, failed or cancelled: nothing more will happen to the job."""
        return self not in (JobState.QUEUED, JobState.RUNNING)


class JobUpdate(msgspec.Struct, array_like=True, frozen=True, tag="job"):
    """Progress and outcome of a long job (topic `job.<id>`)."""

    job_id: str
    kind: str  # "fetch", "backfill", "backtest", ...
    state: JobState  # a value outside JobState makes the payload malformed
    progress: float  # 0..1
    message: str = ""
    result: dict[str, Any] = {}


class Event(msgspec.Struct, array_like=True, frozen=True, tag="event"):
    """A free-form notice (topic `sys.event.<service>`): errors, state changes, results."""

    service: str
    level: str  # "info", "warning", "error"
    message: str
    data: dict[str, Any] = {}


# --- paper trading (topics `strat.order.<name>`, `strat.fill.<name>`, `strat.pnl.<name>`) -----


class Order(msgspec.Struct, array_like=True, frozen=True, tag="order", kw_only=True):
    """A paper session's order: the strategy's new target for a symbol, decided at a bar's close."""

    name: Name  # the paper session
    symbol: Name
    qty: Money  # signed shares wanted (+ buy, - sell); what fills is in the `Fill`s that follow
    target: Money  # the new target, a fraction of the symbol's equity (1 long, 0 flat, -1 short)
    bar_end: Time  # the close of the bar that decided it (ns UTC)
    ts_decided: Time  # when the strategy service decided it (ns UTC)
    order_id: Count  # 1, 2, ... per session and symbol


class Fill(msgspec.Struct, array_like=True, frozen=True, tag="fill", kw_only=True):
    """One execution of a paper order against a quote (a buy at the ask, a sell at the bid)."""

    name: Name
    symbol: Name
    order_id: Count
    qty: Money  # signed shares filled
    price: Money  # execution price
    ref_price: Money  # the quote's mid: `price - ref_price` is the half-spread paid
    fee: Money  # commission
    ts_event: Time  # the execution time: the order's arrival, or the quote it waited for
    position: Money  # shares held after it
    cash: Money  # the symbol's cash after it


class Pnl(msgspec.Struct, array_like=True, frozen=True, tag="pnl", kw_only=True):
    """A paper session's position and equity in one symbol, at a bar's close."""

    name: Name
    symbol: Name
    ts: Time  # the bar's close (ns UTC)
    position: Money  # shares
    cash: Money
    equity: Money  # cash + position at the mid
    initial_cash: Money
    fills: Count  # fills so far


Payload = (
    QuoteBatch
    | TradeBatch
    | BarBatch
    | GapBatch
    | Heartbeat
    | Stats
    | JobUpdate
    | Event
    | Order
    | Fill
    | Pnl
)
PAYLOAD_TYPES: tuple[type, ...] = Payload.__args__  # type: ignore[attr-defined]
MARKET_DATA_TYPES: tuple[type, ...] = (QuoteBatch, TradeBatch, BarBatch, GapBatch)


def type_name(payload: object) -> str:
    """The message type as written on the wire (the payload's tag)."""
    return type(payload).__struct_config__.tag  # type: ignore[attr-defined,no-any-return]
