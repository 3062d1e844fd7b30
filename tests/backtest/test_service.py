"""The backtester service on a real bus: commands, progress on job.<id>, the result on bt.result.<id>."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mesh import client, service, topics
from mesh.backtest.service import BacktesterService
from mesh.bus import Bus
from mesh.client import Subscriber
from mesh.config import Config
from mesh.control import ControlError
from mesh.schema import JobUpdate
from tests.backtest.helpers import random_quotes, write_history, write_recording


def _up(config: Config) -> bool:
    try:
        return client.call("backtester", "ping", config=config, timeout=0.5) == "pong"
    except ControlError:
        return False


def _wait(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def backtester(bus: Bus, mesh_config: Config) -> AsyncIterator[BacktesterService]:
    write_history(mesh_config.data_dir, "daily", n=400)
    write_recording(mesh_config.data_dir, "live", random_quotes(3000))
    svc = BacktesterService(mesh_config, max_points=50, max_trades=5)
    task = asyncio.create_task(service._amain(svc, "backtester"))
    await asyncio.to_thread(_wait, lambda: _up(mesh_config))
    yield svc
    svc.runtime.stopping.set()  # type: ignore[union-attr]
    assert await asyncio.wait_for(task, 10) == 0


async def call(config: Config, cmd: str, **args: Any) -> Any:
    return await asyncio.to_thread(client.call, "backtester", cmd, args, config=config, timeout=5)


def _collect(config: Config, job_id: str, until: float = 20.0) -> list[tuple[str, JobUpdate]]:
    """Messages on job.<id> and bt.result.<id> until the result arrives."""
    got: list[tuple[str, JobUpdate]] = []
    with Subscriber([topics.job(job_id), topics.backtest_result(job_id)], config.bus_sub) as sub:
        time.sleep(0.3)  # the subscription reaches the bus
        client.call(
            "backtester",
            "run",
            {
                "dataset": "daily",
                "strategy": ["buy-and-hold", "ma-crossover"],
                "params": {"fast": "5,10", "slow": 30},
                "options": {"commission_bps": 1.0},
                "job_id": job_id,
            },
            config=config,
            timeout=5,
        )
        deadline = time.monotonic() + until
        while time.monotonic() < deadline:
            msg = sub.recv(timeout=0.5)
            if msg is None:
                continue
            got.append((msg.topic, msg.payload))
            if msg.topic.startswith("bt.result."):
                break
    return got


async def test_lists_datasets_and_strategies(
    backtester: BacktesterService, mesh_config: Config
) -> None:
    found = {d["name"]: d for d in await call(mesh_config, "datasets")}
    assert found["daily"]["kind"] == "historical" and found["live"]["kind"] == "recording"
    assert (
        found["daily"]["start"]
        and found["daily"]["end"]
        and found["live"]["symbols"] == ["AAA", "BBB"]
    )
    strategies = {s["name"]: s for s in await call(mesh_config, "strategies")}
    assert [p["name"] for p in strategies["ma-crossover"]["params"]] == [
        "fast",
        "slow",
        "kind",
        "short",
    ]


async def test_a_job_publishes_progress_then_the_result(
    backtester: BacktesterService, mesh_config: Config
) -> None:
    messages = await asyncio.to_thread(_collect, mesh_config, "cmp-1")
    progress = [p for t, p in messages if t == "job.cmp-1"]
    states = [p.state for p in progress]
    assert states[0] == "queued" and "running" in states and states[-1] == "done"
    values = [p.progress for p in progress]
    assert values == sorted(values) and values[-1] == 1.0
    topic, result = messages[-1]
    assert topic == "bt.result.cmp-1" and result.state == "done" and result.kind == "backtest"
    runs = result.result["runs"]
    assert [r["label"] for r in runs] == [
        "buy-and-hold",
        "ma-crossover fast=5 slow=30",
        "ma-crossover fast=10 slow=30",
    ]
    first = runs[1]
    assert set(first["metrics"]) >= {
        "total_return",
        "sharpe",
        "max_drawdown",
        "trades",
        "win_rate",
        "exposure",
        "fees_paid",
    }
    assert (
        2 <= len(first["equity"]["ts"]) == len(first["equity"]["equity"]) <= 50
        and first["equity"]["of"] == 400
    )
    assert len(first["trades"]["pnl"]) == min(5, first["trades_total"])
    assert Path(first["run_dir"], "metrics.json").is_file()
    assert progress[-1].result["run_dirs"] == [r["run_dir"] for r in runs]
    again = await call(mesh_config, "result", job_id="cmp-1")
    assert again["runs"][1]["metrics"] == first["metrics"]
    jobs = await call(mesh_config, "jobs")
    assert jobs[0]["job_id"] == "cmp-1" and jobs[0]["state"] == "done"
    beat = await call(mesh_config, "counters")
    assert beat["jobs_done"] == 1 and beat["runs"] == 3


async def test_bad_requests_are_refused_at_once(
    backtester: BacktesterService, mesh_config: Config
) -> None:
    with pytest.raises(ControlError, match="no dataset 'nope'"):
        await call(mesh_config, "run", dataset="nope", strategy="buy-and-hold")
    with pytest.raises(ControlError, match="unknown strategy 'moon'"):
        await call(mesh_config, "run", dataset="daily", strategy="moon")
    with pytest.raises(ControlError, match="fast='x': expected a whole number"):
        await call(
            mesh_config, "run", dataset="daily", strategy="ma-crossover", params={"fast": "x"}
        )
    with pytest.raises(ControlError, match="unknown option 'speed'"):
        await call(
            mesh_config, "run", dataset="daily", strategy="buy-and-hold", options={"speed": 1}
        )
    with pytest.raises(ControlError, match="no job 'zzz'"):
        await call(mesh_config, "result", job_id="zzz")
    assert await call(mesh_config, "jobs") == []


async def test_a_job_that_fails_while_running_reports_why(
    backtester: BacktesterService, mesh_config: Config
) -> None:
    reply = await call(
        mesh_config,
        "run",
        dataset="daily",
        strategy="buy-and-hold",
        options={"symbols": ["ZZZ"]},
        save=False,
    )
    job_id = reply["job_id"]
    assert (
        reply["progress_topic"] == f"job.{job_id}"
        and reply["result_topic"] == f"bt.result.{job_id}"
    )

    async def finished() -> dict[str, Any]:
        while True:
            job = (await call(mesh_config, "jobs"))[0]
            if job["state"] not in ("queued", "running"):
                return job
            await asyncio.sleep(0.05)

    job = await asyncio.wait_for(finished(), 10)
    assert job["state"] == "failed" and "no data for ZZZ" in job["error"]
