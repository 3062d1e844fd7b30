"""A whole mesh as real `massive run NAME` subprocesses, for suites that attack or kill it.

Each service runs as its own process with its output collected, so a test can `kill -9` one,
restart it, and read what it logged. Ports are ephemeral and everything binds to 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mesh import client
from mesh.config import Config
from mesh.control import ControlError
from tests.conftest import free_port, mesh_env

ROOT = Path(__file__).resolve().parents[1]


class Proc:
    """One `massive run NAME ...` subprocess whose output is collected by a thread."""

    def __init__(self, env: dict[str, str], name: str, *argv: str) -> None:
        self.name = name
        self.argv = argv
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mesh.cli", "run", name, *argv],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return "\n".join(self.lines)

    def kill9(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(5)

    def stop(self, timeout: float = 10) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        return code


def massive(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`massive ARGS` as a user runs it, in `env`, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "mesh.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(
    predicate: Callable[[], Any], timeout: float, step: float = 0.1, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class Mesh:
    """Services by name, on one environment; `start`, `kill9`, `restart` and `stop_all`."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))
        }
        env.update(mesh_env(data_dir))
        self.sim_ports = {"ws": free_port(), "rest": free_port(), "s3": free_port()}
        env.update(extra_env or {})
        self.env = env
        self.config = Config.load(environ=env, cwd=data_dir.parent)
        self.procs: dict[str, Proc] = {}
        self.args: dict[str, tuple[str, ...]] = {}

    def sim_args(self, *extra: str) -> tuple[str, ...]:
        p = self.sim_ports
        return (
            "--ws-port",
            str(p["ws"]),
            "--rest-port",
            str(p["rest"]),
            "--s3-port",
            str(p["s3"]),
            *extra,
        )

    def point_at_sim(self) -> None:
        """Services that talk to Massive use this mesh's sim (its ports are not the defaults)."""
        p = self.sim_ports
        self.env["MASSIVE_WS_URL"] = f"ws://127.0.0.1:{p['ws']}/stocks"
        self.env["MASSIVE_REST_URL"] = f"http://127.0.0.1:{p['rest']}"
        self.env["MASSIVE_S3_ENDPOINT"] = f"http://127.0.0.1:{p['s3']}"
        self.config = Config.load(environ=self.env, cwd=Path(self.env["MESH_DATA_DIR"]).parent)

    def start(self, name: str, *argv: str) -> Proc:
        self.args[name] = argv
        proc = self.procs[name] = Proc(self.env, name, *argv)
        return proc

    def kill9(self, name: str) -> None:
        self.procs[name].kill9()

    def restart(self, name: str) -> Proc:
        old = self.procs.get(name)
        if old is not None and old.alive:
            old.stop()
        return self.start(name, *self.args.get(name, ()))

    def alive(self) -> dict[str, bool]:
        return {name: proc.alive for name, proc in self.procs.items()}

    def call(self, service: str, cmd: str, timeout: float = 5, **args: Any) -> Any:
        return client.call(service, cmd, args, config=self.config, timeout=timeout)

    def answers(self, service: str) -> bool:
        try:
            return self.call(service, "ping", timeout=0.5) == "pong"
        except ControlError:
            return False

    def wait_up(self, names: Iterable[str], timeout: float = 60) -> None:
        """Until each service answers ping; a service whose process has exited fails at once,
        with what it printed."""
        for name in names:
            proc = self.procs.get(name)

            def up(n: str = name, p: Proc | None = proc) -> bool:
                if p is not None and not p.alive:
                    p.kill9()  # reaps it and collects the last of its output
                    raise AssertionError(
                        f"{n} exited ({p.proc.returncode}) before answering ping:\n{p.output()}"
                    )
                return self.answers(n)

            wait_for(up, timeout, 0.2, f"{name} to answer ping")

    def session(self) -> dict[str, Any]:
        """The recorder's current session, as `status` reports it ({} between sessions)."""
        return self.call("recorder", "status", timeout=2).get("session") or {}

    def wait_recording(self, timeout: float = 45) -> None:
        """Until the recorder's session holds a row."""
        wait_for(lambda: self.session().get("rows"), timeout, 0.3, "rows in the recording")

    def stop_recording(self, settle: float = 2) -> None:
        """Unsubscribe ingest, let the bus drain `settle` seconds, stop the recorder's session and
        wait until it is stopped (its files promoted)."""
        self.call("ingest", "unsubscribe", params="Q.*,T.*", timeout=15)
        time.sleep(settle)
        self.call("recorder", "stop", timeout=15)
        wait_for(lambda: self.session().get("state") == "stopped", 60, 0.3, "the recording to stop")

    def stop_all(self) -> dict[str, int]:
        codes = {}
        for name in reversed(list(self.procs)):
            codes[name] = self.procs[name].stop()
        return codes

    def __enter__(self) -> Mesh:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            if proc.alive:
                proc.kill9()
