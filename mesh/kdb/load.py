"""`massive kdb load DATASET`: a recorded or historical dataset into kdb+, in batches, losslessly.

DATASET is a Parquet file or a directory of them, or a NAME looked up as
`$MESH_DATA_DIR/recordings/NAME`, then `$MESH_DATA_DIR/historical/NAME` (or `NAME.parquet`).
Each file's table is recognised by its columns, not its name:

- quotes, trades, bars as recorded: columns named like the record fields in mesh/schema.py
  (missing optional fields take the record's defaults);
- historical bars: `symbol, timestamp, open, high, low, close, volume, vwap, transactions`;
  the bar interval is read from the spacing of the timestamps (or given with --interval).

Rows go through the same sender as the live service (same q types, same replay on reconnect),
but the queue waits for room instead of dropping, and the load ends with a confirming round trip.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mesh.config import KdbTarget
from mesh.kdb.buffer import Chunk
from mesh.kdb.defaults import DEFAULT_LOAD_BATCH_ROWS
from mesh.kdb.schema import TABLES
from mesh.kdb.sender import Sender, SenderOptions

log = logging.getLogger(__name__)

HISTORICAL_COLUMNS = (
    "symbol",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "transactions",
)
INTERVALS = {"1s": 1, "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "1d": 86_400}
_NS = 1_000_000_000

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


class DatasetError(ValueError):
    """DATASET cannot be found or read; the message says where we looked and what was wrong."""


class LoadError(RuntimeError):
    """kdb+ did not take the data (unreachable, stopped reading); says how far the load got."""


@dataclass(frozen=True)
class Source:
    """One Parquet file and the q table its rows go to."""

    path: Path
    table: str
    historical: bool
    rows: int


def resolve(dataset: str, data_dir: Path) -> Path:
    """A path as given, else NAME under recordings/ then historical/ in the data folder."""
    path = Path(dataset).expanduser()
    if path.exists():
        return path
    candidates = [
        data_dir / "recordings" / dataset,
        data_dir / "historical" / dataset,
        data_dir / "historical" / f"{dataset}.parquet",
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise DatasetError(f"dataset {dataset!r} not found: it is not a path, and there is no {looked}")


def classify(names: set[str]) -> tuple[str, bool] | None:
    """(q table, is historical) for a file's column names, or None if it is not market data."""
    if {"symbol", "bid_price", "ask_price"} <= names:
        return "quote", False
    if {"symbol", "price", "size", "trade_id"} <= names:
        return "trade", False
    if {"symbol", "ts_start", "open", "close"} <= names:
        return "bar", False
    if {"symbol", "timestamp", "open", "close"} <= names:
        return "bar", True
    return None


def discover(path: Path) -> list[Source]:
    """Every Parquet file under `path` that holds quotes, trades or bars, in name order."""
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise DatasetError(f"no Parquet files in {path}")
    sources, skipped = [], []
    for file in files:
        try:
            meta = pq.ParquetFile(file)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DatasetError(f"{file}: not a readable Parquet file ({exc})") from None
        names = set(meta.schema_arrow.names)
        kind = classify(names)
        if kind is None:
            skipped.append(file.name)
            continue
        table, historical = kind
        needed = HISTORICAL_COLUMNS if historical else [c.source for c in TABLES[table].columns]
        missing = [
            n
            for n in dict.fromkeys(needed)
            if n not in names
            and n not in _OPTIONAL
            and n != "interval"
            and not (historical and n in ("vwap", "transactions"))
        ]
        if missing:
            raise DatasetError(
                f"{file}: looks like {table} data but has no {', '.join(missing)} column(s)"
            )
        sources.append(Source(file, table, historical, meta.metadata.num_rows))
    if not sources:
        raise DatasetError(
            f"no quotes, trades or bars in {path} (skipped {', '.join(skipped)}): columns must be named as in docs/protocol.md, or symbol,timestamp,open,high,low,close,volume,vwap,transactions for historical bars"
        )
    if skipped:
        log.warning("skipped files that hold no market data: %s", ", ".join(skipped))
    return sources


def _ns(column: pa.Array) -> np.ndarray:
    """Any timestamp column as int64 ns since the Unix epoch, UTC (nulls -> 0, i.e. q null)."""
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
        return column.fill_null(0).to_numpy(zero_copy_only=False)
    values = pc.cast(column, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    biggest = int(np.abs(values).max()) if len(values) else 0
    scale = (
        1
        if biggest >= 10**17
        else 1_000
        if biggest >= 10**14
        else 1_000_000
        if biggest >= 10**11
        else _NS
    )
    return values * scale


def _values(column: pa.Array, field: str) -> Any:
    kind = column.type
    if field.startswith("ts_") or field == "timestamp":
        return _ns(column)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [v or [] for v in column.to_pylist()]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        return ["" if v is None else v for v in column.to_pylist()]
    if pa.types.is_floating(kind):
        return column.to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(kind):
        return column.fill_null(False).to_numpy(zero_copy_only=False)
    return column.fill_null(0).to_numpy(zero_copy_only=False)


def interval_label(seconds: float) -> str:
    for label, secs in INTERVALS.items():
        if secs == seconds:
            return label
    return f"{int(seconds)}s"


def infer_interval(path: Path) -> tuple[str, int]:
    """(label, ns) of a historical file's bars: the most common step between a symbol's bars."""
    table = pq.read_table(path, columns=["symbol", "timestamp"])
    symbols = np.asarray(table.column("symbol").to_pylist(), dtype=object)
    stamps = _ns(table.column("timestamp").combine_chunks())
    steps: Counter[int] = Counter()
    for symbol in np.unique(symbols)[:50]:
        diffs = np.diff(np.sort(stamps[symbols == symbol]))
        steps.update(int(d) for d in diffs[diffs > 0][:5000])
    if not steps:
        return "", 0
    step = steps.most_common(1)[0][0]
    if step >= 86_400 * _NS:  # daily bars skip weekends and holidays; the common step is a day
        step = 86_400 * _NS
    return interval_label(step / _NS), step


def chunks(source: Source, batch_rows: int, interval: str | None = None) -> Iterator[Chunk]:
    """The file's rows as chunks of at most `batch_rows`, with columns named as the table needs."""
    table = TABLES[source.table]
    step = 0
    if source.historical:
        if interval:
            if interval not in INTERVALS:
                raise DatasetError(
                    f"unknown --interval {interval!r}; expected one of {', '.join(INTERVALS)}"
                )
            step = INTERVALS[interval] * _NS
        else:
            interval, step = infer_interval(source.path)
    fields = list(dict.fromkeys(c.source for c in table.columns))
    for batch in pq.ParquetFile(source.path).iter_batches(batch_size=batch_rows):
        n = batch.num_rows
        names = set(batch.schema.names)
        cols: dict[str, Any] = {}
        if source.historical:
            start = _values(batch.column("timestamp"), "timestamp")
            cols["ts_start"] = start
            cols["ts_end"] = start + step if step else np.zeros(n, dtype=np.int64)
            cols["interval"] = [interval or ""] * n
        for field in fields:
            if field in cols:
                continue
            if field in names:
                cols[field] = _values(batch.column(field), field)
            elif field == "interval":
                continue  # after the loop, from ts_start and ts_end
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
                raise DatasetError(f"{source.path}: no {field} column")
        if (
            source.table == "bar" and "interval" not in cols
        ):  # recorded bars without the column: from each bar's length
            secs = (np.asarray(cols["ts_end"]) - np.asarray(cols["ts_start"])) // _NS
            cols["interval"] = [interval_label(s) if s > 0 else "" for s in secs.tolist()]
        yield Chunk(source.table, cols, n)


def load(
    path: Path,
    target: KdbTarget,
    *,
    batch_rows: int = DEFAULT_LOAD_BATCH_ROWS,
    function: str = ".u.upd",
    interval: str | None = None,
    timeout: float = 30.0,
    progress: Callable[[Source, int], None] | None = None,
    sources: list[Source] | None = None,
) -> dict[str, int]:
    """Send every row of the dataset at `path`; returns rows confirmed by kdb+ per table."""
    from mesh.kdb.ipc import QConnection  # fail fast, before reading anything, if kdb+ is not there

    probe = QConnection(target.host, target.port, target.user, target.password)
    probe.round_trip()
    probe.close()

    sources = sources if sources is not None else discover(path)
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
