"""The real `massive-tui` in a real terminal (tmux), against `honcho start` on the simulator."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tui.app import VIEWS

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

BIN = Path(sys.executable).parent
# a board row with a bid and an ask (the sim may be playing a quiet pre-market, so any symbol)
PRICE_ROW = re.compile(r"^\s*[A-Z][A-Z.]*\s.*?\d[\d,]*\.\d\d\s+\d[\d,]*\.\d\d\s", re.MULTILINE)


def view_key(view_id: str) -> str:
    return str([v[0] for v in VIEWS].index(view_id) + 1)


class Tmux:
    def __init__(self, socket: str) -> None:
        self.base = ["tmux", "-L", socket]

    def run(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=10
        ).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-t", "tui", "-p")

    def wait_for(self, predicate, timeout: float = 30.0) -> str:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.3)
        raise AssertionError(f"screen never matched; last screen:\n{screen}")


def test_the_dashboard_in_a_terminal_shows_live_sim_data_and_mesh_health(
    mesh_environ: dict[str, str], tmp_path: Path
) -> None:
    ws = free_port()
    (tmp_path / "Procfile").write_text(
        "bus: massive run bus\n"
        f"sim: massive run sim --ws-port {ws} --rest-port {free_port()} --s3-port {free_port()}\n"
        f"ingest: massive run ingest --url ws://127.0.0.1:{ws}/stocks\n"
        "recorder: massive run recorder\n"
    )
    env = dict(
        mesh_environ, PATH=f"{BIN}{os.pathsep}{mesh_environ.get('PATH', '')}", PYTHONUNBUFFERED="1"
    )
    honcho = subprocess.Popen(
        [str(BIN / "honcho"), "start"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    tmux = Tmux(f"massive-test-{os.getpid()}")
    exports = " ".join(
        f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("MESH_", "PATH", "PYKX"))
    )
    tmux.run(
        "new-session",
        "-d",
        "-s",
        "tui",
        "-x",
        "160",
        "-y",
        "45",
        f"cd {shlex.quote(str(tmp_path))} && env -u COLUMNS -u LINES {exports} TERM=xterm-256color {BIN / 'massive-tui'}",
    )
    tmux.run(
        "resize-window", "-t", "tui", "-x", "160", "-y", "45"
    )  # a detached session may start at 80x24
    try:
        live = tmux.wait_for(
            lambda s: PRICE_ROW.search(s) is not None and "Time ET" in s, timeout=45
        )
        assert "Symbol" in live and "simulator" in live
        tmux.run("send-keys", "-t", "tui", view_key("mesh"))
        mesh = tmux.wait_for(
            lambda s: re.search(r"ingest\s+UP\s+ok", s) is not None and "streaming" in s, timeout=20
        )
        for service in ("bus", "sim", "recorder"):
            assert re.search(rf"{service}\s+UP", mesh), mesh
        tmux.run("send-keys", "-t", "tui", "C-q")
        deadline = time.monotonic() + 10
        while "tui" in tmux.run("list-sessions") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "tui" not in tmux.run("list-sessions"), "massive-tui did not quit on ctrl+q"
    finally:
        tmux.run("kill-server")
        os.killpg(honcho.pid, signal.SIGINT)
        try:
            honcho.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(5)


def _pids(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def _serving(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(shutil.which("pgrep") is None, reason="pgrep is not installed")
def test_closing_the_terminal_stops_the_services_the_dashboard_started(
    mesh_environ: dict[str, str], tmp_path: Path
) -> None:
    rest = free_port()
    marker = f"--rest-port {rest}"  # tells this test's sim apart from any other process
    (tmp_path / "Procfile").write_text(
        "bus: massive run bus\n"
        f"sim: massive run sim --ws-port {free_port()} {marker} --s3-port {free_port()}\n"
    )
    exports = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in mesh_environ.items()
        if k.startswith(("MESH_", "PATH", "PYKX"))
    )
    tmux = Tmux(f"massive-hangup-{os.getpid()}")
    tmux.run(
        "new-session",
        "-d",
        "-s",
        "tui",
        "-x",
        "120",
        "-y",
        "30",
        f"cd {shlex.quote(str(tmp_path))} && env {exports} TERM=xterm-256color {BIN / 'massive-tui'} --mesh",
    )
    try:
        deadline = time.monotonic() + 45
        while not _serving(rest) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _serving(rest), "massive-tui --mesh never started the sim"
        assert _pids(marker)
        time.sleep(5)  # settled: past the start-up lines a service writes to its pipe
        tmux.run("kill-server")  # the terminal goes away: the dashboard gets SIGHUP
        deadline = time.monotonic() + 15
        while _pids(marker) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not _pids(marker), "the sim outlived its closed terminal"
    finally:
        tmux.run("kill-server")
        for pid in _pids(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
