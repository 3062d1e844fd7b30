"""`massive run ingest` as a real process, between a scripted Massive endpoint and a real bus."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh import control
from mesh.bus import Bus
from mesh.client import Subscriber
from mesh.config import Config
from mesh.wire import Message
from tests.ingest.fake_massive import FakeMassive
from tests.ingest.test_decode import MINUTE, QUOTE, SECOND, TRADE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeMassive]:
    server = FakeMassive()
    yield server
    server.close()


def start_ingest(env: dict[str, str], url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mesh.cli",
            "run",
            "ingest",
            "--url",
            url,
            "--subscriptions",
            "Q.*,T.MSFT",
            *extra,
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def wait_for(predicate: Callable[[], Any], timeout: float = 25.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def ingest_counters(config: Config) -> dict[str, Any]:
    services = control.call(config.bus_ctl, "bus", "services")
    return services.get("ingest", {}).get("counters", {})  # type: ignore[no-any-return]


def collect(sub: Subscriber, topic: str, count: int, timeout: float = 5.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        msg = sub.recv(timeout=0.2)
        if msg is not None and msg.topic == topic:
            got.append(msg)
    return got


def test_events_reach_the_bus_with_the_values_massive_sent(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str], fake: FakeMassive
) -> None:
    sub = Subscriber(["md."], mesh_config.bus_sub)
    proc = start_ingest(mesh_environ, fake.url)
    try:
        fake.wait_streaming()
        assert fake.subscribes(1) == ["Q.*", "T.MSFT"]
        time.sleep(0.3)  # the subscriber's subscription reaches the bus
        fake.send([QUOTE, TRADE, SECOND, MINUTE])
        quotes = collect(sub, "md.quote.stocks", 1)
        trades = collect(sub, "md.trade.stocks", 1)
        assert quotes and trades
        (quote,) = quotes[0].payload.rows()
        assert (quote.symbol, quote.bid_price, quote.ask_size, quote.ts_event) == (
            "MSFT",
            114.125,
            16_000,
            1536036818784_000_000,
        )
        assert quote.ts_recv > 1536036818784_000_000
        (trade,) = trades[0].payload.rows()
        assert (trade.price, trade.size, trade.trade_id) == (114.125, 100, "12345")
        assert quotes[0].header.src == "ingest"
    finally:
        stop(proc)
        sub.close()


def test_rebroadcast_aggregates_are_marked_as_replacements(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str], fake: FakeMassive
) -> None:
    sub = Subscriber(["md.bar1m."], mesh_config.bus_sub)
    proc = start_ingest(mesh_environ, fake.url)
    try:
        fake.wait_streaming()
        time.sleep(0.3)
        fake.send([MINUTE])
        fake.send([dict(MINUTE, c=25.5, h=25.5, v=300)])  # the same window, revised
        bars = collect(sub, "md.bar1m.stocks", 2)
        assert [b.payload.replaces for b in bars] == [False, True]
        assert list(bars[1].payload.rows())[0].close == 25.5
    finally:
        stop(proc)
        sub.close()


def test_subscriptions_change_at_run_time_and_survive_a_reconnect(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str], fake: FakeMassive
) -> None:
    sub = Subscriber(["md.gap."], mesh_config.bus_sub)
    proc = start_ingest(mesh_environ, fake.url)
    try:
        fake.wait_streaming()
        wait_for(lambda: ingest_counters(mesh_config).get("connection") == "streaming")
        assert control.call(
            mesh_config.bus_ctl, "ingest", "subscribe", {"params": "AM.NVDA,T.AAPL"}
        ) == ["Q.*", "T.MSFT", "AM.NVDA", "T.AAPL"]
        wait_for(
            lambda: (
                ("subscribe", "AM.NVDA,T.AAPL")
                in [(a["action"], a["params"]) for _, a in fake.actions]
            )
        )
        assert control.call(
            mesh_config.bus_ctl, "ingest", "unsubscribe", {"params": ["T.MSFT"]}
        ) == ["Q.*", "AM.NVDA", "T.AAPL"]
        wait_for(
            lambda: (
                ("unsubscribe", "T.MSFT") in [(a["action"], a["params"]) for _, a in fake.actions]
            )
        )
        listed = control.call(mesh_config.bus_ctl, "ingest", "list")
        assert (
            listed["subscriptions"] == ["Q.*", "AM.NVDA", "T.AAPL"]
            and listed["connection"] == "streaming"
        )
        bad = control.request(mesh_config.bus_ctl, "ingest", "subscribe", {"params": "AAPL"})
        assert not bad.ok and "not a subscription" in bad.error

        t0 = 1_700_000_000_000  # ms
        fake.send([dict(QUOTE, q=100, t=t0 + 1_000)])
        time.sleep(0.2)
        dropped_at = time.monotonic()
        fake.drop()
        fake.wait_streaming(connection=2, timeout=5)
        assert time.monotonic() - dropped_at < 2.0
        assert fake.subscribes(2) == ["Q.*", "AM.NVDA", "T.AAPL"]
        assert [a["action"] for n, a in fake.actions if n == 2][0] == "auth"
        time.sleep(0.2)
        fake.send([dict(QUOTE, q=180, t=t0 + 5_000)])
        (gap_msg,) = collect(sub, "md.gap.stocks", 1)
        (gap,) = gap_msg.payload.rows()
        assert (
            gap.symbol,
            gap.kind,
            gap.from_sequence,
            gap.to_sequence,
            gap.ts_from,
            gap.ts_to,
        ) == ("MSFT", "quote", 100, 180, (t0 + 1_000) * 1_000_000, (t0 + 5_000) * 1_000_000)
        counters = wait_for(
            lambda: (
                (c := ingest_counters(mesh_config)).get("reconnects") == 1
                and c.get("gaps") == 1
                and c
            )
        )
        assert counters["connection"] == "streaming"
    finally:
        stop(proc)
        sub.close()


def test_malformed_input_is_counted_and_the_stream_goes_on(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str], fake: FakeMassive
) -> None:
    sub = Subscriber(["md.quote."], mesh_config.bus_sub)
    proc = start_ingest(mesh_environ, fake.url)
    try:
        fake.wait_streaming()
        time.sleep(0.3)
        fake.send("[{this is not json")
        fake.send(
            [
                {"ev": "XQ", "sym": "MSFT"},
                dict(QUOTE, bp="high"),
                {"ev": "status", "status": "error", "message": "odd"},
                QUOTE,
            ]
        )
        fake.send(b"\x00\x01binary")
        fake.send([dict(QUOTE, sym="AAPL")])
        got = collect(sub, "md.quote.stocks", 2)
        assert [q.symbol for m in got for q in m.payload.rows()] == ["MSFT", "AAPL"]
        counters = wait_for(
            lambda: (c := ingest_counters(mesh_config)).get("malformed", 0) >= 4 and c
        )
        assert (
            counters["malformed_json"] == 2
            and counters["malformed_unknown_event"] == 1
            and counters["malformed_bad_event"] == 1
        )
        assert counters["server_status"] == "error: odd"
        assert proc.poll() is None
        fake.send("[{still not json")
        wait_for(lambda: ingest_counters(mesh_config).get("malformed_json") == 3)
    finally:
        log = stop(proc)
        sub.close()
    # each kind of bad input is logged once, however often it comes
    assert [
        line.count("skipped bad input") for line in log.splitlines() if "skipped bad input" in line
    ] == [1, 1, 1]
    assert sum("(json)" in line for line in log.splitlines()) == 1


def test_auth_failed_stops_retrying_with_one_clear_error(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:
    fake = FakeMassive(auth="failed")
    proc = start_ingest(mesh_environ, fake.url)
    try:
        state = wait_for(
            lambda: (
                control.call(mesh_config.bus_ctl, "bus", "services").get("ingest", {}).get("state")
                == "error"
            )
        )
        assert state
        time.sleep(2.0)
        assert fake.connections == 1
        services = control.call(mesh_config.bus_ctl, "bus", "services")
        assert "authentication failed" in services["ingest"]["message"]
        assert services["ingest"]["counters"]["connection"] == "auth_failed"
        assert proc.poll() is None  # the mesh stays up; the TUI shows the error
    finally:
        out = stop(proc)
        fake.close()
    assert out.count("authentication failed") == 1
    assert "sim-demo-key" not in out


def test_max_connections_waits_a_long_cool_down(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:
    fake = FakeMassive(auth="max_connections")
    proc = start_ingest(mesh_environ, fake.url)
    try:
        counters = wait_for(
            lambda: (c := ingest_counters(mesh_config)).get("connection") == "cooldown" and c
        )
        assert counters["retry_in_s"] > 50
        time.sleep(2.0)
        assert fake.connections == 1
    finally:
        stop(proc)
        fake.close()


def test_a_quiet_socket_is_treated_as_dead_and_replaced(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str], fake: FakeMassive
) -> None:
    proc = start_ingest(mesh_environ, fake.url, "--ping-interval", "0.3", "--ping-timeout", "0.5")
    try:
        fake.wait_streaming()
        fake.go_quiet()
        started = time.monotonic()
        fake.wait_streaming(connection=2, timeout=10)
        assert (
            time.monotonic() - started < 5.0
        )  # a ping, its timeout, the close timeout, then at once
        counters = wait_for(
            lambda: (c := ingest_counters(mesh_config)).get("reconnects") == 1 and c
        )
        assert counters["connection"] == "streaming"
    finally:
        log = stop(proc)
    assert "disconnected (quiet)" in log


def test_sigterm_mid_stream_exits_cleanly(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str], fake: FakeMassive
) -> None:
    proc = start_ingest(mesh_environ, fake.url)
    fake.wait_streaming()
    for _ in range(20):
        fake.send([QUOTE] * 100)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert time.monotonic() - started < 2.0


async def test_frames_read_before_a_stop_are_published_not_dropped() -> None:
    import asyncio
    import json

    from mesh import wire
    from mesh.ingest.service import IngestService
    from tests.conftest import free_port

    published: list[Any] = []

    class Runtime:  # what the service uses of mesh.service.Runtime
        stopping = asyncio.Event()

        def publish(self, topic: str, payload: Any) -> None:
            published.append(wire.decode(wire.encode(topic, payload, src="ingest", seq=1)).payload)

        def event(self, level: str, message: str, **data: Any) -> None:
            pass

    service = IngestService(
        Config.load(environ={}), url=f"ws://127.0.0.1:{free_port()}/stocks"
    )  # nobody there
    for n in range(30):  # read from the socket, not yet processed, when the stop comes
        service.queue.append(
            (
                1_700_000_000_000_000_000 + n,
                json.dumps([dict(QUOTE, q=n * 100 + k) for k in range(100)]).encode(),
            )
        )
    runtime = Runtime()
    task = asyncio.create_task(service.run(runtime))  # type: ignore[arg-type]
    await asyncio.sleep(0.5)
    runtime.stopping.set()
    await asyncio.wait_for(task, 5)
    assert sorted(q.sequence for batch in published for q in batch.rows()) == list(range(3000))
    assert service.dropped_frames == 0 and not service.queue
