"""Promotion: a closed write-ahead segment becomes Parquet files, idempotently.

Segment N of every table becomes `<table>/part-N.parquet` in the session folder, so the file
name is fixed by the segment: promoting the same segment twice (because the recorder died after
writing the Parquet file but before deleting the segment) replaces the file with an identical one
and can never duplicate rows. The order is always: write the Parquet file (all or nothing, see
`store.py`), then delete the segment. A crash at any point leaves either the segment, or the
file, or both, and the next promotion finishes the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from mesh.datasets import audit, healed
from mesh.files import fsync_dir
from mesh.recorder import bars as bars_mod
from mesh.recorder import manifest as mf
from mesh.recorder.columns import GAPS, PAPER_TABLES, QUOTES, STORAGE, TRADES, to_storage
from mesh.recorder.store import Store
from mesh.recorder.wal import read_segment

log = logging.getLogger(__name__)

CHUNK_ROWS = (
    1024 * 1024
)  # rows per Parquet row group and per bar-building step (smaller groups write ~35% slower)

# Called between writing the Parquet files and deleting the segment; tests use it to crash there.
_after_write: Callable[[int], None] | None = None


@dataclass
class Promoted:
    """What one segment became."""

    number: int
    files: list[mf.FileEntry] = field(default_factory=list)
    symbols: set[str] = field(default_factory=set)
    gaps: list[dict] = field(default_factory=list)
    torn: list[str] = field(default_factory=list)  # tables whose segment ended mid-batch
    already: list[str] = field(
        default_factory=list
    )  # tables found promoted already (after a crash)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files if f.table != GAPS)


def _chunks(batches: list[pa.RecordBatch], rows: int) -> Iterator[list[pa.RecordBatch]]:
    chunk: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        chunk.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield chunk
            chunk, count = [], 0
    if chunk:
        yield chunk


def promote_segment(
    store: Store,
    session: str,
    number: int,
    segment_files: dict[str, Path],
    *,
    bar_builder: bars_mod.BarBuilder | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Promoted:
    """Write segment `number` of each table as Parquet, then delete the segment files."""
    result = Promoted(number)
    for table, path in sorted(segment_files.items()):
        rel = f"{table}/{mf.part_name(number)}"
        content = read_segment(path)
        if content.torn:
            result.torn.append(table)
            log.warning(
                "%s: segment %s ended mid-batch (a crash while writing); kept its %d complete rows",
                session,
                path.name,
                content.rows,
            )
        if store.exists(f"{session}/{rel}"):
            result.already.append(table)
            if bar_builder is None and table in PAPER_TABLES:  # only their count matters here
                rows = store.parquet_file(f"{session}/{rel}").metadata.num_rows
                size = store.list_files(f"{session}/{table}").get(mf.part_name(number), 0)
                result.files.append(mf.FileEntry(rel, table, rows, size))
                continue
            if (
                bar_builder is None and table != GAPS
            ):  # nothing needs the rows: just account for the file
                data = store.read_table(f"{session}/{rel}", columns=["symbol", "ts_event"])
                first, last, symbols = mf.describe_table(table, data)
                size = store.list_files(f"{session}/{table}").get(mf.part_name(number), 0)
                result.files.append(mf.FileEntry(rel, table, data.num_rows, size, first, last))
                result.symbols |= symbols
                continue
        if content.rows == 0:
            continue
        first_ts: int | None = None
        last_ts: int | None = None
        offset = 0
        with store.parquet_writer(f"{session}/{rel}", STORAGE[table]) as writer:
            for batches in _chunks(content.batches, chunk_rows):
                chunk = to_storage(table, pa.Table.from_batches(batches).combine_chunks())
                writer.write_table(chunk, row_group_size=chunk.num_rows)
                if table == GAPS:
                    result.gaps.extend(mf.gap_rows(chunk))
                else:
                    first, last, symbols = mf.describe_table(table, chunk)
                    first_ts = first if first_ts is None else min(first_ts, first)  # type: ignore[type-var]
                    last_ts = last if last_ts is None else max(last_ts, last)  # type: ignore[type-var]
                    result.symbols |= symbols
                    if bar_builder is not None:
                        bar_builder.add(table, chunk, bars_mod.ordinal(number, offset))
                offset += chunk.num_rows
        size = store.list_files(f"{session}/{table}").get(mf.part_name(number), 0)
        result.files.append(mf.FileEntry(rel, table, content.rows, size, first_ts, last_ts))
    if _after_write is not None:
        _after_write(number)
    for path in segment_files.values():
        path.unlink(missing_ok=True)
    if segment_files:
        fsync_dir(next(iter(segment_files.values())).parent)
    return result


def write_bars(
    store: Store, session: str, bar_builder: bars_mod.BarBuilder
) -> tuple[dict[str, int], int]:
    """Rewrite the session's bar files from the builder; returns (rows per bar table, bytes)."""
    rows: dict[str, int] = {}
    size = 0
    for name, table in bar_builder.tables().items():
        rel = f"{session}/{name}.parquet"
        with store.parquet_writer(rel, bars_mod.BAR_SCHEMA) as writer:
            writer.write_table(table)
        rows[name] = table.num_rows
        size += store.list_files(session).get(f"{name}.parquet", 0)
    return rows, size


HEALED_SEGMENTS = 1 << 24  # healed files order after every captured slice (ties on ts_event)


def rebuild_bars(store: Store, session: str, manifest: mf.Manifest) -> bars_mod.BarBuilder:
    """Bars of every promoted quotes and trades file, in recording order (after a crash or on
    append), and of the healed files the session's audit.json lists (mesh/datasets/healed.py)."""
    builder = bars_mod.BarBuilder()
    files = []
    for entry in sorted(manifest.files.values(), key=lambda e: e.path):
        number = mf.part_number(entry.path.rsplit("/", 1)[-1])
        if entry.table in (QUOTES, TRADES) and number is not None:
            files.append((entry.table, entry.path, number))
    listed = healed.listed_in(store.read_bytes(f"{session}/{audit.AUDIT}"))
    files += [(table, rel, HEALED_SEGMENTS + i) for i, (table, rel) in enumerate(listed)]
    for table, rel, number in files:
        needed = [
            "symbol",
            "ts_event",
            "ts_recv",
            *(["price", "size"] if table == "trades" else ["bid_price", "ask_price"]),
        ]
        if number >= HEALED_SEGMENTS and not store.exists(f"{session}/{rel}"):
            continue  # a listed healed file removed by hand: the rest still counts
        data = store.read_table(f"{session}/{rel}", columns=needed)
        for offset in range(0, data.num_rows, CHUNK_ROWS):
            builder.add(table, data.slice(offset, CHUNK_ROWS), bars_mod.ordinal(number, offset))
        builder.commit()
    return builder


def rewrite_bars(recordings: Path | str, session: str) -> dict[str, int]:
    """Rebuild a finished session's bar files from its Parquet files and healed layer, each file
    replaced all or nothing (after a heal, so bar readers agree with the quotes and trades).

    The manifest stays the recorder's: its bar row counts are rewritten the next time it saves.
    """
    store = Store(recordings)
    manifest = mf.scan(store, session, mf.load(store, session))
    rows, _ = write_bars(store, session, rebuild_bars(store, session, manifest))
    return rows
