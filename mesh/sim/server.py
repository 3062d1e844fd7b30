"""`SimServer`: the WebSocket feed, the REST API and the S3 endpoint started and stopped as one.

Tests start it in-process (`async with SimServer(ws_port=0, ...) as sim:`) and read the chosen
ports and URLs from it; `massive run sim` wraps it in a mesh service. The WebSocket side runs on
the caller's asyncio loop; REST and S3 run on werkzeug's threaded servers in background threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from mesh.config import SIM_API_KEY, SIM_HOST, SIM_S3_ACCESS_KEY_ID, SIM_S3_SECRET_ACCESS_KEY
from mesh.sim import history, market
from mesh.sim.clock import SimClock
from mesh.sim.flatfiles import BUCKET, FlatFiles, S3Gateway, S3Server
from mesh.sim.generator import LiveSource
from mesh.sim.playback import PlaybackSource
from mesh.sim.rest import RestApp, RestServer
from mesh.sim.source import Source
from mesh.sim.ws import CLOSE_POLICY, CONNECTED, Feed, WebSocketServer

log = logging.getLogger(__name__)

SIM_FREE_KEY = "sim-free-key"  # a demo key on the free plan: 5 REST calls a minute, no WebSocket
NO_WEBSOCKET_ON_PLAN = (
    "Your plan doesn't include websocket access. Visit https://massive.com/pricing to upgrade."
)


class SimServer:
    """A local Massive: WebSocket feed, REST API and `flatfiles` S3 bucket on 127.0.0.1."""

    def __init__(
        self,
        *,
        seed: int = market.DEFAULT_SEED,
        symbols: Iterable[str] | None = None,
        rate: float = 1000.0,
        host: str = SIM_HOST,
        ws_port: int = 0,
        rest_port: int = 0,
        s3_port: int = 0,
        api_keys: Iterable[str] = (SIM_API_KEY,),
        free_keys: Iterable[str] = (SIM_FREE_KEY,),
        s3_access_key: str = SIM_S3_ACCESS_KEY_ID,
        s3_secret_key: str = SIM_S3_SECRET_ACCESS_KEY,
        source: Source | None = None,
        queue_limit_bytes: int = 64 * 2**20,
        auth_timeout: float = 10.0,
        rest: bool = True,
        s3: bool = True,
        clock: SimClock | None = None,
        scale: float = history.DEFAULT_SCALE,
    ) -> None:
        self.seed = seed
        self.scale = scale  # REST's and the flat files' trades and quotes, times a real day's
        self.symbols = list(symbols or market.DEFAULT_SYMBOLS)
        self.host = host
        self.api_keys = set(api_keys)
        self.free_keys = set(free_keys)
        self.clock = clock
        self.playback = (
            PlaybackSource(self.symbols, seed, clock, scale=scale)
            if clock is not None and source is None
            else None
        )
        self.live = (
            LiveSource(self.symbols, seed=seed, rate=rate)
            if source is None and self.playback is None
            else None
        )
        self.source: Source = source or self.playback or self.live  # type: ignore[assignment]
        self.feed = Feed(self.source, queue_limit_bytes)
        attach = getattr(self.source, "attach", None)
        if callable(attach):  # a source that paces by, or waits for, the feed's clients (a replay)
            attach(self.feed)
        self.ws = WebSocketServer(
            self.feed,
            self._refusal,
            host,
            ws_port,
            auth_timeout=auth_timeout,
            greeting=self.greeting,
        )
        self._want = {"rest": (rest, rest_port), "s3": (s3, s3_port)}
        self._s3_keys = (s3_access_key, s3_secret_key)
        self.rest: RestServer | None = None
        self.s3: S3Server | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rate_mark = (time.monotonic(), 0)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> SimServer:
        self._loop = asyncio.get_running_loop()
        await self.ws.start()
        await asyncio.to_thread(self._start_http)
        self._feed_task = asyncio.create_task(self.feed.run(), name="sim-feed")
        return self

    def _start_http(self) -> None:
        window = _Window(self.clock)
        enabled, port = self._want["rest"]
        if enabled:
            app = RestApp(
                self.seed,
                self.symbols,
                self.api_keys,
                self.free_keys,
                self._live_last,
                self._disconnect_threadsafe,
                clock=self.clock,
                scale=self.scale,
            )
            self.rest = RestServer(app, self.host, port)
            self.rest.start()
        enabled, port = self._want["s3"]
        if enabled:
            gateway = S3Gateway(
                FlatFiles(self.seed, self.symbols, window, self.scale), *self._s3_keys
            )
            self.s3 = S3Server(gateway, self.host, port)
            self.s3.start()

    async def stop(self) -> None:
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._feed_task
        for conn in list(self.feed.connections):
            conn.end("force_disconnect", "The server is shutting down.", 1001)
        await self.ws.stop()
        await asyncio.to_thread(self._stop_http)

    def _stop_http(self) -> None:
        for server in (self.rest, self.s3):
            if server is not None:
                server.stop()

    async def __aenter__(self) -> SimServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def feed_task(self) -> asyncio.Task[None] | None:
        return self._feed_task

    # --- where it listens ------------------------------------------------------------------------

    @property
    def ws_port(self) -> int:
        return self.ws.port

    @property
    def rest_port(self) -> int:
        return self.rest.port if self.rest else 0

    @property
    def s3_port(self) -> int:
        return self.s3.port if self.s3 else 0

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/stocks"

    @property
    def delayed_ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/delayed/stocks"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def bucket(self) -> str:
        return BUCKET

    def urls(self) -> dict[str, str]:
        return {
            "websocket": self.ws_url,
            "websocket_delayed": self.delayed_ws_url,
            "rest": self.rest_url,
            "s3": self.s3_endpoint,
            "bucket": BUCKET,
        }

    # --- control ---------------------------------------------------------------------------------

    def force_disconnect(self, key: str | None = None, code: int = CLOSE_POLICY) -> int:
        """Send `force_disconnect` and close every authenticated WebSocket (of `key`); call on the loop."""
        return self.ws.force_disconnect(key, code)

    def _disconnect_threadsafe(self, key: str | None) -> int:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._loop:
                return self.force_disconnect(key)

        async def run() -> int:
            return self.force_disconnect(key)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=5)

    def _live_last(self, symbol: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        if self.live is None:
            return None, None
        return self.live.last_trade.get(symbol), self.live.last_quote.get(symbol)

    def greeting(self) -> str:
        """The `connected` status text: Massive's, plus which session a playing sim plays."""
        if self.clock is None:
            return CONNECTED
        return f"{CONNECTED} (simulated: {self.clock.session.describe()})"

    def _refusal(self, key: str) -> str | None:
        if key in self.api_keys:
            return None
        if key in self.free_keys:
            return NO_WEBSOCKET_ON_PLAN
        return "authentication failed"

    def counters(self) -> dict[str, Any]:
        now, sent = time.monotonic(), self.feed.events_sent
        mark_t, mark_sent = self._rate_mark
        rate = (sent - mark_sent) / (now - mark_t) if now > mark_t else 0.0
        self._rate_mark = (now, sent)
        rest = self.rest.app if self.rest else None
        s3 = self.s3.gateway if self.s3 else None
        own = getattr(self.source, "counters", None)
        return {
            "connections": sum(1 for c in self.feed.connections if c.key is not None),
            "events_generated": self.live.generated
            if self.live
            else getattr(self.playback, "played", 0),
            "events_sent": sent,
            "events_per_s": round(rate, 1),
            "rest_requests": rest.requests if rest else 0,
            "rest_rate_limited": rest.rate_limited if rest else 0,
            "s3_requests": s3.requests if s3 else 0,
            "s3_files_built": s3.files_built if s3 else 0,
            "slow_consumer": self.feed.slow_consumers,
            "max_connections": self.ws.max_connection_refusals,
            "auth_failed": self.ws.auth_failures,
            "force_disconnect": self.ws.forced,
            **(own() if callable(own) else {}),
        }


class _Window:
    """The completed days before today (the played session's day with a clock), recomputed when it changes."""

    def __init__(self, clock: SimClock | None = None) -> None:
        self.clock = clock
        self._cached: tuple[Any, market.HistoryWindow] | None = None

    def __call__(self) -> market.HistoryWindow:
        today = market.today_et() if self.clock is None else self.clock.today()
        if self._cached is None or self._cached[0] != today:
            self._cached = (today, market.HistoryWindow.ending_before(today))
        return self._cached[1]
