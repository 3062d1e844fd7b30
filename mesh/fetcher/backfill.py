"""Gap backfill: the trades and quotes ingest reported missing, fetched from REST within the quota.

Ingest publishes `Gap` records (md.gap.stocks) and the recorder stores them with a session.
Each gap names a symbol, a kind (quote or trade) and the SIP times of the last event before and
the first event after the hole; v3 trades/quotes with `timestamp.gte/lte` over that span return
what was missed (plus the two known edge events, which are dropped). Overlapping gaps of the same
symbol and kind are merged into one request. Before anything is sent, the number of calls needed
(at least one per merged gap) is checked against what is left today; if it does not fit, nothing
is fetched and the report says so.

`fetch_span` (one span of one symbol's trades or quotes, in the stored columns) and
`storage_table` are shared with `massive heal` (mesh/fetcher/heal.py), which puts what it fetches
into the recording itself instead of a separate dataset.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from mesh import datasets as shared
from mesh.bar_schema import SCHEMA_VERSION
from mesh.datasets import DatasetKind, TableKind, atomic, layout, storage
from mesh.datasets.columns import QUOTES, STORAGE, TRADES
from mesh.fetcher import datasets
from mesh.fetcher.errors import QuotaExceeded
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.rest import RestClient

KINDS = {"trade": TRADES, "quote": QUOTES}


def _field(gap: Any, name: str) -> Any:
    return gap[name] if isinstance(gap, dict) else getattr(gap, name)


def _ns(value: Any) -> int:
    if hasattr(value, "value"):  # pandas Timestamp
        return int(value.value)
    if hasattr(value, "timestamp"):  # datetime
        return int(round(value.timestamp() * 1e9))
    return int(value)


def merge_gaps(gaps: Iterable[Any]) -> tuple[list[tuple[str, str, int, int]], int]:
    """(symbol, kind, ts_from, ts_to) spans with overlaps merged, and how many gaps were skipped."""
    spans: dict[tuple[str, str], list[list[int]]] = {}
    skipped = 0
    for gap in gaps:
        kind = str(_field(gap, "kind"))
        lo, hi = _ns(_field(gap, "ts_from")), _ns(_field(gap, "ts_to"))
        if kind not in KINDS or hi < lo or lo <= 0:
            skipped += 1
            continue
        spans.setdefault((str(_field(gap, "symbol")), kind), []).append([lo, hi])
    out = []
    for (symbol, kind), items in sorted(spans.items()):
        items.sort()
        merged = [items[0]]
        for lo, hi in items[1:]:
            if lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        out += [(symbol, kind, lo, hi) for lo, hi in merged]
    return out, skipped


def fetch_span(
    client: RestClient,
    symbol: str,
    kind: str,
    lo: int,
    hi: int,
    *,
    recv_ns: int,
    edges: bool = False,
) -> dict[str, list[Any]]:
    """`symbol`'s trades or quotes (`kind` "trade" or "quote") with SIP time in [lo, hi] (`edges`)
    or strictly inside it (a gap's ends are events that were received), as stored columns."""
    fetch = client.trades if kind == "trade" else client.quotes
    got = fetch(symbol, lo, hi, recv_ns=recv_ns)
    keep = [i for i, ts in enumerate(got["ts_event"]) if edges or lo < ts < hi]
    return {col: [values[i] for i in keep] for col, values in got.items()}


def storage_table(table_name: str, cols: dict[str, list[Any]]) -> pa.Table:
    """Columns of trades or quotes as a table in the stored schema (mesh/datasets/columns.py)."""
    schema = STORAGE[table_name]
    return pa.table(
        {
            f.name: pa.array(
                cols[f.name], f.type if not pa.types.is_timestamp(f.type) else pa.int64()
            )
            for f in schema
        }
    ).cast(schema)


def write_backfill(
    columns: dict[str, dict[str, list[Any]]], data_dir: Path, name: str, report: dict[str, Any]
) -> Path:
    """The backfilled events as a dataset laid out like a recording's tables (`trades/part-000001.parquet`).

    Each file is written under a hidden name and renamed, then the manifest (which lists them).
    """
    folder = datasets.historical_dir(data_dir) / name
    files, symbols, times = [], set(), []
    for table_name, cols in columns.items():
        if not cols["symbol"]:
            continue
        table = storage_table(table_name, cols)
        rel = layout.part_file(table_name, 1)
        atomic.write_parquet(folder / rel, table)
        files.append(rel)
        symbols |= set(cols["symbol"])
        times += [min(cols["ts_event"]), max(cols["ts_event"])]
        report["rows"][table_name] = table.num_rows
    manifest = {
        "format": datasets.FORMAT,
        "schema_version": SCHEMA_VERSION,
        "kind": str(DatasetKind.BACKFILL),
        "name": name,
        "files": files,
        "symbols": sorted(symbols),
        "first_event_ns": min(times) if times else None,
        "last_event_ns": max(times) if times else None,
        "gaps": report["gaps"],
        "requests": report["requests"],
        "rows": report["rows"],
        "rest_calls": report["rest_calls"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": "rest",
    }
    atomic.write_json(folder / datasets.MANIFEST, manifest)
    return folder


def gaps_from_recording(session: Path) -> list[dict[str, Any]]:
    """The quote and trade gaps a recording session holds (its gaps table); DatasetError if damaged."""
    gaps = shared.open_path(Path(session)).table(TableKind.GAPS)
    if gaps is None:
        return []
    table = shared.read_table(gaps, columns=["kind", "ts_from", "ts_to"])
    table = table.set_column(2, "ts_from", table["ts_from"].cast(pa.int64())).set_column(
        3, "ts_to", table["ts_to"].cast(pa.int64())
    )
    return [r for r in table.to_pylist() if r["kind"] in KINDS]


def backfill(
    gaps: Iterable[Any],
    config: Any,
    *,
    name: str | None = None,
    ledger: QuotaLedger | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[float, str], None] | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Fetch the events missing in `gaps`; writes data/historical/<name>/{trades,quotes}/part-000001.parquet."""
    if not dry_run:
        storage.require_local(config.data_location, "a gap backfill")
    ledger = ledger or QuotaLedger.for_config(config)
    spans, skipped = merge_gaps(gaps)
    left, _ = ledger.rest_room()
    report: dict[str, Any] = {
        "gaps": len(spans) + skipped,
        "requests": len(spans),
        "skipped": skipped,
        "rest_calls_needed_at_least": len(spans),
        "rest_calls_left_today": left,
        "rest_calls": 0,
        "rows": {"trades": 0, "quotes": 0},
    }
    if not spans:
        report.update(ok=True, message="no quote or trade gaps to backfill")
        return report
    try:
        ledger.check_rest(len(spans))
    except QuotaExceeded as exc:
        report.update(ok=False, message=f"the REST quota would not allow this backfill: {exc}")
        return report
    if dry_run:
        report.update(ok=True, message=f"would send at least {len(spans)} REST call(s)")
        return report
    columns: dict[str, dict[str, list[Any]]] = {
        TRADES: {f.name: [] for f in STORAGE[TRADES]},
        QUOTES: {f.name: [] for f in STORAGE[QUOTES]},
    }
    recv = time.time_ns()
    client = RestClient(config.rest_url, config.api_key, ledger, cancel=cancel)
    try:
        for index, (symbol, kind, lo, hi) in enumerate(spans):
            if progress is not None:
                progress(index / len(spans), f"{symbol} {kind}s {index + 1}/{len(spans)}")
            got = fetch_span(client, symbol, kind, lo, hi, recv_ns=recv)
            for col, values in got.items():
                columns[KINDS[kind]][col] += values
    finally:
        report["rest_calls"] = client.calls
        client.close()
    name = datasets.check_name(name or f"backfill-{time.strftime('%Y%m%d-%H%M%S')}")
    folder = write_backfill(columns, config.data_dir, name, report)
    report.update(
        ok=True,
        path=str(folder),
        name=name,
        message=f"backfilled {report['rows']['trades']} trade(s) and {report['rows']['quotes']} quote(s) with {report['rest_calls']} REST call(s)",
    )
    return report
