"""Stand-ins for ingest, the recorder and the strategy service that remember the commands they
were sent.

They run the real service runtime (heartbeats, control channel); only their work is absent, so
the dashboard's buttons can be checked end to end through a real bus.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from mesh.client import AsyncSubscriber
from mesh.config import Config
from mesh.service import Runtime, Service, run_service, setup_logging


class Remembering(Service):
    def __init__(self, config: Config, name: str) -> None:
        super().__init__(config)
        self.name = name  # type: ignore[misc]
        self.received: list[list[Any]] = []

    def cmd_received(self) -> list[list[Any]]:
        return self.received

    def counters(self) -> dict[str, Any]:
        return {"commands_seen": len(self.received)}


class FakeIngest(Remembering):
    def cmd_subscribe(self, params: list[str]) -> list[str]:
        self.received.append(["subscribe", params])
        return params

    def cmd_unsubscribe(self, params: list[str]) -> list[str]:
        self.received.append(["unsubscribe", params])
        raise ValueError("not subscribed to that")


class FakeRecorder(Remembering):
    def cmd_start(self, name: str, symbols: str | None = None) -> dict[str, Any]:
        self.received.append(["start", name, symbols])
        return {"session": name}

    def cmd_stop(self) -> dict[str, Any]:
        self.received.append(["stop"])
        raise RuntimeError("no session is recording")


class FakeStrategy(Remembering):
    """Keeps paper sessions as the strategy service reports them (`sys.stats.strategy`), without
    trading: `start` adds a running one, `stop` stops it."""

    def __init__(self, config: Config, name: str) -> None:
        super().__init__(config, name)
        self.sessions: dict[str, dict[str, Any]] = {}

    def cmd_start(self, **args: Any) -> dict[str, Any]:
        self.received.append(["start", args])
        name = args["name"]
        if self.sessions.get(name, {}).get("state") == "running":
            raise ValueError(f"session {name} is already running")
        self.sessions[name] = {
            "name": name, "strategy": args["strategy"], "params": args.get("params", {}),
            "symbols": args.get("symbols", []), "interval": args.get("interval", "1m"), "fills": 0,
            "state": "running", "error": "", "started_ns": time.time_ns(), "stopped_ns": 0,
            "recording": f"paper-{name}", "cash": 100_000.0, "equity": 100_000.0,
            "initial_cash": 100_000.0, "positions": {}, "orders": 0, "bars": 0, "lag_ms": 0.0,
            "lost": "",
        }  # fmt: skip
        return self.sessions[name]

    def cmd_stop(self, name: str) -> dict[str, Any]:
        self.received.append(["stop", name])
        if name not in self.sessions:
            raise KeyError(f"no session {name}")
        self.sessions[name].update(state="stopped", stopped_ns=time.time_ns())
        return self.sessions[name]

    def cmd_status(self) -> dict[str, Any]:
        return {"sessions": list(self.sessions.values())}

    def stats(self) -> dict[str, Any]:
        return self.cmd_status()


class CountingTap(Service):
    """Reads market data as any consumer does (a real subscriber) and reports what it counted,
    `malformed` included, in its heartbeat: a service whose malformed count the dashboard shows."""

    def __init__(self, config: Config, name: str) -> None:
        super().__init__(config)
        self.name = name  # type: ignore[misc]
        self.subscriber: AsyncSubscriber | None = None

    async def run(self, runtime: Runtime) -> None:
        self.subscriber = AsyncSubscriber(["md."], self.config.bus_sub)
        try:
            while not runtime.stopping.is_set():
                try:
                    await asyncio.wait_for(self.subscriber.recv_burst(1000), 0.2)
                except TimeoutError:
                    pass
        finally:
            self.subscriber.close()

    def counters(self) -> dict[str, Any]:
        return self.subscriber.stats.as_counters() if self.subscriber else {}


if __name__ == "__main__":
    setup_logging()
    kind = sys.argv[1]
    service = {
        "ingest": FakeIngest,
        "recorder": FakeRecorder,
        "strategy": FakeStrategy,
        "tap": CountingTap,
    }[kind](Config.load(), kind)
    sys.exit(run_service(service, kind))
