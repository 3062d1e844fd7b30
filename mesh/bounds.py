"""What a message from outside may hold: the one owner of the checks every decoder applies.

Anything that reaches a process (a bus message, a control request or reply, a heartbeat, a
WebSocket frame, a REST or S3 reply) is untrusted bytes. A decoder turns them into a value or a
counted rejection, never an exception that escapes a loop; this module says where the line is, so
that the recorder, the kdb publisher, `massive tap`, the dashboard and the bus all draw it in the
same place (docs/protocol.md, "Limits", lists them for other implementations).

`Rejected.kind` names what was wrong, for counters by kind:

- `size`: a body, batch, string or free-form tree larger than the limits below
- `depth`: nesting deeper than `MAX_DEPTH` (or deep enough to exhaust the decoder's recursion)
- `columns`: a batch whose columns do not have one length
- `range`: a value outside its field's range: a non-finite, negative or absurd price, a negative
  size, an integer outside int64, a timestamp outside 1980..2100

The checks are numpy expressions over whole columns: a few nanoseconds per value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
import numpy as np

MAX_BODY_BYTES = 64 * 1024 * 1024  # one bus message or control body
MAX_ROWS = 250_000  # rows in one batch; publishers split larger ones (ingest sends one batch per frame group)
MAX_DEPTH = 32  # nesting of free-form values (heartbeat counters, event data, command arguments)
MAX_ITEMS = 100_000  # values in one free-form tree
MAX_TEXT = 64 * 1024  # characters in one free-form string
MAX_NAME = 64  # symbols, service names, trade ids, intervals
MAX_PRICE = 1e9  # USD; no listed instrument comes within orders of magnitude of it
INT64_MAX = (1 << 63) - 1
TS_MIN = 315_532_800 * 10**9  # 1980-01-01T00:00:00Z in ns
TS_MAX = 4_102_444_800 * 10**9  # 2100-01-01T00:00:00Z in ns

REJECTION_KINDS = ("size", "depth", "columns", "range")

# The same limits as msgspec constraints, for mesh.schema's batch fields: the typed decode checks
# them in C as it reads each value (a few ns each), and `check_payload(typed=True)` skips them.
Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]  # sizes, codes, sequence numbers
Price = Annotated[float, msgspec.Meta(gt=0.0, lt=MAX_PRICE)]  # NaN fails every bound
QuotePrice = Annotated[float, msgspec.Meta(ge=0.0, lt=MAX_PRICE)]  # a quote side with no quote is 0
Amount = Annotated[
    float, msgspec.Meta(ge=0.0, lt=2.0**63)
]  # volumes and vwap: 0 .. 2^63-1 as `non_negative(floats=True)` has it (NaN and inf fail)
Time = Annotated[int, msgspec.Meta(ge=TS_MIN, lt=TS_MAX)]
MaybeTime = Annotated[
    int, msgspec.Meta(ge=0, lt=TS_MAX)
]  # 0 (not known) or a Time: the rest is checked here
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
ShortText = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Codes = Annotated[list[Count], msgspec.Meta(max_length=64)]
Money = Annotated[
    float, msgspec.Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)
]  # signed shares, cash, equity, P&L: finite (NaN fails)


class Rejected(ValueError):
    """Input outside the limits; `kind` is one of REJECTION_KINDS."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


# --- free-form values ----------------------------------------------------------------------


def check_tree(value: Any, what: str) -> None:
    """A decoded free-form value (dicts, lists, scalars) within depth, size and int64 limits.

    Iterative, so that checking a deep value cannot itself run out of stack.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    items = 0
    while stack:
        node, depth = stack.pop()
        items += 1
        if items > MAX_ITEMS:
            raise Rejected("size", f"{what} holds more than {MAX_ITEMS:,} values")
        if isinstance(node, dict):
            if depth >= MAX_DEPTH:
                raise Rejected("depth", f"{what} is nested more than {MAX_DEPTH} levels deep")
            for key, item in node.items():
                stack.append((key, depth + 1))
                stack.append((item, depth + 1))
        elif isinstance(node, list | tuple):
            if depth >= MAX_DEPTH:
                raise Rejected("depth", f"{what} is nested more than {MAX_DEPTH} levels deep")
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            if len(node) > MAX_TEXT:
                raise Rejected(
                    "size",
                    f"{what} holds a string of {len(node):,} characters (at most {MAX_TEXT:,})",
                )
        elif isinstance(node, bytes):
            if len(node) > MAX_TEXT:
                raise Rejected("size", f"{what} holds {len(node):,} bytes (at most {MAX_TEXT:,})")
        elif isinstance(node, int) and not isinstance(node, bool):
            if not -INT64_MAX - 1 <= node <= INT64_MAX:
                raise Rejected("range", f"{what} holds an integer outside int64")


def check_name(value: str, what: str) -> None:
    if not value or len(value) > MAX_NAME:
        raise Rejected("size", f"{what} must be 1 to {MAX_NAME} characters, got {len(value)}")


def check_text(value: str, what: str) -> None:
    if len(value) > MAX_TEXT:
        raise Rejected("size", f"{what} has {len(value):,} characters (at most {MAX_TEXT:,})")


def counters(values: Mapping[str, Any]) -> dict[str, Any]:
    """Heartbeat counters made encodable whatever they hold: ints clamped to int64, anything that
    is not a number, string, bool or None shown as short text. A heartbeat must always go out."""
    safe: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, bool) or value is None or isinstance(value, float):
            safe[str(key)] = value
        elif isinstance(value, int):
            safe[str(key)] = max(-INT64_MAX - 1, min(INT64_MAX, value))
        elif isinstance(value, str):
            safe[str(key)] = value[:256]
        elif isinstance(value, np.integer | np.floating):
            safe[str(key)] = value.item()
        else:
            safe[str(key)] = str(value)[:256]
    return safe


# --- columns -------------------------------------------------------------------------------


def _ints(column: Any, what: str) -> np.ndarray:
    if isinstance(column, np.ndarray) and column.dtype == np.int64:
        return column
    try:
        return np.asarray(column, dtype=np.int64)
    except (OverflowError, ValueError, TypeError):
        raise Rejected("range", f"{what} holds a value that is not an int64") from None


def _floats(column: Any, what: str) -> np.ndarray:
    if isinstance(column, np.ndarray) and column.dtype == np.float64:
        return column
    try:
        return np.asarray(column, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        raise Rejected("range", f"{what} holds a value that is not a number") from None


# Each check is a few whole-column reductions. A numpy column (the columnar decode) is reduced by
# numpy; a list (the typed decode, or a batch built in Python) by Python's own min, max and sum,
# which cost less than making an array of it. NaN fails every comparison and poisons a sum, so a
# NaN anywhere fails the check. Callers skip empty columns.


def _low_high(column: Any, what: str, floats: bool) -> tuple[Any, Any, bool]:
    """(minimum, maximum, whether every value is finite) of a numeric column."""
    if isinstance(column, np.ndarray):
        values = _floats(column, what) if floats else _ints(column, what)
        low, high = values.min(), values.max()
        return (
            low.item(),
            high.item(),
            bool(np.isfinite(low) and np.isfinite(high)) if floats else True,
        )
    try:
        low, high = min(column), max(column)
        if not floats:
            if not isinstance(low, int) or not isinstance(high, int):
                raise TypeError
            return low, high, True
        total = sum(column)  # NaN or an infinity anywhere makes the sum NaN or infinite
        return low, high, total - total == 0
    except (TypeError, ValueError):
        raise Rejected(
            "range", f"{what} holds a value that is not {'a number' if floats else 'an integer'}"
        ) from None


def prices(column: Any, what: str, *, zero_ok: bool = False) -> None:
    """Finite and positive (a quote's empty side may be 0), below MAX_PRICE."""
    low, high, finite = _low_high(column, what, True)
    if not (finite and (low >= 0 if zero_ok else low > 0) and high < MAX_PRICE):
        bad = high if (low >= 0 if zero_ok else low > 0) and finite else low
        raise Rejected(
            "range",
            f"{what} holds {'a non-finite value' if not finite else repr(float(bad))}; prices are finite, {'non-negative' if zero_ok else 'positive'} and below {MAX_PRICE:g}",
        )


def non_negative(column: Any, what: str, *, floats: bool = False) -> None:
    """Sizes, volumes, counts, codes and sequence numbers: 0..int64 (finite, for float columns)."""
    low, high, finite = _low_high(column, what, floats)
    if not (finite and low >= 0 and high <= INT64_MAX):
        raise Rejected(
            "range",
            f"{what} holds {'a non-finite value' if not finite else low if low < 0 else high!r}; it is 0..int64{' and finite' if floats else ''}",
        )


def timestamps(column: Any, what: str, *, zero_ok: bool = False) -> None:
    """ns UTC between 1980 and 2100 (0 allowed where the field means "not known")."""
    low, high, _ = _low_high(column, what, False)
    if low >= TS_MIN and high < TS_MAX:
        return
    if zero_ok and high < TS_MAX and (low == 0 or low >= TS_MIN):
        rest = [value for value in column if value != 0]  # rare: a column mixing 0 and times
        if not rest or (min(rest) >= TS_MIN):
            return
    bad = low if not (low >= TS_MIN or (zero_ok and low == 0)) else high
    raise Rejected("range", f"{what} holds {int(bad)}, not a time between 1980 and 2100 in ns")


def names(column: Any, what: str) -> None:
    """Symbols and ids: 1..MAX_NAME characters."""
    if min(map(len, column)) == 0 or max(map(len, column)) > MAX_NAME:
        raise Rejected("size", f"{what} must be 1 to {MAX_NAME} characters")


def equal_lengths(columns: Mapping[str, Any], what: str, max_rows: int | None = MAX_ROWS) -> int:
    """The one row count of `columns`, within `max_rows` (None: any, for bursts merged on arrival)."""
    lengths = {name: len(column) for name, column in columns.items()}
    counts = set(lengths.values())
    if len(counts) > 1:
        raise Rejected(
            "columns",
            f"{what} has columns of unequal length: "
            + ", ".join(f"{k}={v}" for k, v in lengths.items()),
        )
    rows = counts.pop() if counts else 0
    if max_rows is not None and rows > max_rows:
        raise Rejected("size", f"{what} has {rows:,} rows (at most {max_rows:,} per batch)")
    return rows


def _conditions(column: Any, what: str) -> None:
    for codes in column:
        if len(codes) > 64:
            raise Rejected("size", f"{what} holds a list of {len(codes)} codes (at most 64)")
        if codes and (min(codes) < 0 or max(codes) > INT64_MAX):
            raise Rejected("range", f"{what} holds a code outside 0..int64")


def _text_column(column: Any, what: str) -> None:
    if max(map(len, column)) > MAX_TEXT:
        raise Rejected("size", f"{what} holds a string longer than {MAX_TEXT:,} characters")


def _short_column(column: Any, what: str) -> None:
    if max(map(len, column)) > MAX_NAME:
        raise Rejected("size", f"{what} holds a value longer than {MAX_NAME} characters")


def _rules() -> dict[type, dict[str, Any]]:
    from functools import partial

    from mesh.schema import BarBatch, GapBatch, QuoteBatch, TradeBatch

    quote_price = partial(prices, zero_ok=True)  # a side with no quote shows 0
    code = non_negative
    return {
        QuoteBatch: {
            "symbol": names,
            "bid_price": quote_price,
            "bid_size": non_negative,
            "ask_price": quote_price,
            "ask_size": non_negative,
            "bid_exchange": code,
            "ask_exchange": code,
            "condition": code,
            "tape": code,
            "sequence": non_negative,
            "ts_event": timestamps,
            "ts_recv": partial(timestamps, zero_ok=True),
        },
        TradeBatch: {
            "symbol": names,
            "price": prices,
            "size": non_negative,
            "exchange": code,
            "trade_id": _short_column,
            "conditions": _conditions,
            "tape": code,
            "sequence": non_negative,
            "ts_event": timestamps,
            "ts_recv": partial(timestamps, zero_ok=True),
        },
        BarBatch: {
            "symbol": names,
            "ts_start": timestamps,
            "ts_end": timestamps,
            "open": prices,
            "high": prices,
            "low": prices,
            "close": prices,
            "volume": partial(non_negative, floats=True),
            "vwap": partial(non_negative, floats=True),
            "transactions": non_negative,
            "ts_recv": partial(timestamps, zero_ok=True),
        },
        GapBatch: {
            "symbol": _short_column,
            "kind": names,
            "from_sequence": non_negative,
            "to_sequence": non_negative,
            "ts_from": partial(timestamps, zero_ok=True),
            "ts_to": partial(timestamps, zero_ok=True),
            "reason": _text_column,
        },
    }


_COLUMN_RULES: dict[type, dict[str, Any]] = {}


def check_columns(
    batch_type: type,
    columns: Mapping[str, Any],
    max_rows: int | None = MAX_ROWS,
    *,
    typed: bool = False,
) -> int:
    """The columns (all or some) of a quote, trade, bar or gap batch: one length and every value in
    range. Returns the row count. `typed`: the columns come from msgspec's typed decode, which
    checked each value against the schema's constraints already; only what those cannot say is
    left (one length; a time that may also be 0)."""
    if not _COLUMN_RULES:
        _COLUMN_RULES.update(_rules())
    label = getattr(batch_type, "__struct_config__", None)
    what = f"a {label.tag if label else batch_type.__name__} batch"
    rows = equal_lengths(columns, what, max_rows)
    if rows:
        rules = _COLUMN_RULES[batch_type]
        for name, column in columns.items():
            rule = rules.get(name)
            if rule is not None and (not typed or name in _MAYBE_TIMES):
                rule(column, f"{what}'s {name}")
    return rows


_MAYBE_TIMES = frozenset({"ts_recv", "ts_from", "ts_to"})


def check_payload(payload: Any, *, typed: bool = False) -> None:
    """Any decoded bus payload (mesh.schema) within the limits; raises `Rejected`. `typed` as in
    `check_columns`."""
    from mesh.schema import (
        BarBatch,
        Event,
        Fill,
        GapBatch,
        Heartbeat,
        JobUpdate,
        Order,
        Pnl,
        QuoteBatch,
        Stats,
        TradeBatch,
    )

    if isinstance(payload, QuoteBatch | TradeBatch | GapBatch):
        check_columns(type(payload), payload.columns(), typed=typed)
    elif isinstance(payload, BarBatch):
        check_name(payload.interval, "a bar batch's interval")
        check_columns(BarBatch, payload.columns(), typed=typed)
        if (
            len(payload)
            and not (_ints(payload.ts_end, "ts_end") >= _ints(payload.ts_start, "ts_start")).all()
        ):
            raise Rejected("range", "a bar batch has a bar that ends before it starts")
    elif isinstance(payload, Heartbeat):
        check_name(payload.service, "a heartbeat's service")
        check_name(payload.state, "a heartbeat's state")
        check_text(payload.instance, "a heartbeat's instance")
        check_text(payload.message, "a heartbeat's message")
        if not 0 < payload.interval <= 3600:
            raise Rejected(
                "range", f"a heartbeat's interval is {payload.interval!r} s (0 < interval <= 3600)"
            )
        check_tree(payload.counters, "a heartbeat's counters")
        for value in (payload.pid, payload.started):
            if not 0 <= value <= INT64_MAX:
                raise Rejected("range", "a heartbeat's pid or start time is outside 0..int64")
    elif isinstance(payload, Stats):
        check_name(payload.service, "a stats message's service")
        check_tree(payload.stats, "a stats message")
    elif isinstance(payload, JobUpdate):
        check_name(payload.job_id, "a job update's id")
        check_name(payload.kind, "a job update's kind")
        check_name(payload.state, "a job update's state")
        check_text(payload.message, "a job update's message")
        if not 0 <= payload.progress <= 1:
            raise Rejected("range", f"a job update's progress is {payload.progress!r} (0..1)")
        check_tree(payload.result, "a job update's result")
    elif isinstance(payload, Order | Fill | Pnl):
        check_name(payload.name, "a paper session's name")
        check_name(payload.symbol, "a paper message's symbol")
    elif isinstance(payload, Event):
        check_name(payload.service, "an event's service")
        check_name(payload.level, "an event's level")
        check_text(payload.message, "an event's message")
        check_tree(payload.data, "an event's data")


# --- filtering at the edge ------------------------------------------------------------------
#
# Ingest builds batches from Massive's events; a batch one bad event made invalid would be
# rejected whole by every consumer, taking its good events with it. So the edge drops the bad
# rows only (counted), and what reaches the bus is always within bounds.


def _row_ok(rule: Any, column: Any) -> np.ndarray:
    """Per row: does the value pass `rule`? (The slow path, for a batch that failed as a whole.)"""
    return np.fromiter((_passes(rule, [value]) for value in column), dtype=bool, count=len(column))


def _passes(rule: Any, column: list[Any]) -> bool:
    try:
        rule(column, "")
    except Rejected:
        return False
    return True


def valid_rows(batch_type: type, columns: Mapping[str, Any]) -> np.ndarray | None:
    """None when every row of these equal-length columns is within bounds, else a boolean mask of
    the rows that are (`check_columns`'s rules, row by row)."""
    try:
        check_columns(batch_type, columns, max_rows=None)
        return None
    except Rejected as exc:
        if exc.kind == "columns":
            raise
    if not _COLUMN_RULES:
        _COLUMN_RULES.update(_rules())
    rules = _COLUMN_RULES[batch_type]
    keep = np.ones(len(next(iter(columns.values()))), dtype=bool)
    for name, column in columns.items():
        rule = rules.get(name)
        if rule is not None and not _passes(rule, column):
            keep &= _row_ok(rule, column)
    return keep


def validation_kind(error: msgspec.ValidationError) -> str:
    """The rejection kind of a typed decode's error: a broken constraint above is `range` or
    `size`; anything else (a wrong type, a missing field) is the caller's `payload`."""
    text = str(error)
    if "of length <=" in text or "of length >=" in text:  # a string or list longer than its limit
        return "size"
    if ("`int` " in text or "`float` " in text) and any(
        op in text for op in (" >= ", " > ", " <= ", " < ")
    ):
        return "range"
    return "payload"
