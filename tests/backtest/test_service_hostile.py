"""The backtester's job commands under a hostile or careless client: every bad request is answered
with a clear one-line error at once, and the service stays up and keeps its jobs readable.

The requests go over the real control channel of a test bus, as `mesh.client` sends them; typed
answers are read back with `mesh.replies.read`, as the dashboard reads them.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mesh import client
from mesh.config import Config
from mesh.control import ControlError
from mesh.replies import BacktestJob, BacktestQueued, read
from mesh.schema import JobState
from tests.backtest.test_service import backtester  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("backtester")


def ask(config: Config, cmd: str, **args: Any) -> Any:
    return client.call("backtester", cmd, args, config=config, timeout=5)


def refusal(config: Config, cmd: str, **args: Any) -> str:
    """The error line a request is answered with, checked to be one clear line, sent at once."""
    started = time.monotonic()
    with pytest.raises(ControlError) as caught:
        ask(config, cmd, **args)
    assert type(caught.value) is ControlError, caught.value  # an answer, not a timeout
    assert time.monotonic() - started < 4
    line = str(caught.value)
    assert "\n" not in line and "Traceback" not in line and len(line) < 600
    return line


def still_up(config: Config) -> list[BacktestJob]:
    assert ask(config, "ping") == "pong"
    return read(ask(config, "jobs"), list[BacktestJob])


async def test_cancel_of_an_unknown_or_malformed_id_is_a_clear_error(mesh_config: Config) -> None:
    def attack() -> None:
        assert refusal(mesh_config, "cancel", job_id="bt-nope") == (
            "backtester cancel: no job 'bt-nope'"
        )
        for job_id in (5, None, [1], {"a": 1}, True, 1.5):
            line = refusal(mesh_config, "cancel", job_id=job_id)
            assert "a job id is text, such as bt-0a1b2c3d" in line, line
            assert "a job id is text" in refusal(mesh_config, "result", job_id=job_id)
        line = refusal(mesh_config, "cancel", job_id="x" * 100_000)
        assert (
            line.startswith("backtester cancel: unreadable request: size: ") and "100,000" in line
        )
        assert "missing a required argument: 'job_id'" in refusal(mesh_config, "cancel")
        still_up(mesh_config)

    await asyncio.to_thread(attack)


async def test_cancel_of_a_finished_job_leaves_it_as_it_is(mesh_config: Config) -> None:
    def attack() -> None:
        queued = read(
            ask(mesh_config, "run", dataset="daily", strategy="buy-and-hold", save=False),
            BacktestQueued,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            job = read(ask(mesh_config, "cancel", job_id=queued.job_id), BacktestJob)
            if job.state.finished:
                break
            time.sleep(0.1)
        again = read(ask(mesh_config, "cancel", job_id=queued.job_id), BacktestJob)
        assert again.state is job.state and again.finished == job.finished

    await asyncio.to_thread(attack)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"options": [1]}, "options: expected a map of names to values"),
        ({"params": "fast=5"}, "params: expected a map of names to values"),
        ({"options": {"commission_bps": "x"}}, "option commission_bps: expected a number"),
        ({"options": {"cash": True}}, "option cash: expected a number"),
        ({"options": {"slippage_bps": float("nan")}}, "slippage-bps must be a finite number"),
        ({"options": {"cap_size": "yes"}}, "option cap_size: expected true or false"),
        ({"options": {"interval": "0m"}}, "bad interval '0m'"),
        ({"options": {"interval": 5}}, "option interval: expected text such as 1m"),
        ({"options": {"symbols": 5}}, "option symbols: expected a list of tickers"),
        ({"dataset": 5}, "dataset: expected a name"),
        ({"dataset": "x" * 10_000}, "a dataset name is at most 255 bytes"),
        ({"dataset": "a\x00b"}, "a dataset name has no NUL characters"),
        ({"job_id": 5}, "5 cannot be part of a topic: it is not text"),
        ({"job_id": "x" * 100}, "a job id is at most 64 characters"),
        ({"job_id": "../x"}, "'../x' cannot be part of a topic"),
    ],
    ids=lambda v: str(v)[:30],
)
async def test_a_run_with_arguments_of_the_wrong_shape_is_refused_in_one_line(
    mesh_config: Config, args: dict[str, Any], expected: str
) -> None:
    request = {"dataset": "daily", "strategy": "ma-crossover", "save": False, **args}
    line = await asyncio.to_thread(refusal, mesh_config, "run", **request)
    assert expected in line, line
    assert not await asyncio.to_thread(still_up, mesh_config)  # nothing was queued


async def test_a_thousand_runs_and_a_cancel_storm_are_all_answered(mesh_config: Config) -> None:
    def storm() -> None:
        def run(_: int) -> BacktestQueued:
            answer = ask(mesh_config, "run", dataset="daily", strategy="buy-and-hold", save=False)
            return read(answer, BacktestQueued)

        with ThreadPoolExecutor(16) as pool:
            queued = list(pool.map(run, range(1000)))
        assert len({q.job_id for q in queued}) == 1000

        def cancel(job_id: str) -> str:
            try:
                return read(ask(mesh_config, "cancel", job_id=job_id), BacktestJob).state
            except ControlError as exc:  # forgotten: only the latest 100 finished are kept
                assert str(exc) == f"backtester cancel: no job {job_id!r}"
                return "forgotten"

        with ThreadPoolExecutor(16) as pool:
            states = list(pool.map(cancel, [q.job_id for q in queued] * 2))
        assert set(states) <= {JobState.CANCELLED, JobState.DONE, JobState.RUNNING, "forgotten"}
        jobs = still_up(mesh_config)
        assert 0 < len(jobs) <= 100 + 1  # the history bound, plus a job still running

    await asyncio.to_thread(storm)
