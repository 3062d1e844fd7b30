"""The bus lets in only known keys, for the roles they hold; a service name belongs to its owner."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import zmq
import zmq.auth

from mesh import auth, control, topics
from mesh.bus import Bus
from mesh.client import Publisher, Subscriber
from mesh.config import Config
from mesh.schema import Heartbeat
from tests.recorder.helpers import quotes

ROOT = Path(__file__).resolve().parents[2]


def raw(kind: int, endpoint: str, keys: auth.ClientKeys | None = None) -> zmq.Socket[bytes]:
    """A plain pyzmq socket, with keys or without."""
    sock = zmq.Context.instance().socket(kind)
    sock.linger = 0
    auth.secure_client(sock, keys)
    sock.connect(endpoint)
    return sock


def key(config: Config, name: str, *roles: str) -> auth.ClientKeys:
    secret = auth.KeyStore(config.data_dir).add(name, roles)
    return auth.KeyStore(config.data_dir).client_keys(secret)


def published_and_seen(
    config: Config, sub: zmq.Socket[bytes] | Subscriber, pub: zmq.Socket[bytes] | Publisher
) -> bool:
    """Whether quotes published on `pub` reach `sub` within a second or so."""
    time.sleep(0.5)
    for _ in range(5):
        if isinstance(pub, Publisher):
            pub.publish(topics.quotes(), quotes(0, 3))
        else:
            pub.send_multipart(
                [
                    topics.quotes().encode(),
                    msgspec.msgpack.encode([[1, "rogue", 1, time.time_ns()], ["quotes"]]),
                ]
            )
        time.sleep(0.1)
    if isinstance(sub, Subscriber):
        return sub.recv(timeout=1.0) is not None
    return bool(sub.poll(1000))


def test_a_socket_without_keys_reads_nothing_publishes_nothing_and_commands_nothing(
    bus: Bus, mesh_config: Config
) -> None:
    with (
        Publisher("ingest", config=mesh_config) as pub,
        Subscriber([topics.quotes()], config=mesh_config) as sub,
    ):
        keyless_sub = raw(zmq.SUB, mesh_config.bus_sub)
        keyless_sub.setsockopt(zmq.SUBSCRIBE, b"")
        assert not published_and_seen(mesh_config, keyless_sub, pub)
        assert sub.recv(timeout=1.0) is not None  # while a keyed subscriber got them
        keyless_pub = raw(zmq.PUB, mesh_config.bus_pub)
        while sub.recv(timeout=0.2) is not None:
            pass
        assert not published_and_seen(mesh_config, sub, keyless_pub)
        keyless_ctl = raw(zmq.DEALER, mesh_config.bus_ctl)
        keyless_ctl.send_multipart(
            [control.REQ, b"bus", control.encode(control.new_request("services"))]
        )
        assert not keyless_ctl.poll(1500)
        for sock in (keyless_sub, keyless_pub, keyless_ctl):
            sock.close()
    report = control.call(mesh_config.bus_ctl, "bus", "services")
    assert (
        report["bus"]["counters"]["auth"] == "on" and report["bus"]["counters"]["auth_refused"] >= 3
    )


def test_a_subscribe_only_key_reads_the_firehose_and_nothing_else(
    bus: Bus, mesh_config: Config
) -> None:
    reader = key(mesh_config, "notebook", "subscribe")
    with (
        Publisher("ingest", config=mesh_config) as pub,
        Subscriber([topics.quotes()], config=mesh_config) as sub,
    ):
        their_sub = raw(zmq.SUB, mesh_config.bus_sub, reader)
        their_sub.setsockopt(zmq.SUBSCRIBE, b"md.")
        assert published_and_seen(mesh_config, their_sub, pub)
        their_pub = raw(zmq.PUB, mesh_config.bus_pub, reader)
        while sub.recv(timeout=0.2) is not None:
            pass
        assert not published_and_seen(mesh_config, sub, their_pub)
        their_sub.close()
        their_pub.close()
    with __import__("pytest").raises(control.ControlError):
        control.call(mesh_config.bus_ctl, "bus", "ping", timeout=1.0, keys=reader)
    assert (
        control.call(mesh_config.bus_ctl, "bus", "ping", timeout=1.0) == "pong"
    )  # the mesh's own key


def test_a_revoked_key_is_refused_from_then_on(bus: Bus, mesh_config: Config) -> None:
    ops = key(mesh_config, "ops", "control")
    assert control.call(mesh_config.bus_ctl, "bus", "ping", timeout=2.0, keys=ops) == "pong"
    auth.KeyStore(mesh_config.data_dir).revoke("ops")
    with __import__("pytest").raises(control.ControlError):
        control.call(mesh_config.bus_ctl, "bus", "ping", timeout=1.0, keys=ops)


def _start_echo(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests/mesh/echo_service.py")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_an_impostor_cannot_take_a_live_services_name(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:
    proc = _start_echo(mesh_environ)
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not control.call(
            mesh_config.bus_ctl, "bus", "services"
        ).get("echo", {}).get("up"):
            time.sleep(0.2)
        intruder = key(mesh_config, "intruder", "control")
        beat = Heartbeat(
            service="echo",
            instance="fake",
            pid=1,
            state="ok",
            started=time.time_ns(),
            interval=1.0,
            counters={},
        )

        def impersonate() -> None:
            sock = raw(zmq.DEALER, mesh_config.bus_ctl, intruder)
            while not stop.is_set():
                sock.send_multipart([control.HELLO, b"echo", msgspec.msgpack.encode(beat)])
                while sock.poll(0):
                    sock.recv_multipart()  # requests the bus would route to an impostor: none must come
                time.sleep(0.05)
            sock.close()

        thread = threading.Thread(target=impersonate, daemon=True)
        thread.start()
        time.sleep(1.0)
        for i in range(10):  # every command reaches the real service
            assert (
                control.call(mesh_config.bus_ctl, "echo", "echo", {"text": f"hi {i}"}, timeout=2.0)
                == f"hi {i}"
            )
        counters = control.call(mesh_config.bus_ctl, "bus", "services")["bus"]["counters"]
        assert counters["impostors_refused"] >= 10
        assert control.call(mesh_config.bus_ctl, "bus", "services")["echo"]["pid"] == proc.pid
    finally:
        stop.set()
        proc.terminate()
        proc.wait(5)


def test_key_files_are_readable_by_their_owner_only(bus: Bus, mesh_config: Config) -> None:
    store = auth.KeyStore(mesh_config.data_dir)
    key(mesh_config, "colleague", "subscribe")
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o700
    files = [*store.keys_dir.iterdir(), store.registry]
    assert {p.name for p in files} >= {
        "bus.key",
        "bus.key_secret",
        "mesh.key",
        "mesh.key_secret",
        "colleague.key_secret",
        "clients.json",
    }
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in files)


def test_a_plain_pyzmq_subscriber_with_a_key_file_reads_the_bus(
    bus: Bus, mesh_config: Config
) -> None:
    """What docs/protocol.md shows a user of another client does, with pyzmq alone."""
    secret_file = auth.KeyStore(mesh_config.data_dir).add("plain", ("subscribe",))
    server_file = auth.KeyStore(mesh_config.data_dir).keys_dir / "bus.key"
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(secret_file)
    sock.curve_serverkey, _ = zmq.auth.load_certificate(server_file)
    sock.setsockopt(zmq.SUBSCRIBE, b"md.quote.")
    sock.connect(mesh_config.bus_sub)
    with Publisher("ingest", config=mesh_config) as pub:
        assert published_and_seen(mesh_config, sock, pub)
        topic, body = sock.recv_multipart()
        header, payload = msgspec.msgpack.decode(body)
        assert topic == b"md.quote.stocks" and header[1] == "ingest" and payload[0] == "quotes"
    sock.close(0)
    ctx.term()


def test_massive_auth_adds_lists_and_revokes(mesh_environ: dict[str, str]) -> None:
    def massive(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mesh.cli", "auth", *args],
            env=mesh_environ,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = massive("add", "notebook", "--role", "subscribe")
    assert added.returncode == 0 and "MESH_KEY_FILE=" in added.stdout
    listed = massive("list")
    assert "notebook" in listed.stdout and "subscribe" in listed.stdout and "mesh" in listed.stdout
    again = massive("add", "notebook", "--role", "subscribe")
    assert (
        again.returncode == 1
        and "exists already" in again.stderr
        and "Traceback" not in again.stderr
    )
    bad = massive("add", "x", "--role", "root")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    assert massive("revoke", "notebook").returncode == 0
    assert "notebook" not in massive("list").stdout
    assert massive("revoke", "mesh").returncode == 1


def test_the_mesh_services_names_are_the_mesh_keys_alone(bus: Bus, mesh_config: Config) -> None:
    """Even while the recorder is down, another key cannot register as it (and wait for commands)."""
    intruder = key(mesh_config, "intruder", "control")
    beat = Heartbeat(
        service="recorder",
        instance="fake",
        pid=4242,
        state="ok",
        started=time.time_ns(),
        interval=1.0,
        counters={},
    )
    sock = raw(zmq.DEALER, mesh_config.bus_ctl, intruder)
    for _ in range(5):
        sock.send_multipart([control.HELLO, b"recorder", msgspec.msgpack.encode(beat)])
        time.sleep(0.1)
    time.sleep(0.3)
    report = control.call(mesh_config.bus_ctl, "bus", "services")
    assert "recorder" not in report and report["bus"]["counters"]["impostors_refused"] >= 5
    with __import__("pytest").raises(control.ControlError, match="not registered"):
        control.call(mesh_config.bus_ctl, "recorder", "stop", timeout=1.0)
    sock.close()
