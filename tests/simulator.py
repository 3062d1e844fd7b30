"""A simulator running on its own event loop in a thread, for tests that use blocking clients."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from mesh.sim.server import SimServer


class ThreadedSim:
    """A SimServer on its own event loop in a daemon thread, for tests that use blocking clients."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.sim: SimServer | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with SimServer(**self.options) as sim:
            self.sim = sim
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> SimServer:
        self._thread.start()
        assert self._ready.wait(60), "the sim did not start"
        assert self.sim is not None
        return self.sim

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
