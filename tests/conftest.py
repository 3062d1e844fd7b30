"""Shared fixtures: ephemeral bus endpoints on 127.0.0.1 and a real bus running in a thread."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PYKX_UNLICENSED", "true")
# The sim's on-disk day bars (mesh.sim.daycache): one fresh directory per test run, shared by the
# run's processes, so tests neither read nor fill the user's cache.
SIM_CACHE = tempfile.mkdtemp(prefix="mesh-sim-cache-")
os.environ["MESH_SIM_CACHE"] = SIM_CACHE

from mesh.bus import Bus  # noqa: E402
from mesh.config import Config  # noqa: E402


def _children(pid: int) -> list[int]:
    """Direct child processes of `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile ingest's scanner and the indicators once, into numba's on-disk cache, before tests
    start services: on a fresh clone, each would otherwise spend its first seconds compiling."""
    from mesh.backtest import indicators
    from mesh.ingest import scan

    scan.warm_up()
    indicators.warm_up()


def pytest_sessionfinish(session: pytest.Session) -> None:
    shutil.rmtree(SIM_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """A test that fails half-way must not leave services running (they would hold ports)."""
    before = set(_children(os.getpid()))
    yield
    for pid in set(_children(os.getpid())) - before:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(autouse=True)
def service_logging_undone() -> Iterator[None]:
    """A test that runs a service in-process sets up the service's logging on the root logger;
    it is taken down after the test, so the service threads of later tests do not print into the
    test run's output."""
    yield
    for handler in list(logging.root.handlers):
        if type(handler).__name__ == "_StderrHandler":
            logging.root.removeHandler(handler)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_slice() -> range:
    """This test process's ports: below the kernel's ephemeral range, one slice per xdist worker."""
    low, high = 10000, max(_ephemeral_low(), 12000)
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), 1)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0) % workers
    width = (high - low) // workers
    return range(low + worker * width, low + (worker + 1) * width)


_PORTS = _port_slice()
_ports_given: set[int] = set()


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on, for a service a test starts later.

    A port the kernel hands out for `bind(0)` comes from its ephemeral range, where any outgoing
    connection of a parallel test can take it before the service binds it; so ports are picked
    outside that range, from a slice of their own per xdist worker, and never twice in a run.
    """
    for _ in range(1000):
        port = random.choice(_PORTS)
        if port in _ports_given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORTS}")


def mesh_env(data_dir: Path) -> dict[str, str]:
    """Environment for a mesh on fresh ephemeral ports, in sim mode, writing under `data_dir`."""
    return {
        "MESH_BUS_PUB": f"tcp://127.0.0.1:{free_port()}",
        "MESH_BUS_SUB": f"tcp://127.0.0.1:{free_port()}",
        "MESH_BUS_CTL": f"tcp://127.0.0.1:{free_port()}",
        "MESH_DATA_DIR": str(data_dir),
        "MESH_SIM_CACHE": SIM_CACHE,
        "PYKX_UNLICENSED": "true",
    }


@pytest.fixture
def mesh_environ(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    env.update(mesh_env(tmp_path / "data"))
    return env


@pytest.fixture
def mesh_config(
    mesh_environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Config:
    """The test's mesh configuration, also set in this process's environment, as a user's shell
    would have it: in-process clients then find the same bus and the same keys (mesh.auth)."""
    for key, value in mesh_environ.items():
        if key.startswith(("MESH_", "MASSIVE_", "KDB_")):
            monkeypatch.setenv(key, value)
    return Config.load(environ=mesh_environ, cwd=tmp_path)


@pytest.fixture
def bus(mesh_config: Config) -> Iterator[Bus]:
    """A real bus on ephemeral ports, running in a thread for the duration of the test."""
    bus = Bus(mesh_config)
    thread = threading.Thread(target=bus.run, name="test-bus", daemon=True)
    thread.start()
    yield bus
    bus.stop()
    thread.join(timeout=5)
    bus.close()
