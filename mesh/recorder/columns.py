"""Arrow schemas of the recorded tables, and bus batches (and paper trading's records) turned
into Arrow columns.

The recorder never builds a Python object per event: it decodes bus batches with numpy columns
(mesh.columnar), which Arrow takes without a copy, and any column that arrives as a list becomes
one Arrow array with one call. The write-ahead log keeps every time
column as int64 (the cheapest conversion from Python ints); promotion casts them to the storage
schema, where times are `timestamp[ns, tz=UTC]`. Integers are int64 in both, so promotion can
never fail on a value that the log accepted. Column names are the field names of
`mesh.schema`, so live, recorded and historical data share one vocabulary.
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np
import pyarrow as pa

from mesh.datasets.columns import FILLS, GAPS, ORDERS, PAPER_TABLES, PNL, QUOTES, STORAGE, TRADES
from mesh.schema import Fill, GapBatch, Order, Pnl, QuoteBatch, TradeBatch

_INT64 = pa.int64()
_BUFFER_CODES = {_INT64: "q", pa.float64(): "d"}  # Arrow type -> array.array typecode

# the stored tables and their Parquet schemas are the datasets' (one schema for every writer)
TABLES = (QUOTES, TRADES, GAPS, *PAPER_TABLES)


def _wal_type(t: pa.DataType) -> pa.DataType:
    return pa.int64() if pa.types.is_timestamp(t) else t


# write-ahead-log schemas: the same columns, with times as int64 nanoseconds
WAL: dict[str, pa.Schema] = {
    name: pa.schema([(f.name, _wal_type(f.type)) for f in schema])
    for name, schema in STORAGE.items()
}

TABLE_OF: dict[type, str] = {
    QuoteBatch: QUOTES,
    TradeBatch: TRADES,
    GapBatch: GAPS,
    Order: ORDERS,
    Fill: FILLS,
    Pnl: PNL,
}


class RejectedBatch(ValueError):
    """A batch whose columns cannot be stored (unequal lengths, wrong types, out-of-range numbers)."""


def to_record_batch(table: str, batch: Any, extra: dict[str, Any] | None = None) -> pa.RecordBatch:
    """One WAL record batch from a bus batch: one `pa.array` per column, no per-event objects.

    `extra` supplies columns the bus batch does not have (constants are repeated).
    """
    schema = WAL[table]
    n = len(batch.symbol)
    arrays = []
    try:
        for field in schema:
            if extra is not None and field.name in extra:
                value = extra[field.name]
                column = value if isinstance(value, list) else [value] * n
            else:
                column = getattr(batch, field.name)
            if len(column) != n:
                raise RejectedBatch(
                    f"column {field.name!r} has {len(column)} values, symbol has {n}"
                )
            code = _BUFFER_CODES.get(field.type)
            if isinstance(
                column, np.ndarray
            ):  # mesh.columnar's decode: Arrow shares numpy's buffer
                arrays.append(pa.array(column, type=field.type))
            elif code is not None:  # ~3x faster than pa.array for a list of Python ints or floats
                arrays.append(
                    pa.Array.from_buffers(
                        field.type, n, [None, pa.py_buffer(array.array(code, column))]
                    )
                )
            else:
                arrays.append(pa.array(column, type=field.type))
    except (pa.ArrowException, TypeError, OverflowError, ValueError) as exc:
        if isinstance(exc, RejectedBatch):
            raise
        raise RejectedBatch(f"{table}: {exc}") from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def gap_record_batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    """Gap rows (few, rare) as one WAL record batch."""
    schema = WAL[GAPS]
    return pa.RecordBatch.from_pylist(
        [{f.name: row.get(f.name) for f in schema} for row in rows], schema=schema
    )


def records_batch(table: str, records: list[Any]) -> pa.RecordBatch:
    """Paper trading's records (Order, Fill, Pnl: one per bus message, a few a second) as one WAL
    record batch, a row each."""
    schema = WAL[table]
    try:
        return pa.RecordBatch.from_pylist(
            [{f.name: getattr(record, f.name) for f in schema} for record in records],
            schema=schema,
        )
    except (pa.ArrowException, TypeError, OverflowError, ValueError, AttributeError) as exc:
        raise RejectedBatch(f"{table}: {exc}") from None


def to_storage(table: str, data: pa.Table | pa.RecordBatch) -> pa.Table:
    """WAL columns cast to the storage schema (int64 nanoseconds -> timestamp[ns, UTC])."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    return data.cast(STORAGE[table])
