"""`massive run sim`: the simulator as a mesh service, with heartbeats and commands.

In sim mode (no MASSIVE_API_KEY) it serves the three endpoints and prints their URLs; with a
real key it says it is idle and waits for SIGTERM, so the Procfile can always list it.
Commands: `disconnect` (force WebSocket clients off, for reconnect tests) and `urls`.
The WebSocket feed plays a trading session's history (`mesh.sim.playback`): today's while the
market is in session, else the last trading day's, or any session from `--at`. With `--rate`
it generates synthetic flow for benchmarks instead (`mesh.sim.generator`); with `--replay` it
replays a recording (`mesh.sim.replay`); REST and S3 keep serving generated history.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import time
from typing import Any, ClassVar

from mesh.argtypes import OneLineParser, positive_float
from mesh.config import SIM_HOST, SIM_REST_PORT, SIM_S3_PORT, SIM_WS_PORT, Config
from mesh.datasets import storage
from mesh.service import Runtime, Service, run_service
from mesh.sim import history, market
from mesh.sim.clock import AtError, Session, SimClock, session_at, session_now
from mesh.sim.replay import Recording, ReplayError, ReplaySource, open_recording
from mesh.sim.server import SIM_FREE_KEY, SimServer

log = logging.getLogger(__name__)


class SimService(Service):
    """Runs a `SimServer` until the stop signal."""

    name: ClassVar[str] = "sim"

    def __init__(self, config: Config, args: argparse.Namespace) -> None:
        super().__init__(config)
        self.args = args
        self.sim: SimServer | None = None
        self.replay: ReplaySource | None = None

    async def run(self, runtime: Runtime) -> None:
        if not self.config.sim_mode:
            self.state = "disabled"
            self.message = "idle: MASSIVE_API_KEY is set, so the mesh talks to Massive" + (
                " (--replay needs sim mode)" if self.args.replay else ""
            )
            log.info(
                "sim is idle: MASSIVE_API_KEY is set, so the mesh talks to Massive; waiting for SIGTERM"
            )
            await runtime.stopping.wait()
            return
        a = self.args
        recording: Recording | None = getattr(a, "recording", None)
        if a.replay and recording is None:
            try:
                recording = open_recording(
                    a.replay,
                    storage.local_datasets(
                        self.config.data_location, self.config.data_dir, a.replay
                    ),
                    capture_only=a.capture_only,
                )
            except ReplayError as exc:
                self.state, self.message = "error", str(exc)
                log.error("%s", exc)
                raise SystemExit(2) from None
        if recording is not None:
            self.replay = ReplaySource(recording, speed=a.speed, loop=a.loop)
        clock = None if recording is not None or a.rate is not None else SimClock(_session(a))
        self.sim = SimServer(
            seed=a.seed,
            symbols=a.symbols,
            rate=a.rate or 1000.0,
            clock=clock,
            scale=a.scale,
            host=a.host,
            ws_port=a.ws_port,
            rest_port=a.rest_port,
            s3_port=a.s3_port,
            free_keys=a.free_keys,
            source=self.replay,
        )
        try:
            await self.sim.start()
        except OSError as exc:
            self.state = "error"
            self.message = f"cannot listen: {exc}"
            log.error("sim cannot listen on %s: %s (is another sim running?)", a.host, exc)
            raise SystemExit(2) from None
        urls = self.sim.urls()
        print(
            f"sim: WebSocket {urls['websocket']} (delayed: {urls['websocket_delayed']})", flush=True
        )
        print(f"sim: REST      {urls['rest']}", flush=True)
        print(f"sim: S3        {urls['s3']} bucket {urls['bucket']}", flush=True)
        if self.replay is not None:
            r = self.replay.recording
            loop = ", looping" if a.loop else ""
            print(f"sim: replaying {r.shown} ({r.quotes} quotes, {r.trades} trades, {r.bars} bars) at {self.replay.speed_text}{loop}; "
                  "it starts when a client subscribes", flush=True)  # fmt: skip
            print(
                f"sim: REST and S3 serve {len(self.sim.symbols)} symbols of generated history, seed {a.seed}",
                flush=True,
            )
            self.message = self.replay.message()
        elif clock is not None:
            print(
                f"sim: {len(self.sim.symbols)} symbols, seed {a.seed}: {clock.session.describe()}",
                flush=True,
            )
            self.message = clock.session.describe()
        else:
            print(
                f"sim: {len(self.sim.symbols)} symbols, {a.rate:g} events/s of synthetic flow, seed {a.seed}",
                flush=True,
            )
        try:
            feed = self.sim.feed_task
            assert feed is not None
            stop = asyncio.ensure_future(runtime.stopping.wait())
            done, _ = await asyncio.wait([stop, feed], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if feed in done and feed.exception() is not None:
                if self.replay is not None:
                    self.state, self.message = "error", str(feed.exception())
                    raise RuntimeError(f"the replay stopped: {feed.exception()}")
                raise RuntimeError(f"the live feed stopped: {feed.exception()}")
        finally:
            await self.sim.stop()

    def counters(self) -> dict[str, Any]:
        if self.replay is not None and self.state != "error":
            self.message = self.replay.message()
            self.state = "degraded" if self.replay.state in ("empty", "failed") else "ok"
        if self.sim is not None and self.sim.clock is not None:
            self.message = self.sim.clock.session.describe()
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
    p = OneLineParser(
        prog="massive run sim",
        description="A local Massive-compatible server: WebSocket feed, REST API and S3 flat files, on 127.0.0.1.",
    )
    p.add_argument(
        "--rate",
        type=positive_float,
        default=None,
        help="generate synthetic flow at this many events per second instead of playing history "
        "(benchmarks: 500000+ for a firehose)",
    )
    p.add_argument(
        "--scale",
        type=positive_float,
        default=history.DEFAULT_SCALE,
        help="trades and quotes per day of history (REST, flat files and the played feed), "
        f"as a share of a real day's (default {history.DEFAULT_SCALE:g})",
    )
    p.add_argument(
        "--at",
        type=_instant,
        metavar="WHEN",
        help="play the session from this instant, e.g. 2026-12-04T09:30 (ET unless a zone is given; "
        "04:00-20:00 on a trading day)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=market.DEFAULT_SEED,
        help=f"random seed of history and live feed (default {market.DEFAULT_SEED})",
    )
    p.add_argument(
        "--symbols",
        type=_symbols,
        default=list(market.DEFAULT_SYMBOLS),
        help="comma-separated universe (default: 36 large US stocks and ETFs)",
    )
    p.add_argument("--host", default=SIM_HOST, help=f"address to listen on (default {SIM_HOST})")
    p.add_argument(
        "--ws-port",
        type=_port,
        default=SIM_WS_PORT,
        help=f"WebSocket port (default {SIM_WS_PORT}; 0 = any free port)",
    )
    p.add_argument(
        "--rest-port",
        type=_port,
        default=SIM_REST_PORT,
        help=f"REST port (default {SIM_REST_PORT})",
    )
    p.add_argument(
        "--s3-port", type=_port, default=SIM_S3_PORT, help=f"S3 port (default {SIM_S3_PORT})"
    )
    p.add_argument(
        "--replay",
        metavar="PATH_OR_NAME",
        help="stream a recording (a folder, or a NAME under MESH_DATA_DIR/recordings) instead of live events",
    )
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="pace of --at or --replay: a factor of real time (default 1; 10 = ten times faster); "
        "max (--replay only) = as fast as clients read",
    )
    p.add_argument(
        "--loop",
        action="store_true",
        help="start the replay over when it ends (default: it ends and the sim stays up)",
    )
    p.add_argument(
        "--capture-only",
        action="store_true",
        help="--replay the capture alone, without the rows a heal added (default: both)",
    )
    p.add_argument(
        "--free-keys",
        type=_keys,
        default=[SIM_FREE_KEY],
        help=f"comma-separated API keys on the free plan: 5 REST calls/minute (default {SIM_FREE_KEY})",
    )
    return p


def main(config: Config, argv: list[str] | None = None) -> int:
    """`massive run sim`."""
    parser = build_parser()
    args = parser.parse_args(argv or [])
    if args.replay is None and args.loop:
        parser.error("--loop applies to --replay only")
    if args.replay is None and args.capture_only:
        parser.error("--capture-only applies to --replay only")
    if args.replay is None and args.at is None and args.speed != 1.0:
        parser.error("--speed applies to --at and --replay only")
    if args.at is not None and (args.replay is not None or args.rate is not None):
        parser.error("--at plays history: it cannot go with --replay or --rate")
    if args.at is not None and args.speed is None:
        parser.error("--speed max applies to --replay only")
    if args.at is not None:
        try:
            session_at(args.at, time.time_ns(), args.speed)
        except AtError as exc:
            parser.error(f"argument --at: {exc}")
    if args.replay is not None and config.sim_mode:
        try:
            args.recording = open_recording(
                args.replay,
                storage.local_datasets(config.data_location, config.data_dir, args.replay),
                capture_only=args.capture_only,
            )
        except ReplayError as exc:
            print(f"massive run sim: {exc}", file=sys.stderr, flush=True)
            return 2
    return run_service(SimService(config, args))


def _session(args: argparse.Namespace) -> Session:
    """The session to play first: from `--at`, or as the wall clock says."""
    if args.at is not None:
        return session_at(args.at, time.time_ns(), args.speed)
    return session_now(time.time_ns())


def _instant(text: str) -> dt.datetime:
    """An ISO date and time (`2026-12-04T09:30`, ET unless it carries a zone) or a date (04:00 ET)."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date and time such as 2026-12-04T09:30, got {text[:40]!r}"
        ) from None
    if len(text.strip()) == 10:  # a date alone: the session from its start
        value = value.replace(hour=4)
    return value


def _speed(text: str) -> float | None:
    """A positive factor, or `max` (None): as fast as the clients read."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or max, got {text!r}"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number or max, got {text}")
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
