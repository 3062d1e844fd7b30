"""Ingest against a Massive endpoint that sends broken frames: it survives, counts each by kind,
and what it publishes afterwards is still right.

The endpoint is tests/ingest/fake_massive.py (a real WebSocket server on 127.0.0.1); ingest is a
real `massive run ingest` process on a real bus.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mesh.bus import Bus
from mesh.client import Subscriber
from mesh.config import Config
from tests.ingest.fake_massive import FakeMassive
from tests.ingest.test_ingest_service import ingest_counters, start_ingest, stop

T_MS = int(time.time() * 1000)
QUOTE = {
    "ev": "Q",
    "sym": "WSOK",
    "bx": 4,
    "bp": 114.125,
    "bs": 1,
    "ax": 7,
    "ap": 114.25,
    "as": 2,
    "c": 0,
    "t": T_MS,
    "q": 1,
    "z": 3,
}
TRADE = {
    "ev": "T",
    "sym": "WSOK",
    "x": 4,
    "i": "1",
    "z": 3,
    "p": 114.125,
    "s": 100,
    "c": [12],
    "t": T_MS,
    "q": 2,
}
SECOND = {
    "ev": "A",
    "sym": "WSOK",
    "v": 200,
    "vw": 25.3,
    "o": 25.39,
    "c": 25.39,
    "h": 25.4,
    "l": 25.3,
    "z": 50,
    "s": T_MS - T_MS % 1000,
    "e": T_MS - T_MS % 1000 + 1000,
}


def junk_frames() -> dict[str, bytes]:
    """Name -> frame. Every event in these is broken; the symbols say so (`WSJUNK`)."""
    q = dict(QUOTE, sym="WSJUNK")
    t = dict(TRADE, sym="WSJUNK")
    a = dict(SECOND, sym="WSJUNK")

    def frame(*events: Any) -> bytes:
        return json.dumps(list(events)).encode()

    return {
        "array nested 5,000 deep": b"[" * 5000 + b"]" * 5000,
        "object nested 5,000 deep": b'[{"ev":"Q","sym":"WSJUNK","x":'
        + b'{"a":' * 5000
        + b"1"
        + b"}" * 5000
        + b"}]",
        "a field nested 3,000 deep": frame(q).replace(
            b'"c": 0', b'"c": ' + b"[" * 3000 + b"]" * 3000
        ),
        "a status message nested 3,000 deep": b'[{"ev":"status","status":"x","message":'
        + b"[" * 3000
        + b"]" * 3000
        + b"}]",
        "200,000 numbers": b"[" + b"1," * 200_000 + b"1]",
        "200,000 empty objects": b"[" + b"{}," * 200_000 + b"{}]",
        "not an array": b'{"ev":"Q"}',
        "null": b"null",
        "a string": b'"hello"',
        "truncated": frame(q, q, q)[:-25],
        "empty": b"",
        "not UTF-8": b'[{"ev":"Q","sym":"\xff\xfe"}]',
        "binary garbage": bytes(range(256)),
        "a symbol of the wrong type": frame(dict(q, sym=5)),
        "a price of the wrong type": frame(dict(q, bp="cheap")),
        "sizes as floats": frame(dict(t, s=1.5)),
        "conditions not a list": frame(dict(t, c={"a": 1})),
        "time past int64 nanoseconds": frame(dict(q, t=2**62)),
        "time of 2**64-1": frame(dict(t, t=2**64 - 1)),
        "integer of 40 digits": frame(dict(q, q=10**40)),
        "sequence of 2**64-1": frame(dict(q, q=2**64 - 1)),
        "size past int64 shares": frame(dict(q, bs=2**62)),
        "condition code of 2**64-1": frame(dict(t, c=[2**64 - 1])),
        "price of 1e400": b'[{"ev":"T","sym":"WSJUNK","p":1e400,"s":1,"t":1}]',
        "bar with an absurd trade count": frame(dict(a, v=1e308, z=1e-300)),
        "bar with a window past int64": frame(dict(a, s=2**63 - 1, e=2**63 - 1)),
        "unknown event": frame({"ev": "ZZ", "sym": "WSJUNK"}),
        "event without a type": frame({"sym": "WSJUNK", "p": 1}),
    }


@pytest.fixture
def fake() -> Iterator[FakeMassive]:
    server = FakeMassive()
    yield server
    server.close()


def test_ingest_survives_broken_frames_counts_them_by_kind_and_still_publishes(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str], fake: FakeMassive
) -> None:
    sub = Subscriber(["md."], mesh_config.bus_sub)
    proc = start_ingest(mesh_environ, fake.url, "--subscriptions", "Q.*,T.*,A.*")
    published: list[Any] = []
    try:
        fake.wait_streaming()
        time.sleep(0.3)  # our subscription reaches the bus
        for frame in junk_frames().values():
            fake.send(frame)
        # a frame mixing one good event with bad ones: the good one still goes out
        fake.send(
            json.dumps(
                [
                    dict(QUOTE, sym="WSMIX"),
                    dict(QUOTE, sym="WSJUNK", t=2**62),
                    {"ev": "Q", "sym": 1},
                ]
            )
        )
        fake.send([QUOTE, TRADE, SECOND])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not {
            "md.quote.stocks",
            "md.trade.stocks",
            "md.bar1s.stocks",
        } <= {m.topic for m in published if "WSOK" in m.payload.symbol}:
            msg = sub.recv(timeout=0.2)
            if msg is not None:
                published.append(msg)
        assert proc.poll() is None, f"ingest died:\n{stop(proc)[-3000:]}"
        rows = [row for msg in published for row in msg.payload.rows()]
        symbols = {row.symbol for row in rows}
        assert {"WSOK", "WSMIX"} <= symbols and "WSJUNK" not in symbols, symbols
        (quote,) = [row for row in rows if row.symbol == "WSOK" and hasattr(row, "bid_price")]
        assert (quote.bid_price, quote.ask_size, quote.ts_event) == (114.125, 200, T_MS * 1_000_000)
        assert all(
            math.isfinite(getattr(row, f))
            for row in rows
            for f in ("bid_price", "ask_price", "price", "open", "close")
            if hasattr(row, f)
        )
        assert sub.stats.malformed_total == 0, (
            sub.stats.malformed
        )  # ingest never puts a bad message on the bus
        kinds = {
            "malformed_depth",
            "malformed_json",
            "malformed_range",
            "malformed_bad_event",
            "malformed_unknown_event",
        }
        counters: dict[str, Any] = {}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not kinds <= counters.keys():
            counters = ingest_counters(mesh_config)
            time.sleep(0.1)
        assert kinds <= counters.keys(), f"not every kind of bad input is counted: {counters}"
        assert counters["connection"] == "streaming"
    finally:
        out = stop(proc)
        sub.close()
    assert "Traceback" not in out, out[-3000:]
