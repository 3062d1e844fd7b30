"""Automatic mode: which finished recordings the fetcher service should reconcile by itself.

Once a minute the service asks `due(...)` for the recordings under MESH_DATA_DIR that are worth
reconciling now: nothing records them (mesh/datasets/live.py), their last event's New York day is
over, that day's trades/quotes flat files are in the bucket (listed through the same code the
reconcile planner uses, so it holds for Massive as for the sim; without S3 credentials the day
only has to be over, and the reconcile goes over REST), and their audit.json holds no
reconciliation made after their last event. `AutoState` remembers, in memory, which sessions have
a job queued and when a session may be tried again, so that a session whose reconcile keeps
failing (the quota, a damaged file) is retried no sooner than an hour later instead of in a loop.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mesh import calendar, datasets
from mesh.datasets import DatasetError, audit, layout, live
from mesh.datasets.manifest import read_manifest
from mesh.fetcher.errors import FetchError
from mesh.fetcher.flatfiles import FlatFiles
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.reconcile import session_kinds
from mesh.fetcher.ticks import day_files

log = logging.getLogger(__name__)

SCAN_EVERY_S = 60.0  # how often the service looks for recordings to reconcile
RETRY_AFTER_S = 3600.0  # a session whose automatic job failed waits this long
FILES_LATER_S = 600.0  # a finished day whose files are not in the bucket yet is looked at again


@dataclass(frozen=True)
class Due:
    """A recording to reconcile now: its name and the New York day of its last event."""

    session: str
    day: dt.date


class AutoState:
    """Per-session memory of automatic mode (thread-safe): jobs in flight, next tries, counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._next_try: dict[str, float] = {}
        self.reconciled = 0
        self.healed = 0
        self.failed = 0

    def waiting(self, session: str, now: float) -> bool:
        """Whether `session` has an automatic job in flight or may not be tried yet."""
        with self._lock:
            return session in self._busy or now < self._next_try.get(session, 0.0)

    def later(self, session: str, delay_s: float) -> None:
        with self._lock:
            self._next_try[session] = time.time() + delay_s

    def start(self, session: str) -> None:
        with self._lock:
            self._busy.add(session)

    def finish(self, session: str) -> None:
        """The automatic work on `session` is over; whatever the outcome, it rests for an hour."""
        with self._lock:
            self._busy.discard(session)
            self._next_try[session] = time.time() + RETRY_AFTER_S

    def count(self, outcome: str) -> None:
        """One more automatic job that ended so: "reconciled", "healed" or "failed"."""
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "auto_reconciled": self.reconciled,
                "auto_healed": self.healed,
                "auto_failed": self.failed,
            }


def due(config: object, ledger: QuotaLedger, state: AutoState) -> Iterator[Due]:
    """The recordings to reconcile now (see the module doc); a damaged one is skipped, said once."""
    data_dir = Path(config.data_dir)  # type: ignore[attr-defined]
    now = time.time()
    today: dt.date | None = None
    for place, folder in layout.dataset_folders(data_dir):
        if place != layout.RECORDINGS or state.waiting(folder.name, now):
            continue
        today = today or calendar.today_et()
        try:
            day = _finished_day(folder, today)
        except (DatasetError, OSError) as exc:
            log.warning("automatic reconcile: skipping %s: %s", folder.name, exc)
            state.later(folder.name, RETRY_AFTER_S)
            continue
        if day is None:
            continue
        try:
            published = _files_published(config, ledger, folder, day)
        except (DatasetError, FetchError, OSError) as exc:
            log.warning("automatic reconcile: cannot list the flat files of %s: %s", day, exc)
            published = False
        if not published:
            state.later(folder.name, FILES_LATER_S)
            continue
        yield Due(folder.name, day)


def _finished_day(folder: Path, today: dt.date) -> dt.date | None:
    """The New York day of the last event of a recording nobody writes, when that day is over and
    no reconciliation was made since; else None."""
    manifest = read_manifest(folder, required=False)
    last = manifest.get("last_event_ns")
    if not isinstance(last, int) or isinstance(last, bool):
        return None
    if live.recording_state(folder, manifest) is not live.RecordingState.RECORDED:
        return None
    day = calendar.et_date_of_ns(last)
    if day >= today:
        return None
    stored = audit.read_audit(folder).reconciliation
    if stored is not None and stored.checked_ns > last:
        return None
    return day


def _files_published(config: object, ledger: QuotaLedger, folder: Path, day: dt.date) -> bool:
    """Whether the day's trades/quotes flat files (those the session needs) are in the bucket;
    False for a session with neither (bars only: nothing to reconcile)."""
    kinds = session_kinds(datasets.resolve(folder, Path(config.data_dir)))  # type: ignore[attr-defined]
    if not kinds:
        return False
    if getattr(config, "s3_credentials", None) is None or not calendar.is_trading_day(day):
        return True  # nothing to ask: the day is over, and the reconcile goes over REST
    flatfiles = FlatFiles(config, ledger)
    return all(not day_files(flatfiles, kind, [day])[1] for kind in kinds)
