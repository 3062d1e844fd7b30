"""Reading a dataset's tables: times as timestamp[ns, UTC] whatever their unit, bars in the one schema.

Every command reads through here, so a file reads the same everywhere: time columns in seconds,
milliseconds, microseconds or nanoseconds, or zoned timestamps of any unit, become
`timestamp[ns, tz=UTC]` (mesh/times.py); bars of any version become `bar_schema.BAR_SCHEMA`
(`bar_schema.to_current`: version-1 `timestamp` bars get `ts_start`, `ts_end` and a null
`ts_recv`). A file without a `symbol` column is one symbol, named after the file. A file that
cannot be read, or whose rows lack a symbol or the time that orders them (null, NaN), is a
damaged-dataset error naming it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mesh import bar_schema
from mesh.datasets.dataset import Table
from mesh.datasets.errors import damaged, one_line
from mesh.datasets.tables import TableKind, bar_time_column, empty_rows, key_columns
from mesh.intervals import Interval
from mesh.times import TIME, TimeColumnError, ns_column, to_ns

TIME_COLUMNS = ("ts_event", "ts_recv", "ts_start", "ts_end", "ts_from", "ts_to")
_READ_ERRORS = (OSError, pa.ArrowException, ValueError)


def read_table(
    table: Table,
    *,
    columns: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
    interval: Interval | None = None,
) -> pa.Table:
    """All rows of `table` (only `symbols`' if given; only `columns` that exist, if given).

    Bars come back in `BAR_SCHEMA`; `interval` is their width when the table does not know it
    (default: `bar_interval(table)`).
    """
    if table.kind is TableKind.BARS:
        interval = interval or bar_interval(table)
    parts = [_read_file(path, table, columns, symbols, interval) for path in table.files]
    if not parts:
        return bar_schema.empty() if table.kind is TableKind.BARS else pa.table({})
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except pa.ArrowException as exc:
        raise damaged(
            table.files[-1],
            f"columns differ from the table's other files ({one_line(str(exc), 160)})",
        ) from None


def iter_batches(
    table: Table, batch_rows: int, *, interval: Interval | None = None
) -> Iterator[tuple[Path, pa.Table]]:
    """(file, at most `batch_rows` converted rows) for the whole table, file by file."""
    if table.kind is TableKind.BARS:
        interval = interval or bar_interval(table)
    for path in table.files:
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
            for batch in batches:
                yield path, _convert(pa.Table.from_batches([batch]), table, path, interval)
        except _READ_ERRORS as exc:
            raise _unreadable(path, exc) from None


def bar_interval(table: Table) -> Interval | None:
    """A bar table's width: from its name or manifest, else the smallest step between its bars."""
    if table.interval is not None or table.kind is not TableKind.BARS:
        return table.interval
    starts: list[np.ndarray] = []
    symbols: list[np.ndarray] = []
    for path in table.files:
        try:
            names = pq.read_schema(path).names
            time = bar_time_column(names)
            if time is None:
                continue
            wanted = [time, "symbol"] if "symbol" in names else [time]
            data = pq.read_table(path, columns=wanted)
            starts.append(to_ns(data.column(time)))
            symbols.append(
                data.column("symbol").to_numpy(zero_copy_only=False)
                if "symbol" in names
                else np.full(data.num_rows, path.stem, dtype=object)
            )
        except (*_READ_ERRORS, TimeColumnError) as exc:
            raise _unreadable(path, exc) from None
    if not starts:
        return None
    return bar_schema.guess_interval(np.concatenate(starts), np.concatenate(symbols))


def _read_file(
    path: Path,
    table: Table,
    columns: Sequence[str] | None,
    symbols: Sequence[str] | None,
    interval: Interval | None,
) -> pa.Table:
    try:
        names = pq.read_schema(path).names
        wanted = None
        if columns is not None and table.kind is not TableKind.BARS:
            wanted = [c for c in dict.fromkeys(["symbol", *columns]) if c in names]
        filters = [("symbol", "in", list(symbols))] if symbols and "symbol" in names else None
        data = pq.read_table(path, columns=wanted, filters=filters)
        data = _convert(data, table, path, interval)
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from None
    if symbols and "symbol" not in names and path.stem not in symbols:
        data = data.slice(0, 0)
    if columns is not None:
        data = data.select(
            [c for c in dict.fromkeys(["symbol", *columns]) if c in data.column_names]
        )
    return data


def _convert(data: pa.Table, table: Table, path: Path, interval: Interval | None) -> pa.Table:
    """A file's rows as every reader sees them: a symbol, ns UTC times, current bars."""
    _check_keys(data, table.kind, path)
    if "symbol" not in data.column_names:
        data = data.append_column("symbol", pa.array([path.stem] * data.num_rows, pa.string()))
    if table.kind is TableKind.BARS:
        time = bar_time_column(data.column_names)
        if time not in (None, "ts_start", "timestamp"):
            data = data.rename_columns(["timestamp" if c == time else c for c in data.column_names])
        try:
            return bar_schema.to_current(data, interval)
        except (bar_schema.BarSchemaError, TimeColumnError) as exc:
            raise damaged(path, str(exc)) from None
    for i, name in enumerate(data.column_names):
        if name in TIME_COLUMNS and data.schema.field(i).type != TIME:
            try:
                data = data.set_column(i, name, ns_column(to_ns(data.column(i))))
            except TimeColumnError as exc:
                raise damaged(path, f"{name}: {exc}") from None
    return data


def _check_keys(data: pa.Table, kind: TableKind, path: Path) -> None:
    """Every row has its symbol and the time that orders it (a bar's start, an event's time);
    a footer without statistics, and NaN times, are caught here rather than when opening."""
    for name in key_columns(kind, data.column_names):
        column = data.column(name)
        empty, nan = column.null_count, pa.types.is_floating(column.type)
        if nan:
            empty += pc.sum(pc.is_nan(column).cast(pa.int64())).as_py() or 0
        if empty:
            raise damaged(path, empty_rows(name, empty, len(column), nan=nan))


def _unreadable(path: Path, exc: BaseException) -> Exception:
    if isinstance(exc, ValueError) and getattr(exc, "problem", None) is not None:
        return exc  # already a DatasetError naming the file
    return damaged(path, f"cannot be read: {one_line(str(exc), 200)}")
