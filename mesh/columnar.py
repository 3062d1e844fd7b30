"""Market-data batches decoded straight into numpy columns, for consumers that move millions of rows.

A typed msgspec decode of a 1,000-row `QuoteBatch` builds 11,000 Python ints and floats only for
the recorder, the kdb publisher or the dashboard to turn them back into machine arrays. Most of
those columns have a fixed width on the wire: msgspec writes every float as a msgpack float64
(`0xcb` + 8 bytes) and every timestamp as a uint64 (`0xcf` + 8 bytes), and small codes (exchange,
tape, condition) as one-byte fixints. Such a column is a strided view of the message, and numpy
reads it in one call.

`decode_payload` takes that path when a column's bytes prove it applies (one element width, one
type marker for every element) and otherwise decodes the column with msgspec, typed as
mesh.schema says, so the result and the validation are those of the typed decode, only faster.
The wire format does not change (docs/protocol.md): any msgpack writer's batches decode here.
"""

from __future__ import annotations

import typing
from collections.abc import Collection
from typing import Any

import msgspec
import numpy as np

from mesh.bounds import MAX_ROWS
from mesh.schema import BarBatch, QuoteBatch, TradeBatch

# the widths and markers of fixed-width msgpack scalars
_FIXED: dict[int, tuple[int, str]] = {
    0xCB: (9, ">f8"),  # float 64
    0xCA: (5, ">f4"),  # float 32
    0xCF: (9, ">u8"),  # uint 64
    0xD3: (9, ">i8"),  # int 64
    0xCE: (5, ">u4"),  # uint 32
    0xD2: (5, ">i4"),  # int 32
    0xCD: (3, ">u2"),  # uint 16
    0xD1: (3, ">i2"),  # int 16
    0xCC: (2, ">u1"),  # uint 8
    0xD0: (2, ">i1"),  # int 8
}
_INT64_MAX = np.iinfo(np.int64).max

_split = msgspec.msgpack.Decoder(list[msgspec.Raw])
_TAGS = {
    msgspec.msgpack.encode(cls.__struct_config__.tag): cls
    for cls in (QuoteBatch, TradeBatch, BarBatch)
}  # type: ignore[attr-defined]


def _plain(hint: Any) -> Any:
    """`int` for `Annotated[int, msgspec.Meta(...)]` (mesh.bounds' constrained types), else `hint`."""
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def _column_kinds(cls: type) -> list[tuple[str, str, Any]]:
    """(field, kind, msgspec decoder) per field.

    kind: "f8" or "i8" for numeric columns, "list" for other columns (strings, lists of lists),
    "scalar" for batch-level fields (a BarBatch's `interval` and `replaces`).
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    kinds = []
    for name in cls.__struct_fields__:  # type: ignore[attr-defined]
        hint = hints[name]
        item = _plain(typing.get_args(hint)[0]) if typing.get_origin(hint) is list else None
        if item is float:
            kind = "f8"
        elif item is int:
            kind = "i8"
        else:
            kind = "list" if typing.get_origin(hint) is list else "scalar"
        kinds.append((name, kind, msgspec.msgpack.Decoder(hint)))
    return kinds


_KINDS = {cls: _column_kinds(cls) for cls in _TAGS.values()}


def _array_header(raw: memoryview) -> tuple[int, int] | None:
    """(element count, header length) of a msgpack array, or None if `raw` is not one."""
    first = raw[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F, 1
    if first == 0xDC and len(raw) >= 3:
        return int.from_bytes(raw[1:3], "big"), 3
    if first == 0xDD and len(raw) >= 5:
        return int.from_bytes(raw[1:5], "big"), 5
    return None


def fixed_width_column(raw: memoryview, kind: str) -> np.ndarray | None:
    """A numeric msgpack array as a little-endian int64/float64 array, or None when it is not fixed-width."""
    header = _array_header(raw)
    if header is None:
        return None
    count, start = header
    body = raw[start:]
    if count == 0:
        return np.empty(0, dtype=kind) if not len(body) else None
    size = len(body)
    if size == count:  # one byte each: positive fixints (0..127) only
        values = np.frombuffer(body, dtype=np.uint8)
        if kind != "i8" or values.max() >= 0x80:
            return None
        return values.astype(np.int64)
    if size % count:
        return None
    width = size // count
    marker = body[0]
    fixed = _FIXED.get(marker)
    if fixed is None or fixed[0] != width:
        return None
    if kind == "i8" and fixed[1][1] == "f":  # a float where an int belongs: let msgspec say so
        return None
    cells = np.frombuffer(body, dtype=np.dtype([("marker", "u1"), ("value", fixed[1])]))
    if not (cells["marker"] == marker).all():
        return None
    values = cells["value"]
    if fixed[1] == ">u8" and kind == "i8" and values.max() > _INT64_MAX:
        return None  # out of int64's range: the typed path reports it
    return values.astype(np.float64 if kind == "f8" else np.int64)


class ColumnView(msgspec.Struct, frozen=True):
    """Some columns of merged batches of one type (`merge_columns` with `fields`)."""

    type: type  # QuoteBatch, TradeBatch or BarBatch
    columns: dict[str, Any]  # field -> numpy array (numbers) or list (strings, lists)


def _array_prefix(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def decode_payload(raw: bytes | memoryview | msgspec.Raw) -> Any | None:
    """A `QuoteBatch`, `TradeBatch` or `BarBatch` whose int and float columns are numpy arrays.

    Returns None when `raw` is not one of those batches or a column does not decode (the caller
    falls back to the typed decode, which says what was wrong). String and list columns are lists,
    as in the typed decode.
    """
    return merge([raw])


def merge(raws: list[bytes | memoryview | msgspec.Raw]) -> Any | None:
    """Payloads of one batch type decoded as one batch, rows in order, with numpy columns.

    A burst of small messages costs numpy's per-call overhead once per column instead of once per
    column per message: the columns' msgpack elements are concatenated under one array header,
    which is again a msgpack array, and decoded in one pass. None when the payloads are not all
    quote, trade or bar batches of one type (bars also of one interval and `replaces`), or any
    of them does not decode.
    """
    merged = merge_columns(raws)
    return None if merged is None else merged[0](**merged[1])


def merge_columns(
    raws: list[bytes | memoryview | msgspec.Raw], fields: Collection[str] | None = None
) -> tuple[type, dict[str, Any]] | None:
    """`merge`'s work, returning (batch type, field -> column), decoding only `fields` if given.

    A consumer that shows a few columns (the dashboard) skips the cost of the others.
    """
    cls: Any = None
    bodies: list[list[memoryview]] = []
    wanted: list[int] = []  # indices of the columns to decode
    scalar_fields: list[int] = []
    scalars: dict[int, Any] = {}
    total = 0
    try:
        for raw in raws:
            parts = _split.decode(raw)
            tag = _TAGS.get(bytes(parts[0])) if parts else None
            if tag is None or (cls is not None and tag is not cls):
                return None
            kinds = _KINDS[tag]
            if cls is None:
                cls = tag
                bodies = [[] for _ in kinds]
                wanted = [
                    i
                    for i, (name, kind, _) in enumerate(kinds)
                    if kind != "scalar" and (fields is None or name in fields)
                ]
                scalar_fields = [i for i, (_, kind, _) in enumerate(kinds) if kind == "scalar"]
            if len(parts) - 1 != len(kinds):
                return None
            for i in scalar_fields:  # a BarBatch's interval and replaces: one value for the merge
                value = kinds[i][2].decode(parts[i + 1])
                if scalars.setdefault(i, value) != value:
                    return None
            count = -1
            for i in wanted:
                view = memoryview(parts[i + 1])
                first = view[0]
                if (
                    first == 0xDC and len(view) >= 3
                ):  # array16, what batches of 16 to 65,535 rows use
                    n, start = (view[1] << 8) | view[2], 3
                elif 0x90 <= first <= 0x9F:
                    n, start = first & 0x0F, 1
                else:
                    header = _array_header(view)
                    if header is None:
                        return None
                    n, start = header
                if count < 0:
                    count = n
                    if (
                        n > MAX_ROWS
                    ):  # one message over the limit: rejected on its own, not merged in
                        return None
                elif n != count:  # columns of unequal length
                    return None
                bodies[i].append(view[start:])
            total += max(count, 0)
    except (msgspec.DecodeError, msgspec.ValidationError, IndexError):
        return None
    if cls is None:
        return None
    values: dict[str, Any] = {}
    prefix = _array_prefix(total)
    try:
        for i, (name, kind, decoder) in enumerate(_KINDS[cls]):
            if kind == "scalar":
                values[name] = scalars[i]
                continue
            if i not in wanted:
                continue
            joined = b"".join([prefix, *bodies[i]])
            if kind == "list":
                values[name] = decoder.decode(joined)
                continue
            value = fixed_width_column(memoryview(joined), kind)
            if value is None:
                value = np.asarray(
                    decoder.decode(joined), dtype=np.float64 if kind == "f8" else np.int64
                )
            values[name] = value
    except (msgspec.DecodeError, msgspec.ValidationError, OverflowError, ValueError):
        return None
    return cls, values


def with_arrays(batch: Any) -> Any:
    """`batch` with its int and float columns as numpy arrays (for a batch from the typed decode)."""
    kinds = _KINDS.get(type(batch))
    if kinds is None:
        return batch
    values = {}
    for name, kind, _ in kinds:
        value = getattr(batch, name)
        if kind in ("f8", "i8") and not isinstance(value, np.ndarray):
            value = np.asarray(value, dtype=np.float64 if kind == "f8" else np.int64)
        values[name] = value
    return type(batch)(**values)
