"""`manifest.json`: what a recording holds, readable without opening a single Parquet file.

The manifest is derived from the Parquet files (they are the truth): it can always be rebuilt
from them (`scan`), which is what recovery does after a crash. It is rewritten, all or nothing,
after every promoted slice, so it is never more than one slice behind.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mesh.bar_schema import SCHEMA_VERSION
from mesh.datasets.layout import MANIFEST as MANIFEST  # the recorder's modules take these from here
from mesh.datasets.layout import DatasetKind
from mesh.datasets.layout import part_name as part_name
from mesh.datasets.layout import part_number as part_number
from mesh.recorder.bars import BAR_TABLES
from mesh.recorder.columns import GAPS, QUOTES, TABLES, TRADES
from mesh.recorder.store import Store

FORMAT = 1  # the layout of this file; `schema_version` is the data's (mesh/bar_schema.py)
MAX_GAPS_LISTED = 10_000  # all of them are in the gaps table; the manifest lists the first ones


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return (
        datetime.fromtimestamp(ns / 1e9, tz=UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


@dataclass
class FileEntry:
    """One promoted Parquet file."""

    path: str  # relative to the session folder, e.g. "quotes/part-000003.parquet"
    table: str
    rows: int
    bytes: int
    first_event_ns: int | None = None
    last_event_ns: int | None = None


@dataclass
class Manifest:
    """The in-memory manifest of one session; `to_json` is what lands in manifest.json."""

    name: str
    location: str
    created_ns: int = field(default_factory=time.time_ns)
    state: str = "recording"  # recording | stopped | failed
    clean: bool = False  # the last run ended with a stop (not a crash, not a failure)
    symbols_requested: list[str] | None = None
    symbols: set[str] = field(default_factory=set)
    files: dict[str, FileEntry] = field(default_factory=dict)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    gaps_total: int = 0
    missing_total: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)
    bar_rows: dict[str, int] = field(default_factory=dict)
    bar_bytes: int = 0
    error: str | None = None

    # --- updating ---------------------------------------------------------------------------

    def add_file(self, entry: FileEntry, symbols: set[str] | None = None) -> None:
        self.files[entry.path] = entry
        if symbols:
            self.symbols |= symbols

    def add_gaps(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.gaps_total += 1
            self.missing_total += int(row.get("missing") or 0)
            if len(self.gaps) < MAX_GAPS_LISTED:
                self.gaps.append(dict(row))

    def start_run(self, now_ns: int) -> None:
        self.runs.append(
            {
                "started_ns": now_ns,
                "started": iso(now_ns),
                "ended_ns": None,
                "ended": None,
                "clean": False,
                "error": None,
            }
        )
        self.state, self.clean, self.error = "recording", False, None

    def end_run(
        self, now_ns: int, *, clean: bool, error: str | None = None, recovered: bool = False
    ) -> None:
        if not self.runs or self.runs[-1]["ended_ns"] is not None:
            self.start_run(now_ns)
        run = self.runs[-1]
        run.update(ended_ns=now_ns, ended=iso(now_ns), clean=clean, error=error)
        if recovered:
            run["recovered"] = True
        self.state = "failed" if error else "stopped"
        self.clean, self.error = clean, error

    # --- reading ----------------------------------------------------------------------------

    def rows(self) -> dict[str, int]:
        counts = {QUOTES: 0, TRADES: 0, GAPS: 0}  # paper tables only when recorded
        for entry in self.files.values():
            counts[entry.table] = counts.get(entry.table, 0) + entry.rows
        counts.update(self.bar_rows)
        return counts

    def event_range(self) -> tuple[int | None, int | None]:
        firsts = [e.first_event_ns for e in self.files.values() if e.first_event_ns is not None]
        lasts = [e.last_event_ns for e in self.files.values() if e.last_event_ns is not None]
        return (min(firsts) if firsts else None, max(lasts) if lasts else None)

    def to_json(self) -> dict[str, Any]:
        first, last = self.event_range()
        files = sorted(self.files.values(), key=lambda e: e.path)
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kind": str(DatasetKind.RECORDING),
            "name": self.name,
            "location": self.location,
            "created": iso(self.created_ns),
            "created_ns": self.created_ns,
            "updated": iso(time.time_ns()),
            "state": self.state,
            "clean": self.clean,
            "error": self.error,
            "symbols_requested": self.symbols_requested,
            "symbols": sorted(self.symbols),
            "first_event": iso(first),
            "last_event": iso(last),
            "first_event_ns": first,
            "last_event_ns": last,
            "time_unit": "ns since the Unix epoch, UTC; Parquet time columns are timestamp[ns, tz=UTC]",
            "rows": self.rows(),
            "bytes": sum(e.bytes for e in files) + self.bar_bytes,
            "files": [asdict(e) for e in files],
            "bars": {name: f"{name}.parquet" for name in self.bar_rows},
            "gaps_total": self.gaps_total,
            "missing_total": self.missing_total,
            "gaps": self.gaps,
            "runs": self.runs,
        }

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), indent=2).encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        manifest = cls(
            name=data["name"],
            location=data.get("location", ""),
            created_ns=int(data.get("created_ns") or time.time_ns()),
        )
        manifest.state = data.get("state", "stopped")
        manifest.clean = bool(data.get("clean", False))
        manifest.error = data.get("error")
        manifest.symbols_requested = data.get("symbols_requested")
        manifest.symbols = set(data.get("symbols", []))
        manifest.files = {f["path"]: FileEntry(**f) for f in data.get("files", [])}
        manifest.gaps = list(data.get("gaps", []))
        manifest.gaps_total = int(data.get("gaps_total", len(manifest.gaps)))
        manifest.missing_total = int(data.get("missing_total", 0))
        manifest.runs = list(data.get("runs", []))
        rows = data.get("rows", {})
        manifest.bar_rows = {name: int(rows.get(name, 0)) for name in data.get("bars", {})}
        manifest.bar_bytes = max(
            0, int(data.get("bytes", 0)) - sum(f.bytes for f in manifest.files.values())
        )
        return manifest


def load(store: Store, name: str) -> Manifest | None:
    """The session's manifest.json, or None if there is none (or it cannot be parsed)."""
    raw = store.read_bytes(f"{name}/{MANIFEST}")
    if raw is None:
        return None
    try:
        return Manifest.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return None


def save(store: Store, manifest: Manifest) -> int:
    return store.write_bytes(f"{manifest.name}/{MANIFEST}", manifest.dumps())


def describe_table(table: str, data: pa.Table) -> tuple[int | None, int | None, set[str]]:
    """(first ts_event, last ts_event, symbols) of a chunk of quotes or trades."""
    if table not in (QUOTES, TRADES) or data.num_rows == 0:
        return None, None, set()
    bounds = pc.min_max(data.column("ts_event").cast(pa.int64()))
    symbols = set(pc.unique(data.column("symbol")).to_pylist())
    return bounds["min"].as_py(), bounds["max"].as_py(), symbols


def scan(store: Store, name: str, previous: Manifest | None = None) -> Manifest:
    """Rebuild a session's manifest from its Parquet files (after a crash, or when it is missing).

    Keeps what only the manifest knows (creation time, runs, requested symbols) from `previous`.
    """
    manifest = Manifest(name=name, location=store.uri(name))
    if previous is not None:
        manifest.created_ns = previous.created_ns
        manifest.runs = [dict(run) for run in previous.runs]
        manifest.symbols_requested = previous.symbols_requested
        manifest.state, manifest.clean, manifest.error = (
            previous.state,
            previous.clean,
            previous.error,
        )
    for table in TABLES:
        for file_name, size in sorted(store.list_files(f"{name}/{table}").items()):
            if part_number(file_name) is None:
                continue
            rel = f"{table}/{file_name}"
            if table not in (QUOTES, TRADES, GAPS):  # paper trading's records: counted
                rows = store.parquet_file(f"{name}/{rel}").metadata.num_rows
                manifest.add_file(FileEntry(rel, table, rows, size))
                continue
            if table == GAPS:
                data = store.read_table(f"{name}/{rel}")
                manifest.add_file(FileEntry(rel, table, data.num_rows, size))
                manifest.add_gaps(gap_rows(data))
                continue
            data = store.read_table(f"{name}/{rel}", columns=["symbol", "ts_event"])
            first, last, symbols = describe_table(table, data)
            manifest.add_file(FileEntry(rel, table, data.num_rows, size, first, last), symbols)
    top = store.list_files(name)
    for bar_name in BAR_TABLES:
        rel = f"{name}/{bar_name}.parquet"
        if f"{bar_name}.parquet" in top:
            meta = store.parquet_file(rel).metadata
            manifest.bar_rows[bar_name] = meta.num_rows
            manifest.bar_bytes += top[f"{bar_name}.parquet"]
    return manifest


def gap_rows(data: pa.Table) -> list[dict[str, Any]]:
    """Gap table rows as JSON-ready dicts (times as ns integers)."""
    if data.num_rows == 0:
        return []
    data = data.set_column(
        data.schema.get_field_index("ts_from"), "ts_from", data.column("ts_from").cast(pa.int64())
    )
    data = data.set_column(
        data.schema.get_field_index("ts_to"), "ts_to", data.column("ts_to").cast(pa.int64())
    )
    return data.to_pylist()
