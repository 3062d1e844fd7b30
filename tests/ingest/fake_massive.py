"""A scripted Massive WebSocket endpoint for fault injection: the test decides every frame.

Runs a real `websockets` server on 127.0.0.1 in a thread. It speaks Massive's handshake
(connected, auth, per-item subscribe acks) and then sends whatever the test pushes, including
malformed frames and server statuses, so ingest's handling of each can be observed from outside.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import websockets


class FakeMassive:
    def __init__(self, *, api_key: str = "sim-demo-key", auth: str = "ok") -> None:
        self.api_key = api_key
        self.auth = auth  # "ok", "failed", "max_connections"
        self.connections = 0
        self.actions: list[tuple[int, dict[str, Any]]] = []  # (connection number, client message)
        self._loop = asyncio.new_event_loop()
        self._current: Any = None
        self._quiet: list[Any] = []  # connections left hanging by go_quiet()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stocks"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await websockets.serve(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, ws: Any) -> None:
        self.connections += 1
        number = self.connections
        await ws.send(
            json.dumps(
                [{"ev": "status", "status": "connected", "message": "Connected Successfully"}]
            )
        )
        try:
            async for raw in ws:
                msg = json.loads(raw)
                self.actions.append((number, msg))
                if msg.get("action") == "auth":
                    if self.auth == "failed" or msg.get("params") != self.api_key:
                        await ws.send(
                            json.dumps(
                                [
                                    {
                                        "ev": "status",
                                        "status": "auth_failed",
                                        "message": "authentication failed",
                                    }
                                ]
                            )
                        )
                        await ws.close()
                        return
                    await ws.send(
                        json.dumps(
                            [{"ev": "status", "status": "auth_success", "message": "authenticated"}]
                        )
                    )
                    if self.auth == "max_connections":
                        await ws.send(
                            json.dumps(
                                [
                                    {
                                        "ev": "status",
                                        "status": "max_connections",
                                        "message": "Maximum number of connections exceeded.",
                                    }
                                ]
                            )
                        )
                        await ws.close(1008, "max connections")
                        return
                    self._current = ws
                elif msg.get("action") in ("subscribe", "unsubscribe"):
                    verb = "subscribed to" if msg["action"] == "subscribe" else "unsubscribed to"
                    for item in msg["params"].split(","):
                        await ws.send(
                            json.dumps(
                                [
                                    {
                                        "ev": "status",
                                        "status": "success",
                                        "message": f"{verb}: {item}",
                                    }
                                ]
                            )
                        )
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._current is ws:
                self._current = None

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)

    def wait_streaming(self, connection: int = 1, timeout: float = 10) -> None:
        """Until connection number `connection` has authenticated and subscribed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self._current is not None
                and self.connections >= connection
                and any(n == connection and a.get("action") == "subscribe" for n, a in self.actions)
            ):
                return
            time.sleep(0.02)
        raise AssertionError(
            f"connection {connection} never subscribed (connections: {self.connections}, actions: {self.actions})"
        )

    def send(self, frame: str | bytes | list[dict[str, Any]]) -> None:
        data = json.dumps(frame) if isinstance(frame, list) else frame
        self._call(self._current.send(data))

    def drop(self, code: int = 1011) -> None:
        """Close the current connection abruptly from the server side."""
        ws = self._current
        self._current = None
        self._call(ws.close(code, "forced"))

    def go_quiet(self) -> None:
        """Stop reading the current connection: no more data and no pongs, like a dead peer."""
        ws = self._current
        self._current = None
        self._quiet.append(ws)
        self._loop.call_soon_threadsafe(ws.transport.pause_reading)

    def subscribes(self, connection: int) -> list[str]:
        return [
            item
            for n, a in self.actions
            if n == connection and a.get("action") == "subscribe"
            for item in a["params"].split(",")
        ]

    def close(self) -> None:
        async def stop() -> None:
            for ws in self._quiet:
                ws.transport.abort()
            self._server.close()
            await self._server.wait_closed()

        try:
            self._call(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
