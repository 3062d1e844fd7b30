"""A recording's quotes and trades back, in the order they were recorded, with their event times.

Slice N of every table covers the same stretch of receipt time, so the recording is read one
slice at a time (bounded memory) and the two tables are merged by `ts_recv` (ties: quotes first,
then file order). This is what the simulator's replay mode feeds on: `replay_batches` yields
columnar `QuoteBatch` / `TradeBatch` messages ready to publish, `replay_events` yields row records.

Rows of the healed layer (the files audit.json lists, mesh/datasets/healed.py) were never
received live, so they replay at their event time: each goes out with `ts_recv` = `ts_event`, in
the slice whose receipt times reach it. `capture_only=True` replays the capture alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mesh.datasets import audit, healed
from mesh.recorder import manifest as mf
from mesh.recorder.columns import QUOTES, STORAGE, TRADES
from mesh.recorder.store import Store, open_session
from mesh.schema import Quote, QuoteBatch, Trade, TradeBatch

_BATCH_TYPES = {QUOTES: QuoteBatch, TRADES: TradeBatch}


def _to_batch(table: str, data: pa.Table) -> Any:
    columns: dict[str, list[Any]] = {}
    for field in data.schema:
        column = data.column(field.name)
        if pa.types.is_timestamp(field.type):
            column = column.cast(pa.int64())
        columns[field.name] = column.to_pylist()
    if table == TRADES:
        columns["conditions"] = [c or [] for c in columns["conditions"]]
    return _BATCH_TYPES[table](**columns)


def replay_batches(
    recording: str | Path,
    *,
    max_rows: int = 1000,
    symbols: list[str] | None = None,
    capture_only: bool = False,
) -> Iterator[QuoteBatch | TradeBatch]:
    """Batches of at most `max_rows` events, each of one kind, in recorded order (healed rows at
    their event time, unless `capture_only`)."""
    store, name = open_session(recording)
    parts: dict[int, dict[str, str]] = {}
    for table in (QUOTES, TRADES):
        for file_name in store.list_files(f"{name}/{table}"):
            number = mf.part_number(file_name)
            if number is not None:
                parts.setdefault(number, {})[table] = f"{name}/{table}/{file_name}"
    wanted = pa.array(symbols, type=pa.string()) if symbols else None
    fetched = {} if capture_only else _healed_rows(store, name, wanted)
    taken = dict.fromkeys(fetched, 0)
    numbers = sorted(parts)
    for index, number in enumerate(numbers):
        tables: list[tuple[str, pa.Table]] = []
        for table in (QUOTES, TRADES):
            if table in parts[number]:
                data = store.read_table(parts[number][table])
                if wanted is not None:
                    data = data.filter(pc.is_in(data.column("symbol"), value_set=wanted))
                tables.append((table, data))
        last = index == len(numbers) - 1
        latest = [t for _, data in tables if (t := _latest_recv(data)) is not None]
        reach = max(latest, default=None)
        for table, (data, times) in fetched.items():
            upto = (
                len(times) if last or reach is None else int(np.searchsorted(times, reach, "right"))
            )
            if upto > taken[table]:
                tables.append((table, data.slice(taken[table], upto - taken[table])))
                taken[table] = upto
        yield from _merge(tables, max_rows)
    if not numbers:
        yield from _merge([(table, data) for table, (data, _) in fetched.items()], max_rows)


def _latest_recv(data: pa.Table) -> int | None:
    if data.num_rows == 0:
        return None
    return int(pc.max(data.column("ts_recv").cast(pa.int64())).as_py())


def _healed_rows(
    store: Store, name: str, wanted: pa.Array | None
) -> dict[str, tuple[pa.Table, np.ndarray]]:
    """The healed layer per table, by event time, each row's `ts_recv` set to its `ts_event`."""
    found: dict[str, list[pa.Table]] = {}
    for table, rel in healed.listed_in(store.read_bytes(f"{name}/{audit.AUDIT}")):
        if not store.exists(f"{name}/{rel}"):
            continue
        data = store.read_table(f"{name}/{rel}").select(STORAGE[table].names)
        if wanted is not None:
            data = data.filter(pc.is_in(data.column("symbol"), value_set=wanted))
        found.setdefault(table, []).append(data.cast(STORAGE[table]))
    out = {}
    for table, pieces in found.items():
        data = pa.concat_tables(pieces)
        times = np.asarray(data.column("ts_event").cast(pa.int64()).to_numpy(), dtype=np.int64)
        order = np.argsort(times, kind="stable")
        data, times = data.take(pa.array(order)), times[order]
        recv = data.schema.get_field_index("ts_recv")
        data = data.set_column(recv, "ts_recv", data.column("ts_event"))
        out[table] = (data, times)
    return out


def _merge(tables: list[tuple[str, pa.Table]], max_rows: int) -> Iterator[Any]:
    keys = [
        np.asarray(t.column("ts_recv").cast(pa.int64()).to_numpy(zero_copy_only=False))
        for _, t in tables
    ]
    if not keys or not sum(len(k) for k in keys):
        return
    which = np.concatenate([np.full(len(k), i, dtype=np.int64) for i, k in enumerate(keys)])
    row = np.concatenate([np.arange(len(k), dtype=np.int64) for k in keys])
    order = np.lexsort((row, which, np.concatenate(keys)))
    which, row = which[order], row[order]
    run_starts = np.flatnonzero(np.r_[True, which[1:] != which[:-1]])
    run_ends = np.r_[run_starts[1:], len(which)]
    for start, end in zip(run_starts, run_ends, strict=True):
        table, data = tables[int(which[start])]
        for offset in range(start, end, max_rows):
            idx = row[offset : min(end, offset + max_rows)]
            yield _to_batch(table, data.take(pa.array(idx)))


def replay_events(
    recording: str | Path, *, symbols: list[str] | None = None, capture_only: bool = False
) -> Iterator[Quote | Trade]:
    """Every recorded quote and trade as a row record, in recorded order, with original times."""
    for batch in replay_batches(recording, symbols=symbols, capture_only=capture_only):
        yield from batch.rows()
