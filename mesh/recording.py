"""The seeds' recording API, kept: `WebSocketDataRecorder(symbols)` with `start()`, `stop()`,
`save_dataset(name)` and `get_recorded_dataframe()`.

    from mesh.recording import WebSocketDataRecorder

    recorder = WebSocketDataRecorder(symbols=["AAPL", "GOOGL"])
    recorder.start()
    # ... the mesh streams live data ...
    recorder.stop()
    path = recorder.save_dataset("live_session_20250104")
    quotes = recorder.get_recorded_dataframe()

It records from the bus in this process, with the same crash-safe session as `massive run
recorder` (write-ahead log, Parquet slices, bars, manifest), so a script needs no recorder
service; `read_recording` reads any session back as a pandas DataFrame.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from mesh import client, datasets
from mesh.bar_schema import BAR_SCHEMA
from mesh.config import Config, load_config
from mesh.datasets import storage
from mesh.datasets.columns import PAPER_TABLES, STORAGE
from mesh.recorder import manifest as mf
from mesh.recorder.bars import BAR_TABLES
from mesh.recorder.intake import PREFIXES, Intake
from mesh.recorder.promote import rebuild_bars, write_bars
from mesh.recorder.session import Session, check_name
from mesh.recorder.store import Store, open_session
from mesh.recorder.wal import DEFAULT_SYNC_INTERVAL

log = logging.getLogger(__name__)

TABLES = ("quotes", "trades", "gaps", *PAPER_TABLES, *BAR_TABLES)


class WebSocketDataRecorder:
    """Records the bus's quotes and trades for `symbols` (all if None) into a session."""

    def __init__(
        self,
        symbols: list[str] | str | None = None,
        *,
        config: Config | None = None,
        name: str | None = None,
        output: str | None = None,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        slice_seconds: float = 60.0,
    ) -> None:
        self.config = config or load_config()
        self.symbols = symbols
        self.name = check_name(name or time.strftime("live-%Y%m%d-%H%M%S"))
        self.output = output
        self.sync_interval = sync_interval
        self.slice_seconds = slice_seconds
        self.session: Session | None = None
        self.intake = Intake()
        self.error: str | None = None
        self._gaps_seen = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_recording(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Subscribe to the bus and record until `stop()`."""
        if self.is_recording:
            raise RuntimeError(f"already recording {self.name!r}")
        self.session = Session(
            self.name,
            data_dir=self.config.data_dir,
            output=self.output,
            symbols=self.symbols,
            sync_interval=self.sync_interval,
            slice_seconds=self.slice_seconds,
        ).open()
        self._stop.clear()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self.session, ready), name=f"recorder-{self.name}", daemon=True
        )
        self._thread.start()
        ready.wait(5)

    def _run(self, session: Session, ready: threading.Event) -> None:
        with client.Subscriber(
            PREFIXES, self.config.bus_sub, hwm=0, columnar=True, config=self.config
        ) as sub:
            ready.set()
            while not self._stop.is_set() and session.state == "recording":
                msg = sub.recv(timeout=0.1)
                try:
                    if msg is not None:
                        self.intake.handle(
                            session, msg, sub.stats.gaps - self._gaps_seen
                        )  # missing just before msg
                        self._gaps_seen = sub.stats.gaps
                    if session.rotation_due():
                        session.rotate()
                        session.promote_pending()
                except OSError as exc:
                    self.error = str(exc)
                    log.error("recording %s failed: %s", session.name, exc)
                    session.fail(self.error)
                    return
            # drain what already arrived before stopping
            while session.state == "recording" and (msg := sub.recv(timeout=0.05)) is not None:
                self.intake.handle(session, msg, 0)

    def stop(self) -> dict[str, Any]:
        """Stop recording; the session's Parquet files, bars and manifest are complete on return."""
        if self.session is None:
            raise RuntimeError("not started")
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.session.state == "recording":
            self.session.stop()
        return self.session.status()

    def save_dataset(self, name: str | None = None) -> str:
        """The session's folder (or s3:// URI); with a new `name`, the recording moves there.

        An existing `name` is appended to: its files are kept and this recording's are added.
        """
        if self.session is None:
            raise RuntimeError("nothing recorded yet: call start() and stop() first")
        if self.is_recording:
            self.stop()
        store = self.session.store
        if name is None or name == self.name:
            return store.uri(self.name)
        check_name(name)
        _move_session(store, self.name, name)
        self.name = name
        return store.uri(name)

    def get_recorded_dataframe(self, table: str = "quotes") -> Any:
        """The recorded `table` (quotes, trades, gaps or a bars table) as a pandas DataFrame."""
        if self.session is None:
            raise RuntimeError("nothing recorded yet")
        return read_recording(_session_location(self.session.store, self.name), table)

    @property
    def stats(self) -> dict[str, Any]:
        """Live counters, as `massive record status` shows them."""
        status = self.session.status() if self.session else {}
        return {
            **status,
            "unexpected": self.intake.unexpected,
            "rejected": self.intake.rejected,
            "bus_gaps": self.intake.bus_gaps,
            "error": self.error or status.get("error"),
        }


def read_recording(
    recording: str | Path, table: str = "quotes", *, capture_only: bool = False
) -> Any:
    """A recorded table as a pandas DataFrame; `recording` is a session folder, s3:// URI or NAME.

    Local recordings are read through `mesh.datasets` (the same checks and conversions as every
    other reader); raises `mesh.datasets.DatasetError` when the recording is missing or damaged.
    Quotes and trades include the rows a heal added (in time among the captured ones), unless
    `capture_only`; the bar tables are rebuilt by each heal, so they agree.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    text = str(recording)
    if text.startswith("s3://"):
        return _read_remote(text, table)
    bare = not isinstance(recording, Path) and "/" not in text
    spec: str | Path = f"recording:{text}" if bare else Path(text)
    config = load_config()
    folder = storage.local_datasets(
        config.data_location, config.data_dir, str(spec) if bare else None
    )  # MESH_DATA_DIR=s3://...: a local copy of the recording
    dataset = datasets.resolve(spec, folder, capture_only=capture_only)
    found = dataset.tables.get(table)
    if found is None:
        return _empty(table).to_pandas()
    return datasets.read_table(found).to_pandas()


def _read_remote(location: str, table: str) -> Any:
    """A table of a recording in object storage, through the recorder's store."""
    import pyarrow as pa

    store, name = open_session(location)
    if table.startswith(("bars", "mid_bars")):
        rel = f"{name}/{table}.parquet"
        data = store.read_table(rel) if store.exists(rel) else None
    else:
        files = sorted(
            f for f in store.list_files(f"{name}/{table}") if mf.part_number(f) is not None
        )
        data = (
            pa.concat_tables([store.read_table(f"{name}/{table}/{f}") for f in files])
            if files
            else None
        )
    return (data if data is not None else _empty(table)).to_pandas()


def _empty(table: str) -> Any:
    return (STORAGE.get(table) or BAR_SCHEMA).empty_table()


def _session_location(store: Any, name: str) -> str:
    """The session's location including the output URI's options (endpoint etc.)."""
    if store.is_local:
        return store.uri(name)
    base, sep, query = str(store.raw_location).partition("?")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


def _move_session(store: Store, source: str, target: str) -> None:
    """Move session `source` into `target` (appending after target's own parts)."""
    previous = mf.load(store, target)
    target_parts = [
        mf.part_number(f) or 0
        for t in ("quotes", "trades", "gaps")
        for f in store.list_files(f"{target}/{t}")
    ]
    offset = max(target_parts, default=0)
    for table in ("quotes", "trades", "gaps"):
        for file_name in sorted(store.list_files(f"{source}/{table}")):
            number = mf.part_number(file_name)
            if number is not None:
                store.makedirs(f"{target}/{table}")
                store.move(
                    f"{source}/{table}/{file_name}",
                    f"{target}/{table}/{mf.part_name(number + offset)}",
                )
    moved = mf.load(store, source)
    manifest = mf.scan(store, target, previous)
    if moved is not None:
        manifest.runs += moved.runs
        manifest.state, manifest.clean, manifest.error = moved.state, moved.clean, moved.error
        if previous is None:
            manifest.created_ns, manifest.symbols_requested = (
                moved.created_ns,
                moved.symbols_requested,
            )
    manifest.bar_rows, manifest.bar_bytes = write_bars(
        store, target, rebuild_bars(store, target, manifest)
    )
    mf.save(store, manifest)
    for file_name in store.list_files(source):
        store.delete(f"{source}/{file_name}")
    if store.is_local:
        for sub in ("quotes", "trades", "gaps", "wal", ""):
            try:
                Path(store.path(f"{source}/{sub}" if sub else source)).rmdir()
            except OSError:
                pass
