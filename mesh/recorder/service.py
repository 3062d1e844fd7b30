"""`massive run recorder`: the bus subscriber that drives recording sessions.

It subscribes to quotes, trades, ingest's gap records and paper trading's orders, fills and P&L
(`strat.*`) without a receive limit (lossless: a
message the bus itself had to drop still shows up as a sequence gap, which is recorded), and
answers `start`, `stop` and `status` on the control channel. The receiving loop only appends to
the write-ahead log; promotion to Parquet runs in a worker thread. On start it first recovers
whatever a previous, killed recorder left behind, and resumes a session that was recording.
Breaks in what it receives (a source restarting, messages lost on the bus, its own restart) become
per-symbol gaps in the session (mesh.recorder.continuity); the positions that bound them are saved
once a second next to the write-ahead log, so that they survive a `kill -9`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import time
from typing import Any, ClassVar

import zmq
import zmq.asyncio

from mesh import auth, topics, wire
from mesh.argtypes import OneLineParser
from mesh.client import SubscriberStats
from mesh.config import Config
from mesh.datasets import layout, storage
from mesh.recorder import continuity, recovery
from mesh.recorder.intake import PREFIXES, Intake
from mesh.recorder.session import DEFAULT_SLICE_ROWS, DEFAULT_SLICE_SECONDS, Session, SessionError
from mesh.recorder.store import StoreError
from mesh.recorder.wal import DEFAULT_SYNC_INTERVAL, WalError
from mesh.service import Runtime, Service, run_service
from mesh.wire import MalformedFrame

log = logging.getLogger(__name__)

BURST = 500  # messages decoded and written together, at most
DRAIN_SECONDS = (
    0.05  # or this long: commands and heartbeats share the loop, and must not wait seconds
)
# A trickle (the last wake found fewer than TRICKLE messages) waits GATHER_SECONDS before it is
# read, so a slow feed is written in batches: per message, the decode-merge-append costs about
# what a batch of a hundred does (docs/recorder.md, "Reading in batches"). Under load nothing
# waits. Waiting messages stay in the socket's queue, where a crash treats them as it always did
# (in the gap its restart records); `stop` reads them first.
GATHER_SECONDS = 0.02
TRICKLE = 16
STOP_REPLY_WITHIN = 1.5  # seconds: `stop` answers by then, and finishes in the background if needed


class RecorderService(Service):
    """Records market data from the bus into sessions (see mesh.recorder.session)."""

    name: ClassVar[str] = "recorder"

    def __init__(
        self,
        config: Config,
        *,
        output: str | None = None,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        slice_seconds: float = DEFAULT_SLICE_SECONDS,
        slice_rows: int = DEFAULT_SLICE_ROWS,
        resume: bool = True,
    ) -> None:
        super().__init__(config)
        # MESH_DATA_DIR=s3://...: finished files go there (the log stays in the local state folder)
        self.output = output or (
            storage.join_uri(config.data_uri, layout.RECORDINGS) if config.data_remote else None
        )
        self.sync_interval = sync_interval
        self.slice_seconds = slice_seconds
        self.slice_rows = slice_rows
        self.resume = resume
        self.session: Session | None = None
        self.sub_stats = SubscriberStats()
        self.intake = Intake()
        self.recovered: list[dict[str, Any]] = []
        self._ready = asyncio.Event()
        self._worker: asyncio.Task[Any] | None = None
        self._rate = (time.monotonic(), 0, 0.0)  # (when, rows, events/s)
        self._drain: zmq.SyncSocket | None = None  # the receiving socket, while the loop runs

    # --- the loop -------------------------------------------------------------------------

    async def run(self, runtime: Runtime) -> None:
        sock = runtime.context.socket(zmq.SUB)
        sock.rcvhwm = 0  # lossless: never drop here; what the bus drops shows as sequence gaps
        sock.linger = 0
        for prefix in PREFIXES:
            sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        auth.secure_client(sock, auth.client_keys(self.config))
        sock.connect(self.config.bus_sub)
        drain: zmq.SyncSocket = zmq.Socket.shadow(
            sock.underlying
        )  # the same socket, for non-blocking reads
        try:
            await self._recover(runtime)
            self._drain = drain
            gather = False
            while not runtime.stopping.is_set():
                if await sock.poll(100):
                    if gather:
                        await asyncio.sleep(GATHER_SECONDS)
                    gather = self._read_waiting() < TRICKLE
                self._housekeeping()
                await asyncio.sleep(0)  # commands queued by the control thread get their turn
            await self._shutdown()
        finally:
            self._drain = None
            sock.close(linger=0)

    def _read_waiting(self) -> int:
        """Decode and write the messages waiting on the socket, BURST at a time, for at most
        DRAIN_SECONDS; returns how many were read."""
        drain = self._drain
        if drain is None:
            return 0
        drained = 0
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            burst = []
            for _ in range(BURST):
                try:
                    burst.append(drain.recv_multipart(flags=zmq.NOBLOCK, copy=False))
                except zmq.Again:
                    break
            if not burst:
                break
            drained += len(burst)
            self._on_burst(burst)
        return drained

    async def _recover(self, runtime: Runtime) -> None:
        try:
            for name in recovery.pending(self.config.data_dir):
                snapshot = continuity.load(
                    recovery.wal_dir(self.config.data_dir, name)
                )  # read before recovery tidies the folder
                try:
                    done = await asyncio.to_thread(
                        functools.partial(
                            recovery.recover,
                            self.config.data_dir,
                            name,
                            self.output,
                            will_resume=self.resume,
                        )
                    )
                except Exception as exc:
                    runtime.event(
                        "error", f"could not recover recording {name!r}: {exc}", session=name
                    )
                    continue
                self.recovered.append(
                    {
                        "session": name,
                        "segments": done.segments,
                        "rows": done.rows,
                        "torn": done.torn,
                    }
                )
                runtime.event(
                    "warning" if done.segments else "info",
                    f"recovered recording {name!r} after an unclean stop: {done.rows} rows promoted from {done.segments} write-ahead segment(s)",
                    session=name,
                )
                if done.resume and self.resume and self.session is None:
                    if (
                        snapshot is None
                    ):  # killed before its first save: every symbol counts as new after the last event recorded
                        snapshot = continuity.empty_snapshot(
                            done.manifest.event_range()[1] or time.time_ns()
                        )
                    await self._start(
                        name,
                        done.meta.get("symbols"),
                        output=done.meta.get("output"),
                        snapshot=snapshot,
                    )
                    runtime.event("info", f"resumed recording {name!r}", session=name)
        finally:
            self._ready.set()

    def _on_burst(self, burst: list[list[Any]]) -> None:
        """Messages that were waiting together, each source's quote and trade batches merged into
        one write (wire.decode_many): one WAL append per burst instead of one per message. A burst
        that holds a break (a message missing or malformed, a source restarting) is taken message
        by message instead, so that each break is recorded between the right events."""
        decoded = wire.decode_many(burst)
        if decoded.errors or not self.sub_stats.continues(decoded.received):
            for frames in burst:
                self._on_frames(frames)
            return
        for topic, header in decoded.received:
            self.sub_stats.observe_header(topic, header)
        for msg in decoded.messages:
            try:
                self.intake.handle(self.session, msg, 0)
            except OSError as exc:
                self._fail(str(exc))

    def _on_frames(self, frames: list[Any]) -> None:
        try:
            msg = wire.decode(frames, columnar=True)
        except MalformedFrame as exc:
            self.sub_stats.reject(
                exc
            )  # counted by kind (unknown schemas too), logged once per kind
            return
        missing = self.sub_stats.observe(msg)
        try:
            self.intake.handle(self.session, msg, missing)
        except OSError as exc:
            self._fail(str(exc))

    def _housekeeping(self) -> None:
        session = self.session
        if session is None or session.state not in ("recording", "stopping"):
            return
        if session.state == "recording":
            if session.wal.error is not None:
                self._fail(str(session.wal.error))
                return
            if self.intake.continuity.save_due():
                self._save_positions(session)
            try:
                if session.rotation_due():
                    session.rotate()
            except (WalError, OSError) as exc:
                self._fail(str(exc))
                return
        if (
            session.promotion_due
            and (self._worker is None or self._worker.done())
            and session.state == "recording"
        ):
            self._worker = asyncio.create_task(self._promote(session))

    async def _promote(self, session: Session) -> None:
        try:
            await asyncio.to_thread(session.promote_pending)
        except Exception as exc:
            if session.state == "recording":
                self._fail(f"cannot write Parquet files for {session.name!r}: {exc}")

    def _save_positions(self, session: Session) -> None:
        """The gap trackers' positions, so that a restart can bound what it missed (best effort:
        without them the restart is still recorded as a `recorder` gap)."""
        try:
            self.intake.continuity.save(session.wal_dir)
        except OSError as exc:
            log.debug("could not save the gap positions of %s: %s", session.name, exc)

    def _fail(self, error: str) -> None:
        session = self.session
        if session is None or session.state in ("failed", "stopped"):
            return
        if session.state == "recording":
            self._save_positions(
                session
            )  # a later start of the same NAME bounds the outage with them
        session.fail(error, promote=False)
        self.state, self.message = "error", f"recording {session.name} failed: {error}"
        if self.runtime is not None:
            self.runtime.event(
                "error",
                f"recording {session.name!r} failed: {error}",
                session=session.name,
                rows=sum(session.rows.values()),
            )
        self._worker = asyncio.get_running_loop().create_task(
            self._after(self._worker, session.finish_failed)
        )

    async def _after(self, previous: asyncio.Task[Any] | None, finish: Any) -> None:
        """Run `finish` in a thread once the promotion already under way (if any) is over."""
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await asyncio.to_thread(finish)

    async def _shutdown(self) -> None:
        """On SIGTERM: finish the session cleanly but keep it marked as recording, to resume."""
        session = self.session
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)
        if session is not None and session.state == "recording":
            self._save_positions(session)
            try:
                session.close()
                await asyncio.wait_for(asyncio.to_thread(session.promote_pending), timeout=1.5)
            except Exception as exc:  # what is not promoted stays in the WAL for the next start
                log.warning(
                    "recording %s: left for recovery at the next start (%s)", session.name, exc
                )
            try:
                recovery.write_meta(
                    session.wal_dir,
                    {
                        "name": session.name,
                        "output": session.output,
                        "symbols": session.symbols,
                        "state": "recording",
                        "started_ns": session.started_ns,
                    },
                )
            except OSError:
                pass

    # --- commands -------------------------------------------------------------------------

    async def cmd_start(self, name: str, symbols: str | list[str] | None = None) -> dict[str, Any]:
        """Start recording session NAME (an existing NAME is appended to); all symbols if none given."""
        await asyncio.wait_for(self._ready.wait(), timeout=STOP_REPLY_WITHIN)
        current = self.session
        if current is not None and current.state in ("recording", "stopping"):
            raise SessionError(
                f"already recording {current.name!r}; stop it first (`massive record stop`)"
            )
        if self._worker is not None and not self._worker.done():
            await asyncio.wait_for(asyncio.shield(self._worker), timeout=STOP_REPLY_WITHIN)
        return await self._start(name, symbols)

    async def _start(
        self,
        name: str,
        symbols: str | list[str] | None,
        output: str | None = None,
        snapshot: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Open session NAME; `snapshot`: the gap positions of an interrupted run (read from its folder if None)."""
        if snapshot is None:
            snapshot = await asyncio.to_thread(
                continuity.load, recovery.wal_dir(self.config.data_dir, name)
            )
        session = Session(
            name,
            data_dir=self.config.data_dir,
            output=output or self.output,
            symbols=symbols,
            sync_interval=self.sync_interval,
            slice_seconds=self.slice_seconds,
            slice_rows=self.slice_rows,
        )
        try:
            await asyncio.to_thread(session.open)
        except (OSError, StoreError) as exc:
            raise SessionError(f"cannot start recording {name!r}: {exc}") from None
        self.session = session
        if snapshot:
            self.intake.continuity.resume(snapshot)
        else:
            self.intake.continuity.reset()
        self._save_positions(session)
        self.state, self.message = "ok", f"recording {name}"
        if self.runtime is not None:
            self.runtime.event(
                "info",
                f"recording {name!r} started",
                session=name,
                symbols=session.symbols,
                location=session.store.uri(name),
            )
        return self.status_report()

    async def cmd_stop(self) -> dict[str, Any]:
        """Stop the current session: promote what is left, write bars and the final manifest."""
        session = self.session
        if session is None or session.state != "recording":
            raise SessionError(
                "not recording"
                + (f" (last session {session.name!r} is {session.state})" if session else "")
            )
        # what reached the recorder before the stop is recorded, though a trickle's messages may
        # still be waiting out GATHER_SECONDS in the socket
        self._read_waiting()
        if session.state != "recording":  # writing them failed the session
            raise SessionError(f"recording {session.name!r} failed while stopping: {session.error}")
        try:  # symbols whose stream broke and never resumed: an open-ended gap each
            session.write_gaps(
                self.intake.continuity.open_rows(
                    time.time_ns(), {"quote": topics.quotes(), "trade": topics.trades()}
                )
            )
        except OSError as exc:
            self._fail(str(exc))
            raise SessionError(f"recording {session.name!r} failed while stopping: {exc}") from None
        continuity.discard(session.wal_dir)  # ended cleanly: nothing left to bound
        session.close()  # on this thread: no batch is being written while the WAL closes
        self._worker = asyncio.create_task(self._after(self._worker, session.finish))
        self._worker.add_done_callback(lambda task: self._stopped(session, task))
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), timeout=STOP_REPLY_WITHIN)
        except TimeoutError:
            pass  # still promoting: `status` shows "stopping" until it is done
        return self.status_report()

    def _stopped(self, session: Session, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            session.state, session.error = "failed", f"could not finish: {exc}"
            self.state, self.message = "error", f"recording {session.name} failed: {session.error}"
            if self.runtime is not None:
                self.runtime.event(
                    "error",
                    f"recording {session.name!r} could not finish: {exc}",
                    session=session.name,
                )
            return
        self.message = ""
        if self.runtime is not None:
            rows = session.status()["rows_total"]
            self.runtime.event(
                "info",
                f"recording {session.name!r} stopped",
                session=session.name,
                rows=rows,
                location=session.store.uri(session.name),
            )

    def cmd_status(self) -> dict[str, Any]:
        """The current (or last) session, and what the recorder could not keep."""
        return self.status_report()

    # --- reporting ------------------------------------------------------------------------

    def dropped(self) -> dict[str, Any]:
        return {
            "malformed": dict(self.sub_stats.malformed),
            "unexpected": self.intake.unexpected,
            "rejected": self.intake.rejected,
            "missing_on_bus": self.sub_stats.gaps,
        }

    def status_report(self) -> dict[str, Any]:
        session = self.session
        report: dict[str, Any] = {
            "recorder": {
                "output": session.store.location
                if session
                else (self.output or str(recovery.recordings_dir(self.config.data_dir))),
                "sync_interval_s": self.sync_interval,
                "slice_seconds": self.slice_seconds,
            },
            "recording": bool(session and session.state == "recording"),
            "session": session.status() if session else None,
            "events_per_s": self._rate[2],
            "received": self.sub_stats.received,
            "idle_messages": self.intake.idle,
            "dropped": self.dropped(),
            "recovered": self.recovered,
        }
        return report

    def _update_rate(self) -> float:
        now = time.monotonic()
        rows = sum(self.session.rows.values()) if self.session else 0
        when, last_rows, _ = self._rate
        rate = (
            max(0.0, (rows - last_rows) / (now - when)) if now > when and rows >= last_rows else 0.0
        )
        self._rate = (now, rows, round(rate, 1))
        return self._rate[2]

    def counters(self) -> dict[str, Any]:
        session = self.session
        status = session.status() if session else {}
        return {
            "session": session.name if session else "",
            "recording": session.state if session else "idle",
            "events_per_s": self._rate[2],
            "rows": sum(status.get("rows", {}).values()) if status else 0,
            "files": status.get("files", 0),
            "gaps": self.intake.bus_gaps + (status.get("gaps", 0) if status else 0),
            "malformed": self.sub_stats.malformed_total,
            "dropped": self.intake.unexpected + self.intake.rejected + self.sub_stats.gaps,
        }

    def stats(self) -> dict[str, Any]:
        rate = self._update_rate()
        session = self.session
        status = session.status() if session else None
        return {
            "session": session.name if session else None,
            "state": session.state if session else "idle",
            "error": session.error if session else None,
            "duration_s": status["duration_s"] if status else 0.0,
            "events_per_s": rate,
            "rows": status["rows"] if status else {},
            "rows_promoted": status["rows_promoted"] if status else 0,
            "bytes_written": status["bytes_written"] if status else 0,
            "files": status["files"] if status else 0,
            "wal_depth": status["wal_depth"]
            if status
            else {"segments": 0, "unsynced_bytes": 0, "at_risk_ms": 0.0},
            "gaps": {
                "recorded": status["gaps"] if status else 0,
                "bus_gaps": self.intake.bus_gaps,
                "missing_on_bus": self.sub_stats.gaps,
                "source_restarts": self.intake.restarts,
            },
            "dropped": self.dropped(),
            "received": self.sub_stats.received,
        }


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="massive run recorder",
        description="Record market data from the bus into crash-safe Parquet sessions; control it with `massive record start|stop|status`.",
    )
    parser.add_argument(
        "--out",
        metavar="LOCATION",
        help="where recordings go: a folder or an s3:// URI (default: MESH_DATA_DIR/recordings); the write-ahead log always stays under MESH_DATA_DIR",
    )
    parser.add_argument(
        "--sync-interval",
        type=float,
        default=DEFAULT_SYNC_INTERVAL,
        metavar="SECONDS",
        help="fsync the write-ahead log this often: the most data a power cut can take (default 0.2; 0 = every batch)",
    )
    parser.add_argument(
        "--slice-seconds",
        type=float,
        default=DEFAULT_SLICE_SECONDS,
        metavar="SECONDS",
        help="promote the log to Parquet this often (default 60)",
    )
    parser.add_argument(
        "--slice-rows",
        type=int,
        default=DEFAULT_SLICE_ROWS,
        metavar="ROWS",
        help="or as soon as a slice holds this many rows (default 2,000,000)",
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="after a crash, recover the interrupted session but do not resume recording it",
    )
    return parser


def main(config: Config, argv: list[str] | None = None) -> int:
    """`massive run recorder`."""
    args = build_parser().parse_args(argv or [])
    if args.sync_interval < 0 or args.slice_seconds <= 0 or args.slice_rows <= 0:
        log.error("--sync-interval must be >= 0, --slice-seconds and --slice-rows > 0")
        return 2
    service = RecorderService(
        config,
        output=args.out,
        sync_interval=args.sync_interval,
        slice_seconds=args.slice_seconds,
        slice_rows=args.slice_rows,
        resume=not args.no_resume,
    )
    return run_service(service)
