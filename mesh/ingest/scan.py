"""Quote and trade frames scanned straight into columns, without a Python object per value.

At firehose rates nearly every Massive frame is a JSON array of `Q` and `T` events, and turning
each event into a typed record, then the records into columns, cost about as much again as the
JSON decode itself. This scanner is compiled once by numba (and cached on disk). It reads a
frame's bytes and writes each value, already in our units (shares, nanoseconds), into
preallocated column arrays. `Columns.take()` then writes the msgpack form of each batch from the
arrays, byte for byte what msgspec writes for the same `QuoteBatch` or `TradeBatch`, so the bus
protocol does not know which path a batch took.

The scanner takes only what it can take exactly:
- compact or spaced JSON;
- any key order, unknown keys holding scalars or flat arrays;
- integers up to 18 digits;
- decimals whose value is exactly `m / 10**k` (m ≤ 2**53, k ≤ 22), which gives the same double as
  a correctly rounded parser;
- printable ASCII strings without escapes.

Anything else declines the whole frame, with nothing half-written. That covers bars, statuses,
exponents, escapes, duplicate keys, missing or mistyped fields and malformed JSON. A declined
frame goes through the typed msgspec decoder in `massive.py`, which stays the reference: tests
hold the two paths equal on generated frames.

numba does not check bounds, so every write checks capacity first. The scanner checks each
column before it writes to it, and counts, per batch, the most bytes its events can take once
encoded: a frame whose events would not fit the columns or the encoder's buffer is declined
(`OVER_CAPACITY`, counted in `Columns.over_capacity`) and goes to the reference path. The
encoder checks the batch's worst case against its buffer before writing a byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numba
import numpy as np

from mesh import bounds

TAKEN, DECLINED, OVER_CAPACITY = 0, 1, 2  # OVER_CAPACITY: declined for room, not for its content

# field ids, and the bit each sets in an event's `seen` mask
F_EV, F_SYM, F_BX, F_BP, F_BS, F_AX, F_AP, F_AS, F_T, F_C, F_Q, F_Z, F_P, F_S, F_X, F_I = range(16)
QUOTE_REQUIRED = (
    (1 << F_SYM) | (1 << F_BX) | (1 << F_BP) | (1 << F_BS) | (1 << F_AX) | (1 << F_AP) | (1 << F_AS)
)
TRADE_REQUIRED = (1 << F_SYM) | (1 << F_P) | (1 << F_S) | (1 << F_T)
INT_FIELDS = (F_BX, F_BS, F_AX, F_AS, F_T, F_Q, F_Z, F_S, F_X)
FLOAT_FIELDS = (F_BP, F_AP, F_P)


def _key_table(length: int) -> np.ndarray:  # type: ignore[type-arg]
    """Field ids of the one- or two-letter keys, indexed by the key's bytes (-1: not ours)."""
    names = {
        "ev": F_EV,
        "bx": F_BX,
        "bp": F_BP,
        "bs": F_BS,
        "ax": F_AX,
        "ap": F_AP,
        "as": F_AS,
        "t": F_T,
        "c": F_C,
        "q": F_Q,
        "z": F_Z,
        "p": F_P,
        "s": F_S,
        "x": F_X,
        "i": F_I,
    }
    table = np.full(256**length, -1, dtype=np.int8)
    for name, field in names.items():
        if len(name) == length:
            table[int.from_bytes(name.encode(), "big")] = field
    return table


ONE_LETTER_KEYS, TWO_LETTER_KEYS = _key_table(1), _key_table(2)
FIELD_TYPES = np.zeros(
    16, dtype=np.int8
)  # 1 an int field, 2 a float field, 0 one handled on its own
FIELD_TYPES[list(INT_FIELDS)] = 1
FIELD_TYPES[list(FLOAT_FIELDS)] = 2
# bytes a string may hold here: printable ASCII but the quote and the backslash (escapes are msgspec's)
PLAIN = np.zeros(256, dtype=np.bool_)
PLAIN[32:127] = True
PLAIN[[34, 92]] = False
SPACE = np.zeros(256, dtype=np.bool_)  # JSON's whitespace
SPACE[[9, 10, 13, 32]] = True

QUOTE_INT_ROWS = 9  # bid_exchange, bid_size, ask_exchange, ask_size, ts_event, condition, sequence, tape, ts_recv
TRADE_INT_ROWS = 6  # size, ts_event, exchange, sequence, tape, ts_recv
MIN_EVENT_BYTES = 37  # the shortest event either type can be: {"ev":"T","sym":"","p":1,"s":1,"t":1}
MAX_MS = 9_000_000_000_000  # ms times beyond this would overflow int64 nanoseconds (year 2255)
MAX_LOTS = 90_000_000_000_000_000  # sizes beyond this would overflow int64 shares
MS_TO_NS = 1_000_000
SHARES_PER_LOT = 100
# mesh.bounds' limits, as the compiled scanner applies them per event (a frame with an event
# outside them is declined, and the msgspec path drops just that event): what ingest publishes is
# always within bounds, so no consumer rejects a batch for one bad event in it.
TS_MIN_MS = -(-bounds.TS_MIN // MS_TO_NS)  # the first whole ms at or after TS_MIN
TS_MAX_MS = bounds.TS_MAX // MS_TO_NS
MAX_PRICE = bounds.MAX_PRICE
MAX_NAME = bounds.MAX_NAME
MAX_CODES = 64  # conditions of one trade (mesh.bounds)
U = numba.uint64  # indexing with an unsigned int spares numba's negative-index check
# The most bytes one event can take in an encoded batch, its texts aside: a quote's 11 numbers
# (at most 9 bytes each) and its symbol's str header (at most 5); a trade's 7 numbers and the
# headers of its symbol, id and conditions. A trade's conditions add at most 9 bytes each.
QUOTE_BYTES = 11 * 9 + 5
TRADE_BYTES = 7 * 9 + 3 * 5
CONDITION_BYTES = 9
BATCH_BYTES = 256  # a batch's own headers: array, tag and one array header per field
# state: the columns' fill, then each batch's worst-case encoded size so far
S_QUOTES, S_TRADES, S_QUOTE_TEXT, S_TRADE_TEXT, S_ID_TEXT, S_CONDITIONS = range(6)
S_QUOTE_BYTES, S_TRADE_BYTES = 6, 7
STATE_SIZE = 8
POW10 = np.array([10.0**k for k in range(23)])  # exact doubles


# Value kinds the scanner tells apart.
V_STRING, V_INT, V_FLOAT, V_ARRAY, V_LITERAL = range(5)


@numba.njit(cache=True, boundscheck=False)
def scan_frame(
    buf: Any,
    ts_recv: int,
    state: Any,
    quote_ints: Any,
    quote_prices: Any,
    quote_symbols: Any,
    trade_ints: Any,
    trade_prices: Any,
    trade_symbols: Any,
    trade_ids: Any,
    conditions: Any,
    condition_ends: Any,
    out_capacity: int,
) -> int:  # noqa: C901, PLR0912, PLR0915
    """Append one frame's events to the columns; TAKEN, or DECLINED / OVER_CAPACITY with the
    columns as they were.

    `state` holds the columns' fill (quotes, trades, quote symbol bytes, trade symbol bytes,
    trade id bytes, condition values) and the worst-case encoded bytes of the quote and of the
    trade batch, which must stay within `out_capacity`, the encoder's buffer. One function, its
    parsers written inline: as separate numba functions they made the scan three times slower.
    """
    n = buf.shape[0]
    nq, nt, nqs, nts, nti, nc = state[0], state[1], state[2], state[3], state[4], state[5]
    quote_bytes, trade_bytes = state[S_QUOTE_BYTES], state[S_TRADE_BYTES]
    int_values = np.zeros(16, dtype=np.int64)  # the event's values by field id
    float_values = np.zeros(16, dtype=np.float64)
    i = 0
    while i < n and SPACE[buf[U(i)]]:
        i += 1
    if i >= n or buf[U(i)] != 91:  # [
        return DECLINED
    i += 1
    while i < n and SPACE[buf[U(i)]]:
        i += 1
    frame_done = i < n and buf[U(i)] == 93  # ]
    if frame_done:
        i += 1
    while not frame_done:
        if i >= n or buf[U(i)] != 123:  # {
            return DECLINED
        i += 1
        seen = 0
        kind = 0  # 1 a quote, 2 a trade
        sym_start = sym_end = id_start = id_end = 0
        int_values[F_T] = int_values[F_C] = int_values[F_Q] = int_values[F_Z] = int_values[F_X] = (
            0  # the defaults
        )
        c_kind = i_kind = V_LITERAL
        event_conditions = 0
        object_done = False
        while not object_done:
            # the key: a plain string, then a colon
            while i < n and SPACE[buf[U(i)]]:
                i += 1
            if i >= n or buf[U(i)] != 34:
                return DECLINED
            key_start = i + 1
            i = key_start
            while i < n and PLAIN[buf[U(i)]]:
                i += 1
            if i >= n or buf[U(i)] != 34:
                return DECLINED  # an escape, a control byte, non-ASCII, or the end
            key_length = i - key_start
            i += 1
            while i < n and SPACE[buf[U(i)]]:
                i += 1
            if i >= n or buf[U(i)] != 58:  # :
                return DECLINED
            i += 1
            while i < n and SPACE[buf[U(i)]]:
                i += 1
            field = -1
            if key_length == 1:
                field = ONE_LETTER_KEYS[buf[U(key_start)]]
            elif key_length == 2:
                field = TWO_LETTER_KEYS[buf[U(key_start)] * 256 + buf[U(key_start + 1)]]
            elif (
                key_length == 3
                and buf[U(key_start)] == 115
                and buf[U(key_start + 1)] == 121
                and buf[U(key_start + 2)] == 109
            ):
                field = F_SYM
            if field >= 0:
                if seen & (1 << field):
                    return DECLINED  # a duplicate key
                seen |= 1 << field

            # the value: a scalar, or a flat array of scalars (its integers kept as conditions)
            value_kind = V_LITERAL
            text_start = text_end = 0
            int_value = 0
            float_value = 0.0
            in_array = i < n and buf[U(i)] == 91
            array_ints = True
            array_length = 0
            if in_array:
                i += 1
                while i < n and SPACE[buf[U(i)]]:
                    i += 1
                if i < n and buf[U(i)] == 93:
                    i += 1
                    in_array = False
                value_kind = V_ARRAY
            scalar_pending = value_kind != V_ARRAY or in_array
            while scalar_pending:
                if i >= n:
                    return DECLINED
                b = buf[U(i)]
                if b == 34:  # a string
                    text_start = i + 1
                    i = text_start
                    while i < n and PLAIN[buf[U(i)]]:
                        i += 1
                    if i >= n or buf[U(i)] != 34:
                        return DECLINED  # control, non-ASCII or an escape: msgspec's job
                    text_end = i
                    i += 1
                    scalar_kind = V_STRING
                elif b == 45 or (48 <= b <= 57):  # a number
                    negative = b == 45
                    if negative:
                        i += 1
                    if i >= n or buf[U(i)] < 48 or buf[U(i)] > 57:
                        return DECLINED
                    if buf[U(i)] == 48 and i + 1 < n and 48 <= buf[U(i + 1)] <= 57:
                        return DECLINED  # a leading zero is not JSON
                    mantissa = 0
                    digits = 0
                    decimals = -1  # digits after the point; -1 while there is none
                    while i < n:
                        digit = buf[U(i)]
                        if 48 <= digit <= 57:
                            if digits == 18:
                                return DECLINED
                            mantissa = mantissa * 10 + (digit - 48)
                            digits += 1
                            if decimals >= 0:
                                decimals += 1
                        elif digit == 46 and decimals < 0:  # the point
                            decimals = 0
                        else:
                            break
                        i += 1
                    if (
                        decimals == 0
                        or decimals > 22
                        or (decimals > 0 and mantissa > 9_007_199_254_740_992)
                    ):
                        return DECLINED
                    if i < n and (buf[U(i)] == 101 or buf[U(i)] == 69):
                        return DECLINED  # an exponent
                    if decimals < 0:
                        int_value = -mantissa if negative else mantissa
                        scalar_kind = V_INT
                    else:
                        float_value = mantissa / POW10[decimals]  # both exact: correctly rounded
                        if negative:
                            float_value = -float_value
                        scalar_kind = V_FLOAT
                elif (
                    b == 116
                    and i + 4 <= n
                    and buf[U(i + 1)] == 114
                    and buf[U(i + 2)] == 117
                    and buf[U(i + 3)] == 101
                ):
                    i += 4
                    scalar_kind = V_LITERAL
                elif (
                    b == 102
                    and i + 5 <= n
                    and buf[U(i + 1)] == 97
                    and buf[U(i + 2)] == 108
                    and buf[U(i + 3)] == 115
                    and buf[U(i + 4)] == 101
                ):
                    i += 5
                    scalar_kind = V_LITERAL
                elif (
                    b == 110
                    and i + 4 <= n
                    and buf[U(i + 1)] == 117
                    and buf[U(i + 2)] == 108
                    and buf[U(i + 3)] == 108
                ):
                    i += 4
                    scalar_kind = V_LITERAL
                else:
                    return DECLINED  # a nested object or array, or not JSON
                if not in_array:
                    value_kind = scalar_kind
                    break
                if scalar_kind == V_INT:
                    if nc + event_conditions + array_length >= conditions.shape[0]:
                        return OVER_CAPACITY
                    conditions[U(nc + event_conditions + array_length)] = int_value
                else:
                    array_ints = False
                array_length += 1
                while i < n and SPACE[buf[U(i)]]:
                    i += 1
                if i < n and buf[U(i)] == 44:  # ,
                    i += 1
                    while i < n and SPACE[buf[U(i)]]:
                        i += 1
                elif i < n and buf[U(i)] == 93:
                    i += 1
                    break
                else:
                    return DECLINED

            # what the value means for this key
            field_type = FIELD_TYPES[field] if field >= 0 else -1
            if field_type == 1:
                if value_kind != V_INT:
                    return DECLINED
                int_values[field] = int_value
            elif field_type == 2:
                if value_kind == V_INT:
                    float_value = float(int_value)
                elif value_kind != V_FLOAT:
                    return DECLINED
                float_values[field] = float_value
            elif field == F_EV:
                if value_kind != V_STRING or text_end - text_start != 1:
                    return DECLINED  # bars, statuses and unknown events are msgspec's
                if buf[U(text_start)] == 81:
                    kind = 1
                elif buf[U(text_start)] == 84:
                    kind = 2
                else:
                    return DECLINED
            elif field == F_SYM:
                if value_kind != V_STRING:
                    return DECLINED
                sym_start, sym_end = text_start, text_end
            elif field == F_I:
                i_kind = value_kind
                id_start, id_end = text_start, text_end
            elif field == F_C:
                if value_kind == V_ARRAY:
                    if not array_ints:
                        return DECLINED
                    event_conditions += array_length
                elif value_kind != V_INT:
                    return DECLINED
                c_kind = value_kind
                int_values[F_C] = int_value

            while i < n and SPACE[buf[U(i)]]:
                i += 1
            if i < n and buf[U(i)] == 44:
                i += 1
            elif i < n and buf[U(i)] == 125:  # }
                i += 1
                object_done = True
            else:
                return DECLINED

        # the event, checked as msgspec's types would check it, then written
        t = int_values[F_T]
        bs = int_values[F_BS]
        as_ = int_values[F_AS]
        if t > MAX_MS or t < -MAX_MS:
            return DECLINED
        if (
            t < TS_MIN_MS
            or t >= TS_MAX_MS
            or sym_end - sym_start < 1
            or sym_end - sym_start > MAX_NAME
        ):
            return DECLINED  # outside mesh.bounds
        if int_values[F_Q] < 0 or int_values[F_Z] < 0:
            return DECLINED
        if kind == 1:
            if (seen & QUOTE_REQUIRED) != QUOTE_REQUIRED or c_kind == V_ARRAY:
                return DECLINED
            if bs > MAX_LOTS or bs < 0 or as_ > MAX_LOTS or as_ < 0:
                return DECLINED
            if int_values[F_BX] < 0 or int_values[F_AX] < 0 or int_values[F_C] < 0:
                return DECLINED
            if not (
                float_values[F_BP] >= 0.0
                and float_values[F_BP] < MAX_PRICE
                and float_values[F_AP] >= 0.0
                and float_values[F_AP] < MAX_PRICE
            ):
                return DECLINED
            length = sym_end - sym_start
            event_bytes = QUOTE_BYTES + length + 1
            if (
                nq >= quote_ints.shape[1]
                or nq >= quote_prices.shape[1]
                or nqs + length + 1 > quote_symbols.shape[0]
                or quote_bytes + event_bytes + BATCH_BYTES > out_capacity
            ):
                return OVER_CAPACITY
            quote_bytes += event_bytes
            for k in range(length):
                quote_symbols[U(nqs + k)] = buf[U(sym_start + k)]
            quote_symbols[U(nqs + length)] = 0
            nqs += length + 1
            quote_ints[0, nq] = int_values[F_BX]
            quote_ints[1, nq] = bs * SHARES_PER_LOT
            quote_ints[2, nq] = int_values[F_AX]
            quote_ints[3, nq] = as_ * SHARES_PER_LOT
            quote_ints[4, nq] = t * MS_TO_NS
            quote_ints[5, nq] = int_values[F_C]
            quote_ints[6, nq] = int_values[F_Q]
            quote_ints[7, nq] = int_values[F_Z]
            quote_ints[8, nq] = ts_recv
            quote_prices[0, nq] = float_values[F_BP]
            quote_prices[1, nq] = float_values[F_AP]
            nq += 1
        elif kind == 2:
            if (seen & TRADE_REQUIRED) != TRADE_REQUIRED:
                return DECLINED
            if (seen & (1 << F_C)) and c_kind != V_ARRAY:
                return DECLINED
            if (seen & (1 << F_I)) and i_kind != V_STRING:
                return DECLINED
            if (
                int_values[F_S] < 0
                or int_values[F_X] < 0
                or not (float_values[F_P] > 0.0 and float_values[F_P] < MAX_PRICE)
            ):
                return DECLINED
            if event_conditions > MAX_CODES:
                return DECLINED
            for k in range(event_conditions):
                if conditions[U(nc + k)] < 0:
                    return DECLINED
            length = sym_end - sym_start
            id_length = id_end - id_start
            if id_length > MAX_NAME:
                return DECLINED
            event_bytes = (
                TRADE_BYTES + length + 1 + id_length + 1 + CONDITION_BYTES * event_conditions
            )
            if (
                nt >= trade_ints.shape[1]
                or nt >= trade_prices.shape[0]
                or nt >= condition_ends.shape[0]
                or nts + length + 1 > trade_symbols.shape[0]
                or nti + id_length + 1 > trade_ids.shape[0]
                or trade_bytes + event_bytes + BATCH_BYTES > out_capacity
            ):
                return OVER_CAPACITY
            trade_bytes += event_bytes
            for k in range(length):
                trade_symbols[U(nts + k)] = buf[U(sym_start + k)]
            trade_symbols[U(nts + length)] = 0
            nts += length + 1
            for k in range(id_length):
                trade_ids[U(nti + k)] = buf[U(id_start + k)]
            trade_ids[U(nti + id_length)] = 0
            nti += id_length + 1
            trade_ints[0, nt] = int_values[F_S]
            trade_ints[1, nt] = t * MS_TO_NS
            trade_ints[2, nt] = int_values[F_X]
            trade_ints[3, nt] = int_values[F_Q]
            trade_ints[4, nt] = int_values[F_Z]
            trade_ints[5, nt] = ts_recv
            trade_prices[U(nt)] = float_values[F_P]
            nc += event_conditions
            condition_ends[U(nt)] = nc
            nt += 1
        else:
            return DECLINED  # no "ev"
        while i < n and SPACE[buf[U(i)]]:
            i += 1
        if i < n and buf[U(i)] == 44:
            i += 1
            while i < n and SPACE[buf[U(i)]]:
                i += 1
        elif i < n and buf[U(i)] == 93:
            i += 1
            frame_done = True
        else:
            return DECLINED
    while i < n and SPACE[buf[U(i)]]:
        i += 1
    if i != n:
        return DECLINED
    state[0] = nq
    state[1] = nt
    state[2] = nqs
    state[3] = nts
    state[4] = nti
    state[5] = nc
    state[S_QUOTE_BYTES] = quote_bytes
    state[S_TRADE_BYTES] = trade_bytes
    return TAKEN


# How a batch's columns are laid out in its msgpack form: (kind, row) per field, in schema order.
K_TEXT_A, K_TEXT_B, K_FLOAT, K_INT, K_LISTS = range(5)
QUOTE_LAYOUT = np.array(
    [  # QuoteBatch's fields
        [K_TEXT_A, 0],
        [K_FLOAT, 0],
        [K_INT, 1],
        [K_FLOAT, 1],
        [K_INT, 3],
        [K_INT, 0],
        [K_INT, 2],
        [K_INT, 5],
        [K_INT, 7],
        [K_INT, 6],
        [K_INT, 4],
        [K_INT, 8],
    ],
    dtype=np.int64,
)
TRADE_LAYOUT = np.array(
    [  # TradeBatch's fields
        [K_TEXT_A, 0],
        [K_FLOAT, 0],
        [K_INT, 0],
        [K_INT, 2],
        [K_TEXT_B, 0],
        [K_LISTS, 0],
        [K_INT, 4],
        [K_INT, 3],
        [K_INT, 1],
        [K_INT, 5],
    ],
    dtype=np.int64,
)


@numba.njit(cache=True, boundscheck=False)
def _put_header(
    out: Any, o: int, count: int, fix: int, sized8: int, sized16: int, sized32: int
) -> int:
    """A msgpack array or str header, in the shortest form (as msgspec writes it)."""
    if count < (16 if fix == 0x90 else 32):
        out[U(o)] = fix | count
        return o + 1
    if sized8 and count < 256:
        out[U(o)] = sized8
        out[U(o + 1)] = count
        return o + 2
    if count < 65536:
        out[U(o)] = sized16
        out[U(o + 1)] = count >> 8
        out[U(o + 2)] = count & 0xFF
        return o + 3
    out[U(o)] = sized32
    for k in range(4):
        out[U(o + 1 + k)] = (count >> (24 - 8 * k)) & 0xFF
    return o + 5


@numba.njit(cache=True, boundscheck=False)
def _put_int(out: Any, o: int, v: int) -> int:
    """A msgpack integer in the shortest form (as msgspec writes it)."""
    if v >= 0:
        if v < 128:
            out[U(o)] = v
            return o + 1
        if v < 256:
            out[U(o)] = 0xCC
            out[U(o + 1)] = v
            return o + 2
        if v < 65536:
            width, code = 2, 0xCD
        elif v < 4294967296:
            width, code = 4, 0xCE
        else:
            width, code = 8, 0xCF
    else:
        if v >= -32:
            out[U(o)] = v & 0xFF
            return o + 1
        if v >= -128:
            width, code = 1, 0xD0
        elif v >= -32768:
            width, code = 2, 0xD1
        elif v >= -2147483648:
            width, code = 4, 0xD2
        else:
            width, code = 8, 0xD3
    out[U(o)] = code
    for k in range(width):
        out[U(o + 1 + k)] = (v >> (8 * (width - 1 - k))) & 0xFF
    return o + 1 + width


@numba.njit(cache=True, boundscheck=False)
def _put_texts(out: Any, o: int, texts: Any, used: int, n: int) -> int:
    """n NUL-separated strings from texts[:used] as msgpack strs."""
    start = 0
    for _ in range(n):
        end = start
        while end < used and texts[U(end)] != 0:
            end += 1
        o = _put_header(out, o, end - start, 0xA0, 0xD9, 0xDA, 0xDB)
        for k in range(start, end):
            out[U(o)] = texts[U(k)]
            o += 1
        start = end + 1
    return o


@numba.njit(cache=True, boundscheck=False)
def encode_batch(
    out: Any,
    tag: Any,
    layout: Any,
    n: int,
    ints: Any,
    float_bits: Any,
    text_a: Any,
    text_a_used: int,
    text_b: Any,
    text_b_used: int,
    values: Any,
    ends: Any,
    event_bytes: int,
) -> int:
    """A batch's msgpack bytes into `out`, byte for byte as msgspec encodes the record; the length.

    -1, with nothing written, if `out` could be too small: the batch's worst case (each event's
    numbers and headers, its texts and conditions) is checked before the first byte.
    """
    values_used = ends[U(n - 1)] if n > 0 and ends.shape[0] >= n else 0
    if (
        values_used > values.shape[0]
        or text_a_used > text_a.shape[0]
        or text_b_used > text_b.shape[0]
    ):
        return -1
    worst = BATCH_BYTES + n * event_bytes + text_a_used + text_b_used
    if worst + CONDITION_BYTES * values_used > out.shape[0]:
        return -1
    o = _put_header(out, 0, layout.shape[0] + 1, 0x90, 0, 0xDC, 0xDD)
    o = _put_header(out, o, tag.shape[0], 0xA0, 0xD9, 0xDA, 0xDB)
    for k in range(tag.shape[0]):
        out[U(o)] = tag[U(k)]
        o += 1
    for f in range(layout.shape[0]):
        kind = layout[f, 0]
        row = layout[f, 1]
        o = _put_header(out, o, n, 0x90, 0, 0xDC, 0xDD)
        if kind == K_INT:
            for j in range(n):
                o = _put_int(out, o, ints[U(row), U(j)])
        elif kind == K_FLOAT:
            for j in range(n):
                bits = float_bits[U(row), U(j)]
                out[U(o)] = 0xCB
                for k in range(8):
                    out[U(o + 1 + k)] = (bits >> (56 - 8 * k)) & 0xFF
                o += 9
        elif kind == K_TEXT_A:
            o = _put_texts(out, o, text_a, text_a_used, n)
        elif kind == K_TEXT_B:
            o = _put_texts(out, o, text_b, text_b_used, n)
        else:
            start = 0
            for j in range(n):
                end = ends[U(j)]
                o = _put_header(out, o, end - start, 0x90, 0, 0xDC, 0xDD)
                for k in range(start, end):
                    o = _put_int(out, o, values[U(k)])
                start = end
    return o


@dataclass
class Encoded:
    """One batch, already in its msgpack form, and the columns the gap tracker keeps."""

    payload: msgspec.Raw  # byte for byte what msgspec writes for the QuoteBatch / TradeBatch
    symbols: list[str]
    sequences: np.ndarray[tuple[int], np.dtype[np.int64]]
    ts_event: np.ndarray[tuple[int], np.dtype[np.int64]]


_QUOTES_TAG = np.frombuffer(b"quotes", dtype=np.uint8)
_TRADES_TAG = np.frombuffer(b"trades", dtype=np.uint8)
_NOTHING = np.zeros(1, dtype=np.int64)


class Columns:
    """Column arrays for frames scanned one by one, emptied by `take()`; reused from call to call."""

    def __init__(self, size: int = 0) -> None:
        self.state = np.zeros(STATE_SIZE, dtype=np.int64)
        self.capacity = -1
        self.over_capacity = 0  # frames declined for want of room rather than for their content
        self.reserve(size)

    def reserve(self, size: int) -> None:
        """Room for `size` more bytes of frames (the arrays grow only while they are empty)."""
        if size <= self.capacity or self.events:
            return
        size = max(size, 1 << 16)
        events = size // MIN_EVENT_BYTES + 1
        self.capacity = size
        self.quote_ints = np.empty((QUOTE_INT_ROWS, events), dtype=np.int64)
        self.quote_prices = np.empty((2, events), dtype=np.float64)
        self.quote_symbols = np.empty(size + events, dtype=np.uint8)
        self.trade_ints = np.empty((TRADE_INT_ROWS, events), dtype=np.int64)
        self.trade_prices = np.empty((1, events), dtype=np.float64)
        self.trade_symbols = np.empty(size + events, dtype=np.uint8)
        self.trade_ids = np.empty(size + events, dtype=np.uint8)
        self.conditions = np.empty(size // 2 + 1, dtype=np.int64)
        self.condition_ends = np.empty(events, dtype=np.int64)
        # the encoder's buffer: room for the worst case of `size` bytes of frames (a condition
        # takes at least 2 bytes of JSON and at most 9 encoded), so reserved frames always fit
        self.out = np.empty(events * (QUOTE_BYTES + 1) + size * 6 + BATCH_BYTES, dtype=np.uint8)

    def add(self, frame: bytes | str, ts_recv: int) -> bool:
        """Scan one frame into the columns; False (and the columns unchanged) if it is declined."""
        data = frame.encode() if isinstance(frame, str) else frame
        buf = np.frombuffer(data, dtype=np.uint8)
        result = scan_frame(
            buf,
            ts_recv,
            self.state,
            self.quote_ints,
            self.quote_prices,
            self.quote_symbols,
            self.trade_ints,
            self.trade_prices[0],
            self.trade_symbols,
            self.trade_ids,
            self.conditions,
            self.condition_ends,
            self.out.shape[0],
        )
        if result == OVER_CAPACITY:
            self.over_capacity += 1
        return bool(result == TAKEN)

    @property
    def events(self) -> int:
        return int(self.state[0] + self.state[1])

    def take(self) -> tuple[Encoded | None, Encoded | None]:
        """The quotes and the trades scanned so far, encoded; the columns are empty afterwards."""
        nq, nt, nqs, nts, nti, nc = self.state[:S_QUOTE_BYTES].tolist()
        out = self.out  # the scanner kept each batch's worst case within it
        quotes = trades = None
        if nq:
            ints = self.quote_ints[:, :nq]
            used = _checked(
                encode_batch(
                    out,
                    _QUOTES_TAG,
                    QUOTE_LAYOUT,
                    nq,
                    self.quote_ints,
                    self.quote_prices.view(np.int64),
                    self.quote_symbols,
                    nqs,
                    self.quote_symbols,
                    0,
                    _NOTHING,
                    _NOTHING,
                    QUOTE_BYTES,
                )
            )
            quotes = Encoded(
                msgspec.Raw(out[:used].tobytes()),
                _texts(self.quote_symbols, nqs),
                ints[6].copy(),
                ints[4].copy(),
            )
        if nt:
            ints = self.trade_ints[:, :nt]
            used = _checked(
                encode_batch(
                    out,
                    _TRADES_TAG,
                    TRADE_LAYOUT,
                    nt,
                    self.trade_ints,
                    self.trade_prices.view(np.int64),
                    self.trade_symbols,
                    nts,
                    self.trade_ids,
                    nti,
                    self.conditions,
                    self.condition_ends,
                    TRADE_BYTES,
                )
            )
            trades = Encoded(
                msgspec.Raw(out[:used].tobytes()),
                _texts(self.trade_symbols, nts),
                ints[3].copy(),
                ints[1].copy(),
            )
        self.state[:] = 0
        return quotes, trades


def _checked(used: int) -> int:
    """The encoder's length; it refuses (-1) only a batch the scanner should not have taken."""
    if used < 0:
        raise RuntimeError(
            "ingest scanner: a batch exceeded the encoder's buffer (nothing was written)"
        )
    return used


def _texts(buffer: np.ndarray, used: int) -> list[str]:  # type: ignore[type-arg]
    """The NUL-separated strings in buffer[:used] (each was checked to be printable ASCII)."""
    return buffer[: used - 1].tobytes().decode("ascii").split("\x00")


def warm_up() -> None:
    """Compile (or load from numba's cache) before the first frame arrives."""
    columns = Columns()
    columns.add(
        b'[{"ev":"Q","sym":"A","bx":1,"bp":1.5,"bs":1,"ax":1,"ap":1.5,"as":1,"i":[1]},{"ev":"T","sym":"A","p":1,"s":1,"t":1,"c":[1],"i":"1"}]',
        0,
    )
    columns.take()
