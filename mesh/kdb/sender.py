"""The sender thread: the only owner of the kdb+ connection.

Chunks come in through a bounded `ChunkQueue`; the thread encodes each one (PyKX, encode.py),
keeps it in the `ReplayBuffer` and writes it to the socket as an async `.u.upd`. Every
`confirm_interval` seconds (sooner if `max_unconfirmed_rows` are waiting) it makes a sync round trip:
when that returns, kdb+ has processed everything before it (KX ipc.md: messages on one socket are
processed in order), so the replay buffer is cleared. The round trip also runs when idle, so a dead
tickerplant is noticed even though an async send to it can "succeed".

On any failure the connection is closed and re-opened with capped exponential backoff; the replay
buffer is sent again first, then the queue resumes. While kdb+ is away or stalled, the queue fills
to `max_queue_rows` and then drops its oldest rows, counted per table; the thread itself only
ever waits (in the kernel, on a timeout, or on an event), so it never spins a core.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mesh.config import KdbTarget
from mesh.kdb.buffer import Chunk, ChunkQueue, ReplayBuffer, Sent
from mesh.kdb.schema import TABLES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SenderOptions:
    """Tuning for the sender; the defaults are documented in docs/kdb.md."""

    function: str = ".u.upd"  # `upd` for an RDB
    max_queue_rows: int = 250_000  # rows waiting for the sender before the oldest are dropped
    max_unconfirmed_rows: int = (
        100_000  # rows sent but not yet confirmed before a round trip is forced
    )
    confirm_interval: float = 1.0  # seconds between sync round trips (also when idle)
    connect_timeout: float = 2.0
    send_timeout: float = 5.0  # a send blocked this long means kdb+ stopped reading
    reconnect_initial: float = 0.5  # first retry delay; doubles up to reconnect_max
    reconnect_max: float = 30.0


@dataclass
class TableCounters:
    rows: int = 0  # rows written to kdb+ (first attempt; replays are counted apart)
    batches: int = 0  # `.u.upd` messages
    confirmed: int = 0  # rows a round trip has confirmed
    rejected: int = 0  # rows that could not be encoded (bad values); logged


@dataclass
class _State:
    connected: bool = False
    ever_connected: bool = False
    connects: int = 0
    reconnects: int = 0  # successful connections after a lost one
    disconnects: int = 0
    rows_replayed: int = 0
    last_error: str = ""
    retry_in: float = 0.0
    tables: dict[str, TableCounters] = field(
        default_factory=lambda: {name: TableCounters() for name in TABLES}
    )


class Sender:
    """Publishes chunks to one kdb+ process from a background thread."""

    def __init__(
        self,
        target: KdbTarget,
        options: SenderOptions | None = None,
        *,
        connector: Callable[..., Any] | None = None,
    ) -> None:
        self.target = target
        self.options = options or SenderOptions()
        self.queue = ChunkQueue(self.options.max_queue_rows)
        self.replay = ReplayBuffer()
        self.state = _State()
        self._connector = connector
        self._conn: Any = None
        self._inflight = 0
        self._stop = threading.Event()
        self._stop_deadline = 0.0
        self._flush = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kdb-sender", daemon=True)

    # --- the producer side -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, chunk: Chunk, *, block: bool = False, timeout: float | None = None) -> bool:
        """Queue rows for kdb+. Never waits unless `block` (then up to `timeout`)."""
        if chunk.table not in TABLES:
            raise ValueError(f"no q table {chunk.table!r}; expected one of {', '.join(TABLES)}")
        if chunk.rows == 0:
            return True
        return self.queue.put(chunk, block=block, timeout=timeout)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued row has been sent and confirmed; False on timeout."""
        deadline = time.monotonic() + timeout
        self._flush.set()
        self.queue.wake()
        try:
            while time.monotonic() < deadline:
                if (
                    self.queue.rows == 0
                    and self._inflight == 0
                    and len(self.replay) == 0
                    and self.state.connected
                ):
                    return True
                time.sleep(0.005)
            return False
        finally:
            self._flush.clear()

    def stop(self, drain_timeout: float = 1.0) -> None:
        """Send what is queued for up to `drain_timeout` seconds, then close the connection."""
        self._stop_deadline = time.monotonic() + drain_timeout
        self._stop.set()
        self.queue.wake()
        if self._thread.is_alive():
            self._thread.join(drain_timeout + 0.5)
        conn = self._conn
        if self._thread.is_alive() and conn is not None:
            conn.close()  # unblocks a send to a peer that stopped reading
            self._thread.join(1.0)
        left = self.queue.rows + self._inflight + self.replay.rows
        if left:
            log.warning(
                "kdb: %d rows were not confirmed by kdb+ at %s when the publisher stopped",
                left,
                self._address,
            )

    # --- what the service shows ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.state.connected

    @property
    def _address(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    def snapshot(self) -> dict[str, Any]:
        """Counters for stats and heartbeats; never holds credentials."""
        st = self.state
        tables = {
            name: {
                "rows": c.rows,
                "batches": c.batches,
                "confirmed": c.confirmed,
                "dropped": self.queue.dropped[name],
                "rejected": c.rejected,
            }
            for name, c in st.tables.items()
        }
        return {
            "target": self._address,
            "connected": st.connected,
            "connects": st.connects,
            "reconnects": st.reconnects,
            "disconnects": st.disconnects,
            "last_error": st.last_error,
            "retry_in_s": round(st.retry_in, 2),
            "queue_rows": self.queue.rows,
            "queue_limit": self.queue.max_rows,
            "unconfirmed_rows": self.replay.rows + self._inflight,
            "rows_replayed": st.rows_replayed,
            "rows": sum(t["rows"] for t in tables.values()),
            "batches": sum(t["batches"] for t in tables.values()),
            "confirmed": sum(t["confirmed"] for t in tables.values()),
            "dropped": sum(t["dropped"] for t in tables.values()),
            "rejected": sum(t["rejected"] for t in tables.values()),
            "tables": tables,
        }

    # --- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug must show, not silently stop publishing
            log.exception("kdb: the sender thread failed: %s", exc)
            self.state.last_error = f"sender failed: {exc}"
            self._close()

    def _loop(self) -> None:
        opts = self.options
        delay = opts.reconnect_initial
        next_confirm = time.monotonic() + opts.confirm_interval
        while True:
            stopping = self._stop.is_set()
            if stopping and (
                time.monotonic() >= self._stop_deadline
                or (self.queue.rows == 0 and len(self.replay) == 0)
            ):
                break
            if self._conn is None:
                if (
                    stopping
                    and self.state.ever_connected
                    and not self.state.connected
                    and self.state.last_error
                ):
                    break  # do not wait out a backoff on the way out
                try:
                    self._connect()
                except ConnectionError as exc:
                    self._note_down(str(exc), delay)
                    if self._stop.wait(delay):
                        break
                    delay = min(delay * 2, opts.reconnect_max)
                    continue
                delay = opts.reconnect_initial
                next_confirm = time.monotonic() + opts.confirm_interval
                continue
            try:
                wait = max(0.0, min(next_confirm - time.monotonic(), 0.2))
                chunk = self.queue.get(0.0 if stopping else wait)
                if chunk is not None:
                    self._send(chunk)
                now = time.monotonic()
                idle = chunk is None and self.queue.rows == 0
                finishing = (stopping or self._flush.is_set()) and idle and len(self.replay) > 0
                if (
                    now >= next_confirm
                    or self.replay.rows >= opts.max_unconfirmed_rows
                    or finishing
                ):
                    self._confirm()
                    next_confirm = time.monotonic() + opts.confirm_interval
            except ConnectionError as exc:
                self._lost(str(exc))
        self._close()

    def _connect(self) -> None:
        t = self.target
        if self._connector is not None:
            conn = self._connector(t)
        else:
            from mesh.kdb.ipc import QConnection

            conn = QConnection(
                t.host,
                t.port,
                t.user,
                t.password,
                connect_timeout=self.options.connect_timeout,
                send_timeout=self.options.send_timeout,
            )
        try:
            pending = self.replay.pending()
            for sent in pending:
                conn.send(sent.message)
            conn.round_trip()
        except ConnectionError:
            conn.close()
            raise
        st = self.state
        replayed = sum(s.rows for s in pending)
        st.rows_replayed += replayed
        self._confirmed(self.replay.confirm())
        self._conn = conn
        st.connects += 1
        if st.ever_connected:
            st.reconnects += 1
            log.info(
                "kdb: reconnected to kdb+ at %s; re-sent %d unconfirmed rows",
                self._address,
                replayed,
            )
        else:
            log.info("kdb: connected to kdb+ at %s", self._address)
        st.ever_connected = st.connected = True
        st.last_error = ""
        st.retry_in = 0.0

    def _send(self, chunk: Chunk) -> None:
        from mesh.kdb.encode import EncodeError, encode_upd

        counters = self.state.tables[chunk.table]
        self._inflight = chunk.rows
        try:
            message = encode_upd(
                TABLES[chunk.table], chunk.columns, chunk.rows, self.options.function
            )
        except EncodeError as exc:
            self._inflight = 0
            if not counters.rejected:
                log.error(
                    "kdb: rows that cannot be sent to %s were skipped (%s); further ones are only counted",
                    chunk.table,
                    exc,
                )
            counters.rejected += chunk.rows
            return
        self.replay.add(Sent(chunk.table, chunk.rows, message))
        self._inflight = 0
        counters.rows += chunk.rows
        counters.batches += 1
        self._conn.send(message)

    def _confirm(self) -> None:
        self._conn.round_trip()
        self._confirmed(self.replay.confirm())

    def _confirmed(self, items: list[Sent]) -> None:
        for sent in items:
            self.state.tables[sent.table].confirmed += sent.rows

    def _lost(self, reason: str) -> None:
        st = self.state
        st.disconnects += 1
        st.connected = False
        st.last_error = reason
        log.warning(
            "kdb: lost kdb+ at %s: %s; %d unconfirmed rows will be re-sent",
            self._address,
            reason,
            self.replay.rows,
        )
        self._close()

    def _note_down(self, reason: str, delay: float) -> None:
        st = self.state
        if reason != st.last_error:
            log.warning(
                "kdb: %s; retrying (backoff up to %g s)", reason, self.options.reconnect_max
            )
        st.connected = False
        st.last_error = reason
        st.retry_in = delay

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.state.connected = False
