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

A ledger that cannot be trusted (not a database, emptied to 0 bytes, its tables gone, deleted
while in use) is never quietly replaced by an empty one, which would reset the counts to 0 and
could overspend a real account: every operation that spends or plans spending raises
`LedgerDamaged`, naming the file and the repair, and `snapshot` reports the limits as already
spent. `repair` moves the damaged file aside and starts a new ledger in which the current
minute, day and month count as spent (or as the user says they were).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mesh.fetcher.errors import Cancelled, FetchError, QuotaExceeded

NS = 1_000_000_000
MINUTE_NS = 60 * NS
LEDGER_FILE = "quota.sqlite"
KEEP_DAYS = 40  # per-call rows older than this are pruned (the daily totals stay exact)
TABLES = ("rest_calls", "s3_downloads", "notes")
REPAIR_ENDPOINT = "(assumed spent at repair)"

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


class LedgerError(FetchError):
    """The quota ledger cannot be used right now; nothing that spends quota may run."""


class LedgerDamaged(LedgerError):
    """The ledger's counts cannot be trusted; the message names the file and how to repair it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"quota ledger {path} is damaged ({reason}); nothing that spends quota runs until it is repaired: "
            "run `massive quota --repair` (see docs/fetcher.md)"
        )
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """The account's quota (0 = unlimited)."""

    rest_per_minute: int
    rest_per_day: int
    s3_bytes_per_month: int

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        return cls(
            config.rest_calls_per_minute, config.rest_calls_per_day, config.s3_bytes_per_month
        )


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

    def __init__(
        self, path: Path, limits: Limits, *, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.path = Path(path)
        self.limits = limits
        self._clock = clock
        self._existed = False  # seen (or created) by this object: vanishing later is damage
        with contextlib.suppress(OSError):  # an unusable folder is reported by the first operation
            self._ensure()

    @classmethod
    def for_config(cls, config: Any, **kwargs: Any) -> QuotaLedger:
        return cls(
            Path(config.data_dir) / "state" / LEDGER_FILE, Limits.from_config(config), **kwargs
        )

    def _ensure(self) -> None:
        """Create the ledger if there is none yet: built aside, then linked into place complete."""
        if self.path.exists():
            self._existed = True
            return
        if self._existed:
            return  # it was here: `_connect` reports it as damaged instead of starting from 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.new")
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
            finally:
                db.close()
            with contextlib.suppress(FileExistsError):  # another process created it first
                os.link(tmp, self.path)
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{tmp}{suffix}")
        self._existed = True

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection (one per operation: safe across threads and processes).

        Raises `LedgerDamaged` for a file that is gone, empty, not a database or missing its
        tables, and `LedgerError` when it cannot be opened at all; never creates an empty one.
        """
        try:
            self._ensure()
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            raise LedgerDamaged(self.path, "the file was deleted while in use") from None
        except OSError as exc:
            raise LedgerError(
                f"cannot use the quota ledger {self.path}: {exc.strerror or exc}"
            ) from None
        if size == 0:
            raise LedgerDamaged(self.path, "the file is empty")
        try:
            db = sqlite3.connect(
                f"{self.path.absolute().as_uri()}?mode=rw",
                timeout=30.0,
                isolation_level=None,
                uri=True,
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the quota ledger {self.path}: {exc}") from None
        try:
            try:
                db.execute("PRAGMA busy_timeout=30000")
                db.execute("PRAGMA synchronous=NORMAL")
                present = {
                    row[0]
                    for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                }
            except sqlite3.DatabaseError as exc:
                raise _damage(self.path, exc) from None
            if missing := [t for t in TABLES if t not in present]:
                raise LedgerDamaged(
                    self.path, f"table{'s' * (len(missing) > 1)} {', '.join(missing)} missing"
                )
            try:
                yield db
            except sqlite3.DatabaseError as exc:
                raise _damage(self.path, exc) from None
        finally:
            db.close()

    def check(self) -> None:
        """Raise `LedgerDamaged` (or `LedgerError`) unless the ledger can be read and written."""
        with self._connect() as db:
            db.execute(
                "SELECT COUNT(*) FROM rest_calls WHERE ts_ns > ?", (self._clock() - MINUTE_NS,)
            ).fetchone()

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
                    (used,) = db.execute(
                        "SELECT COUNT(*) FROM rest_calls WHERE day = ?", (today,)
                    ).fetchone()
                    if used + 1 > self.limits.rest_per_day:
                        db.execute(
                            "INSERT INTO notes (ts_ns, kind, detail) VALUES (?, 'refused', ?)",
                            (now, f"rest_per_day {endpoint}"),
                        )
                        db.execute("COMMIT")
                        reset = _next_day(now)
                        raise QuotaExceeded(
                            f"REST daily limit reached: {used} of {self.limits.rest_per_day} calls used today (UTC); resets at {reset:%Y-%m-%d %H:%M} UTC",
                            limit="rest_per_day",
                            retry_after=(reset.timestamp() * NS - now) / NS,
                        )
                if self.limits.rest_per_minute:
                    rows = db.execute(
                        "SELECT ts_ns FROM rest_calls WHERE ts_ns > ? ORDER BY ts_ns",
                        (now - MINUTE_NS,),
                    ).fetchall()
                    if len(rows) + 1 > self.limits.rest_per_minute:
                        db.execute("ROLLBACK")
                        # room appears when enough of the oldest calls leave the window
                        oldest = rows[len(rows) - self.limits.rest_per_minute][0]
                        return max(0.05, (oldest + MINUTE_NS - now) / NS + 0.05)
                db.execute(
                    "INSERT INTO rest_calls (ts_ns, day, endpoint, pid) VALUES (?, ?, ?, ?)",
                    (now, today, endpoint, os.getpid()),
                )
                if now % 97 == 0:  # prune now and then, cheaply
                    db.execute(
                        "DELETE FROM rest_calls WHERE ts_ns < ?", (now - KEEP_DAYS * 86_400 * NS,)
                    )
                db.execute("COMMIT")
                return None
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def rest_room(self) -> tuple[int | None, int | None]:
        """(calls left today, calls left in the current minute window); None = unlimited."""
        snap = self._snapshot()
        day = (
            None
            if not self.limits.rest_per_day
            else max(0, self.limits.rest_per_day - snap["rest_calls_today"])
        )
        minute = (
            None
            if not self.limits.rest_per_minute
            else max(0, self.limits.rest_per_minute - snap["rest_calls_minute"])
        )
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
            db.execute(
                "INSERT INTO notes (ts_ns, kind, detail) VALUES (?, ?, ?)",
                (self._clock(), kind, detail),
            )

    # --- flat-file bytes ---------------------------------------------------------------------

    def reserve_bytes(self, key: str, nbytes: int) -> int:
        """Record a download of `nbytes` about to start, or refuse it; returns the ledger row id."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                now = self._clock()
                month = _month(now)
                (used,) = db.execute(
                    "SELECT COALESCE(SUM(bytes), 0) FROM s3_downloads WHERE month = ?", (month,)
                ).fetchone()
                limit = self.limits.s3_bytes_per_month
                if limit and used + nbytes > limit:
                    db.execute(
                        "INSERT INTO notes (ts_ns, kind, detail) VALUES (?, 'refused', ?)",
                        (now, f"s3_bytes_per_month {key}"),
                    )
                    db.execute("COMMIT")
                    raise QuotaExceeded(
                        f"flat-file monthly limit: {key} is {human_bytes(nbytes)} but only {human_bytes(max(0, limit - used))} of {human_bytes(limit)} are left this month (UTC)",
                        limit="s3_bytes_per_month",
                    )
                cur = db.execute(
                    "INSERT INTO s3_downloads (ts_ns, month, key, bytes) VALUES (?, ?, ?, ?)",
                    (now, month, key, nbytes),
                )
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
        return max(0, self.limits.s3_bytes_per_month - self._snapshot()["s3_bytes_month"])

    # --- reading -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Counts and limits as plain values (what `massive quota --json` prints and sys.quota carries).

        For a damaged ledger the counts are the limits (everything counts as spent) and
        `damaged` says why; otherwise `damaged` is None.
        """
        try:
            return self._snapshot()
        except LedgerDamaged as exc:
            now = self._clock()
            return {
                **self._shape(
                    now,
                    self.limits.rest_per_minute,
                    self.limits.rest_per_day,
                    self.limits.s3_bytes_per_month,
                    0,
                    0,
                    0,
                ),
                "damaged": str(exc),
            }

    def _snapshot(self) -> dict[str, Any]:
        now = self._clock()
        with self._connect() as db:
            (minute,) = db.execute(
                "SELECT COUNT(*) FROM rest_calls WHERE ts_ns > ?", (now - MINUTE_NS,)
            ).fetchone()
            (today,) = db.execute(
                "SELECT COUNT(*) FROM rest_calls WHERE day = ?", (_day(now),)
            ).fetchone()
            (nbytes, files) = db.execute(
                "SELECT COALESCE(SUM(bytes), 0), COUNT(*) FROM s3_downloads WHERE month = ?",
                (_month(now),),
            ).fetchone()
            (throttled,) = db.execute(
                "SELECT COUNT(*) FROM notes WHERE kind = 'throttled' AND ts_ns > ?",
                (now - 86_400 * NS,),
            ).fetchone()
            (refused,) = db.execute(
                "SELECT COUNT(*) FROM notes WHERE kind = 'refused' AND ts_ns > ?",
                (now - 86_400 * NS,),
            ).fetchone()
        return {
            **self._shape(
                now, int(minute), int(today), int(nbytes), int(files), int(throttled), int(refused)
            ),
            "damaged": None,
        }

    def _shape(
        self,
        now: int,
        minute: int,
        today: int,
        nbytes: int,
        files: int,
        throttled: int,
        refused: int,
    ) -> dict[str, Any]:
        return {
            "rest_calls_minute": minute,
            "rest_calls_per_minute": self.limits.rest_per_minute,
            "rest_calls_today": today,
            "rest_calls_per_day": self.limits.rest_per_day,
            "s3_bytes_month": nbytes,
            "s3_files_month": files,
            "s3_bytes_per_month": self.limits.s3_bytes_per_month,
            "throttled_24h": throttled,
            "refused_24h": refused,
            "day": _day(now),
            "month": _month(now),
            "day_resets": _next_day(now).isoformat().replace("+00:00", "Z"),
            "month_resets": _next_month(now).isoformat().replace("+00:00", "Z"),
            "ledger": str(self.path),
        }

    # --- repair ------------------------------------------------------------------------------

    def repair(
        self, *, rest_today: int | None = None, bytes_month: int | None = None
    ) -> dict[str, Any]:
        """Replace a damaged ledger by a new one that counts the current periods as spent.

        The damaged file is kept next to it (`quota.sqlite.damaged-<UTC time>`). Unless the user
        says what was really used today (`rest_today`) or this month (`bytes_month`, e.g. from the
        provider's dashboard), the new ledger records the day's REST limit, a full minute window
        and the month's flat-file allowance as spent: it may refuse work that would have fitted,
        never allow work that would not. Raises `LedgerError` when the ledger is not damaged.
        """
        try:
            self.check()
        except LedgerDamaged as exc:
            reason = exc.reason
        else:
            raise LedgerError(
                f"quota ledger {self.path} is readable; --repair only replaces a damaged ledger"
            )
        now = self._clock()
        stamp = datetime.fromtimestamp(now / NS, UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{kept}{suffix}")
        self._existed = False
        self._ensure()
        limits = self.limits
        today_calls = limits.rest_per_day if rest_today is None else rest_today
        recent = (
            limits.rest_per_minute
            if rest_today is None
            else min(limits.rest_per_minute, rest_today)
        )
        earlier = max(0, today_calls - recent)
        day_start = (
            int(
                datetime.fromtimestamp(now / NS, UTC)
                .replace(hour=0, minute=0, second=0, microsecond=0)
                .timestamp()
            )
            * NS
        )
        month_bytes = limits.s3_bytes_per_month if bytes_month is None else bytes_month
        pid = os.getpid()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO rest_calls (ts_ns, day, endpoint, pid) VALUES (?, ?, ?, ?)",
                [(day_start, _day(now), REPAIR_ENDPOINT, pid)] * earlier
                + [(now, _day(now), REPAIR_ENDPOINT, pid)] * recent,
            )
            if month_bytes:
                db.execute(
                    "INSERT INTO s3_downloads (ts_ns, month, key, bytes) VALUES (?, ?, ?, ?)",
                    (now, _month(now), REPAIR_ENDPOINT, month_bytes),
                )
            detail = f"replaced a damaged ledger ({reason}), kept as {kept.name}; counted as spent: {earlier + recent} REST call(s) today, {month_bytes} flat-file byte(s) this month"
            db.execute(
                "INSERT INTO notes (ts_ns, kind, detail) VALUES (?, 'repaired', ?)", (now, detail)
            )
            db.execute("COMMIT")
        return {
            "ledger": str(self.path),
            "damaged": reason,
            "kept": str(kept),
            "rest_calls_today": earlier + recent,
            "rest_calls_minute": recent,
            "s3_bytes_month": month_bytes,
        }


def _damage(path: Path, exc: sqlite3.DatabaseError) -> LedgerError:
    """A damaged ledger, or a busy one (locked for longer than the timeout) which is not damage."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return LedgerError(f"quota ledger {path} is busy ({text}); try again")
    return LedgerDamaged(path, text)
