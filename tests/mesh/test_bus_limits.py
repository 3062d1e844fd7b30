"""The bus drops a sender of oversized frames before reading them, and keeps serving everyone else."""

from __future__ import annotations

import time

import zmq

from mesh import auth, bounds, control, topics
from mesh.bus import Bus
from mesh.client import Publisher, Subscriber
from mesh.config import Config
from tests.recorder.helpers import quotes


def test_a_frame_larger_than_any_message_does_not_reach_subscribers_and_the_bus_lives_on(
    bus: Bus, mesh_config: Config
) -> None:
    with (
        Subscriber([topics.quotes()], mesh_config.bus_sub) as sub,
        Publisher("ingest", mesh_config.bus_pub) as good,
    ):
        ctx = zmq.Context.instance()
        with ctx.socket(zmq.PUB) as rogue:
            auth.secure_client(rogue, auth.client_keys(mesh_config))
            rogue.connect(mesh_config.bus_pub)
            time.sleep(0.5)
            rogue.send_multipart([b"md.quote.stocks", b"\x00" * (bounds.MAX_BODY_BYTES + 4096)])
            time.sleep(0.5)
            good.publish(topics.quotes(), quotes(0, 5))
            got = sub.recv(timeout=5)
        assert got is not None and got.header.src == "ingest" and len(got.payload) == 5
        assert sub.recv(timeout=0.5) is None
        assert sub.stats.malformed_total == 0, (
            sub.stats.malformed
        )  # the oversized one never came, not even to be rejected
    assert control.call(mesh_config.bus_ctl, "bus", "ping") == "pong"


def test_a_subscriber_that_falls_thousands_of_messages_behind_still_gets_every_one(
    bus: Bus, mesh_config: Config
) -> None:
    """The bus's deep queues hold (libzmq gives accepted connections the options set before bind:
    set after it, every peer would be left at the default 1,000 messages and a burst dropped)."""
    with (
        Subscriber([topics.quotes()], mesh_config.bus_sub, hwm=0) as sub,
        Publisher("ingest", mesh_config.bus_pub, hwm=0) as pub,
    ):
        time.sleep(0.5)
        batch = quotes(0, 1)
        for _ in range(5_000):  # nobody reads while they pile up
            pub.publish(topics.quotes(), batch)
        time.sleep(1.0)
        got = 0
        while sub.recv(timeout=2.0) is not None:
            got += 1
        assert got == 5_000 and sub.stats.gaps == 0
