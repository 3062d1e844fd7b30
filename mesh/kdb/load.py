"""`massive kdb load DATASET`: a recorded or historical dataset into kdb+, in batches, losslessly.

DATASET means what it means to every command (`mesh.datasets.resolve`): a recording or
historical dataset NAME, `recording:NAME` / `historical:NAME`, or a Parquet file or folder, with
the same one-line errors when it is not found, ambiguous or damaged. Its tables go to q tables by
kind: quotes to `quote`, trades to `trade`, trade bars to `bar`, a recording's paper-trading
orders, fills and pnl to `order`, `fill` and `pnl` (quote-mid bars and gaps are not loaded: kdb+'s
`bar` table holds trade bars, as the live feed's do). Rows are read through
`mesh.datasets`, so times are ns UTC whatever the file's unit and bars are in the one bar schema
(version-1 history with its `timestamp` column is migrated on read). A bar's `interval` is its
table's (`bars_1m` is 1m, history its manifest's), else `--interval`, else each bar's own width.

Rows go through the same sender as the live service (same q types, same replay on reconnect),
but the queue waits for room instead of dropping, and the load ends with a confirming round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mesh import datasets, intervals
from mesh.config import KdbTarget
from mesh.datasets import Dataset, DatasetError, Problem, Table, TableKind
from mesh.kdb.buffer import Chunk
from mesh.kdb.defaults import DEFAULT_LOAD_BATCH_ROWS
from mesh.kdb.schema import TABLES
from mesh.kdb.sender import Sender, SenderOptions
from mesh.times import to_ns

log = logging.getLogger(__name__)

__all__ = ["DatasetError", "LoadError", "Source", "chunks", "discover", "load", "resolve"]

Q_TABLE = {
    TableKind.QUOTES: "quote",
    TableKind.TRADES: "trade",
    TableKind.BARS: "bar",
    TableKind.ORDERS: "order",
    TableKind.FILLS: "fill",
    TableKind.PNL: "pnl",
}

# Record fields a file may leave out, and their values (the defaults in mesh/schema.py).
_OPTIONAL: dict[str, Any] = {
    "condition": 0,
    "tape": 0,
    "sequence": 0,
    "conditions": [],
    "ts_recv": 0,
    "replaces": False,
    "transactions": 0,
}


class LoadError(RuntimeError):
    """kdb+ did not take the data (unreachable, stopped reading); says how far the load got."""


@dataclass(frozen=True)
class Source:
    """One table of the dataset and the q table its rows go to."""

    path: Path  # the dataset table's name, as a path the command line shows (`quotes`, `bars_1m`)
    table: str
    rows: int
    data: Table


def resolve(dataset: str, data_dir: Path, *, capture_only: bool = False) -> Dataset:
    """The dataset DATASET names (mesh.datasets.resolve); raises DatasetError.

    A recording's quotes and trades include the rows a heal added, unless `capture_only`.
    """
    return datasets.resolve(dataset, data_dir, capture_only=capture_only)


def discover(dataset: Dataset) -> list[Source]:
    """The dataset's quotes, trades, trade bars and paper records, each with its q table."""
    sources = [
        Source(Path(table.name), Q_TABLE[table.kind], table.rows, table)
        for table in dataset.tables.values()
        if table.kind in Q_TABLE and not table.mid
    ]
    if not sources:
        raise DatasetError(
            Problem.NOT_FOUND,
            f"{dataset.path} holds no quotes, trades or bars to load (its tables: {', '.join(dataset.tables) or 'none'})",
            dataset.path,
        )
    return sources


def _values(column: pa.ChunkedArray, field: str) -> Any:
    kind = column.type
    if field.startswith("ts_") or pa.types.is_timestamp(kind):  # paper's `ts`, `bar_end` too
        return to_ns(column)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [v or [] for v in column.to_pylist()]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        return ["" if v is None else v for v in column.to_pylist()]
    if pa.types.is_floating(kind):
        return column.to_numpy()
    if pa.types.is_boolean(kind):
        return column.fill_null(False).to_numpy()
    return column.fill_null(0).to_numpy()


def chunks(source: Source, batch_rows: int, interval: str | None = None) -> Iterator[Chunk]:
    """The table's rows as chunks of at most `batch_rows`, with columns named as the q table needs.

    `interval` is the bar width for bars whose table does not know its own.
    """
    table = TABLES[source.table]
    given = _interval(interval) if interval and source.data.interval is None else None
    width = source.data.interval or given
    label = width.name if width is not None else None
    fields = list(dict.fromkeys(c.source for c in table.columns))
    for path, batch in datasets.iter_batches(source.data, batch_rows, interval=given):
        n = batch.num_rows
        names = set(batch.column_names)
        cols: dict[str, Any] = {}
        for field in fields:
            if field in names:
                cols[field] = _values(batch.column(field), field)
            elif field == "interval":
                continue  # after the loop
            elif field in _OPTIONAL:
                default = _OPTIONAL[field]
                cols[field] = (
                    [list(default) for _ in range(n)]
                    if isinstance(default, list)
                    else [default] * n
                )
            elif field == "vwap":
                cols[field] = np.full(n, np.nan)
            else:
                raise datasets.DatasetError(
                    Problem.DAMAGED,
                    f"{path}: no {field} column, which kdb+'s {source.table} table needs",
                    path,
                )
        if source.table == "bar" and "interval" not in names:
            if label:
                cols["interval"] = [label] * n
            else:  # each bar's own width
                widths = np.asarray(cols["ts_end"]) - np.asarray(cols["ts_start"])
                cols["interval"] = [
                    intervals.format_ns(w) if w > 0 else "" for w in widths.tolist()
                ]
        yield Chunk(source.table, cols, n)


def _interval(text: str) -> intervals.Interval:
    try:
        return intervals.parse(text)
    except intervals.IntervalError as exc:
        raise LoadError(f"--interval: {exc}") from None


def load(
    dataset: Dataset,
    target: KdbTarget,
    *,
    batch_rows: int = DEFAULT_LOAD_BATCH_ROWS,
    function: str = ".u.upd",
    interval: str | None = None,
    timeout: float = 30.0,
    progress: Callable[[Source, int], None] | None = None,
    sources: list[Source] | None = None,
) -> dict[str, int]:
    """Send every row of `dataset`; returns rows confirmed by kdb+ per table."""
    from mesh.kdb.ipc import QConnection  # fail fast, before reading anything, if kdb+ is not there

    probe = QConnection(target.host, target.port, target.user, target.password)
    probe.round_trip()
    probe.close()

    sources = sources if sources is not None else discover(dataset)
    options = SenderOptions(
        function=function,
        max_queue_rows=max(4 * batch_rows, 100_000),
        max_unconfirmed_rows=max(4 * batch_rows, 100_000),
        reconnect_max=5.0,
    )
    sender = Sender(target, options)
    sender.start()
    address = f"{target.host}:{target.port}"
    try:
        for source in sources:
            for chunk in chunks(source, batch_rows, interval):
                if not sender.submit(chunk, block=True, timeout=timeout):
                    raise LoadError(
                        f"kdb+ at {address} took nothing for {timeout:g} s ({sender.state.last_error or 'no error reported'}); {_done(sender)}"
                    )
                if progress is not None:
                    progress(source, chunk.rows)
        if not sender.flush(timeout):
            raise LoadError(
                f"kdb+ at {address} did not confirm the last rows within {timeout:g} s ({sender.state.last_error or 'no error reported'}); {_done(sender)}"
            )
    finally:
        sender.stop(drain_timeout=0.5)
    snap = sender.snapshot()
    if snap["rejected"]:
        raise LoadError(
            f"{snap['rejected']} rows could not be converted to q types and were skipped (see the log); {_done(sender)}"
        )
    return {name: t["confirmed"] for name, t in snap["tables"].items() if t["confirmed"]}


def _done(sender: Sender) -> str:
    snap = sender.snapshot()
    return f"{snap['confirmed']:,} rows confirmed so far"
