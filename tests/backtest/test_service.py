"""The backtester service on a real bus: commands, progress on job.<id>, the result on bt.result.<id>."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mesh import client, service, topics
from mesh.backtest.service import BacktesterService
from mesh.backtest.strategy_path import StrategyPath
from mesh.bus import Bus
from mesh.client import Subscriber
from mesh.config import Config
from mesh.control import ControlError
from mesh.replies import BacktestJob, BacktestQueued, read
from mesh.schema import JobState, JobUpdate
from tests.backtest.helpers import random_quotes, write_history, write_recording


def _up(config: Config) -> bool:
    try:
        return client.call("backtester", "ping", config=config, timeout=0.5) == "pong"
    except ControlError:
        return False


def _wait(predicate: Any, timeout: float = 30.0) -> Any:
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
        queued = client.call(
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
        assert read(queued, BacktestQueued) == BacktestQueued(
            job_id=job_id,
            state=JobState.QUEUED,
            runs=3,
            progress_topic=f"job.{job_id}",
            result_topic=f"bt.result.{job_id}",
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
    jobs = read(await call(mesh_config, "jobs"), list[BacktestJob])
    assert jobs[0].job_id == "cmp-1" and jobs[0].state is JobState.DONE
    assert jobs[0].dataset == "daily" and jobs[0].run_dirs == [r["run_dir"] for r in runs]
    assert [(r.strategy, r.params.get("fast")) for r in jobs[0].runs] == [
        ("buy-and-hold", None),
        ("ma-crossover", "5"),  # as asked: a sweep's values are read when the job runs
        ("ma-crossover", "10"),
    ]
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


SLOW = textwrap.dedent('''
    import time

    def crawl(bars, pause: float = 0.2):
        """Flat, and slow on purpose: a backtest long enough to cancel.

        pause: seconds spent on each symbol
        """
        with open(__file__ + ".calls", "a") as calls:
            calls.write("called\\n")
        time.sleep(pause)
        return [0.0] * len(bars)
''')
SWEEP = ",".join(f"{0.2 + i / 100:.2f}" for i in range(20))  # 20 runs of 2 symbols: ~8 s
SLOW_RUN = {"dataset": "daily", "strategy": "slow:crawl", "params": {"pause": SWEEP}, "save": False}


@pytest.fixture
async def slow_backtester(
    bus: Bus, mesh_config: Config, tmp_path: Path
) -> AsyncIterator[tuple[BacktesterService, Path]]:
    """A backtester whose strategy path holds `slow:crawl`; yields it and the file of its calls."""
    write_history(mesh_config.data_dir, "daily", n=50)
    strats = tmp_path / "strats"
    strats.mkdir()
    (strats / "slow.py").write_text(SLOW)
    path = StrategyPath.from_environ({"MESH_STRATEGY_PATH": str(strats)})
    svc = BacktesterService(mesh_config, strategy_path=path)
    task = asyncio.create_task(service._amain(svc, "backtester"))
    await asyncio.to_thread(_wait, lambda: _up(mesh_config))
    yield svc, strats / "slow.py.calls"
    svc.runtime.stopping.set()  # type: ignore[union-attr]
    assert await asyncio.wait_for(task, 10) == 0


async def job_of(config: Config, job_id: str) -> BacktestJob:
    jobs = read(await call(config, "jobs"), list[BacktestJob])
    return next(job for job in jobs if job.job_id == job_id)


async def until_finished(config: Config, job_id: str, timeout: float = 20) -> BacktestJob:
    async def poll() -> BacktestJob:
        while not (job := await job_of(config, job_id)).state.finished:
            await asyncio.sleep(0.05)
        return job

    return await asyncio.wait_for(poll(), timeout)


def _calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_cancelling_a_running_backtest_stops_it_and_the_next_job_runs(
    slow_backtester: tuple[BacktesterService, Path], mesh_config: Config
) -> None:
    _, calls = slow_backtester

    def cancel_when_running() -> list[tuple[str, JobUpdate]]:
        got: list[tuple[str, JobUpdate]] = []
        wanted = [topics.job("slow-1"), topics.backtest_result("slow-1")]
        with Subscriber(wanted, mesh_config.bus_sub) as sub:
            time.sleep(0.3)  # the subscription reaches the bus
            client.call("backtester", "run", dict(SLOW_RUN, job_id="slow-1"), config=mesh_config)
            deadline, cancelled = time.monotonic() + 20, False
            while time.monotonic() < deadline and not (got and got[-1][0] == wanted[1]):
                msg = sub.recv(timeout=0.5)
                if msg is None:
                    continue
                got.append((msg.topic, msg.payload))
                running = msg.payload.state == "running" and msg.payload.progress > 0
                if running and not cancelled:
                    cancelled = True
                    answer = client.call(
                        "backtester", "cancel", {"job_id": "slow-1"}, config=mesh_config
                    )
                    assert read(answer, BacktestJob).state is JobState.RUNNING
        return got

    started = time.monotonic()
    got = await asyncio.to_thread(cancel_when_running)
    assert time.monotonic() - started < 5, "the cancelled backtest ran on"
    (_, last_progress), (result_topic, result) = got[-2], got[-1]
    assert last_progress.state == "cancelled" and last_progress.message == "cancelled"
    assert result_topic == "bt.result.slow-1" and result.state == "cancelled"
    assert result.result == {"error": "cancelled"}
    job = await job_of(mesh_config, "slow-1")
    assert job.state is JobState.CANCELLED and job.error == "cancelled"
    stopped_at = _calls(calls)
    await asyncio.sleep(0.6)
    assert _calls(calls) == stopped_at < 40, "the work went on after the cancel"
    with pytest.raises(ControlError, match="job 'slow-1' is cancelled: cancelled; no result"):
        await call(mesh_config, "result", job_id="slow-1")

    after = read(
        await call(mesh_config, "run", dataset="daily", strategy="buy-and-hold"), BacktestQueued
    )
    assert (await until_finished(mesh_config, after.job_id)).state is JobState.DONE
    beat = await call(mesh_config, "counters")
    assert beat["jobs_cancelled"] == 1 and beat["jobs_done"] == 1


async def test_a_cancelled_queued_backtest_never_runs(
    slow_backtester: tuple[BacktesterService, Path], mesh_config: Config
) -> None:
    _, calls = slow_backtester
    slow = await call(mesh_config, "run", **SLOW_RUN)
    queued = await call(mesh_config, "run", dataset="daily", strategy="slow:crawl", save=False)

    answer = read(await call(mesh_config, "cancel", job_id=queued["job_id"]), BacktestJob)

    assert answer.state is JobState.CANCELLED and answer.error == "cancelled"
    assert answer.runs[0].strategy == "slow:crawl" and answer.progress == 0.0
    await call(mesh_config, "cancel", job_id=slow["job_id"])
    assert (await until_finished(mesh_config, slow["job_id"])).state is JobState.CANCELLED
    assert (await job_of(mesh_config, queued["job_id"])).state is JobState.CANCELLED
    before = _calls(calls)
    after = await call(mesh_config, "run", dataset="daily", strategy="buy-and-hold")
    assert (await until_finished(mesh_config, after["job_id"])).state is JobState.DONE
    assert _calls(calls) == before, "the cancelled job ran after all"
    with pytest.raises(ControlError, match="no job 'nope'"):
        await call(mesh_config, "cancel", job_id="nope")
