"""A recording's quotes and trades back, in the order they were recorded, with their event times.

Slice N of every table covers the same stretch of receipt time, so the recording is read one
slice at a time (bounded memory) and the two tables are merged by `ts_recv` (ties: quotes first,
then file order). This is what the simulator's replay mode feeds on: `replay_batches` yields
columnar `QuoteBatch` / `TradeBatch` messages ready to publish, `replay_events` yields row records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mesh.recorder import manifest as mf
from mesh.recorder.columns import QUOTES, TRADES
from mesh.recorder.store import open_session
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
    recording: str | Path, *, max_rows: int = 1000, symbols: list[str] | None = None
) -> Iterator[QuoteBatch | TradeBatch]:
    """Batches of at most `max_rows` events, each of one kind, in recorded order."""
    store, name = open_session(recording)
    parts: dict[int, dict[str, str]] = {}
    for table in (QUOTES, TRADES):
        for file_name in store.list_files(f"{name}/{table}"):
            number = mf.part_number(file_name)
            if number is not None:
                parts.setdefault(number, {})[table] = f"{name}/{table}/{file_name}"
    wanted = pa.array(symbols, type=pa.string()) if symbols else None
    for number in sorted(parts):
        tables: list[tuple[str, pa.Table]] = []
        for table in (QUOTES, TRADES):
            if table in parts[number]:
                data = store.read_table(parts[number][table])
                if wanted is not None:
                    data = data.filter(pc.is_in(data.column("symbol"), value_set=wanted))
                tables.append((table, data))
        yield from _merge(tables, max_rows)


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
    recording: str | Path, *, symbols: list[str] | None = None
) -> Iterator[Quote | Trade]:
    """Every recorded quote and trade as a row record, in recorded order, with original times."""
    for batch in replay_batches(recording, symbols=symbols):
        yield from batch.rows()
