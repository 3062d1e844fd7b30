"""One recording session: bus batches in, durable write-ahead log, Parquet slices out.

`Session` is the recorder without the bus, so the service, the Python API
(`mesh.recording.WebSocketDataRecorder`) and the tests drive the same code. Its life:

    open()                  recover leftovers of a crash, load or start the manifest, open the WAL
    write(table, batch)     append a bus batch to the WAL (the hot path: one Arrow array per column)
    rotate()                close the time slice; its segment waits for promotion
    promote_pending()       Parquet files, bars and manifest for closed slices (a worker thread)
    stop() / fail(error)    finish cleanly / keep what was written and say why it stopped

`write` and `rotate` are called from one thread, `promote_pending` from one other thread.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mesh.datasets import live
from mesh.recorder import manifest as mf
from mesh.recorder import recovery
from mesh.recorder.bars import BarBuilder
from mesh.recorder.columns import (
    GAPS,
    TABLES,
    gap_record_batch,
    records_batch,
    to_record_batch,
)
from mesh.recorder.promote import promote_segment, rebuild_bars, write_bars
from mesh.recorder.store import Store
from mesh.recorder.wal import DEFAULT_SYNC_INTERVAL, Wal, list_segments

log = logging.getLogger(__name__)

DEFAULT_SLICE_SECONDS = 60.0
DEFAULT_SLICE_ROWS = 2_000_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class SessionError(ValueError):
    """A session that cannot start (bad name, unusable location); the message says why."""


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise SessionError(
            f"invalid recording name {name!r}: use letters, digits, '.', '_' and '-' (at most 128)"
        )
    return name


def parse_symbols(symbols: str | list[str] | None) -> list[str] | None:
    """`"AAPL, msft"` or a list -> sorted unique upper-case symbols; None or empty -> all symbols."""
    if symbols is None:
        return None
    items = symbols.split(",") if isinstance(symbols, str) else list(symbols)
    cleaned = sorted({s.strip().upper() for s in items if s and s.strip()})
    return cleaned or None


class Session:
    """A recording in progress (see the module docstring for its life cycle)."""

    def __init__(
        self,
        name: str,
        *,
        data_dir: Path | str,
        output: str | None = None,
        symbols: str | list[str] | None = None,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        slice_seconds: float = DEFAULT_SLICE_SECONDS,
        slice_rows: int = DEFAULT_SLICE_ROWS,
    ) -> None:
        self.name = check_name(name)
        self.data_dir = Path(data_dir)
        self.output = output
        self.symbols = parse_symbols(symbols)
        self.sync_interval = sync_interval
        self.slice_seconds = slice_seconds
        self.slice_rows = slice_rows
        self.wal_dir = recovery.wal_dir(self.data_dir, name)
        self.state = "new"  # new | recording | stopping | stopped | failed
        self.error: str | None = None
        self.started_ns = 0
        self.ended_ns: int | None = None
        self.rows: dict[str, int] = dict.fromkeys(TABLES, 0)  # written to the WAL this run
        self.rows_promoted = 0
        self.parquet_bytes = 0
        self.rejected = 0
        self.recovered: recovery.Recovered | None = None
        self._filter = pa.array(self.symbols, type=pa.string()) if self.symbols else None
        self._queue: list[int] = []  # closed segments waiting for promotion
        self._lock = threading.Lock()  # guards the manifest
        self._promote_lock = threading.Lock()
        self._bars: BarBuilder | None = None
        self._segment_rows = 0
        self._slice_started = time.monotonic()
        self._live: int | None = None  # the recording lock (mesh.datasets.live) while recording
        self.store: Store
        self.manifest: mf.Manifest
        self.wal: Wal

    # --- life cycle ---------------------------------------------------------------------------

    def open(self) -> Session:
        """Recover leftovers, load or create the manifest, open the write-ahead log."""
        self.store = Store(self.output or recovery.recordings_dir(self.data_dir))
        if self.wal_dir.exists() and recovery.pending(self.data_dir).count(self.name):
            self.recovered = recovery.recover(self.data_dir, self.name, self.output)
        manifest = mf.load(self.store, self.name)
        listed = self._listed_parts()
        if manifest is None or set(manifest.files) != {rel for rel, _ in listed}:
            manifest = mf.scan(self.store, self.name, manifest)
        manifest.location = self.store.uri(self.name)
        if self.symbols is not None or manifest.symbols_requested is None or not manifest.files:
            manifest.symbols_requested = self.symbols
        self.started_ns = time.time_ns()
        manifest.start_run(self.started_ns)
        manifest.runs[-1]["symbols_requested"] = self.symbols
        self.manifest = manifest
        first_segment = (
            max([n for _, n in listed] + list(list_segments(self.wal_dir)), default=0) + 1
        )
        recovery.write_meta(self.wal_dir, self._meta("recording"))
        self._live = live.hold(self.wal_dir.parent)
        recovery.reserve_space(self.wal_dir)
        self.store.makedirs(self.name)
        mf.save(self.store, manifest)
        self.wal = Wal(self.wal_dir, first_segment, self.sync_interval)
        self._slice_started = time.monotonic()
        self.state = "recording"
        return self

    def _meta(self, state: str) -> dict[str, Any]:
        """The local note about this session (`recovery.write_meta`)."""
        meta = {
            "name": self.name,
            "output": self.output,
            "symbols": self.symbols,
            "state": state,
            "started_ns": self.started_ns,
        }
        if state == "failed":
            meta.update(error=self.error, ended_ns=self.ended_ns)
        return meta

    def _listed_parts(self) -> list[tuple[str, int]]:
        parts = []
        for table in TABLES:
            for file_name in self.store.list_files(f"{self.name}/{table}"):
                number = mf.part_number(file_name)
                if number is not None:
                    parts.append((f"{table}/{file_name}", number))
        return parts

    def stop(self) -> dict[str, Any]:
        """Close the last slice, promote everything, write bars and the final manifest."""
        self.close()
        return self.finish()

    def close(self) -> None:
        """Stop taking batches and close the write-ahead log (call it from the writing thread)."""
        if self.state != "recording":
            raise SessionError(f"session {self.name!r} is {self.state}, not recording")
        self.state = "stopping"
        recovery.write_meta(self.wal_dir, self._meta("stopping"))
        self._close_wal()

    def finish(self) -> dict[str, Any]:
        """After `close`: promote everything, write bars and the final manifest (any thread)."""
        self.promote_pending()
        self.ended_ns = time.time_ns()
        with self._lock:
            self.manifest.end_run(self.ended_ns, clean=True)
            mf.save(self.store, self.manifest)
        recovery.finish_local(self.wal_dir)
        self.state = "stopped"
        live.release(self._live)
        return self.status()

    def fail(self, error: str, *, promote: bool = True) -> None:
        """Stop recording because of `error`, keeping everything already written.

        Call it from the writing thread; with `promote=False` the caller runs `finish_failed`
        later from a worker thread. Whatever can still be promoted is; segments that cannot
        (a full disk) stay in the write-ahead log, and the next start of the recorder promotes them.
        """
        if self.state in ("stopped", "failed"):
            return
        writing = self.state == "recording"
        self.state, self.error = "failed", error
        self.ended_ns = time.time_ns()
        recovery.release_space(self.wal_dir)  # room to write down why, even on a full disk
        try:  # first the local note: with it, a restart never resumes this session and keeps the error
            recovery.write_meta(self.wal_dir, self._meta("failed"))
        except OSError as exc:
            log.warning("%s: could not note the failure in %s (%s)", self.name, self.wal_dir, exc)
        if writing:
            try:
                self._close_wal()
            except OSError:
                pass
        if promote:
            self.finish_failed()

    def finish_failed(self) -> None:
        """After `fail`: mark the manifest failed with the error, then promote what can be.

        The manifest is saved before promotion, which may fill the disk again; promotion saves
        it once more with the files it added.
        """
        with self._lock:
            self.manifest.end_run(self.ended_ns or time.time_ns(), clean=False, error=self.error)
            try:
                mf.save(self.store, self.manifest)
            except OSError as exc:
                log.warning(
                    "%s: could not update the manifest (%s); the next start of the recorder will",
                    self.name,
                    exc,
                )
        try:
            self.promote_pending()
        except Exception as exc:  # the disk may still be full: the WAL keeps the rest
            log.warning(
                "%s: could not promote after the failure (%s); the write-ahead log keeps it for the next start",
                self.name,
                exc,
            )
        live.release(self._live)

    def _close_wal(self) -> None:
        number, tables = self.wal.close()
        self._segment_rows = 0
        if tables:
            self._queue.append(number)
        if self.wal.error is not None:
            raise self.wal.error

    # --- the hot path -------------------------------------------------------------------------

    def write(self, table: str, batch: Any) -> int:
        """Append a QuoteBatch or TradeBatch (filtered to the session's symbols); returns rows kept.

        Raises `columns.RejectedBatch` for a batch that cannot be stored (the caller counts and
        skips it) and `wal.WalError` when the disk refuses (the caller fails the session).
        """
        record = to_record_batch(table, batch)
        if self._filter is not None:
            record = record.filter(pc.is_in(record.column(0), value_set=self._filter))
        rows = record.num_rows
        if rows:
            self.wal.append(table, record)
            self.rows[table] += rows
            self._segment_rows += rows
        return rows

    def write_records(self, table: str, records: list[Any]) -> int:
        """Append paper trading's records (Order, Fill or Pnl, one row each) to `table`, filtered
        to the session's symbols like quotes and trades; returns rows kept.

        Raises `columns.RejectedBatch` and `wal.WalError` as `write` does.
        """
        if self.symbols is not None:
            wanted = set(self.symbols)
            records = [r for r in records if r.symbol in wanted]
        if not records:
            return 0
        self.wal.append(table, records_batch(table, records))
        self.rows[table] += len(records)
        self._segment_rows += len(records)
        return len(records)

    def write_gaps(self, rows: list[dict[str, Any]]) -> int:
        """Record gaps (ingest's, or sequence gaps seen on the bus)."""
        if self._filter is not None:
            wanted = set(self.symbols or ())
            rows = [row for row in rows if not row.get("symbol") or row["symbol"] in wanted]
        if not rows:
            return 0
        self.wal.append(GAPS, gap_record_batch(rows))
        self.rows[GAPS] += len(rows)
        self._segment_rows += len(rows)
        return len(rows)

    def rotation_due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if not self._segment_rows:
            self._slice_started = now
            return False
        return (
            now - self._slice_started >= self.slice_seconds or self._segment_rows >= self.slice_rows
        )

    def rotate(self) -> int | None:
        """Close the current slice; returns its segment number (None if it was empty)."""
        self._slice_started = time.monotonic()
        if not self._segment_rows:
            return None
        number, tables = self.wal.rotate()
        self._segment_rows = 0
        if tables:
            self._queue.append(number)
        return number

    # --- promotion (worker thread) ------------------------------------------------------------

    def promote_pending(self) -> int:
        """Promote every closed slice, then rewrite bars and the manifest; returns slices promoted."""
        with self._promote_lock:
            if self._bars is None:
                with self._lock:
                    snapshot = mf.Manifest(self.name, "", files=dict(self.manifest.files))
                self._bars = rebuild_bars(self.store, self.name, snapshot)
            done = 0
            while self._queue:
                number = self._queue[0]
                files = list_segments(self.wal_dir).get(number, {})
                result = promote_segment(
                    self.store, self.name, number, files, bar_builder=self._bars
                )
                with self._lock:
                    for entry in result.files:
                        self.manifest.add_file(entry)
                        self.parquet_bytes += entry.bytes
                    self.manifest.symbols |= result.symbols
                    self.manifest.add_gaps(result.gaps)
                self.rows_promoted += result.rows
                self._queue.pop(0)
                done += 1
            if done or not self.manifest.bar_rows:
                self._bars.commit()
                bar_rows, bar_bytes = write_bars(self.store, self.name, self._bars)
                with self._lock:
                    self.manifest.bar_rows, self.manifest.bar_bytes = bar_rows, bar_bytes
                    mf.save(self.store, self.manifest)
            return done

    @property
    def promotion_due(self) -> bool:
        return bool(self._queue)

    # --- reporting ----------------------------------------------------------------------------

    def wal_bytes_on_disk(self) -> int:
        """Bytes of write-ahead segments not yet promoted (promoted ones are deleted)."""
        total = 0
        for files in list_segments(self.wal_dir).values():
            for path in files.values():
                try:
                    total += path.stat().st_size
                except FileNotFoundError:
                    pass  # promoted meanwhile
        return total

    def status(self) -> dict[str, Any]:
        now = time.time_ns()
        end = self.ended_ns or now
        with self._lock:
            manifest = self.manifest.to_json() if hasattr(self, "manifest") else {}
        wal = getattr(self, "wal", None)
        depth_segments = len(self._queue) + (1 if self._segment_rows else 0)
        return {
            "session": self.name,
            "state": self.state,
            "error": self.error,
            "location": manifest.get("location"),
            "symbols_requested": self.symbols,
            "started": mf.iso(self.started_ns) if self.started_ns else None,
            "duration_s": round((end - self.started_ns) / 1e9, 3) if self.started_ns else 0.0,
            "rows": dict(self.rows),
            "rows_promoted": self.rows_promoted,
            "rows_total": manifest.get("rows", {}),
            "wal_bytes": wal.bytes_written if wal else 0,
            "parquet_bytes": self.parquet_bytes,
            "bytes_written": (wal.bytes_written if wal else 0) + self.parquet_bytes,
            "bytes_stored": int(manifest.get("bytes", 0)) + self.wal_bytes_on_disk(),
            "wal_bytes_on_disk": self.wal_bytes_on_disk(),
            "files": len(manifest.get("files", [])),
            "wal_depth": {
                "segments": depth_segments,
                "unsynced_bytes": wal.unsynced_bytes if wal else 0,
                "at_risk_ms": round(wal.at_risk_ms, 1) if wal else 0.0,
            },
            "sync_interval_s": self.sync_interval,
            "gaps": manifest.get("gaps_total", 0),
            "missing": manifest.get("missing_total", 0),
            "symbols": len(manifest.get("symbols", [])),
            "first_event": manifest.get("first_event"),
            "last_event": manifest.get("last_event"),
        }
