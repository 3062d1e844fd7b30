"""Massive's own trades and quotes, from REST or a flat-file day, in the recording's columns.

Reconciliation compares a recording with these, so both sources hand out Arrow tables in the
storage schema of mesh/datasets/columns.py (the schema the recorder writes): REST through
`RestClient.trades`/`quotes` (paged `/v3/trades`, `/v3/quotes` between two SIP times, every call
in the quota ledger), flat files through the `trades_v1`/`quotes_v1` day files of the bucket,
downloaded into the same cache as the minute files (bytes reserved in the ledger first, the file
checked by a full parse before it is renamed into place) and streamed: a trades day of the whole
market is a gigabyte or more, so it is parsed block by block and only the requested tickers kept.

Provider column names (`ticker`, `sip_timestamp`, `sequence_number`, ...) stay in this module.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from mesh.datasets.audit import EventKind
from mesh.datasets.columns import STORAGE
from mesh.fetcher.errors import FlatFileError
from mesh.fetcher.flatfiles import DayFile, FlatFiles
from mesh.fetcher.rest import RestClient

log = logging.getLogger(__name__)

DATASETS = {EventKind.TRADES: "trades_v1", EventKind.QUOTES: "quotes_v1"}
ENDPOINTS = {EventKind.TRADES: "/v3/trades", EventKind.QUOTES: "/v3/quotes"}
BLOCK = 8 << 20  # bytes of decompressed CSV parsed at a time

# the columns read from each day file, with their types (massive-api.md §3.3)
_TYPES: dict[EventKind, dict[str, pa.DataType]] = {
    EventKind.TRADES: {
        "ticker": pa.string(),
        "conditions": pa.string(),  # "12,37": several codes in one quoted field
        "exchange": pa.int64(),
        "id": pa.string(),
        "price": pa.float64(),
        "sequence_number": pa.int64(),
        "sip_timestamp": pa.int64(),
        "size": pa.float64(),  # fractional sizes appear from 2026
        "tape": pa.int64(),
    },
    EventKind.QUOTES: {
        "ticker": pa.string(),
        "ask_exchange": pa.int64(),
        "ask_price": pa.float64(),
        "ask_size": pa.float64(),
        "bid_exchange": pa.int64(),
        "bid_price": pa.float64(),
        "bid_size": pa.float64(),
        "conditions": pa.string(),
        "sequence_number": pa.int64(),
        "sip_timestamp": pa.int64(),
        "tape": pa.int64(),
    },
}


def empty(kind: EventKind) -> pa.Table:
    return STORAGE[kind.value].empty_table()


# --- REST ----------------------------------------------------------------------------------------


def from_rest(
    client: RestClient,
    kind: EventKind,
    symbol: str,
    ts_from: int,
    ts_to: int,
    *,
    recv_ns: int,
    on_page: Callable[[int], None] | None = None,
) -> pa.Table:
    """Massive's `kind` of `symbol` with SIP time in [ts_from, ts_to] ns, over REST."""
    fetch = client.trades if kind is EventKind.TRADES else client.quotes
    columns = fetch(symbol, ts_from, ts_to, recv_ns=recv_ns, on_page=on_page)
    return _storage(kind, columns)


def _storage(kind: EventKind, columns: dict[str, list[Any]]) -> pa.Table:
    schema = STORAGE[kind.value]
    arrays = {
        f.name: pa.array(columns[f.name], pa.int64() if pa.types.is_timestamp(f.type) else f.type)
        for f in schema
    }
    return pa.table(arrays).cast(schema)


# --- flat files ----------------------------------------------------------------------------------


def day_files(
    flatfiles: FlatFiles, kind: EventKind, days: Sequence[dt.date]
) -> tuple[list[DayFile], list[dt.date]]:
    """(the `kind` day files of `days` in the bucket, days without one) — a free listing."""
    return flatfiles.plan(days, DATASETS[kind])


def from_flat_file(
    flatfiles: FlatFiles,
    kind: EventKind,
    file: DayFile,
    symbols: Sequence[str],
    *,
    recv_ns: int,
    on_bytes: Callable[[int], None] | None = None,
) -> pa.Table:
    """The rows of `symbols` in one trades_v1/quotes_v1 day file (cached, else downloaded); the
    full parse is the file's check."""
    return flatfiles.parse(
        file, lambda path: read_day_file(path, kind, symbols, recv_ns=recv_ns), on_bytes=on_bytes
    )


def read_day_file(path: Path, kind: EventKind, symbols: Sequence[str], *, recv_ns: int) -> pa.Table:
    """The rows of `symbols` in a gzipped trades_v1/quotes_v1 CSV, in the storage schema.

    The whole file is parsed (that is its check: a truncated gzip, an unknown header or a value
    that does not parse is a FlatFileError); only the symbols' rows are kept.
    """
    types = _TYPES[kind]
    name = path.name
    try:
        stream = pa.input_stream(str(path), compression="gzip")
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=BLOCK),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                include_columns=list(types),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        wanted = pa.array(sorted(set(symbols)), pa.string())
        kept: list[pa.RecordBatch] = []
        for batch in reader:
            if len(wanted):
                chosen = batch.filter(pc.is_in(batch.column("ticker"), value_set=wanted))
                if chosen.num_rows:
                    kept.append(chosen)
        if not kept:
            return empty(kind)
        data = pa.Table.from_batches(kept)
        if data.column("sip_timestamp").null_count:
            raise pa.ArrowInvalid("a row without sip_timestamp")
        return _from_csv(kind, data, recv_ns)  # condition codes are parsed here ("12,37")
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise FlatFileError(f"{name}: cannot be read as {DATASETS[kind]} ({exc})") from None


def _codes(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """`"12,37"` -> [12, 37]; an empty field -> []."""
    blank = pc.equal(text, "")
    split = pc.split_pattern(pc.if_else(blank, pa.scalar(None, pa.string()), text), ",")
    codes = split.cast(pa.list_(pa.int64()))
    return pc.fill_null(codes, pa.scalar([], pa.list_(pa.int64())))


def _first_code(text: pa.ChunkedArray) -> pa.ChunkedArray:
    first = pc.replace_substring_regex(text, ",.*", "")
    return pc.if_else(pc.equal(first, ""), "0", first).cast(pa.int64())


def _sizes(values: pa.ChunkedArray) -> pa.Array:
    return pa.array(np.round(values.to_numpy()).astype(np.int64))


def _from_csv(kind: EventKind, data: pa.Table, recv_ns: int) -> pa.Table:
    n = data.num_rows
    recv = pa.array(np.full(n, recv_ns, np.int64))
    c = data.column
    if kind is EventKind.TRADES:
        columns = {
            "symbol": c("ticker"),
            "price": c("price"),
            "size": _sizes(c("size")),
            "exchange": c("exchange"),
            "trade_id": c("id"),
            "conditions": _codes(c("conditions")),
            "tape": c("tape"),
            "sequence": c("sequence_number"),
            "ts_event": c("sip_timestamp"),
            "ts_recv": recv,
        }
    else:
        columns = {
            "symbol": c("ticker"),
            "bid_price": c("bid_price"),
            "bid_size": _sizes(c("bid_size")),
            "ask_price": c("ask_price"),
            "ask_size": _sizes(c("ask_size")),
            "bid_exchange": c("bid_exchange"),
            "ask_exchange": c("ask_exchange"),
            "condition": _first_code(c("conditions")),
            "tape": c("tape"),
            "sequence": c("sequence_number"),
            "ts_event": c("sip_timestamp"),
            "ts_recv": recv,
        }
    return pa.table(columns).cast(STORAGE[kind.value])
