"""`massive run sim` as a mesh service: idle with a real key, commands and counters in sim mode."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import websockets

from mesh.config import Config
from mesh.sim.service import SimService, build_parser
from tests.conftest import mesh_env


class FakeRuntime:
    def __init__(self) -> None:
        self.stopping = asyncio.Event()


async def test_with_a_real_key_the_sim_is_idle_until_stopped(tmp_path: Path) -> None:
    config = Config.load({"MASSIVE_API_KEY": "real-key"}, cwd=tmp_path)
    service = SimService(config, build_parser().parse_args([]))
    runtime = FakeRuntime()
    task = asyncio.create_task(service.run(runtime))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    assert not task.done() and service.state == "disabled" and "idle" in service.message
    runtime.stopping.set()
    await asyncio.wait_for(task, 2)


async def test_sim_mode_serves_prints_urls_and_answers_disconnect(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = Config.load({}, cwd=tmp_path)
    args = build_parser().parse_args(
        [
            "--ws-port",
            "0",
            "--rest-port",
            "0",
            "--s3-port",
            "0",
            "--rate",
            "500",
            "--symbols",
            "AAPL,MSFT",
        ]
    )
    service = SimService(config, args)
    runtime = FakeRuntime()
    task = asyncio.create_task(service.run(runtime))  # type: ignore[arg-type]
    while service.sim is None or service.sim.rest is None or service.sim.s3 is None:
        await asyncio.sleep(0.05)
    urls = service.cmd_urls()
    out = ""
    for _ in range(100):  # the URLs are printed just after the servers exist
        out += capsys.readouterr().out
        if urls["s3"] in out:
            break
        await asyncio.sleep(0.05)
    assert urls["websocket"] in out and urls["rest"] in out and urls["s3"] in out
    async with websockets.connect(urls["websocket"]) as ws:
        await ws.recv()
        await ws.send(json.dumps({"action": "auth", "params": "sim-demo-key"}))
        await ws.recv()
        await ws.send(json.dumps({"action": "subscribe", "params": "Q.*"}))
        await asyncio.sleep(0.3)
        assert service.cmd_disconnect() == {"disconnected": 1}
        counters = service.counters()
        assert (
            counters["connections"] == 1
            and counters["events_sent"] > 0
            and counters["force_disconnect"] == 1
        )
        statuses = []
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in ws:
                statuses += [m["status"] for m in json.loads(frame) if m["ev"] == "status"]
        assert statuses[-1] == "force_disconnect" and ws.close_code == 1008
    runtime.stopping.set()
    await asyncio.wait_for(task, 10)


def test_a_sim_whose_port_is_taken_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {**mesh_env(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "mesh.cli", "run", "sim", "--ws-port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "sim cannot listen" in out and "address already in use" in out, out
    assert "Traceback" not in out and "never retrieved" not in out, out
