"""Time columns: any unit a file may use, read as int64 nanoseconds since the Unix epoch, UTC.

The mesh keeps every time as int64 ns UTC (bus records, WAL, Parquet as timestamp[ns, UTC]).
Files from elsewhere use seconds, milliseconds, microseconds, dates or zoned timestamps; every
reader of a dataset converts through `to_ns`, so one file reads the same in every command.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

TIME = pa.timestamp("ns", tz="UTC")


class TimeColumnError(ValueError):
    """A column that holds no times."""


def to_ns(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamps of any unit or zone, dates, or numbers (unit told by magnitude) -> int64 ns UTC.

    Nulls (and NaN or infinite numbers) become 0. Naive timestamps are taken as UTC.
    """
    t = column.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        target = (
            pa.timestamp("ns", tz="UTC")
            if pa.types.is_timestamp(t) and t.tz
            else pa.timestamp("ns")
        )
        column = column.cast(target).cast(pa.int64()).fill_null(0)
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        column = column.fill_null(0)
        values = np.asarray(
            column.to_numpy(zero_copy_only=False),
            dtype=np.float64 if pa.types.is_floating(t) else np.int64,
        )
        return ints_to_ns(values)
    raise TimeColumnError(f"time column of type {t} is neither a timestamp nor a number")


def ints_to_ns(values: np.ndarray) -> np.ndarray:
    """Numbers in s, ms, us or ns, told apart by their largest magnitude -> int64 ns.

    NaN, infinite and out-of-range (beyond int64 ns) values become 0, as nulls do."""
    values = np.asarray(values)
    if len(values) == 0:
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        values = np.where(np.isfinite(values), values, 0.0)
    big = float(np.max(np.abs(values)))
    scale = (
        1 if big >= 1e17 else 1_000 if big >= 1e14 else 1_000_000 if big >= 1e11 else 1_000_000_000
    )
    scaled = values if scale == 1 else values * scale
    if scaled.dtype.kind == "f":
        scaled = np.where(np.abs(scaled) < 2.0**63, scaled, 0.0)
    return scaled.astype(np.int64)


def ns_column(values: np.ndarray) -> pa.Array:
    """int64 ns -> a timestamp[ns, UTC] column."""
    return pa.array(np.asarray(values, dtype=np.int64), type=pa.int64()).cast(TIME)


def iso(ns: int | None, timespec: str = "seconds") -> str | None:
    """int64 ns -> `2024-03-04T14:30:00Z` (UTC, ISO 8601); None stays None."""
    if ns is None:
        return None
    stamp = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC)
    stamp = stamp.replace(microsecond=(ns % 1_000_000_000) // 1000)
    return stamp.isoformat(timespec=timespec).replace("+00:00", "Z")


def from_iso(text: object) -> int | None:
    """`2024-03-04T14:30:00Z` (or any ISO 8601 time; naive is UTC) -> int64 ns; None if not one."""
    if not isinstance(text, str):
        return None
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    whole = int(stamp.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + stamp.microsecond * 1000
