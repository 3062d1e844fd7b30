"""Recovery after a crash: finish what a killed recorder left in its write-ahead log.

On start the recorder looks for `data/recordings/*/wal/`. For each, it removes half-written
temporary files, promotes every segment still there (idempotently, see `promote.py`), rebuilds the
manifest and bars from the Parquet files, and notes the interruption as a gap (kind "recorder")
so that users see when nothing was recorded. A session that was recording when it died can then
be resumed under the same name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from mesh.datasets import live
from mesh.files import replace_file
from mesh.recorder import manifest as mf
from mesh.recorder.columns import GAPS, STORAGE, TABLES, WAL
from mesh.recorder.promote import promote_segment, rebuild_bars, write_bars
from mesh.recorder.store import Store
from mesh.recorder.wal import list_segments

log = logging.getLogger(__name__)

SESSION_FILE = "session.json"
RESERVE_FILE = ".reserve"  # space set aside to record a failure on a full disk
RESERVE_BYTES = 256 * 1024


def recordings_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "recordings"


def wal_dir(data_dir: Path, name: str) -> Path:
    return recordings_dir(data_dir) / name / "wal"


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    """The local note that a session is in progress: its output location, symbols and state.

    All or nothing: written to a hidden temporary, fsync'd and renamed; a failed write (a full
    disk) removes its temporary and leaves the previous note as it was.
    """
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / SESSION_FILE, json.dumps(meta).encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace the small local file `path` by `data`, all or nothing (`mesh.files`)."""
    replace_file(path, data)


def reserve_space(directory: Path, nbytes: int = RESERVE_BYTES) -> None:
    """Set aside disk space for the note and manifest that say why a session failed.

    When the disk fills up, `release_space` deletes this file, so that recording the failure
    itself does not fail for want of space.
    """
    path = directory / RESERVE_FILE
    if not path.exists():
        write_atomic(path, b"\0" * nbytes)


def release_space(directory: Path) -> bool:
    """Free the space `reserve_space` set aside; True if there was any."""
    try:
        (directory / RESERVE_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def read_meta(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / SESSION_FILE).read_text())
    except (OSError, ValueError):
        return None


def finish_local(directory: Path) -> None:
    """Forget a finished session's write-ahead folder (only if no segment is left in it)."""
    if list_segments(directory):
        return
    for name in (SESSION_FILE, RESERVE_FILE, live.LOCK):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    for tmp in directory.glob(".*.tmp") if directory.is_dir() else ():
        with contextlib.suppress(OSError):
            tmp.unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()


def pending(data_dir: Path) -> list[str]:
    """Sessions with a write-ahead folder left behind."""
    root = recordings_dir(data_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.parent.name
        for p in root.glob("*/wal")
        if p.is_dir() and (list_segments(p) or (p / SESSION_FILE).exists())
    )


@dataclass
class Recovered:
    """The outcome of recovering one session."""

    name: str
    resume: bool  # it was recording when the recorder died
    meta: dict[str, Any]
    segments: int
    rows: int
    torn: list[str]
    manifest: mf.Manifest


def recover(
    data_dir: Path, name: str, default_output: str | None = None, *, will_resume: bool = False
) -> Recovered:
    """Promote what the write-ahead log of `name` still holds and make its manifest whole again.

    With `will_resume`, a session that is going to be resumed keeps its bar files as they are:
    the resumed session rebuilds them with its first slice (this keeps restarts quick).
    """
    directory = wal_dir(data_dir, name)
    meta = read_meta(directory) or {}
    store = Store(meta.get("output") or default_output or recordings_dir(data_dir))
    for table in (*TABLES, ""):
        store.remove_temporaries(f"{name}/{table}" if table else name)
    previous = mf.load(store, name)
    rows = 0
    torn: list[str] = []
    segments = list_segments(directory)
    for number, files in segments.items():
        result = promote_segment(store, name, number, files)
        rows += result.rows
        torn += [f"{t}-{number}" for t in result.torn]
    manifest = mf.scan(store, name, previous)
    if previous is None and meta.get("symbols") is not None:
        manifest.symbols_requested = meta.get("symbols")
    run_open = bool(manifest.runs) and manifest.runs[-1].get("ended_ns") is None
    interrupted = run_open or (previous is None and bool(meta))
    failed = meta.get("state") == "failed"
    now = time.time_ns()
    if failed:
        _note_failure(manifest, meta, run_open, now)
    elif interrupted:
        _note_interruption(store, name, manifest, now)
        manifest.end_run(now, clean=False, recovered=True)
    resume = interrupted and not failed and meta.get("state") == "recording"
    if not (resume and will_resume):
        manifest.bar_rows, manifest.bar_bytes = write_bars(
            store, name, rebuild_bars(store, name, manifest)
        )
    mf.save(store, manifest)
    finish_local(directory)
    if segments:
        log.info(
            "recovered %s: promoted %d write-ahead segment(s), %d rows", name, len(segments), rows
        )
    return Recovered(name, resume, meta, len(segments), rows, torn, manifest)


def _note_failure(manifest: mf.Manifest, meta: dict[str, Any], run_open: bool, now: int) -> None:
    """A session that failed (disk full, ...) stays failed with its error, even if the manifest
    could not be updated at the time: the local note kept the reason."""
    if manifest.state == "failed" and manifest.error and not run_open:
        return
    error = (
        manifest.error
        or meta.get("error")
        or "the session failed; the reason could not be recorded"
    )
    ended = int(meta.get("ended_ns") or now)
    if run_open or not manifest.runs:
        manifest.end_run(ended, clean=False, error=error, recovered=True)
    else:
        manifest.runs[-1].update(clean=False, error=error)
        manifest.state, manifest.clean, manifest.error = "failed", False, error


def _note_interruption(store: Store, name: str, manifest: mf.Manifest, now: int) -> None:
    """A gap of kind "recorder" from the last recorded event to the recovery, kept in the gaps table."""
    _, last = manifest.event_range()
    started = manifest.runs[-1]["started_ns"] if manifest.runs else now
    row = {
        "symbol": "",
        "kind": "recorder",
        "from_sequence": 0,
        "to_sequence": 0,
        "ts_from": max(last or started, started),
        "ts_to": now,
        "reason": "the recorder stopped without finishing the session (crash or kill); events in this interval may be missing",
        "source": "recorder",
        "topic": "",
        "missing": 0,
    }
    numbers = [mf.part_number(p.rsplit("/", 1)[-1]) or 0 for p in manifest.files]
    rel = f"{GAPS}/{mf.part_name(max(numbers, default=0) + 1)}"
    table = pa.Table.from_pylist([row], schema=WAL[GAPS]).cast(STORAGE[GAPS])
    with store.parquet_writer(f"{name}/{rel}", STORAGE[GAPS]) as writer:
        writer.write_table(table)
    manifest.add_file(
        mf.FileEntry(
            rel, GAPS, 1, store.list_files(f"{name}/{GAPS}").get(rel.rsplit("/", 1)[-1], 0)
        )
    )
    manifest.add_gaps([row])
