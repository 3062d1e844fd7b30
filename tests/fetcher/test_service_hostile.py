"""The fetcher's job commands under a hostile or careless client: every bad request is answered with
a clear one-line error at once (nothing queued, no job failing later with a Python error), and the
service stays up with its jobs readable as `JobView`s.

The requests go over the real control channel of a test bus; the fetcher is allowed one REST call
a minute, so the thousand fetches below wait their turn (cancellably) instead of downloading.
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
from mesh.replies import JobView, read
from mesh.schema import JobState
from tests.fetcher.test_service_jobs import fetcher  # noqa: F401 - the fixture


def ask(config: Config, cmd: str, **args: Any) -> Any:
    return client.call("fetcher", cmd, args, config=config, timeout=5)


def refusal(config: Config, cmd: str, **args: Any) -> str:
    started = time.monotonic()
    with pytest.raises(ControlError) as caught:
        ask(config, cmd, **args)
    assert type(caught.value) is ControlError, caught.value  # an answer, not a timeout
    assert time.monotonic() - started < 4
    line = str(caught.value)
    assert "\n" not in line and "Traceback" not in line and len(line) < 600
    return line


def jobs_of(config: Config) -> list[JobView]:
    assert ask(config, "ping") == "pong"
    return read(ask(config, "jobs"), list[JobView])


async def test_job_and_cancel_of_unknown_or_malformed_ids_are_clear_errors(
    fetcher: Config,  # noqa: F811
) -> None:
    def attack() -> None:
        for cmd in ("job", "cancel"):
            assert refusal(fetcher, cmd, job_id="f-nope") == f"fetcher {cmd}: no job 'f-nope'"
            for job_id in (5, None, [1], {"a": 1}, False):
                line = refusal(fetcher, cmd, job_id=job_id)
                assert "a job id is text, such as f-0a1b2c3d" in line, line
            line = refusal(fetcher, cmd, job_id="x" * 100_000)
            assert line.startswith(f"fetcher {cmd}: unreadable request: size: ")
        assert jobs_of(fetcher) == []

    await asyncio.to_thread(attack)


WINDOW = {"symbols": "AAPL", "start": "2024-01-02", "end": "2024-01-03"}


@pytest.mark.parametrize(
    ("cmd", "args", "expected"),
    [
        ("fetch", {**WINDOW, "name": 5}, "dataset name 5: expected text"),
        ("fetch", {**WINDOW, "symbols": 5}, "symbols 5: expected text such as AAPL,MSFT"),
        ("plan", {**WINDOW, "symbols": {"a": 1}}, "symbols {'a': 1}: expected text"),
        ("fetch", {**WINDOW, "symbols": ["A"] * 200_000}, "unreadable request: size: "),
        ("fetch", {**WINDOW, "job_id": 7}, "7 cannot be part of a topic: it is not text"),
        ("fetch", {**WINDOW, "job_id": "f" * 65}, "a job id is at most 64 characters"),
        ("backfill", {"session": 5}, "no recording '5' under "),
        ("backfill", {"session": "/"}, "no recording '/' under "),
        ("backfill", {"session": "../.."}, "no recording '../..' under "),
        ("backfill", {"session": "x" * 10_000}, "no recording 'xxxxxxx"),
        ("backfill", {"session": "a\x00b"}, "no recording 'a\\x00b' under "),
        ("backfill", {"gaps": 5}, "gaps: expected a list of records"),
        ("backfill", {"gaps": "x"}, "gaps: expected a list of records"),
        ("backfill", {"gaps": [5]}, "gaps: expected a list of records"),
        ("backfill", {"gaps": [{"symbol": 5}]}, "gaps: expected a list of records"),
        (
            "backfill",
            {"gaps": [{"symbol": "A", "kind": "trade", "ts_from": "x", "ts_to": 1}]},
            "gaps: expected a list of records",
        ),
        ("backfill", {"gaps": [], "session": None, "name": 5}, "give gaps"),
        ("reconcile", {"session": 5}, "no recording '5' under "),
        ("reconcile", {"session": "../.."}, "no recording '../..' under "),
        ("reconcile", {"session": "x" * 10_000, "dry_run": True}, "no recording 'xxxxxxx"),
        ("heal", {"session": "a\x00b"}, "no recording 'a\\x00b' under "),
        ("heal", {"session": None, "dry_run": True}, "no recording 'None' under "),
    ],
    ids=lambda v: str(v)[:40],
)
async def test_requests_of_the_wrong_shape_are_refused_before_anything_is_queued(
    fetcher: Config,  # noqa: F811
    cmd: str,
    args: dict[str, Any],
    expected: str,
) -> None:
    line = await asyncio.to_thread(refusal, fetcher, cmd, **args)
    assert expected in line, line
    assert await asyncio.to_thread(jobs_of, fetcher) == []


async def test_a_thousand_fetches_and_a_cancel_storm_are_all_answered(
    fetcher: Config,  # noqa: F811
) -> None:
    def storm() -> None:
        def fetch(_: int) -> JobView:
            answer = ask(fetcher, "fetch", **{**WINDOW, "symbols": "AAPL,MSFT", "method": "rest"})
            return read(answer, JobView)

        with ThreadPoolExecutor(16) as pool:
            queued = list(pool.map(fetch, range(1000)))
        assert len({q.job_id for q in queued}) == 1000
        assert len(jobs_of(fetcher)) == 1000  # a thousand jobs: an answer every client can read
        extra = []  # the queue holds 1,000 waiting jobs (one of those above may be running)
        with pytest.raises(ControlError) as refused:
            for _ in range(3):
                extra.append(fetch(0).job_id)
        assert len(extra) <= 1 and "jobs waiting, as many as it takes" in str(refused.value)
        queued += [JobView(job_id=job_id, state=JobState.QUEUED) for job_id in extra]

        def cancel(job_id: str) -> str:
            try:
                return read(ask(fetcher, "cancel", job_id=job_id), JobView).state
            except ControlError as exc:  # forgotten: only the latest 50 finished are kept
                assert str(exc) == f"fetcher cancel: no job {job_id!r}"
                return "forgotten"

        with ThreadPoolExecutor(16) as pool:
            states = list(pool.map(cancel, [q.job_id for q in queued] * 2))
        assert set(states) <= {JobState.CANCELLED, JobState.RUNNING, JobState.FAILED, "forgotten"}
        deadline = time.monotonic() + 10
        while any(not job.state.finished for job in jobs_of(fetcher)):
            assert time.monotonic() < deadline, "a cancelled fetch did not stop"
            time.sleep(0.1)
        assert len(jobs_of(fetcher)) == 50

    await asyncio.to_thread(storm)
