"""The quota ledger: one SQLite file in data/state/ that every process reads and writes.

The fetcher service, `massive fetch`, `massive quota`, the Python API and the dashboard may all
run at once, so the count of REST calls and flat-file bytes lives on disk, not in a process.
SQLite in WAL mode gives readers that never block and one writer at a time: a call is checked
against the limits and recorded inside one `BEGIN IMMEDIATE` transaction, so two processes can
never both take the last call of the day. A REST call is recorded before it is sent (a call that
then fails still counted with the provider), flat-file bytes before the download starts.

Windows: "this minute" is the last 60 seconds (a sliding window, so no burst straddles a minute
boundary); "today" is the UTC calendar day; "this month" the UTC calendar month. A limit of 0
means no limit (paid plans have no REST call limit).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mesh.fetcher.errors import Cancelled, QuotaExceeded

NS = 1_000_000_000
MINUTE_NS = 60 * NS
LEDGER_FILE = "quota.sqlite"
KEEP_DAYS = 40  # per-call rows older than this are pruned (the daily totals stay exact)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rest_calls (
    id INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    day TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    pid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rest_calls_ts ON rest_calls (ts_ns);
CREATE INDEX IF NOT EXISTS rest_calls_day ON rest_calls (day);
CREATE TABLE IF NOT EXISTS s3_downloads (
    id INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    month TEXT NOT NULL,
    key TEXT NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS s3_downloads_month ON s3_downloads (month);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Limits:
    """The account's quota (0 = unlimited)."""

    rest_per_minute: int
    rest_per_day: int
    s3_bytes_per_month: int

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        return cls(config.rest_calls_per_minute, config.rest_calls_per_day, config.s3_bytes_per_month)


def _day(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS, UTC).strftime("%Y-%m-%d")


def _month(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS, UTC).strftime("%Y-%m")


def _next_day(ts_ns: int) -> datetime:
    now = datetime.fromtimestamp(ts_ns / NS, UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def _next_month(ts_ns: int) -> datetime:
    now = datetime.fromtimestamp(ts_ns / NS, UTC)
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class QuotaLedger:
    """Check-and-record of REST calls and flat-file bytes, shared by every process on the machine."""

    def __init__(self, path: Path, limits: Limits, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = Path(path)
        self.limits = limits
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @classmethod
    def for_config(cls, config: Any, **kwargs: Any) -> QuotaLedger:
        return cls(Path(config.data_dir) / "state" / LEDGER_FILE, Limits.from_config(config), **kwargs)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection (one per operation: safe across threads and processes)."""
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    # --- REST calls --------------------------------------------------------------------------

    def acquire_rest(
        self,
        endpoint: str,
        *,
        wait: bool = True,
        max_wait: float = 75.0,
        cancel: threading.Event | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        """Record one REST call about to be sent, or refuse it.

        Over the daily limit: `QuotaExceeded` at once. Over the per-minute limit: wait until the
        oldest call of the window is a minute old (if `wait` and that is within `max_wait`),
        else `QuotaExceeded` saying when to retry.
        """
        deadline = time.monotonic() + max_wait
        while True:
            retry_in = self._try_acquire(endpoint)
            if retry_in is None:
                return
            if not wait or time.monotonic() + retry_in > deadline:
                raise QuotaExceeded(
                    f"REST per-minute limit reached ({self.limits.rest_per_minute} calls in the last 60 s); next call possible in {retry_in:.0f} s",
                    limit="rest_per_minute",
                    retry_after=retry_in,
                )
            if on_wait is not None:
                on_wait(retry_in)
            end = time.monotonic() + retry_in
            while (left := end - time.monotonic()) > 0:
                if cancel is not None and cancel.wait(min(left, 0.25)):
                    raise Cancelled("cancelled while waiting for the per-minute REST limit")
                if cancel is None:
                    time.sleep(min(left, 0.25))

    def _try_acquire(self, endpoint: str) -> float | None:
        """Record the call and return None, or return seconds until the minute window has room."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                now = self._clock()
                today = _day(now)
                if self.limits.rest_per_day:
                    (used,) = db.execute("SELECT COUNT(*) FROM rest_calls WHERE day = ?", (today,)).fetchone()
                    if used + 1 > self.limits.rest_per_day:
                        db.execute("INSERT INTO notes (ts_ns, kind, detail) VALUES (?, 'refused', ?)", (now, f"rest_per_day {endpoint}"))
                        db.execute("COMMIT")
                        reset = _next_day(now)
                        raise QuotaExceeded(
                            f"REST daily limit reached: {used} of {self.limits.rest_per_day} calls used today (UTC); resets at {reset:%Y-%m-%d %H:%M} UTC",
                            limit="rest_per_day",
                            retry_after=(reset.timestamp() * NS - now) / NS,
                        )
                if self.limits.rest_per_minute:
                    rows = db.execute(
                        "SELECT ts_ns FROM rest_calls WHERE ts_ns > ? ORDER BY ts_ns", (now - MINUTE_NS,)
                    ).fetchall()
                    if len(rows) + 1 > self.limits.rest_per_minute:
                        db.execute("ROLLBACK")
                        # room appears when enough of the oldest calls leave the window
                        oldest = rows[len(rows) - self.limits.rest_per_minute][0]
                        return max(0.05, (oldest + MINUTE_NS - now) / NS + 0.05)
                db.execute("INSERT INTO rest_calls (ts_ns, day, endpoint, pid) VALUES (?, ?, ?, ?)", (now, today, endpoint, os.getpid()))
                if now % 97 == 0:  # prune now and then, cheaply
                    db.execute("DELETE FROM rest_calls WHERE ts_ns < ?", (now - KEEP_DAYS * 86_400 * NS,))
                db.execute("COMMIT")
                return None
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def rest_room(self) -> tuple[int | None, int | None]:
        """(calls left today, calls left in the current minute window); None = unlimited."""
        snap = self.snapshot()
        day = None if not self.limits.rest_per_day else max(0, self.limits.rest_per_day - snap["rest_calls_today"])
        minute = None if not self.limits.rest_per_minute else max(0, self.limits.rest_per_minute - snap["rest_calls_minute"])
        return day, minute

    def check_rest(self, calls: int) -> None:
        """Refuse up front a job that needs more REST calls than are left today."""
        left, _ = self.rest_room()
        if left is not None and calls > left:
            raise QuotaExceeded(
                f"needs up to {calls} REST call(s) but only {left} of {self.limits.rest_per_day} are left today (UTC)",
                limit="rest_per_day",
            )

    def note(self, kind: str, detail: str) -> None:
        """Something worth showing next to the counts, e.g. a 429 from the server."""
        with self._connect() as db:
            db.execute("INSERT INTO notes (ts_ns, kind, detail) VALUES (?, ?, ?)", (self._clock(), kind, detail))

    # --- flat-file bytes ---------------------------------------------------------------------

    def reserve_bytes(self, key: str, nbytes: int) -> int:
        """Record a download of `nbytes` about to start, or refuse it; returns the ledger row id."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                now = self._clock()
                month = _month(now)
                (used,) = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM s3_downloads WHERE month = ?", (month,)).fetchone()
                limit = self.limits.s3_bytes_per_month
                if limit and used + nbytes > limit:
                    db.execute("INSERT INTO notes (ts_ns, kind, detail) VALUES (?, 'refused', ?)", (now, f"s3_bytes_per_month {key}"))
                    db.execute("COMMIT")
                    raise QuotaExceeded(
                        f"flat-file monthly limit: {key} is {human_bytes(nbytes)} but only {human_bytes(max(0, limit - used))} of {human_bytes(limit)} are left this month (UTC)",
                        limit="s3_bytes_per_month",
                    )
                cur = db.execute("INSERT INTO s3_downloads (ts_ns, month, key, bytes) VALUES (?, ?, ?, ?)", (now, month, key, nbytes))
                db.execute("COMMIT")
                return int(cur.lastrowid or 0)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def settle_bytes(self, row_id: int, actual: int) -> None:
        """Correct a reservation to the bytes actually transferred (a download that stopped early)."""
        with self._connect() as db:
            db.execute("UPDATE s3_downloads SET bytes = ? WHERE id = ?", (actual, row_id))

    def bytes_left(self) -> int | None:
        if not self.limits.s3_bytes_per_month:
            return None
        return max(0, self.limits.s3_bytes_per_month - self.snapshot()["s3_bytes_month"])

    # --- reading -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Counts and limits as plain values (what `massive quota --json` prints and sys.quota carries)."""
        now = self._clock()
        with self._connect() as db:
            (minute,) = db.execute("SELECT COUNT(*) FROM rest_calls WHERE ts_ns > ?", (now - MINUTE_NS,)).fetchone()
            (today,) = db.execute("SELECT COUNT(*) FROM rest_calls WHERE day = ?", (_day(now),)).fetchone()
            (nbytes, files) = db.execute("SELECT COALESCE(SUM(bytes), 0), COUNT(*) FROM s3_downloads WHERE month = ?", (_month(now),)).fetchone()
            (throttled,) = db.execute("SELECT COUNT(*) FROM notes WHERE kind = 'throttled' AND ts_ns > ?", (now - 86_400 * NS,)).fetchone()
            (refused,) = db.execute("SELECT COUNT(*) FROM notes WHERE kind = 'refused' AND ts_ns > ?", (now - 86_400 * NS,)).fetchone()
        return {
            "rest_calls_minute": int(minute),
            "rest_calls_per_minute": self.limits.rest_per_minute,
            "rest_calls_today": int(today),
            "rest_calls_per_day": self.limits.rest_per_day,
            "s3_bytes_month": int(nbytes),
            "s3_files_month": int(files),
            "s3_bytes_per_month": self.limits.s3_bytes_per_month,
            "throttled_24h": int(throttled),
            "refused_24h": int(refused),
            "day": _day(now),
            "month": _month(now),
            "day_resets": _next_day(now).isoformat().replace("+00:00", "Z"),
            "month_resets": _next_month(now).isoformat().replace("+00:00", "Z"),
            "ledger": str(self.path),
        }
