"""The write-ahead log: every batch reaches the disk before anything else happens to it.

A plain `ParquetWriter` killed mid-recording leaves a file with no footer, which nothing can read.
So the recorder first appends each batch to an Arrow IPC stream (one file per table per time
slice, a "segment"), and only later promotes closed segments to Parquet (`promote.py`). An IPC
stream is readable up to its last complete message, so a crash loses at most what had not yet
been handed to the kernel.

Each batch goes to the kernel with one `write` call as soon as it arrives (a `kill -9` loses
nothing that was written). A background thread calls `fsync` every `sync_interval` seconds
(default 0.2 s), which bounds what a power cut can take; `sync_interval=0` fsyncs every batch.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from mesh.files import fsync_dir
from mesh.recorder.columns import WAL

log = logging.getLogger(__name__)

SUFFIX = ".arrows"
DEFAULT_SYNC_INTERVAL = 0.2
_NAME = re.compile(r"^([a-z_0-9]+)-(\d{6,})\.arrows$")
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"

# The one call that puts bytes on disk; a module attribute so that tests can make the disk "full".
_write = os.write


class WalError(OSError):
    """The log cannot be written (disk full, permission denied, I/O error); `errno` says which."""


def segment_name(table: str, number: int) -> str:
    return f"{table}-{number:06d}{SUFFIX}"


def parse_segment_name(name: str) -> tuple[str, int] | None:
    match = _NAME.match(name)
    return (match.group(1), int(match.group(2))) if match else None


def list_segments(directory: Path) -> dict[int, dict[str, Path]]:
    """Segment number -> {table: path} for every segment file in `directory`."""
    found: dict[int, dict[str, Path]] = {}
    if not directory.is_dir():
        return found
    for path in directory.iterdir():
        parsed = parse_segment_name(path.name)
        if parsed and parsed[0] in WAL:
            found.setdefault(parsed[1], {})[parsed[0]] = path
    return dict(sorted(found.items()))


def _write_all(fd: int, data: pa.Buffer | bytes) -> int:
    view = memoryview(data)
    total = len(view)
    while view:
        written = _write(fd, view)
        view = view[written:]
    return total


@dataclass
class SegmentRead:
    """What a segment held: its batches, and whether the file ended in the middle of one."""

    batches: list[pa.RecordBatch]
    rows: int
    torn: bool


def read_segment(path: Path) -> SegmentRead:
    """Every complete batch in a segment; a torn tail (crash mid-write) is dropped, not fatal."""
    batches: list[pa.RecordBatch] = []
    torn = False
    try:
        source = pa.memory_map(str(path))
    except (OSError, pa.ArrowException):
        return SegmentRead([], 0, True)
    if source.size() == 0:
        return SegmentRead([], 0, False)
    try:
        reader = pa.ipc.open_stream(source)
        while True:
            batches.append(reader.read_next_batch())
    except StopIteration:
        pass
    except (OSError, pa.ArrowException):
        torn = True
    return SegmentRead(batches, sum(b.num_rows for b in batches), torn)


def iter_segment(path: Path) -> Iterator[pa.RecordBatch]:
    yield from read_segment(path).batches


class Wal:
    """Appends record batches to the current segment (one file per table); rotates on request.

    `append` is called from one thread (the recorder's loop); `sync` may run in the background
    thread this class starts. Any write or fsync failure is kept and raised as `WalError` by the
    next `append`, so a full disk stops the recording loudly instead of silently.
    """

    def __init__(
        self, directory: Path, segment: int, sync_interval: float = DEFAULT_SYNC_INTERVAL
    ) -> None:
        self.directory = directory
        self.segment = segment
        self.sync_interval = sync_interval
        self.bytes_written = 0
        self.rows_written = 0
        self._appended = 0  # bytes of batches appended (written only by `append`)
        self._synced = 0  # of those, bytes known to be on disk (written only under the lock)
        self.syncs = 0
        self.last_sync_ns = time.time_ns()
        self.error: WalError | None = None
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        directory.mkdir(parents=True, exist_ok=True)
        self._thread: threading.Thread | None = None
        if sync_interval > 0:
            self._thread = threading.Thread(target=self._sync_loop, name="wal-sync", daemon=True)
            self._thread.start()

    # --- writing ---------------------------------------------------------------------------

    def append(self, table: str, batch: pa.RecordBatch) -> int:
        """Write one batch to the current segment; returns the bytes written."""
        if self.error is not None:
            raise self.error
        try:
            fd = self._fds.get(table)
            if fd is None:
                fd = self._open(table)
            written = _write_all(fd, batch.serialize())
            self._appended += written
            if self.sync_interval <= 0:
                self.sync()
        except OSError as exc:
            self.error = _wal_error(exc, self.directory)
            raise self.error from None
        self.bytes_written += written
        self.rows_written += batch.num_rows
        return written

    def _open(self, table: str) -> int:
        path = self.directory / segment_name(table, self.segment)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if os.fstat(fd).st_size == 0:
            self.bytes_written += _write_all(fd, WAL[table].serialize())
        else:  # never append to a segment left by another run: its tail may be torn
            os.close(fd)
            raise WalError(errno.EEXIST, f"write-ahead segment {path} already exists")
        fsync_dir(self.directory)
        with self._lock:
            self._fds[table] = fd
        return fd

    # --- durability ------------------------------------------------------------------------

    def sync(self) -> None:
        """fsync every open segment file (called by the timer thread, by `rotate` and `close`)."""
        with self._lock:
            appended = self._appended
            for fd in self._fds.values():
                os.fsync(fd)
            self._synced = appended
            self.syncs += 1
            self.last_sync_ns = time.time_ns()

    def _sync_loop(self) -> None:
        while not self._closed.wait(self.sync_interval):
            if self.unsynced_bytes:
                try:
                    self.sync()
                except OSError as exc:
                    self.error = _wal_error(exc, self.directory)
                    log.error("write-ahead log fsync failed: %s", self.error)
                    return

    @property
    def unsynced_bytes(self) -> int:
        return self._appended - self._synced

    @property
    def at_risk_ms(self) -> float:
        """How old the oldest unsynced data may be (0 when everything is on disk)."""
        return 0.0 if not self.unsynced_bytes else (time.time_ns() - self.last_sync_ns) / 1e6

    # --- segments --------------------------------------------------------------------------

    def rotate(self) -> tuple[int, list[str]]:
        """Close the current segment (fsync'd) and start the next; returns (closed number, tables)."""
        closed, tables = self._close_files()
        self.segment += 1
        return closed, tables

    def close(self) -> tuple[int, list[str]]:
        """Stop the timer and close the current segment; returns (its number, tables written)."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self._close_files()

    def _close_files(self) -> tuple[int, list[str]]:
        with self._lock:
            fds, self._fds = self._fds, {}
            error: OSError | None = None
            for fd in fds.values():
                try:
                    if self.error is None:
                        _write_all(fd, _EOS)
                        os.fsync(fd)
                except OSError as exc:
                    error = exc
                finally:
                    os.close(fd)
            self._synced = self._appended
        if error is not None and self.error is None:
            self.error = _wal_error(error, self.directory)
        return self.segment, sorted(fds)


def _wal_error(exc: OSError, directory: Path) -> WalError:
    if isinstance(exc, WalError):
        return exc
    reason = {
        errno.ENOSPC: "disk full",
        errno.EACCES: "permission denied",
        errno.EROFS: "read-only filesystem",
        errno.EDQUOT: "disk quota exceeded",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return WalError(
        exc.errno or errno.EIO,
        f"cannot write the recording's write-ahead log in {directory}: {reason}",
    )
