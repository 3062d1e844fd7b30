"""`massive run sim`: the simulator as a mesh service, with heartbeats and commands.

In sim mode (no MASSIVE_API_KEY) it serves the three endpoints and prints their URLs; with a
real key it says it is idle and waits for SIGTERM, so the Procfile can always list it.
Commands: `disconnect` (force WebSocket clients off, for reconnect tests) and `urls`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any, ClassVar

from mesh.config import SIM_HOST, SIM_REST_PORT, SIM_S3_PORT, SIM_WS_PORT, Config
from mesh.service import Runtime, Service, run_service
from mesh.sim import market
from mesh.sim.server import SIM_FREE_KEY, SimServer

log = logging.getLogger(__name__)


class SimService(Service):
    """Runs a `SimServer` until the stop signal."""

    name: ClassVar[str] = "sim"

    def __init__(self, config: Config, args: argparse.Namespace) -> None:
        super().__init__(config)
        self.args = args
        self.sim: SimServer | None = None

    async def run(self, runtime: Runtime) -> None:
        if not self.config.sim_mode:
            self.state = "disabled"
            self.message = "idle: MASSIVE_API_KEY is set, so the mesh talks to Massive"
            log.info("sim is idle: MASSIVE_API_KEY is set, so the mesh talks to Massive; waiting for SIGTERM")
            await runtime.stopping.wait()
            return
        a = self.args
        self.sim = SimServer(
            seed=a.seed,
            symbols=a.symbols,
            rate=a.rate,
            host=a.host,
            ws_port=a.ws_port,
            rest_port=a.rest_port,
            s3_port=a.s3_port,
            free_keys=a.free_keys,
        )
        try:
            await self.sim.start()
        except OSError as exc:
            self.state = "error"
            self.message = f"cannot listen: {exc}"
            log.error("sim cannot listen on %s: %s (is another sim running?)", a.host, exc)
            raise SystemExit(2) from None
        urls = self.sim.urls()
        print(f"sim: WebSocket {urls['websocket']} (delayed: {urls['websocket_delayed']})", flush=True)
        print(f"sim: REST      {urls['rest']}", flush=True)
        print(f"sim: S3        {urls['s3']} bucket {urls['bucket']}", flush=True)
        print(f"sim: {len(self.sim.symbols)} symbols, {a.rate:g} events/s, seed {a.seed}", flush=True)
        try:
            feed = self.sim.feed_task
            assert feed is not None
            stop = asyncio.ensure_future(runtime.stopping.wait())
            done, _ = await asyncio.wait([stop, feed], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if feed in done and feed.exception() is not None:
                raise RuntimeError(f"the live feed stopped: {feed.exception()}")
        finally:
            await self.sim.stop()

    def counters(self) -> dict[str, Any]:
        return self.sim.counters() if self.sim else {}

    def cmd_disconnect(self, key: str | None = None) -> dict[str, Any]:
        """Force WebSocket clients (of `key`, or all) off with a `force_disconnect` status."""
        if self.sim is None:
            raise RuntimeError("the sim is idle (MASSIVE_API_KEY is set)")
        return {"disconnected": self.sim.force_disconnect(key)}

    def cmd_urls(self) -> dict[str, str]:
        if self.sim is None:
            raise RuntimeError("the sim is idle (MASSIVE_API_KEY is set)")
        return self.sim.urls()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="massive run sim",
        description="A local Massive-compatible server: WebSocket feed, REST API and S3 flat files, on 127.0.0.1.",
    )
    p.add_argument("--rate", type=_positive_float, default=1000.0, help="live events per second (default 1000; 500000+ for a firehose)")
    p.add_argument("--seed", type=int, default=market.DEFAULT_SEED, help=f"random seed of history and live feed (default {market.DEFAULT_SEED})")
    p.add_argument("--symbols", type=_symbols, default=list(market.DEFAULT_SYMBOLS), help="comma-separated universe (default: 36 large US stocks and ETFs)")
    p.add_argument("--host", default=SIM_HOST, help=f"address to listen on (default {SIM_HOST})")
    p.add_argument("--ws-port", type=_port, default=SIM_WS_PORT, help=f"WebSocket port (default {SIM_WS_PORT}; 0 = any free port)")
    p.add_argument("--rest-port", type=_port, default=SIM_REST_PORT, help=f"REST port (default {SIM_REST_PORT})")
    p.add_argument("--s3-port", type=_port, default=SIM_S3_PORT, help=f"S3 port (default {SIM_S3_PORT})")
    p.add_argument("--free-keys", type=_keys, default=[SIM_FREE_KEY], help=f"comma-separated API keys on the free plan: 5 REST calls/minute (default {SIM_FREE_KEY})")
    return p


def main(config: Config, argv: list[str] | None = None) -> int:
    """`massive run sim`."""
    args = build_parser().parse_args(argv or [])
    return run_service(SimService(config, args))


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return int(text)


def _symbols(text: str) -> list[str]:
    items = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected at least one symbol, e.g. AAPL,MSFT")
    for s in items:
        if not all(c.isalnum() or c in ".-" for c in s) or len(s) > 12:
            raise argparse.ArgumentTypeError(f"not a stock symbol: {s!r}")
    return list(dict.fromkeys(items))


def _keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]
