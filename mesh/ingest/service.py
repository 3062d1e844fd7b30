"""`massive run ingest`: one process that reads Massive's WebSocket and publishes our batches.

Reading and processing never starve each other: a reader task only moves frames (with their
arrival time) from the socket into a queue, so pings are answered and the server's buffer drains;
a processor task decodes, normalises and publishes in bounded chunks, yielding to the reader
between chunks. The connection loop reconnects by cause (mesh.ingest.policy), resubscribes
everything, and reports what a reconnect cost as gap records (mesh.ingest.gaps).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidURI

from mesh import topics
from mesh.argtypes import OneLineParser
from mesh.config import Config
from mesh.gaps import GapTracker, IntColumn
from mesh.ingest import massive, scan
from mesh.ingest.policy import Cause, ReconnectPolicy
from mesh.rates import RateMeter
from mesh.schema import BarBatch, Gap, GapBatch
from mesh.service import Runtime, Service, run_service

log = logging.getLogger("mesh.ingest")

MAX_QUEUED_FRAMES = 50_000  # ~5 M events: beyond this the process cannot keep up and says so
CHUNK_FRAMES = 64  # frames processed before yielding to the reader
GROUP_FRAMES = 8  # frames already waiting that are published together (one batch per type)
AUTH_TIMEOUT = 10.0
STOP_DRAIN_SECONDS = 1.0  # at a stop, frames already read are published for at most this long
_TICKS = {massive.WsQuote, massive.WsTrade}  # what the scanner takes; anything else goes alone
QUOTES, TRADES, GAPS = topics.quotes(), topics.trades(), topics.gaps()
_ITEM = re.compile(r"[A-Z]{1,4}\.(\*|[A-Za-z0-9.:/\-]+)")


class SubscriptionError(ValueError):
    """A subscription item that is not Massive's EVENT.SYMBOL syntax."""


def parse_params(params: str | list[str]) -> list[str]:
    items = params.split(",") if isinstance(params, str) else list(params)
    items = [item.strip() for item in items if item and item.strip()]
    for item in items:
        if not _ITEM.fullmatch(item):
            raise SubscriptionError(
                f"{item!r} is not a subscription: expected EVENT.SYMBOL such as Q.AAPL, T.*, A.MSFT or AM.*"
            )
    if not items:
        raise SubscriptionError("no subscription items given")
    return items


class IngestService(Service):
    name = "ingest"

    def __init__(
        self,
        config: Config,
        *,
        url: str | None = None,
        subscriptions: str | None = None,
        ping_interval: float = 10.0,
        ping_timeout: float = 10.0,
        max_connections_cooldown: float = 60.0,
    ) -> None:
        super().__init__(config)
        self.url = url or config.ws_url
        self.subscriptions: list[str] = parse_params(subscriptions or config.subscriptions)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.policy = ReconnectPolicy(max_connections_cooldown=max_connections_cooldown)
        self.connection = "starting"
        self.ws: Any = None
        self.queue: deque[tuple[int, bytes | str]] = deque()
        self._wake = asyncio.Event()
        self._reconnect_now = asyncio.Event()
        self.errors = massive.DecodeErrors()
        self.gaps = GapTracker()
        self.columns = scan.Columns()  # reused: frames are scanned into these arrays, then encoded
        self.scanner = config.ingest_scanner  # MESH_INGEST_SCANNER=off: every frame via msgspec
        self.frames_scanned = 0  # frames the compiled scanner took
        # frames msgspec decoded: those the scanner declined (bars, statuses, bad input, the
        # unusual, or no room left: frames_over_capacity), or every frame with the scanner off
        self.frames_via_msgspec = 0
        self._logged_bad_input: set[str] = set()
        self.meters = {
            kind: RateMeter() for kind in ("events", "quotes", "trades", "bars", "frames")
        }
        self.reconnects = 0  # drops of an established stream that were followed by a retry
        self.connect_failures = 0  # attempts that never reached streaming
        self.ever_streamed = False
        self._streamed_this_session = False
        self.dropped_frames = 0
        self.replaced_bars = 0
        self.last_event_ns = 0
        self.server_status = ""
        self.next_retry_at = 0.0
        self._bar_starts: dict[tuple[str, str], int] = {}
        self._close_cause = ""

    # --- heartbeat -------------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        m = self.meters
        age = (time.time_ns() - self.last_event_ns) / 1e9 if self.last_event_ns else None
        counters: dict[str, Any] = {
            "connection": self.connection,
            "events": m["events"].total,
            "events_per_s": round(m["events"].rate, 1),
            "quotes_per_s": round(m["quotes"].rate, 1),
            "trades_per_s": round(m["trades"].rate, 1),
            "bars_per_s": round(m["bars"].rate, 1),
            "frames_per_s": round(m["frames"].rate, 1),
            "scanner": "on" if self.scanner else "off",
            "frames_scanned": self.frames_scanned,
            "frames_via_msgspec": self.frames_via_msgspec,
            "frames_over_capacity": self.columns.over_capacity,
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
            "last_event_age_s": round(age, 3) if age is not None else -1,
            "gaps": self.gaps.detected,
            "malformed": self.errors.total,
            "replaced_bars": self.replaced_bars,
            "queue_depth": len(self.queue),
            "dropped_frames": self.dropped_frames,
            "subscriptions": len(self.subscriptions),
            "server_status": self.server_status,
        }
        for kind, count in self.errors.counts.items():
            counters[f"malformed_{kind}"] = count
        if self.connection in ("backoff", "cooldown"):
            counters["retry_in_s"] = round(max(0.0, self.next_retry_at - time.monotonic()), 1)
        return counters

    # --- commands --------------------------------------------------------------------------------

    async def cmd_subscribe(self, params: str | list[str]) -> list[str]:
        items = parse_params(params)
        new = [item for item in items if item not in self.subscriptions]
        self.subscriptions.extend(new)
        if new and self.connection == "streaming" and self.ws is not None:
            await self.ws.send(massive.subscribe_message(new))
        return self.subscriptions

    async def cmd_unsubscribe(self, params: str | list[str]) -> list[str]:
        items = parse_params(params)
        gone = [item for item in items if item in self.subscriptions]
        self.subscriptions = [item for item in self.subscriptions if item not in gone]
        if gone and self.connection == "streaming" and self.ws is not None:
            await self.ws.send(massive.unsubscribe_message(gone))
        return self.subscriptions

    def cmd_list(self) -> dict[str, Any]:
        return {"subscriptions": self.subscriptions, "connection": self.connection, "url": self.url}

    async def cmd_reconnect(self) -> str:
        """Drop the connection (or end a wait) and connect again now."""
        self.policy.attempts = 0
        self._reconnect_now.set()
        if self.ws is not None:
            await self.ws.close()
        return "reconnecting"

    # --- main loop -------------------------------------------------------------------------------

    async def run(self, runtime: Runtime) -> None:
        # the compiled scanner, loaded from numba's cache (or compiled, on a machine's first start)
        # before the first frame; in a thread, so the heartbeat says "starting" meanwhile
        started = time.monotonic()
        if self.scanner:
            await asyncio.to_thread(scan.warm_up)
        else:
            log.info("frame scanner off (MESH_INGEST_SCANNER=off): msgspec decodes every frame")
        if time.monotonic() - started > 2:
            log.info(
                "compiled the frame scanner in %.0f s (cached for later starts)",
                time.monotonic() - started,
            )
        processor = asyncio.create_task(self._process_forever(runtime))
        try:
            while not runtime.stopping.is_set():
                cause = await self._session(runtime)
                if runtime.stopping.is_set():
                    break
                self.gaps.disconnected(cause, time.time_ns())
                delay = self.policy.delay(cause)
                if delay is None:
                    self.connection, self.state = "auth_failed", "error"
                    self.message = f"authentication failed at {_safe(self.url)}: check MASSIVE_API_KEY; not retrying (send `reconnect` to try again)"
                    runtime.event("error", self.message)
                    await self._wait(runtime, None)
                    continue
                self.connection = "cooldown" if cause == Cause.MAX_CONNECTIONS else "backoff"
                self.state = "degraded"
                if cause == Cause.MAX_CONNECTIONS:
                    self.message = f"another client holds this key's connection; waiting {delay:.0f} s before trying again"
                    runtime.event("warning", self.message)
                elif not self.ever_streamed:
                    self.message = f"waiting for the feed at {_safe(self.url)} ({cause}); retrying in {delay:.1f} s"
                    log.info("%s", self.message)
                else:
                    self.message = f"disconnected ({cause}); reconnecting in {delay:.1f} s"
                    log.warning("%s", self.message)
                if self._streamed_this_session:
                    self.reconnects += 1
                else:
                    self.connect_failures += 1
                await self._wait(runtime, delay)
        finally:
            processor.cancel()
            await asyncio.gather(processor, return_exceptions=True)
            self._drain(
                runtime, budget=STOP_DRAIN_SECONDS
            )  # what was read before the stop still goes out

    async def _wait(self, runtime: Runtime, delay: float | None) -> None:
        self._reconnect_now.clear()
        self.next_retry_at = time.monotonic() + (delay or 0)
        waits = [
            asyncio.ensure_future(runtime.stopping.wait()),
            asyncio.ensure_future(self._reconnect_now.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _session(self, runtime: Runtime) -> str:
        """One connection from open to close; returns the cause of its end."""
        self.connection = "connecting"
        self._close_cause = ""
        self._streamed_this_session = False
        try:
            async with websockets.connect(
                self.url,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                open_timeout=10,
                close_timeout=1,
                max_size=2**24,
                max_queue=1024,
            ) as ws:
                self.ws = ws
                cause = await self._authenticate(ws)
                if cause:
                    return cause
                if self.subscriptions:
                    await ws.send(massive.subscribe_message(self.subscriptions))
                self.connection, self.state, self.message = "streaming", "ok", ""
                self._streamed_this_session = True
                if (
                    not self.ever_streamed
                ):  # failures while the feed was still starting do not slow later reconnects
                    self.ever_streamed = True
                    self.policy.attempts = 0
                connected_at = time.monotonic()
                log.info("streaming from %s: %s", _safe(self.url), ",".join(self.subscriptions))
                stop = asyncio.ensure_future(runtime.stopping.wait())
                try:
                    reader = asyncio.ensure_future(self._read(ws))
                    await asyncio.wait([reader, stop], return_when=asyncio.FIRST_COMPLETED)
                    if not reader.done():
                        reader.cancel()
                        await ws.close()
                        return "stopping"
                    reader.result()
                    self._drain(
                        runtime
                    )  # the server's last words (e.g. max_connections) decide the cause
                finally:
                    stop.cancel()
                    self.policy.connected_for(time.monotonic() - connected_at)
                return self._close_cause or Cause.SERVER_CLOSE
        except ConnectionClosed as exc:
            await self._salvage(runtime)
            if self._close_cause:
                return self._close_cause
            if exc.rcvd is None and "keepalive" in str(exc):
                return Cause.QUIET
            return (
                Cause.ABNORMAL_CLOSE
                if exc.rcvd is None or exc.rcvd.code != 1000
                else Cause.SERVER_CLOSE
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self.server_status = f"connect failed: {type(exc).__name__}: {exc}"
            return Cause.NETWORK
        finally:
            self.ws = None

    async def _authenticate(self, ws: Any) -> str:
        self.connection = "authenticating"
        await ws.send(
            massive.auth_message(self.config.api_key.reveal() if self.config.api_key else "")
        )
        deadline = time.monotonic() + AUTH_TIMEOUT
        while True:
            data = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
            statuses = [
                e
                for e in massive.decode_frame(data, self.errors)
                if isinstance(e, massive.WsStatus)
            ]
            for event in statuses:
                self._on_status(event.status, event.message)
            found = {event.status for event in statuses}
            # the whole frame decides: Massive may send auth_success and max_connections together
            if "max_connections" in found:
                return Cause.MAX_CONNECTIONS
            if found & {"auth_failed", "auth_timeout"}:
                return Cause.AUTH_FAILED
            if "auth_success" in found:
                return ""

    async def _read(self, ws: Any) -> None:
        queue, wake, recv = self.queue, self._wake, ws.recv
        while True:
            try:
                data = await recv(decode=False)  # bytes: the scanner reads them as they came
            except ConnectionClosedOK:
                return
            if len(queue) >= MAX_QUEUED_FRAMES:
                self.dropped_frames += 1
                continue
            queue.append((time.time_ns(), data))
            wake.set()

    # --- processing ------------------------------------------------------------------------------

    async def _process_forever(self, runtime: Runtime) -> None:
        queue, wake = self.queue, self._wake
        while True:
            await wake.wait()
            wake.clear()
            while queue:
                for _ in range(0, min(CHUNK_FRAMES, len(queue)), GROUP_FRAMES):
                    self.process_frames(
                        runtime, [queue.popleft() for _ in range(min(GROUP_FRAMES, len(queue)))]
                    )
                await asyncio.sleep(0)

    async def _salvage(self, runtime: Runtime) -> None:
        """Process what the server sent before it closed: its last status says why."""
        ws = self.ws
        while ws is not None:
            try:
                data = await asyncio.wait_for(ws.recv(decode=False), timeout=0.5)
            except (ConnectionClosed, TimeoutError):
                break
            self.queue.append((time.time_ns(), data))
        self._drain(runtime)

    def _drain(self, runtime: Runtime, budget: float | None = None) -> None:
        """Publish every queued frame, or (with a budget in seconds) what that allows; the rest is counted as dropped."""
        queue = self.queue
        deadline = None if budget is None else time.monotonic() + budget
        while queue and (deadline is None or time.monotonic() < deadline):
            self.process_frames(
                runtime, [queue.popleft() for _ in range(min(GROUP_FRAMES, len(queue)))]
            )
        if queue:
            self.dropped_frames += len(queue)
            log.warning("stopping: %d frames read from the socket were not published", len(queue))
            queue.clear()

    def process_frame(self, runtime: Runtime, data: bytes | str, ts_recv: int) -> None:
        """Decode, normalise and publish one Massive frame."""
        self.process_frames(runtime, [(ts_recv, data)])

    def process_frames(self, runtime: Runtime, items: list[tuple[int, bytes | str]]) -> None:
        """Decode, normalise and publish frames that were waiting together ((ts_recv, data) each).

        Their events go out as one batch per type: under load, fewer and larger bus messages
        cost every process less per event; a lone frame is published as soon as it is read.
        Quote and trade frames are scanned straight into encoded batches (mesh.ingest.scan);
        a frame the scanner declines (bars, statuses, bad input, anything unusual) is decoded
        by msgspec (mesh.ingest.massive), after what came before it has gone out, so the bus
        keeps the feed's order.
        """
        if not self.scanner:
            self._process_with_msgspec(runtime, items)
            self.meters["frames"].add(len(items))
            return
        columns = self.columns
        columns.reserve(sum(len(data) for _, data in items))
        for ts_recv, data in items:
            if columns.add(data, ts_recv):
                self.frames_scanned += 1
                continue
            self._publish_scanned(runtime, columns)
            events = self._decode(data)
            self._publish_normalised(runtime, massive.normalise(events, ts_recv, self.errors))
        self._publish_scanned(runtime, columns)
        self.meters["frames"].add(len(items))

    def _process_with_msgspec(self, runtime: Runtime, items: list[tuple[int, bytes | str]]) -> None:
        """The reference path alone (MESH_INGEST_SCANNER=off), batched as the scanner batches.

        Consecutive frames of quotes and trades only are normalised together, one batch per type,
        as the scanner would have taken them; a frame with anything else (bars, statuses) goes out
        on its own after them, so the bus keeps the feed's order.
        """
        events: list[massive.WsEvent] = []
        receive_times: list[int] = []
        for ts_recv, data in items:
            decoded = self._decode(data)
            if _TICKS.issuperset(map(type, decoded)):
                events += decoded
                receive_times += [ts_recv] * len(decoded)
                continue
            if events:
                self._publish_normalised(
                    runtime, massive.normalise(events, receive_times, self.errors)
                )
                events, receive_times = [], []
            self._publish_normalised(runtime, massive.normalise(decoded, ts_recv, self.errors))
        if events:
            self._publish_normalised(runtime, massive.normalise(events, receive_times, self.errors))

    def _decode(self, data: bytes | str) -> list[massive.WsEvent]:
        """msgspec's typed decode of one frame; its bad input counted (and the first of a kind logged)."""
        self.frames_via_msgspec += 1
        bad_before = self.errors.total
        events = massive.decode_frame(data, self.errors)
        if self.errors.total != bad_before:
            self._log_bad_input(data)
        return events

    def _log_bad_input(self, data: bytes | str) -> None:
        """The first frame of each kind of bad input is logged; all are counted in the stats."""
        for kind in self.errors.counts.keys() - self._logged_bad_input:
            self._logged_bad_input.add(kind)
            sample = data[:160] if isinstance(data, str) else data[:160].decode("utf-8", "replace")
            log.warning(
                "skipped bad input (%s), first seen in frame %r; further ones are counted as malformed_%s, not logged",
                kind,
                sample,
                kind,
            )

    def _publish_scanned(self, runtime: Runtime, columns: scan.Columns) -> None:
        events = columns.events
        if not events:
            return
        quotes, trades = columns.take()
        gaps: list[Gap] = []
        if quotes is not None:
            gaps += self._publish_ticks(
                runtime, "quote", quotes.payload, quotes.symbols, quotes.sequences, quotes.ts_event
            )
        if trades is not None:
            gaps += self._publish_ticks(
                runtime, "trade", trades.payload, trades.symbols, trades.sequences, trades.ts_event
            )
        if gaps:
            runtime.publish(GAPS, GapBatch.from_rows(gaps))
        self.meters["events"].add(events)

    def _publish_normalised(self, runtime: Runtime, out: massive.Normalised) -> None:
        gaps: list[Gap] = []
        if out.quotes is not None:
            gaps += self._publish_ticks(
                runtime,
                "quote",
                out.quotes,
                out.quotes.symbol,
                out.quotes.sequence,
                out.quotes.ts_event,
            )
        if out.trades is not None:
            gaps += self._publish_ticks(
                runtime,
                "trade",
                out.trades,
                out.trades.symbol,
                out.trades.sequence,
                out.trades.ts_event,
            )
        for bars in (out.bars_1s, out.bars_1m):
            if bars is not None:
                self._publish_bars(runtime, bars)
        if gaps:
            runtime.publish(GAPS, GapBatch.from_rows(gaps))
        self.meters["events"].add(out.events)
        for status, message in out.statuses:
            self._on_status(status, message)

    def _publish_ticks(
        self,
        runtime: Runtime,
        kind: str,
        payload: Any,
        symbols: Sequence[str],
        sequences: IntColumn,
        ts_event: IntColumn,
    ) -> list[Gap]:
        """Publish one quote or trade batch (a record, or one already encoded); the gaps its symbols close."""
        gaps = self.gaps.observe(kind, symbols, sequences, ts_event)
        runtime.publish(QUOTES if kind == "quote" else TRADES, payload)
        self.meters[f"{kind}s"].add(len(symbols))
        self.last_event_ns = max(self.last_event_ns, int(ts_event[-1]))
        return gaps

    def _publish_bars(self, runtime: Runtime, bars: BarBatch) -> None:
        """New windows go out as they are; re-sent windows go out in a batch marked `replaces`."""
        fresh, replaced = [], []
        starts = self._bar_starts
        for bar in bars.rows():
            key = (bars.interval, bar.symbol)
            if starts.get(key, -1) >= bar.ts_start:
                replaced.append(bar)
            else:
                starts[key] = bar.ts_start
                fresh.append(bar)
        topic = topics.bars(bars.interval)
        if fresh:
            runtime.publish(
                topic, bars if not replaced else BarBatch.from_rows(fresh, interval=bars.interval)
            )
        if replaced:
            self.replaced_bars += len(replaced)
            runtime.publish(
                topic, BarBatch.from_rows(replaced, interval=bars.interval, replaces=True)
            )
        self.meters["bars"].add(len(bars.symbol))
        self.last_event_ns = max(self.last_event_ns, bars.ts_end[-1])

    def _on_status(self, status: str, message: str) -> None:
        self.server_status = f"{status}: {message}" if message else status
        if status in ("max_connections",):
            self._close_cause = Cause.MAX_CONNECTIONS
        elif status in ("slow_consumer", "force_disconnect"):
            self._close_cause = Cause.SERVER_CLOSE
            log.warning("server: %s", self.server_status)
        elif status in ("auth_failed", "auth_timeout"):
            self._close_cause = Cause.AUTH_FAILED
        elif status not in ("connected", "auth_success", "success"):
            log.warning("server: %s", self.server_status)


def _safe(url: str) -> str:
    """A URL fit for logs: no query string (a key could be in it)."""
    return url.split("?", 1)[0]


def main(config: Config, argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="massive run ingest",
        description="Read Massive's WebSocket (MASSIVE_WS_URL) and publish quotes, trades and bars on the bus.",
    )
    parser.add_argument(
        "--url", help="WebSocket URL (default MASSIVE_WS_URL; in sim mode the simulator)"
    )
    parser.add_argument(
        "--subscriptions", help="Massive params, e.g. Q.*,T.AAPL (default MASSIVE_SUBSCRIPTIONS)"
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=10.0,
        help="seconds between WebSocket pings (default 10)",
    )
    parser.add_argument(
        "--ping-timeout",
        type=float,
        default=10.0,
        help="seconds without a pong before the socket counts as dead (default 10)",
    )
    parser.add_argument(
        "--max-connections-cooldown",
        type=float,
        default=60.0,
        help="seconds to wait after max_connections (default 60)",
    )
    parser.add_argument("--name", default="ingest", help="service name on the bus (default ingest)")
    args = parser.parse_args(argv or [])
    try:
        service = IngestService(
            config,
            url=args.url,
            subscriptions=args.subscriptions,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
            max_connections_cooldown=args.max_connections_cooldown,
        )
    except SubscriptionError as exc:
        parser.error(str(exc))
    return run_service(service, args.name)
