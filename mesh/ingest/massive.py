"""The Massive WebSocket edge: provider field names live here and in `scan.py`, nowhere else.

A Massive frame is a JSON array of events of mixed types (`T`, `Q`, `A`, `AM`, `status`). It is
decoded in one typed pass (msgspec, no per-event dicts) and normalised into our columnar batches:
milliseconds become nanoseconds, provider names become ours. This is the reference decoder: the
compiled scanner (`scan.py`) takes plain quote and trade frames faster and must give the same
bytes; every other frame comes here. A frame that does not decode cleanly
is taken apart event by event so that one bad event costs only itself; each bad event is counted
by kind.

Decoding is total: any bytes give events or counted rejections, never an exception. Nesting too
deep for the decoder is counted as `depth`; an event whose integers would not fit the bus's int64
once converted to our units (nanoseconds, shares), or whose numbers overflow on the way, is
counted as `range` and left out, so that publishing a batch can never fail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import is_
from typing import Any

import msgspec
from msgspec.structs import astuple

from mesh import bounds
from mesh.schema import BarBatch, QuoteBatch, TradeBatch

MS_TO_NS = 1_000_000
# Massive's WebSocket spec gives quote sizes in round lots ("a bid size of 2 means 200 shares");
# REST and flat files give shares. Ingest converts, so every dataset speaks shares.
SHARES_PER_LOT = 100


class WsQuote(msgspec.Struct, tag_field="ev", tag="Q", gc=False):
    sym: str  # ticker
    bx: int  # bid exchange id
    bp: float  # bid price
    bs: int  # bid size, round lots
    ax: int  # ask exchange id
    ap: float  # ask price
    as_: int = msgspec.field(name="as")  # ask size, round lots
    t: int = 0  # SIP timestamp, Unix ms
    c: int = 0  # condition
    q: int = 0  # sequence number
    z: int = 0  # tape


class WsTrade(msgspec.Struct, tag_field="ev", tag="T", gc=False):
    sym: str
    p: float  # price
    s: int  # size
    t: int  # SIP timestamp, Unix ms
    x: int = 0  # exchange id
    i: str = ""  # trade id
    c: list[int] = []  # conditions
    q: int = 0  # sequence number
    z: int = 0  # tape


class _WsAgg(msgspec.Struct, tag_field="ev", gc=False):
    sym: str
    o: float
    h: float
    l: float  # noqa: E741 (Massive's name)
    c: float
    v: float  # window volume
    s: int  # window start, Unix ms
    e: int  # window end, Unix ms
    vw: float = 0.0  # window VWAP
    z: float = 0.0  # average trade size in the window
    av: float = 0.0  # accumulated volume today
    a: float = 0.0  # today's VWAP
    op: float = 0.0  # official open


class WsSecondAgg(_WsAgg, tag="A"):
    pass


class WsMinuteAgg(_WsAgg, tag="AM"):
    pass


class WsStatus(msgspec.Struct, tag_field="ev", tag="status", gc=False):
    status: str
    message: str = ""


WsEvent = WsQuote | WsTrade | WsSecondAgg | WsMinuteAgg | WsStatus
KNOWN_EVENTS = {"Q", "T", "A", "AM", "status"}

_frame_decoder = msgspec.json.Decoder(list[WsEvent])
_raw_frame_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_event_decoder = msgspec.json.Decoder(WsEvent)
_any_decoder = msgspec.json.Decoder()


@dataclass
class Normalised:
    """One frame's worth of events, in our records."""

    quotes: QuoteBatch | None = None
    trades: TradeBatch | None = None
    bars_1s: BarBatch | None = None
    bars_1m: BarBatch | None = None
    statuses: list[tuple[str, str]] = field(default_factory=list)
    events: int = 0


INT64_MAX = (1 << 63) - 1
MAX_MS = INT64_MAX // MS_TO_NS  # ms times beyond this overflow int64 nanoseconds
MAX_LOTS = INT64_MAX // SHARES_PER_LOT  # round lots beyond this overflow int64 shares


@dataclass
class DecodeErrors:
    """Bad input by kind: `json` (not a JSON array), `depth` (nested too deep to decode),
    `unknown_event`, `bad_event` (missing or mistyped fields), `range` (numbers our units cannot hold)."""

    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def decode_frame(data: bytes | str, errors: DecodeErrors) -> list[WsEvent]:
    """The frame's events; bad events are counted in `errors` and left out. Never raises."""
    try:
        events = _frame_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        events = _event_by_event(data, errors)
    if all(map(_in_range, events)):
        return events
    kept = [event for event in events if _in_range(event)]
    errors.counts["range"] += len(events) - len(kept)
    return kept


def _event_by_event(data: bytes | str, errors: DecodeErrors) -> list[WsEvent]:
    try:
        raws = _raw_frame_decoder.decode(data)
    except RecursionError:
        errors.counts["depth"] += 1
        return []
    except (msgspec.DecodeError, msgspec.ValidationError):
        errors.counts["json"] += 1
        return []
    events: list[WsEvent] = []
    for raw in raws:
        try:
            events.append(_event_decoder.decode(raw))
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            try:
                value = _any_decoder.decode(raw)
            except (msgspec.DecodeError, RecursionError):
                value = None
            ev = value.get("ev") if isinstance(value, dict) else None
            if value is None and _nested_too_deep(raw):
                errors.counts["depth"] += 1
            else:
                errors.counts["bad_event" if ev in KNOWN_EVENTS else "unknown_event"] += 1
    return events


def _nested_too_deep(raw: bytes | msgspec.Raw) -> bool:
    try:
        _any_decoder.decode(raw)
    except RecursionError:
        return True
    except msgspec.DecodeError:
        return False
    return False


def _int64(value: Any) -> bool:
    return -INT64_MAX - 1 <= value <= INT64_MAX


def _in_range(event: Any) -> bool:  # any WsEvent: dispatched on its exact type below
    """Whether the event's numbers fit our units: int64 after ms -> ns and lots -> shares, and
    a bar's trade count (volume / average size) finite. Checks only what would break encoding;
    which values are plausible is for the bus's decoders (mesh.bounds)."""
    kind = type(event)
    if kind is WsQuote:
        return (
            -MAX_MS <= event.t <= MAX_MS
            and -MAX_LOTS <= event.bs <= MAX_LOTS
            and -MAX_LOTS <= event.as_ <= MAX_LOTS
            and _int64(event.bx)
            and _int64(event.ax)
            and _int64(event.c)
            and _int64(event.q)
            and _int64(event.z)
        )
    if kind is WsTrade:
        return (
            -MAX_MS <= event.t <= MAX_MS
            and _int64(event.s)
            and _int64(event.x)
            and _int64(event.q)
            and _int64(event.z)
            and all(map(_int64, event.c))
        )
    if kind is WsSecondAgg or kind is WsMinuteAgg:
        return (
            -MAX_MS <= event.s <= MAX_MS
            and -MAX_MS <= event.e <= MAX_MS
            and _transactions(event.v, event.z) is not None
        )
    return True


def _transactions(volume: float, average_size: float) -> int | None:
    """Trades in a bar's window (volume / average trade size), 0 when unknown, None if absurd."""
    if not average_size:
        return 0
    count = volume / average_size
    if (
        count != count or not -INT64_MAX <= count <= INT64_MAX
    ):  # NaN, or beyond int64 (inf included)
        return None
    return round(count)


def normalise(
    events: list[WsEvent], ts_recv: int | list[int], errors: DecodeErrors | None = None
) -> Normalised:
    """Split events by type and turn each group into one columnar batch.

    `ts_recv` is the receive time of the frame, or one per event when several frames' events
    are normalised together. Events outside mesh.bounds (a negative size, a zero trade price, a
    1970 time, an empty symbol) are left out and counted in `errors` as `range`: a batch on the
    bus is always one that every consumer accepts, so one bad event never costs its neighbours.
    """
    out = Normalised(events=len(events))
    types = list(map(type, events))
    kinds = set(types)
    if WsStatus in kinds:
        out.statuses = [(e.status, e.message) for e in events if type(e) is WsStatus]  # type: ignore[union-attr]
        out.events -= len(out.statuses)
        kinds.discard(WsStatus)
    groups: dict[type, tuple[list[WsEvent], Sequence[int] | None]]
    per_event = isinstance(ts_recv, list)
    if len(kinds) == 1 and not out.statuses:
        groups = {kinds.pop(): (events, ts_recv if per_event else None)}  # type: ignore[dict-item]
    else:  # a mixed frame: select each type with C-level iterators, no per-event Python
        groups = {}
        for kind in kinds:
            selected = list(map(is_, types, repeat(kind)))
            groups[kind] = (
                list(compress(events, selected)),
                list(compress(ts_recv, selected)) if per_event else None,  # type: ignore[arg-type]
            )
    for kind, (group, group_recv) in groups.items():
        # astuple + zip transposes rows into columns in C: no per-event Python on the hot path
        columns = list(zip(*map(astuple, group), strict=True))
        recv: list[int] = list(group_recv) if group_recv is not None else [ts_recv] * len(group)  # type: ignore[list-item]
        if kind is WsQuote:
            out.quotes = _quote_batch(columns, recv)
        elif kind is WsTrade:
            out.trades = _trade_batch(columns, recv)
        elif kind is WsSecondAgg:
            out.bars_1s = _bar_batch(columns, "1s", recv)
        else:
            out.bars_1m = _bar_batch(columns, "1m", recv)
    out.quotes = _within_bounds(out.quotes, errors)
    out.trades = _within_bounds(out.trades, errors)
    out.bars_1s = _within_bounds(out.bars_1s, errors)
    out.bars_1m = _within_bounds(out.bars_1m, errors)
    return out


def _within_bounds(batch: Any, errors: DecodeErrors | None) -> Any:
    """`batch` without its rows outside mesh.bounds (None when none is left)."""
    if batch is None:
        return None
    columns = batch.columns()
    keep = bounds.valid_rows(type(batch), columns)
    if keep is None:
        return batch
    if errors is not None:
        errors.counts["range"] += int(len(keep) - keep.sum())
    if not keep.any():
        return None
    kept = {name: list(compress(column, keep)) for name, column in columns.items()}
    if isinstance(batch, BarBatch):
        return BarBatch(interval=batch.interval, replaces=batch.replaces, **kept)
    return type(batch)(**kept)


def _quote_batch(columns: list[Any], ts_recv: list[int]) -> QuoteBatch:
    sym, bx, bp, bs, ax, ap, as_, t, c, q, z = columns  # WsQuote's field order
    return QuoteBatch(
        symbol=sym,
        bid_price=bp,
        bid_size=[lots * SHARES_PER_LOT for lots in bs],
        ask_price=ap,
        ask_size=[lots * SHARES_PER_LOT for lots in as_],
        bid_exchange=bx,
        ask_exchange=ax,
        condition=c,
        tape=z,
        sequence=q,
        ts_event=[ms * MS_TO_NS for ms in t],
        ts_recv=ts_recv,
    )


def _trade_batch(columns: list[Any], ts_recv: list[int]) -> TradeBatch:
    sym, p, s, t, x, i, c, q, z = columns  # WsTrade's field order
    return TradeBatch(
        symbol=sym,
        price=p,
        size=s,
        exchange=x,
        trade_id=i,
        conditions=c,
        tape=z,
        sequence=q,
        ts_event=[ms * MS_TO_NS for ms in t],
        ts_recv=ts_recv,
    )


def _bar_batch(columns: list[Any], interval: str, ts_recv: list[int]) -> BarBatch:
    sym, o, h, low, c, v, s, e, vw, z, _av, _a, _op = columns  # _WsAgg's field order
    return BarBatch(
        interval=interval,
        symbol=sym,
        ts_start=[ms * MS_TO_NS for ms in s],
        ts_end=[ms * MS_TO_NS for ms in e],
        open=o,
        high=h,
        low=low,
        close=c,
        volume=v,
        vwap=vw,
        transactions=[_transactions(vol, size) or 0 for vol, size in zip(v, z, strict=True)],
        ts_recv=ts_recv,
    )


# --- client -> server messages -------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def auth_message(api_key: str) -> bytes:
    return _encoder.encode({"action": "auth", "params": api_key})


def subscribe_message(params: list[str]) -> bytes:
    return _encoder.encode({"action": "subscribe", "params": ",".join(params)})


def unsubscribe_message(params: list[str]) -> bytes:
    return _encoder.encode({"action": "unsubscribe", "params": ",".join(params)})
