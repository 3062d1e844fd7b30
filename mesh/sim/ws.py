"""The WebSocket feed: Massive's `/stocks` and `/delayed/stocks` protocol over one event source.

Connection life as Massive runs it: a `connected` status on open; `auth` first (anything else
gets `auth_required`, silence gets `auth_timeout`); `auth_success` or `auth_failed`; one
`success` status per subscribed or unsubscribed item; then JSON arrays of events. Limits as
Massive applies them: one connection per key and feed (a second one gets `max_connections`
and close 1008), a per-connection send queue that ends in `slow_consumer` when the client
stops reading, and `force_disconnect` on demand. Every status that ends a connection is sent
first, then the close frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import msgspec
import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from mesh.sim import frames
from mesh.sim.source import KINDS, SYMBOLS, Batch, Source, Step

log = logging.getLogger(__name__)

PATHS = {"/stocks": 0, "/delayed/stocks": 15 * 60 * 1000}  # path -> delay in ms
CLOSE_POLICY = 1008
CONNECTED = "Connected Successfully"  # what Massive sends; the sim may add what it plays
WRITE_BATCH = 32  # frames handed to the socket per write
MAX_CONNECTIONS_MESSAGE = (
    "Maximum number of websocket connections exceeded. You have reached the connection limit for your account. "
    "Please contact support at https://massive.com/contact to increase your limit."
)
_ITEM = re.compile(r"^([A-Z]{1,4})\.(\*|[A-Za-z0-9.:/\-]{1,40})$")


class Subscription:
    """What one connection asked for: wildcard kinds and exact (kind, symbol) pairs, as codes."""

    def __init__(self) -> None:
        self.wild: set[int] = set()
        self.exact: set[tuple[int, int]] = set()
        self._matrix: np.ndarray | None = None

    def change(self, item: str, add: bool) -> None:
        kind, symbol = item.split(".", 1)
        k = KINDS.code(kind)
        target: Any = k if symbol == "*" else (k, SYMBOLS.code(symbol))
        bucket: set[Any] = self.wild if symbol == "*" else self.exact
        (bucket.add if add else bucket.discard)(target)
        self._matrix = None

    def __bool__(self) -> bool:
        return bool(self.wild or self.exact)

    def key(self) -> tuple[frozenset[int], frozenset[tuple[int, int]]]:
        return frozenset(self.wild), frozenset(self.exact)

    def covers(self, kinds: Iterable[int]) -> bool:
        return all(k in self.wild for k in kinds)

    def mask(self, kinds: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        m = self._matrix
        if m is None or m.shape[0] < len(KINDS) or m.shape[1] < len(SYMBOLS):
            m = np.zeros((len(KINDS), len(SYMBOLS) + 64), bool)
            for k in self.wild:
                m[k, :] = True
            for k, s in self.exact:
                m[k, s] = True
            self._matrix = m
        return m[kinds, symbols]

    def selects(self, kind: int, symbol: int) -> bool:
        return kind in self.wild or (kind, symbol) in self.exact


class Connection:
    """One client: its feed delay, key, subscriptions and bounded send queue."""

    def __init__(self, ws: ServerConnection, delay_ms: int, market: str) -> None:
        self.ws = ws
        self.delay_ms = delay_ms
        self.market = market
        self.key: str | None = None
        self.subs = Subscription()
        self.queue: deque[tuple[bytes, int]] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.events_sent = 0

    @property
    def live(self) -> bool:
        return self.close_code is None

    def enqueue(self, frame: bytes, events: int = 0) -> None:
        if self.close_code is not None:
            return
        self.queue.append((frame, events))
        self.queued_bytes += len(frame)
        self.wake.set()

    def end(
        self,
        status: str,
        message: str,
        code: int = CLOSE_POLICY,
        before: Iterable[dict[str, str]] = (),
    ) -> None:
        """Drop anything queued, send `status`, then close with `code`."""
        if self.close_code is not None:
            return
        self.queue.clear()
        self.queued_bytes = 0
        self.queue.append((frames.status_frame(*before, frames.status(status, message)), 0))
        self.close_code, self.close_reason = code, status
        self.wake.set()


class Feed:
    """Runs a source and fans each step out to the connections that subscribed to it."""

    def __init__(self, source: Source, queue_limit_bytes: int = 64 * 2**20) -> None:
        self.source = source
        self.queue_limit_bytes = queue_limit_bytes
        self.connections: set[Connection] = set()
        self.events_sent = 0
        self.frames_sent = 0
        self.slow_consumers = 0
        self.steps = 0

    async def run(self) -> None:
        async for step in self.source.steps():
            self.steps += 1
            self.publish(step)

    def publish(self, step: Step) -> None:
        targets = [c for c in self.connections if c.key is not None and c.live and c.subs]
        if not targets:
            return
        batches: dict[int, Batch] = {}
        cache: dict[Any, list[tuple[bytes, int]]] = {}
        for conn in targets:
            batch = batches.get(conn.delay_ms)
            if batch is None:
                batch = batches[conn.delay_ms] = step.render(conn.delay_ms)
            key = (conn.delay_ms, conn.subs.key())
            out = cache.get(key)
            if out is None:
                out = cache[key] = _frames_for(batch, conn.subs)
            for frame, n in out:
                conn.enqueue(frame, n)
            if conn.queued_bytes > self.queue_limit_bytes:
                self.slow_consumers += 1
                log.warning(
                    "slow consumer: dropping a connection with %d bytes queued", conn.queued_bytes
                )
                conn.end(
                    "slow_consumer",
                    "Connection closed: the client is not consuming data fast enough (send buffer full).",
                )


def _frames_for(batch: Batch, subs: Subscription) -> list[tuple[bytes, int]]:
    out: list[tuple[bytes, int]] = []
    if batch.loose:
        picked = [
            e
            for e, k, s in zip(batch.loose, batch.loose_kinds, batch.loose_symbols, strict=True)
            if subs.selects(k, s)
        ]
        out += [(f, f.count(b'"ev"')) for f in frames.join_frames(picked)]
    if len(batch.rows):
        rows = batch.rows
        if not subs.covers(batch.kinds_present()):
            rows = rows[subs.mask(batch.row_kinds, batch.row_symbols)]
        for i, frame in enumerate(frames.row_frames(rows)):
            out.append((frame, min(frames.FRAME_EVENTS, len(rows) - i * frames.FRAME_EVENTS)))
    return out


class WebSocketServer:
    """Serves the feed on `host:port` (0 = any free port; see `.port` after `start()`)."""

    def __init__(
        self,
        feed: Feed,
        accept_key: Callable[[str], str | None],
        host: str = "127.0.0.1",
        port: int = 0,
        auth_timeout: float = 10.0,
        drop_grace: float = 5.0,
        greeting: Callable[[], str] = lambda: CONNECTED,
    ) -> None:
        self.feed = feed
        self.greeting = greeting  # the `connected` status text; clients rely on its status only
        self.accept_key = accept_key  # key -> None if accepted, else the auth_failed message
        self.host = host
        self.port = port
        self.auth_timeout = auth_timeout
        self.drop_grace = drop_grace
        self.server: Server | None = None
        self.in_use: dict[tuple[str, str], Connection] = {}
        self.connections_total = 0
        self.max_connection_refusals = 0
        self.auth_failures = 0
        self.forced = 0
        self._decoder = msgspec.json.Decoder()

    async def start(self) -> None:
        self.server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=_check_path,
            compression=None,
            max_size=2**20,
            close_timeout=2,
            write_limit=2**20,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 3)

    def force_disconnect(self, key: str | None = None, code: int = CLOSE_POLICY) -> int:
        """Disconnect every authenticated connection (of `key`, if given); returns how many."""
        count = 0
        for conn in list(self.feed.connections):
            if conn.key is not None and conn.live and (key is None or conn.key == key):
                conn.end("force_disconnect", "The connection was closed by the server.", code)
                count += 1
        self.forced += count
        return count

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path.split("?", 1)[0]
        conn = Connection(ws, PATHS[path], "stocks")
        self.connections_total += 1
        self.feed.connections.add(conn)
        conn.enqueue(frames.status_frame(frames.status("connected", self.greeting())))
        writer = asyncio.create_task(self._write(conn))
        timeout = asyncio.get_running_loop().call_later(self.auth_timeout, self._auth_timeout, conn)
        try:
            async for message in ws:
                self._on_message(conn, message)
                if not conn.live:
                    break
            if not conn.live:
                await asyncio.wait_for(asyncio.shield(writer), self.drop_grace + 3)
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            timeout.cancel()
            self.feed.connections.discard(conn)
            if conn.key is not None and self.in_use.get((conn.key, path)) is conn:
                del self.in_use[(conn.key, path)]
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    def _auth_timeout(self, conn: Connection) -> None:
        if conn.key is None and conn.live:
            conn.end("auth_timeout", "No authentication request received.")

    async def _write(self, conn: Connection) -> None:
        ws = conn.ws
        try:
            while True:
                if not conn.queue:
                    if conn.close_code is not None:
                        break
                    conn.wake.clear()
                    await conn.wake.wait()
                    continue
                # Up to WRITE_BATCH frames per write: websockets' own pattern for sending from
                # its connection (protocol.send_text inside send_context), minus a call per frame.
                batch = [conn.queue.popleft() for _ in range(min(WRITE_BATCH, len(conn.queue)))]
                async with ws.send_context():
                    for frame, _ in batch:
                        ws.protocol.send_text(frame)
                conn.queued_bytes -= sum(len(f) for f, _ in batch)
                events = sum(n for _, n in batch)
                conn.events_sent += events
                self.feed.events_sent += events
                self.feed.frames_sent += sum(1 for _, n in batch if n)
            await asyncio.wait_for(
                ws.close(conn.close_code or 1000, conn.close_reason), self.drop_grace
            )
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            if conn.close_code is not None and ws.state.name != "CLOSED":
                ws.transport.abort()

    def _on_message(self, conn: Connection, message: str | bytes) -> None:
        try:
            msg = self._decoder.decode(message)
        except msgspec.DecodeError:
            conn.enqueue(
                frames.status_frame(frames.status("error", "invalid message: expected JSON"))
            )
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("action"), str):
            conn.enqueue(
                frames.status_frame(
                    frames.status(
                        "error", 'invalid message: expected {"action": ..., "params": ...}'
                    )
                )
            )
            return
        action, params = msg["action"], msg.get("params")
        if action == "auth":
            self._auth(conn, params)
        elif conn.key is None:
            conn.enqueue(
                frames.status_frame(frames.status("auth_required", "authentication required"))
            )
        elif action in ("subscribe", "unsubscribe"):
            self._subscribe(conn, params, action == "subscribe")
        else:
            conn.enqueue(
                frames.status_frame(frames.status("error", f"unknown action: {action[:40]}"))
            )

    def _auth(self, conn: Connection, params: Any) -> None:
        if conn.key is not None:
            conn.enqueue(frames.status_frame(frames.status("error", "already authenticated")))
            return
        key = params if isinstance(params, str) else ""
        refusal = self.accept_key(key)
        if refusal is not None:
            self.auth_failures += 1
            conn.end("auth_failed", refusal)
            return
        path = next(p for p, d in PATHS.items() if d == conn.delay_ms)
        holder = self.in_use.get((key, path))
        if holder is not None and holder.live:
            self.max_connection_refusals += 1
            conn.end(
                "max_connections",
                MAX_CONNECTIONS_MESSAGE,
                before=[frames.status("auth_success", "authenticated")],
            )
            return
        conn.key = key
        self.in_use[(key, path)] = conn
        conn.enqueue(frames.status_frame(frames.status("auth_success", "authenticated")))

    def _subscribe(self, conn: Connection, params: Any, add: bool) -> None:
        if not isinstance(params, str) or not params.strip():
            conn.enqueue(
                frames.status_frame(
                    frames.status(
                        "error", "params must be a comma-separated list such as T.AAPL,Q.*"
                    )
                )
            )
            return
        verb = "subscribed to" if add else "unsubscribed to"
        for raw in params.split(","):
            item = raw.strip()
            if not _ITEM.match(item):
                conn.enqueue(
                    frames.status_frame(
                        frames.status("error", f"invalid subscription: {item[:60]}")
                    )
                )
                continue
            conn.subs.change(item, add)
            conn.enqueue(frames.status_frame(frames.status("success", f"{verb}: {item}")))


def _check_path(connection: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?", 1)[0] not in PATHS:
        return connection.respond(
            HTTPStatus.NOT_FOUND, "Not Found: the sim serves /stocks and /delayed/stocks\n"
        )
    return None
