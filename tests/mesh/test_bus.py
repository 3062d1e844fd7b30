"""The bus, the client and the service runtime over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
import zmq

from mesh import auth, control, topics, wire
from mesh.bus import Bus, BusError
from mesh.client import Publisher, Subscriber
from mesh.config import Config
from mesh.schema import Quote, QuoteBatch

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000_000_000


def quotes(n: int, start: int = 0) -> QuoteBatch:
    return QuoteBatch.from_rows(
        [
            Quote(
                symbol="AAPL",
                bid_price=float(i),
                bid_size=1,
                ask_price=float(i) + 0.01,
                ask_size=1,
                bid_exchange=1,
                ask_exchange=1,
                sequence=i,
                ts_event=T0 + i,
                ts_recv=T0 + i,
            )
            for i in range(start, start + n)
        ]
    )


def connected_pair(config: Config, prefixes: list[str]) -> tuple[Publisher, Subscriber]:
    """A publisher and a subscriber that have both joined (ZeroMQ subscribers miss what precedes the join)."""
    pub = Publisher("test", config.bus_pub)
    sub = Subscriber(prefixes + ["sys.event.test"], config.bus_sub)
    from mesh.schema import Event

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pub.publish(topics.event("test"), Event(service="test", level="info", message="hello"))
        msg = sub.recv(timeout=0.05)
        if msg is not None:
            while sub.recv(timeout=0.05) is not None:
                pass
            sub.stats.received = 0
            return pub, sub
    raise AssertionError("subscriber never joined")


def test_messages_flow_from_publisher_to_subscriber_through_the_bus(
    bus: Bus, mesh_config: Config
) -> None:
    pub, sub = connected_pair(mesh_config, ["md.quote."])
    for i in range(50):
        pub.publish(topics.quotes(), quotes(100, i * 100))
    got = [sub.recv(timeout=2) for _ in range(50)]
    assert all(m is not None for m in got)
    events = [q.sequence for m in got for q in m.payload.rows()]  # type: ignore[union-attr]
    assert events == list(range(5000))
    assert sub.stats.gaps == 0
    pub.close(), sub.close()


def test_subscribers_only_get_the_prefixes_they_asked_for(bus: Bus, mesh_config: Config) -> None:
    pub, sub = connected_pair(mesh_config, ["md.trade."])
    pub.publish(topics.quotes(), quotes(1))
    pub.publish(
        topics.trades(), __import__("mesh.schema", fromlist=["TradeBatch"]).TradeBatch.from_rows([])
    )
    msg = sub.recv(timeout=2)
    assert msg is not None and msg.topic == "md.trade.stocks"
    assert sub.recv(timeout=0.2) is None
    pub.close(), sub.close()


def test_sequence_gaps_are_counted_per_source_and_topic(bus: Bus, mesh_config: Config) -> None:
    _, sub = connected_pair(mesh_config, ["md.quote."])
    raw = zmq.Context.instance().socket(zmq.PUB)
    auth.secure_client(raw, auth.client_keys(mesh_config))
    raw.connect(mesh_config.bus_pub)
    time.sleep(0.3)
    for seq in [1, 2, 5, 6, 10]:  # 2 + 3 missing
        raw.send_multipart(wire.encode(topics.quotes(), quotes(1), src="gappy", seq=seq))
    for _ in range(5):
        assert sub.recv(timeout=2) is not None
    assert sub.stats.gaps == 5
    raw.send_multipart(
        wire.encode(topics.quotes(), quotes(1), src="gappy", seq=1)
    )  # a restarted source
    assert sub.recv(timeout=2) is not None
    assert sub.stats.restarts == 1 and sub.stats.gaps == 5
    raw.close(linger=0), sub.close()


def test_a_thousand_malformed_frames_never_stop_good_messages(
    bus: Bus, mesh_config: Config
) -> None:
    pub, sub = connected_pair(mesh_config, ["md."])
    raw = zmq.Context.instance().socket(zmq.PUB)
    auth.secure_client(raw, auth.client_keys(mesh_config))
    raw.connect(mesh_config.bus_pub)
    time.sleep(0.3)
    rng = random.Random(7)
    good = wire.encode(topics.quotes(), quotes(10), src="raw", seq=1)
    sent_good = 0
    for i in range(1200):
        kind = i % 4
        if kind == 0:
            frames = [b"md.quote.stocks", rng.randbytes(rng.randint(0, 200))]
        elif kind == 1:
            frames = [b"md.quote.stocks", good[1][: rng.randint(0, len(good[1]) - 1)]]  # truncated
        elif kind == 2:
            frames = [b"md.quote.stocks"] + [rng.randbytes(5)] * rng.choice(
                [0, 2, 3]
            )  # wrong frame count
        else:
            frames = [
                b"md.quote.stocks",
                msgspec.msgpack.encode([[1, "raw", i, 0], ["quotes", [1, 2]]]),
            ]  # wrong shape
        raw.send_multipart(frames)
        if i % 10 == 0:
            sent_good += 1
            pub.publish(topics.quotes(), quotes(3, i))
    received = 0
    while sub.recv(timeout=1) is not None:
        received += 1
    assert received == sent_good
    assert sub.stats.malformed_total >= 1000
    assert set(sub.stats.malformed) <= set(wire.MALFORMED_KINDS)
    raw.close(linger=0), pub.close(), sub.close()


def test_binding_an_endpoint_in_use_is_one_clear_error(bus: Bus, mesh_config: Config) -> None:
    with pytest.raises(BusError, match="MESH_BUS_PUB=.*already in use"):
        Bus(mesh_config)


def test_the_bus_answers_for_itself_and_refuses_unknown_targets(
    bus: Bus, mesh_config: Config
) -> None:
    assert control.call(mesh_config.bus_ctl, "bus", "ping") == "pong"
    reply = control.request(mesh_config.bus_ctl, "nosuch", "ping")
    assert not reply.ok and "'nosuch' is not registered" in reply.error
    reply = control.request(mesh_config.bus_ctl, "bus", "explode")
    assert not reply.ok and "unknown command 'explode'" in reply.error


def test_a_request_with_no_bus_says_the_mesh_is_not_running(mesh_config: Config) -> None:
    with pytest.raises(control.ControlError, match="is the mesh running"):
        control.request(mesh_config.bus_ctl, "bus", "ping", timeout=0.3)


def _start_echo(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests/mesh/echo_service.py")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_for(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _answers(config: Config) -> bool:
    try:
        return (
            control.call(config.bus_ctl, "bus", "ping", timeout=0.5, keys=auth.client_keys(config))
            == "pong"
        )  # type: ignore[no-any-return]
    except control.ControlError:
        return False


def _services(config: Config) -> dict:  # type: ignore[type-arg]
    return control.call(config.bus_ctl, "bus", "services")  # type: ignore[no-any-return]


def test_service_commands_round_trip_and_errors_come_back_as_replies(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:
    proc = _start_echo(mesh_environ)
    try:
        _wait_for(lambda: _services(mesh_config).get("echo", {}).get("up"))
        assert control.call(mesh_config.bus_ctl, "echo", "echo", {"text": "hi"}) == "hi"
        unknown = control.request(mesh_config.bus_ctl, "echo", "nope")
        assert (
            not unknown.ok and "unknown command 'nope'" in unknown.error and "echo" in unknown.error
        )
        bad_args = control.request(mesh_config.bus_ctl, "echo", "echo", {"wrong": 1})
        assert not bad_args.ok and "bad arguments" in bad_args.error
        failing = control.request(mesh_config.bus_ctl, "echo", "fail")
        assert not failing.ok and failing.error == "asked to fail"
        assert control.call(mesh_config.bus_ctl, "echo", "ping") == "pong"  # still alive
        counters = _wait_for(
            lambda: (
                _services(mesh_config)["echo"]["counters"].get("echoes") == 1
                and _services(mesh_config)["echo"]["counters"]
            )
        )
        assert counters["command_errors"] >= 3
    finally:
        proc.terminate()
        proc.wait(5)


def test_sigterm_stops_a_service_within_two_seconds_and_it_then_shows_as_down(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:
    proc = _start_echo(mesh_environ)
    _wait_for(lambda: _services(mesh_config).get("echo", {}).get("up"))
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert time.monotonic() - started < 2.0
    down_after = _wait_for(
        lambda: not _services(mesh_config)["echo"]["up"] and time.monotonic(), timeout=6
    )
    assert 2.5 <= down_after - started <= 5.5  # three missed one-second beats


def _massive(
    env: dict[str, str], *args: str, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_status_lists_services_with_their_counters(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:
    proc = _start_echo(mesh_environ)
    try:
        _wait_for(lambda: _services(mesh_config).get("echo", {}).get("up"))
        result = _massive(mesh_environ, "status", "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["bus"]["up"] and report["echo"]["up"]
        assert "uptime_s" in report["echo"]["counters"]
        table = _massive(mesh_environ, "status").stdout
        assert "echo" in table and "up" in table
    finally:
        proc.terminate()
        proc.wait(5)


def test_status_without_a_bus_says_down_and_fails(mesh_environ: dict[str, str]) -> None:
    result = _massive(mesh_environ, "status", "--timeout", "0.3")
    assert result.returncode == 1
    assert "DOWN" in result.stdout and "is the mesh running" in result.stdout


def test_tap_prints_json_lines_and_stops_after_count(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:
    result = _massive(mesh_environ, "tap", "sys.heartbeat.", "--count", "2")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2
    assert lines[0]["topic"] == "sys.heartbeat.bus" and lines[0]["type"] == "heartbeat"
    assert lines[0]["header"]["src"] == "bus" and lines[0]["payload"]["service"] == "bus"


def test_tap_stops_after_seconds_even_when_nothing_arrives(
    bus: Bus, mesh_environ: dict[str, str]
) -> None:
    started = time.monotonic()
    result = _massive(mesh_environ, "tap", "md.nothing.", "--seconds", "1")
    assert result.returncode == 0 and result.stdout == ""
    assert time.monotonic() - started < 8


def test_bad_cli_arguments_get_a_clear_usage_error(mesh_environ: dict[str, str]) -> None:
    result = _massive(mesh_environ, "tap", "--count", "-3")
    assert result.returncode == 2 and "expected a positive number" in result.stderr
    bad_env = dict(mesh_environ, MESH_BUS_SUB="nonsense")
    result = _massive(bad_env, "status")
    assert (
        result.returncode == 2
        and "MESH_BUS_SUB" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_bus_subprocess_refuses_a_second_bus_and_exits_cleanly_on_sigterm(
    mesh_environ: dict[str, str],
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "run", "bus"],
        env=mesh_environ,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        config = Config.load(environ=mesh_environ)
        _wait_for(lambda: _answers(config), timeout=10)
        second = subprocess.run(
            [sys.executable, "-m", "mesh.cli", "run", "bus"],
            env=mesh_environ,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert second.returncode == 2
        assert (
            "cannot bind MESH_BUS_PUB" in second.stderr
            and "already in use" in second.stderr
            and "Traceback" not in second.stderr
        )
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0 and time.monotonic() - started < 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
