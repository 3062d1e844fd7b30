"""Exposure is explicit: with MESH_BUS_AUTH=off the bus may listen only on loopback (protected mode).

The refusal is checked on the real `massive run bus`: it must exit with one line saying why and
what to do, having bound nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mesh.config import AUTH_OFF_WARNING, Config, ConfigError, is_local_endpoint
from tests.conftest import free_port, mesh_env

ROOT = Path(__file__).resolve().parents[2]


def environ(tmp_path: Path, **env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    base.update(mesh_env(tmp_path / "data"))
    base.update(env)
    return base


def listening(port: int) -> bool:
    """Whether anything accepts TCP on 127.0.0.1:`port` (a bind to 0.0.0.0 answers there too)."""
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def run_bus(
    env: dict[str, str], ports: list[int], seconds: float
) -> tuple[subprocess.Popen[str], bool]:
    """Start `massive run bus`; for up to `seconds` (or until it exits) watch whether it binds any port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "run", "bus"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    bound = False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None and not bound:
        bound = any(listening(port) for port in ports)
        time.sleep(0.05)
    return proc, bound


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_an_unauthenticated_bus_on_0_0_0_0_is_refused_in_one_line_and_binds_nothing(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = environ(tmp_path, MESH_BUS_AUTH="off", MESH_BUS_PUB=f"tcp://0.0.0.0:{port}")
    ports = [port, port_of(env["MESH_BUS_SUB"]), port_of(env["MESH_BUS_CTL"])]
    proc, bound = run_bus(env, ports, seconds=30)
    try:
        _, stderr = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not bound, "the bus listened although its configuration was refused"
    assert proc.returncode not in (0, None)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    line = lines[0]
    assert f"MESH_BUS_PUB=tcp://0.0.0.0:{port}" in line and "not a loopback address" in line
    assert "MESH_BUS_AUTH=on" in line and "127.0.0.1" in line  # what to do about it
    with socket.socket() as again:  # nothing holds the port: it binds at once
        again.bind(("127.0.0.1", port))


def test_an_unauthenticated_bus_on_loopback_starts_and_listens(tmp_path: Path) -> None:
    env = environ(tmp_path, MESH_BUS_AUTH="off")
    ports = [port_of(env[var]) for var in ("MESH_BUS_PUB", "MESH_BUS_SUB", "MESH_BUS_CTL")]
    proc, bound = run_bus(env, ports, seconds=30)
    try:
        assert bound and proc.poll() is None, (
            proc.stderr.read() if proc.stderr and proc.poll() is not None else "not listening"
        )
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://0.0.0.0:{port}",
        "tcp://*:{port}",
        "tcp://[::]:{port}",
        "tcp://10.1.2.3:{port}",
        "tcp://eth0:{port}",
        "tcp://bus.example.com:{port}",
    ],
)
@pytest.mark.parametrize("var", ["MESH_BUS_PUB", "MESH_BUS_SUB", "MESH_BUS_CTL"])
def test_without_auth_every_non_loopback_endpoint_is_refused(
    tmp_path: Path, var: str, endpoint: str
) -> None:
    value = endpoint.format(port=free_port())
    with pytest.raises(ConfigError) as info:
        Config.load(environ=environ(tmp_path, MESH_BUS_AUTH="off", **{var: value}), cwd=tmp_path)
    message = str(info.value)
    assert "\n" not in message and f"{var}={value}" in message and "MESH_BUS_AUTH=on" in message


def test_with_auth_on_a_non_loopback_endpoint_passes_and_is_listed_as_exposed(
    tmp_path: Path,
) -> None:
    pub = f"tcp://0.0.0.0:{free_port()}"
    for env in ({"MESH_BUS_PUB": pub}, {"MESH_BUS_PUB": pub, "MESH_BUS_AUTH": "on"}):
        config = Config.load(environ=environ(tmp_path, **env), cwd=tmp_path)
        assert config.bus_auth is True
        assert config.exposed() == [pub]
        assert config.auth_warning() is None


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://127.0.0.1:{port}",
        "tcp://127.8.9.10:{port}",
        "tcp://localhost:{port}",
        "tcp://[::1]:{port}",
        "ipc://{tmp}/bus.pub",
        "inproc://bus-pub",
    ],
)
def test_without_auth_loopback_and_local_endpoints_are_allowed_with_a_warning(
    tmp_path: Path, endpoint: str
) -> None:
    value = endpoint.format(port=free_port(), tmp=tmp_path)
    config = Config.load(
        environ=environ(tmp_path, MESH_BUS_AUTH="off", MESH_BUS_PUB=value), cwd=tmp_path
    )
    assert config.bus_auth is False and config.bus_pub == value
    assert config.exposed() == []
    assert config.auth_warning() == AUTH_OFF_WARNING and "MESH_BUS_AUTH=off" in AUTH_OFF_WARNING


def test_is_local_endpoint_knows_loopback_from_everything_else() -> None:
    assert all(
        is_local_endpoint(e)
        for e in [
            "tcp://127.0.0.1:1",
            "tcp://LOCALHOST:1",
            "tcp://[::1]:1",
            "tcp://[::ffff:127.0.0.1]:1",
            "ipc:///tmp/x",
            "inproc://x",
        ]
    )
    assert not any(
        is_local_endpoint(e)
        for e in [
            "tcp://0.0.0.0:1",
            "tcp://*:1",
            "tcp://[::]:1",
            "tcp://192.168.0.1:1",
            "tcp://lo:1",
            "tcp://127.0.0.1;10.0.0.1:1",
        ]
    )


@pytest.mark.parametrize("value", ["bogus", "yes", "true", "1", "disabled"])
def test_a_bus_auth_value_other_than_on_or_off_is_one_line_listing_both(
    tmp_path: Path, value: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "config"],
        env=environ(tmp_path, MESH_BUS_AUTH=value),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"MESH_BUS_AUTH={value!r}" in lines[0] and "on" in lines[0] and "off" in lines[0]


def test_massive_config_shows_whether_bus_auth_is_on_and_where_it_came_from(tmp_path: Path) -> None:
    for env, shown, source in (
        ({}, "on", "default"),
        ({"MESH_BUS_AUTH": "OFF"}, "off", "environment"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "mesh.cli", "config"],
            env=environ(tmp_path, **env),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        row = next(line for line in result.stdout.splitlines() if line.startswith("MESH_BUS_AUTH"))
        assert row.split()[1] == shown and f"[{source}]" in row
