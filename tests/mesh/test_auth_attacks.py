"""Attacks on the authenticated bus, each against a real `massive run bus` on 127.0.0.1.

Every test asserts what a user should see when someone tries it: keys used outside their roles
get nothing, a colleague's control key cannot take a mesh service's name or answer for it, a
damaged key registry or key file is one line (never a traceback, never a bus that lets nobody in
for good), and floods of handshakes or registrations leave the mesh usable.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import zmq

from mesh import auth, control
from mesh.schema import Heartbeat
from tests.meshproc import ROOT, Mesh, wait_for


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    """A real bus process on fresh ports and a fresh MESH_DATA_DIR (keys made on its first start)."""
    with Mesh(tmp_path / "data") as m:
        m.start("bus")
        wait_for(lambda: m.answers("bus"), 30, 0.2, "the bus to answer")
        yield m


def raw(kind: int, endpoint: str, keys: auth.ClientKeys | None) -> zmq.Socket[bytes]:
    """A plain pyzmq socket connected with `keys` (none: no CURVE at all)."""
    sock = zmq.Context.instance().socket(kind)
    sock.linger = 0
    auth.secure_client(sock, keys)
    sock.connect(endpoint)
    return sock


def own_keys(m: Mesh) -> auth.ClientKeys:
    return auth.KeyStore(m.config.data_dir).client_keys()


def new_key(m: Mesh, name: str, *roles: str) -> auth.ClientKeys:
    store = auth.KeyStore(m.config.data_dir)
    return store.client_keys(store.add(name, roles))


def bus_pings(m: Mesh, keys: auth.ClientKeys | None, timeout: float = 1.0) -> bool:
    """Whether a fresh control connection with `keys` gets the bus's answer to `ping`."""
    sock = raw(zmq.DEALER, m.config.bus_ctl, keys)
    try:
        sock.send_multipart([control.REQ, b"bus", control.encode(control.new_request("ping"))])
        return bool(sock.poll(int(timeout * 1000)))
    finally:
        sock.close()


def reads(m: Mesh, keys: auth.ClientKeys | None) -> bool:
    """Whether a subscriber with `keys` receives what the mesh's own key publishes."""
    sub = raw(zmq.SUB, m.config.bus_sub, keys)
    sub.setsockopt(zmq.SUBSCRIBE, b"zz.")
    pub = raw(zmq.PUB, m.config.bus_pub, own_keys(m))
    try:
        time.sleep(0.3)
        for _ in range(5):
            pub.send_multipart([b"zz.probe", b"x"])
            time.sleep(0.05)
        return bool(sub.poll(500))
    finally:
        sub.close()
        pub.close()


def publishes(m: Mesh, keys: auth.ClientKeys | None) -> bool:
    """Whether what a publisher with `keys` sends reaches the mesh's own subscriber."""
    sub = raw(zmq.SUB, m.config.bus_sub, own_keys(m))
    sub.setsockopt(zmq.SUBSCRIBE, b"zz.")
    pub = raw(zmq.PUB, m.config.bus_pub, keys)
    try:
        time.sleep(0.3)
        for _ in range(5):
            pub.send_multipart([b"zz.rogue", b"x"])
            time.sleep(0.05)
        return bool(sub.poll(500))
    finally:
        sub.close()
        pub.close()


def fake_beat(name: str, pid: int = 4242) -> bytes:
    return msgspec.msgpack.encode(
        Heartbeat(
            service=name,
            instance="fake",
            pid=pid,
            state="ok",
            started=time.time_ns(),
            interval=1.0,
            counters={"auth": "on", "auth_refused": 0},
        )
    )


def massive(
    m: Mesh, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh.cli", *args],
        env={**m.env, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- keys used outside their roles ------------------------------------------------------------


def test_publish_only_and_control_only_keys_cannot_read_and_the_buss_own_or_a_foreign_server_key_gets_nothing(
    mesh: Mesh,
) -> None:
    writer = new_key(mesh, "feeder", "publish")
    ops = new_key(mesh, "ops", "control")
    assert publishes(mesh, writer) and not reads(mesh, writer) and not bus_pings(mesh, writer)
    assert bus_pings(mesh, ops) and not reads(mesh, ops) and not publishes(mesh, ops)
    ours = own_keys(mesh)
    bus_public, bus_secret = auth.KeyStore(mesh.config.data_dir).server_keys()
    as_the_bus = auth.ClientKeys(bus_public, bus_secret, ours.server)
    other_server, _ = zmq.curve_keypair()
    wrong_server = auth.ClientKeys(ours.public, ours.secret, other_server)
    for keys in (as_the_bus, wrong_server):
        assert not reads(mesh, keys) and not publishes(mesh, keys) and not bus_pings(mesh, keys)


# --- service identity ---------------------------------------------------------------------------


def test_a_colleagues_control_key_cannot_keep_the_recorders_name_while_the_recorder_restarts(
    mesh: Mesh,
) -> None:
    """kill -9 the recorder; another key HELLOs as "recorder" until the user restarts it."""
    mesh.start("recorder")
    mesh.wait_up(["recorder"], 60)
    colleague = new_key(mesh, "colleague", "control")
    stop = threading.Event()
    commands_stolen: list[str] = []

    def impersonate() -> None:
        sock = raw(zmq.DEALER, mesh.config.bus_ctl, colleague)
        while not stop.is_set():
            sock.send_multipart([control.HELLO, b"recorder", fake_beat("recorder")])
            while sock.poll(0):
                frames = sock.recv_multipart()
                if frames[0] == control.REQ:
                    req = control.decode_request(frames[2])
                    commands_stolen.append(req.cmd)
                    sock.send_multipart(
                        [
                            control.REP,
                            frames[1],
                            control.encode(control.Reply(id=req.id, ok=True, result={})),
                        ]
                    )
            time.sleep(0.05)
        sock.close()

    thread = threading.Thread(target=impersonate, daemon=True)
    mesh.kill9("recorder")
    thread.start()
    try:
        time.sleep(5)  # the user notices and restarts it a few seconds later
        real = mesh.start("recorder")
        time.sleep(6)
        report = mesh.call("bus", "services")
        massive(mesh, "record", "stop")
        assert report["recorder"]["pid"] == real.proc.pid, (
            "the bus routes 'recorder' to the other key's process"
        )
        assert commands_stolen == [], (
            f"commands for the recorder reached the other key: {commands_stolen}"
        )
    finally:
        stop.set()
        thread.join(5)


def test_a_hello_named_bus_does_not_replace_the_bus_in_the_services_report(mesh: Mesh) -> None:
    colleague = new_key(mesh, "colleague", "control")
    sock = raw(zmq.DEALER, mesh.config.bus_ctl, colleague)
    try:
        for _ in range(3):
            sock.send_multipart([control.HELLO, b"bus", fake_beat("bus", pid=1)])
            time.sleep(0.2)
        report = mesh.call("bus", "services")
    finally:
        sock.close()
    assert report["bus"]["pid"] == mesh.procs["bus"].proc.pid


def test_a_registered_service_cannot_answer_a_request_sent_to_another_service(mesh: Mesh) -> None:
    echo = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/mesh/echo_service.py")],
        env=mesh.env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    colleague = new_key(mesh, "colleague", "control")
    liar = raw(zmq.DEALER, mesh.config.bus_ctl, colleague)
    victim = raw(zmq.DEALER, mesh.config.bus_ctl, own_keys(mesh))
    try:
        mesh.wait_up(["echo"], 30)
        liar.send_multipart([control.HELLO, b"liar", fake_beat("liar")])
        time.sleep(0.3)
        victim.send_multipart([control.REQ, b"liar", control.encode(control.new_request("ping"))])
        assert liar.poll(2000)
        victim_id = liar.recv_multipart()[1]  # the bus hands every service its callers' routing ids
        while victim.poll(300):
            victim.recv_multipart()
        req = control.new_request("echo", {"text": "real"})
        victim.send_multipart([control.REQ, b"echo", control.encode(req)])
        liar.send_multipart(
            [
                control.REP,
                victim_id,
                control.encode(control.Reply(id=req.id, ok=True, result="forged")),
            ]
        )
        answers = []
        while victim.poll(1500):
            answers.append(control.decode_reply(victim.recv_multipart()[1]).result)
        assert answers == ["real"]
    finally:
        liar.close()
        victim.close()
        echo.terminate()
        echo.wait(5)


def test_a_control_key_registering_thousands_of_names_cannot_break_massive_status(
    mesh: Mesh,
) -> None:
    colleague = new_key(mesh, "colleague", "control")
    sock = raw(zmq.DEALER, mesh.config.bus_ctl, colleague)
    sock.sndhwm = 0
    beat = fake_beat("x")
    for i in range(30_000):
        sock.send_multipart([control.HELLO, f"n{i}".encode(), beat])
    wait_for(lambda: sock.getsockopt(zmq.EVENTS) & zmq.POLLOUT, 10, what="the HELLOs to leave")
    time.sleep(2)
    sock.close()
    status = massive(mesh, "status")
    bus_line = next((line for line in status.stdout.splitlines() if line.startswith("bus ")), "")
    assert " up " in bus_line, status.stdout[-500:] + status.stderr[-500:]


# --- damaged keys and registry ------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage", ["[]", "null", '{"mesh": {"public": 123, "roles": ["control"]}}']
)
def test_a_registry_of_the_wrong_shape_does_not_lock_the_mesh_out_once_it_is_restored(
    mesh: Mesh, damage: str
) -> None:
    registry = auth.KeyStore(mesh.config.data_dir).registry
    good = registry.read_text()
    registry.write_text(damage)
    assert not bus_pings(mesh, own_keys(mesh), timeout=1.0)  # a damaged registry lets nobody in
    registry.write_text(good)
    time.sleep(0.05)
    assert bus_pings(mesh, own_keys(mesh), timeout=3.0), (
        "the bus let nobody in after the registry was restored"
    )
    assert "Traceback" not in mesh.procs["bus"].output()


@pytest.mark.parametrize("damage", ["[]", "null", "42", "huge-added_ns"])
def test_massive_auth_on_a_registry_of_the_wrong_shape_is_one_line(mesh: Mesh, damage: str) -> None:
    registry = auth.KeyStore(mesh.config.data_dir).registry
    if damage == "huge-added_ns":
        entries = json.loads(registry.read_text())
        entries["mesh"]["added_ns"] = 10**30
        damage = json.dumps(entries)
    registry.write_text(damage)
    for args in (("auth", "list"), ("auth", "add", "nb", "--role", "subscribe")):
        result = massive(mesh, *args)
        assert "Traceback" not in result.stderr, f"massive {' '.join(args)}: {result.stderr[-300:]}"
        assert result.returncode == 0 or len(result.stderr.strip().splitlines()) == 1


def test_a_bad_key_file_is_one_line_for_status_tap_and_a_service(
    mesh: Mesh, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.key_secret"
    garbage.write_text("not a key\n")
    public_only = auth.KeyStore(mesh.config.data_dir).keys_dir / "mesh.key"
    for key_file in (str(tmp_path / "missing.key_secret"), str(garbage), str(public_only)):
        env = {"MESH_KEY_FILE": key_file}
        for args in (("status",), ("tap", "--count", "1", "--seconds", "2"), ("run", "recorder")):
            result = massive(mesh, *args, env=env, timeout=30)
            out = result.stdout + result.stderr
            assert "Traceback" not in out, (
                f"MESH_KEY_FILE={key_file} massive {' '.join(args)}: {out[-300:]}"
            )
            assert result.returncode != 0 and key_file in out


def test_services_started_together_on_an_empty_data_dir_share_one_key_set(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from mesh import auth\n"
        "while time.time() < float(sys.argv[2]): pass\n"
        "k = auth.KeyStore(Path(sys.argv[1])).client_keys(); print(k.public.decode(), k.server.decode())\n"
    )
    for trial in range(3):
        data = tmp_path / f"data{trial}"
        start = time.time() + 1.5
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(data), str(start)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(8)
        ]
        seen = {p.communicate(timeout=60)[0].strip() for p in procs}
        assert len(seen) == 1, seen
        registered = json.loads(auth.KeyStore(data).registry.read_text())
        assert registered["mesh"]["public"] == next(iter(seen)).split()[0]


def test_keys_are_owner_only_even_under_a_permissive_umask(mesh: Mesh) -> None:
    result = subprocess.run(
        [
            "sh",
            "-c",
            f"umask 000 && exec {sys.executable} -m mesh.cli auth add nb --role subscribe",
        ],
        env=mesh.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    store = auth.KeyStore(mesh.config.data_dir)
    for path in (store.dir, store.keys_dir):
        assert os.stat(path).st_mode & 0o077 == 0, path
    for path in [*store.keys_dir.iterdir(), store.registry]:
        assert os.stat(path).st_mode & 0o077 == 0, path


# --- floods -------------------------------------------------------------------------------------


_NULL_GREETING = (
    b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL" + b"\x00" * 16 + b"\x00" + b"\x00" * 31
)


def _keyless_flood(host: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as sock:
                sock.sendall(_NULL_GREETING)
        except OSError:
            pass


def _rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0


def test_a_flood_of_keyless_connections_leaves_commands_answered_within_a_second(
    mesh: Mesh,
) -> None:
    host, port = mesh.config.bus_ctl.rsplit("/", 1)[1].split(":")
    bus_pid = mesh.procs["bus"].proc.pid
    before = _rss_mb(bus_pid)
    flooders = [
        multiprocessing.get_context("spawn").Process(
            target=_keyless_flood, args=(host, int(port), 5.0)
        )
        for _ in range(2)
    ]
    for proc in flooders:
        proc.start()
    latencies: list[float] = []
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            assert bus_pings(mesh, own_keys(mesh), timeout=2.0)
            latencies.append(time.monotonic() - t0)
            time.sleep(0.2)
    finally:
        for proc in flooders:
            proc.join(10)
    # one outlier is the 2-core machine's scheduling; a full accept queue shows as many >= 1 s (SYN retries)
    assert sorted(latencies)[-2] < 1.0, latencies
    assert _rss_mb(bus_pid) < before + 50
    counters = mesh.call("bus", "services")["bus"]["counters"]
    assert counters["auth_refused"] > 100
