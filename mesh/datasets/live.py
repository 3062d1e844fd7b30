"""Whether a recording is being written right now, or was left by a recorder that died.

A recording's manifest says `state: recording` with an open run both while the recorder writes
it and after the recorder was killed mid-session (until the recorder starts again and recovers
it). What changes a recording from outside (`massive heal`) must tell those apart, so the recorder
holds an advisory lock on `wal/.recording.lock` for as long as it records a session; the kernel
releases it when the process ends, `kill -9` included, so a held lock means a live recorder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from mesh.datasets.layout import is_hidden

WAL = "wal"  # the recorder's write-ahead folder inside a session
LOCK = ".recording.lock"
_NOTE = "session.json"  # the recorder's note about a session in progress (not data)


class RecordingState(StrEnum):
    RECORDING = "recording"  # a recorder is writing it now
    INTERRUPTED = (
        "interrupted"  # its recorder died; the write-ahead log holds rows not yet in Parquet
    )
    RECORDED = "recorded"  # nothing writes it: its Parquet files are everything it has


def hold(session: Path, *, wait: float = 1.0) -> int | None:
    """Take the session's recording lock (the recorder, as it opens a session); its fd, or None
    if another process holds it for longer than `wait` seconds."""
    directory = Path(session) / WAL
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.01)


def release(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _held(path: Path) -> bool | None:
    """Whether someone holds the lock at `path` (None: there is no lock file, or none that locks).

    Opened without blocking: a FIFO put where the lock file goes would otherwise wait for a writer
    forever (and with it `massive heal` or the fetcher's automatic scan)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)


def recording_state(session: Path, manifest: Mapping[str, Any]) -> RecordingState:
    """Whether `session` is being recorded, was interrupted with rows still in its log, or is done.

    A session whose manifest says it records, whose last run has no end and whose lock nobody
    holds was cut short by a crash: it counts as recorded up to the crash when its write-ahead
    log is empty, and as interrupted (the recorder's next start promotes the rest) when it is not.
    Without a lock file (a recorder from before the lock), an open run with rows in its log counts
    as recording.
    """
    wal = Path(session) / WAL
    held = _held(wal / LOCK)
    if held:
        return RecordingState.RECORDING
    runs = manifest.get("runs")
    last = runs[-1] if isinstance(runs, list) and runs and isinstance(runs[-1], dict) else {}
    open_run = manifest.get("state") == "recording" and last.get("ended_ns") is None
    if not open_run:
        return RecordingState.RECORDED
    if _log_holds_rows(wal):
        return RecordingState.RECORDING if held is None else RecordingState.INTERRUPTED
    return RecordingState.RECORDED


def _log_holds_rows(wal: Path) -> bool:
    try:
        return any(not is_hidden(p.name) and p.name != _NOTE for p in wal.iterdir())
    except OSError:
        return False
