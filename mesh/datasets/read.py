"""Reading a dataset's tables: times as timestamp[ns, UTC] whatever their unit, bars in the one schema.

Every command reads through here, so a file reads the same everywhere: time columns in seconds,
milliseconds, microseconds or nanoseconds, or zoned timestamps of any unit, become
`timestamp[ns, tz=UTC]` (mesh/times.py); bars of any version become `bar_schema.BAR_SCHEMA`
(`bar_schema.to_current`: version-1 `timestamp` bars get `ts_start`, `ts_end` and a null
`ts_recv`). A file without a `symbol` column is one symbol, named after the file. A file that
cannot be read, or whose rows lack a symbol or the time that orders them (null, NaN), is a
damaged-dataset error naming it.

A recording's quotes and trades table includes its healed layer (mesh/datasets/healed.py): the
rows come back captured and healed together, the healed ones placed in event time among the
captured ones (which keep their recorded order), in the storage schema. `source=True` adds the
`source` column: where a healed row came from, null for a captured row (what DuckDB's
`union_by_name` gives over both globs). `table.capture_only()` reads the capture alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mesh import bar_schema
from mesh.datasets import healed as healed_layer
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
    source: bool = False,
) -> pa.Table:
    """All rows of `table` (only `symbols`' if given; only `columns` that exist, if given).

    Bars come back in `BAR_SCHEMA`; `interval` is their width when the table does not know it
    (default: `bar_interval(table)`). Quotes and trades with a healed layer come back with the
    healed rows in time among the captured ones; `source` adds the healed rows' `source` column
    (null for captured rows).
    """
    if table.kind is TableKind.BARS:
        interval = interval or bar_interval(table)
    if table.healed:
        return _read_healed(table, columns, symbols, source)
    parts = [_read_file(path, table, columns, symbols, interval) for path in table.files]
    if not parts:
        return bar_schema.empty() if table.kind is TableKind.BARS else pa.table({})
    data = _concat(parts, table.files)
    if source and table.kind in (TableKind.QUOTES, TableKind.TRADES):
        data = _with_source(data)
    return data


def _concat(parts: list[pa.Table], files: Sequence[Path]) -> pa.Table:
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except pa.ArrowException as exc:
        raise damaged(
            files[-1], f"columns differ from the table's other files ({one_line(str(exc), 160)})"
        ) from None


def _with_source(data: pa.Table) -> pa.Table:
    """`data` with a `source` column (null where it had none: captured rows)."""
    if healed_layer.SOURCE in data.column_names:
        return data
    return data.append_column(healed_layer.SOURCE, pa.nulls(data.num_rows, pa.string()))


def _without_source(data: pa.Table) -> pa.Table:
    if healed_layer.SOURCE not in data.column_names:
        return data
    return data.drop_columns([healed_layer.SOURCE])


def _read_healed(
    table: Table, columns: Sequence[str] | None, symbols: Sequence[str] | None, source: bool
) -> pa.Table:
    """Captured and healed rows, the healed ones in time among the captured (`healed.merge_order`)."""
    wanted: list[str] | None = None
    if columns is not None:
        wanted = [*columns, "ts_event", *([healed_layer.SOURCE] if source else [])]
    captured = [_read_file(p, table, wanted, symbols, None) for p in table.captured]
    fetched = [_read_file(p, table, wanted, symbols, None) for p in table.healed]
    change = _with_source if source else _without_source
    parts = [change(t) for t in (*captured, *fetched)]
    data = _concat(parts, table.files)
    split = sum(t.num_rows for t in captured)
    times = to_ns(data.column("ts_event"))
    order = healed_layer.merge_order(times[:split], times[split:])
    data = data.take(pa.array(order))
    if columns is not None:
        keep = [*columns, *([healed_layer.SOURCE] if source else [])]
        data = data.select([c for c in dict.fromkeys(["symbol", *keep]) if c in data.column_names])
    return data


def iter_batches(
    table: Table, batch_rows: int, *, interval: Interval | None = None
) -> Iterator[tuple[Path, pa.Table]]:
    """(file, at most `batch_rows` converted rows) for the whole table, file by file.

    A table with a healed layer yields its rows in `read_table`'s order: the healed rows (read at
    once: a heal adds what a capture missed, not a session's worth) merged into the captured
    batches by event time, without `source`.
    """
    if table.kind is TableKind.BARS:
        interval = interval or bar_interval(table)
    if table.healed:
        yield from _healed_batches(table, batch_rows)
        return
    yield from _file_batches(table, table.files, batch_rows, interval)


def _file_batches(
    table: Table, files: Sequence[Path], batch_rows: int, interval: Interval | None
) -> Iterator[tuple[Path, pa.Table]]:
    for path in files:
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
            for batch in batches:
                yield path, _convert(pa.Table.from_batches([batch]), table, path, interval)
        except _READ_ERRORS as exc:
            raise _unreadable(path, exc) from None


def _healed_batches(table: Table, batch_rows: int) -> Iterator[tuple[Path, pa.Table]]:
    fetched = [_without_source(_read_file(p, table, None, None, None)) for p in table.healed]
    rest = _concat(fetched, table.healed)
    rest = rest.take(pa.array(np.argsort(to_ns(rest.column("ts_event")), kind="stable")))
    rest_times = to_ns(rest.column("ts_event"))
    taken, latest = 0, None
    for path, batch in _file_batches(table, table.captured, batch_rows, None):
        keys = healed_layer.running_max(to_ns(batch.column("ts_event")), latest)
        if len(keys):
            latest = int(keys[-1])
        upto = taken if latest is None else int(np.searchsorted(rest_times, latest, "right"))
        if upto > taken:
            due = rest.slice(taken, upto - taken)
            merged = _concat([batch, due], (path,))
            order = healed_layer.merge_order(keys, rest_times[taken:upto], keyed=True)
            batch, taken = merged.take(pa.array(order)), upto
        for offset in range(0, max(batch.num_rows, 1), batch_rows):
            yield path, batch.slice(offset, batch_rows)
    for offset in range(taken, rest.num_rows, batch_rows):
        yield table.healed[-1], rest.slice(offset, batch_rows)


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
