"""A busy service still beats and answers; a late answer is told apart from a missing bus."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest
import zmq

from mesh import auth, control
from mesh.bus import Bus
from mesh.client import Subscriber
from mesh.config import Config

ROOT = Path(__file__).resolve().parents[2]


def _start_echo(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests/mesh/echo_service.py")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_up(config: Config, name: str = "echo", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if control.call(config.bus_ctl, name, "ping", timeout=0.5) == "pong":
                return
        except control.ControlError:
            time.sleep(0.1)
    raise AssertionError(f"{name} never answered")


@pytest.fixture
def echo(bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]):  # type: ignore[no-untyped-def]
    proc = _start_echo(mesh_environ)
    try:
        _wait_up(mesh_config)
        yield proc
    finally:
        proc.terminate()
        proc.wait(5)


def _hog(config: Config, seconds: float) -> threading.Thread:
    """Ask the echo service to hold its event loop, as a service under a firehose does."""
    thread = threading.Thread(
        target=lambda: control.request(
            config.bus_ctl, "echo", "hog", {"seconds": seconds}, timeout=seconds + 5
        ),
        daemon=True,
    )
    thread.start()
    time.sleep(0.3)  # the hog has started
    return thread


def test_a_service_whose_loop_is_busy_still_answers_ping_and_keeps_beating(
    bus: Bus, mesh_config: Config, echo: subprocess.Popen[bytes]
) -> None:
    with Subscriber(["sys.heartbeat.echo"], mesh_config.bus_sub) as beats:
        time.sleep(0.3)
        hog = _hog(mesh_config, 4.0)
        started = time.monotonic()
        pings = []
        while time.monotonic() - started < 3.5:
            t0 = time.monotonic()
            assert control.call(mesh_config.bus_ctl, "echo", "ping", timeout=1.0) == "pong"
            pings.append(time.monotonic() - t0)
            time.sleep(0.3)
        got = []
        while (msg := beats.recv(timeout=0.1)) is not None:
            got.append(msg.payload)
        hog.join(10)
    assert max(pings) < 1.0
    assert len(got) >= 3  # one a second, all through the hog
    assert (
        max(beat.counters["loop_lag_s"] for beat in got) >= 1.5
    )  # and they say the loop is behind
    assert control.call(mesh_config.bus_ctl, "bus", "services")["echo"]["up"]


def test_a_late_service_is_reported_busy_not_as_a_missing_mesh(
    bus: Bus, mesh_config: Config, echo: subprocess.Popen[bytes]
) -> None:
    hog = _hog(mesh_config, 3.0)
    with pytest.raises(control.ServiceBusy, match="busy or stuck"):
        control.call(mesh_config.bus_ctl, "echo", "echo", {"text": "late"}, timeout=0.5)
    # with time to wait, the command completes once the loop is free
    assert (
        control.call(
            mesh_config.bus_ctl, "echo", "echo", {"text": "late"}, timeout=0.5, busy_wait=10
        )
        == "late"
    )
    hog.join(10)


def test_no_bus_is_reported_unreachable(mesh_config: Config) -> None:
    with pytest.raises(control.BusUnreachable, match="is the mesh running"):
        control.call(mesh_config.bus_ctl, "recorder", "status", timeout=0.3, busy_wait=10)


def test_unreadable_requests_are_answered_and_counted_and_the_service_lives_on(
    bus: Bus, mesh_config: Config, echo: subprocess.Popen[bytes]
) -> None:
    enc = msgspec.msgpack.encode
    deep = (
        b"\x91" * 2000 + b"\x01"
    )  # [[[...1...]]], 2,000 levels, written by hand: no encoder goes that deep
    bodies = [
        b"\xc1 not msgpack",
        b"\x83"
        + enc("id")
        + enc("x")
        + enc("cmd")
        + enc("echo")
        + enc("args")
        + b"\x81"
        + enc("text")
        + deep,
        msgspec.msgpack.encode({"id": "x", "cmd": "echo", "args": {"text": 2**64 - 1}}),
        msgspec.msgpack.encode({"id": "x", "cmd": "c" * 500, "args": {}}),
        msgspec.msgpack.encode({"id": "x", "cmd": "echo", "args": {"text": "[/bold]"}}),
    ]
    ctx = zmq.Context.instance()
    with ctx.socket(zmq.DEALER) as sock:
        sock.linger = 0
        auth.secure_client(sock, auth.client_keys(mesh_config))
        sock.connect(mesh_config.bus_ctl)
        replies = []
        for body in bodies:
            sock.send_multipart([control.REQ, b"echo", body])
            assert sock.poll(3000), "every request is answered"
            replies.append(control.decode_reply(sock.recv_multipart()[1]))
    assert [r.ok for r in replies] == [False, False, False, False, True]
    assert "depth" in replies[1].error and "range" in replies[2].error
    assert replies[4].result == "[/bold]"
    assert echo.poll() is None
    time.sleep(1.2)  # the next heartbeat carries the counts
    assert (
        control.call(mesh_config.bus_ctl, "bus", "services")["echo"]["counters"][
            "commands_rejected"
        ]
        == 4
    )
