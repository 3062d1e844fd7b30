"""A subscriber told to wait for years (`massive tap --seconds 1e308`) waits, and still hears the
next message: no overflow turning the wait into a poll timeout."""

from __future__ import annotations

import threading
import time

from mesh import topics
from mesh.bus import Bus
from mesh.client import Publisher, Subscriber
from mesh.config import Config
from mesh.schema import Event
from mesh.wire import Message


def test_a_wait_of_years_still_returns_the_next_message(bus: Bus, mesh_config: Config) -> None:
    got: list[Message | None] = []
    with (
        Subscriber(["sys.event."], config=mesh_config) as sub,
        Publisher("ingest", config=mesh_config) as pub,
    ):
        waiter = threading.Thread(target=lambda: got.append(sub.recv(timeout=1e308)))
        waiter.start()
        deadline = time.monotonic() + 10
        while waiter.is_alive() and time.monotonic() < deadline:
            pub.publish(topics.event("ingest"), Event("ingest", "info", "hello"))
            waiter.join(0.2)
        assert not waiter.is_alive()
    assert got and got[0] is not None and got[0].topic == topics.event("ingest")
