"""Recordings written from the simulator's history, shaped as the recorder writes them.

The sim's live feed is its history (same trade ids, prices, sizes, conditions, SIP times, quote
sequence numbers; times in milliseconds on the WebSocket), so a session recorded from it holds
exactly these rows. Writing them directly makes a recording of any span in a fraction of a second.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mesh import calendar
from mesh.bar_schema import SCHEMA_VERSION
from mesh.datasets.columns import QUOTES, STORAGE, TRADES
from mesh.sim import history, market

MS = 1_000_000


def et_ns(day: dt.date, clock: str) -> int:
    """`clock` ("10:00" or "10:00:05.250") New York time on `day`, in ns."""
    moment = dt.datetime.combine(day, dt.time.fromisoformat(clock), calendar.ET)
    return int(moment.timestamp() * 1e9 // MS) * MS


def trades_of(symbol: str, day: dt.date, lo: int, hi: int, recv_offset: int) -> pa.Table:
    t = history.day_trades(market.DEFAULT_SEED, symbol, day)
    keep = (t.sip_ns >= lo) & (t.sip_ns <= hi)
    codes = [code for _, code in history.CONDITION_CODES]
    bits = [bit for bit, _ in history.CONDITION_CODES]
    flags = t.flags[keep]
    conditions = [[c for b, c in zip(bits, codes, strict=True) if f & b] for f in flags.tolist()]
    event = t.sip_ns[keep] // MS * MS
    return pa.table(
        {
            "symbol": pa.array([symbol] * int(keep.sum()), pa.string()),
            "price": t.price[keep].astype(np.float64),
            "size": t.size[keep].astype(np.int64),
            "exchange": t.exchange[keep].astype(np.int64),
            "trade_id": pa.array([str(i) for i in t.trade_id[keep].tolist()], pa.string()),
            "conditions": pa.array(conditions, pa.list_(pa.int64())),
            "tape": np.full(len(event), t.tape, np.int64),
            "sequence": t.sequence[keep].astype(np.int64),
            "ts_event": event,
            "ts_recv": event + recv_offset,
        }
    ).cast(STORAGE[TRADES])


def quotes_of(symbol: str, day: dt.date, lo: int, hi: int, recv_offset: int) -> pa.Table:
    q = history.day_quotes(market.DEFAULT_SEED, symbol, day)
    keep = (q.sip_ns >= lo) & (q.sip_ns <= hi)
    event = q.sip_ns[keep] // MS * MS
    n = len(event)
    return pa.table(
        {
            "symbol": pa.array([symbol] * n, pa.string()),
            "bid_price": q.bid_price[keep].astype(np.float64),
            "bid_size": q.bid_size[keep].astype(np.int64),
            "ask_price": q.ask_price[keep].astype(np.float64),
            "ask_size": q.ask_size[keep].astype(np.int64),
            "bid_exchange": q.bid_exchange[keep].astype(np.int64),
            "ask_exchange": q.ask_exchange[keep].astype(np.int64),
            "condition": np.zeros(n, np.int64),
            "tape": np.full(n, q.tape, np.int64),
            "sequence": q.sequence[keep].astype(np.int64),
            "ts_event": event,
            "ts_recv": event + recv_offset,
        }
    ).cast(STORAGE[QUOTES])


def write_recording(
    data_dir: Path,
    name: str,
    day: dt.date,
    start: str,
    end: str,
    symbols: Sequence[str],
    *,
    kinds: Sequence[str] = (TRADES, QUOTES),
    requested: Sequence[str] | None = None,
    live_run: tuple[str, str] | None = None,
) -> Path:
    """A stopped session that recorded `kinds` of `symbols` from `start` to `end` ET on `day`,
    played back now (received today, so its run's clock is far from the events' times); with
    `live_run` (from, to ET) received live instead, 3 ms after each event, by a run that went
    from `from` to `to`."""
    lo, hi = et_ns(day, start), et_ns(day, end)
    folder = data_dir / "recordings" / name
    started = time.time_ns() if live_run is None else et_ns(day, live_run[0])
    offset = started - lo if live_run is None else 3 * MS
    tables = {}
    for kind in kinds:
        make = trades_of if kind == TRADES else quotes_of
        tables[kind] = pa.concat_tables([make(s, day, lo, hi, offset) for s in symbols])
        (folder / kind).mkdir(parents=True, exist_ok=True)
        pq.write_table(tables[kind], folder / kind / "part-000001.parquet")
    ended = started + (hi - lo) + 1_000_000_000 if live_run is None else et_ns(day, live_run[1])
    events = np.concatenate(
        [t.column("ts_event").cast(pa.int64()).to_numpy() for t in tables.values()]
    )
    manifest = {
        "format": 1,
        "schema_version": SCHEMA_VERSION,
        "kind": "recording",
        "name": name,
        "state": "stopped",
        "clean": True,
        "symbols_requested": list(requested if requested is not None else symbols),
        "symbols": sorted(symbols),
        "first_event_ns": int(events.min()),
        "last_event_ns": int(events.max()),
        "rows": {k: t.num_rows for k, t in tables.items()},
        "runs": [{"started_ns": started, "ended_ns": ended, "clean": True, "error": None}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def rewrite(
    folder: Path, kind: str, keep: np.ndarray | None = None, **changes: tuple[int, object]
) -> pa.Table:
    """Rewrite the session's `kind` part file keeping the rows where `keep` is true and setting
    `changes` (column=(row, value)); returns the table as it was before."""
    path = folder / kind / "part-000001.parquet"
    before = pq.read_table(path)
    table = before
    for column, (row, value) in changes.items():
        values = table.column(column).to_pylist()
        values[row] = value
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, pa.array(values, table.schema.field(index).type))
    if keep is not None:
        table = table.filter(pa.array(keep))
    pq.write_table(table, path)
    return before
