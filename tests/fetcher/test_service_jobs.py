"""The fetcher's jobs as a client meets them on a real bus: typed answers, cancel, the next job.

A REST limit of one call a minute makes a two-symbol fetch wait (cancellably) in the quota ledger,
so a job is reliably running while the test cancels it; flat files do not use the REST quota, so
the job after it runs at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mesh import client, service
from mesh.bus import Bus
from mesh.config import Config
from mesh.control import ControlError
from mesh.fetcher.service import FetcherService
from mesh.replies import JobView, read
from mesh.schema import JobState
from mesh.sim.server import SimServer
from tests.fetcher.conftest import config_of, sim_env


@pytest.fixture
async def fetcher(
    sim: SimServer, bus: Bus, mesh_environ: dict[str, str], tmp_path: Path
) -> AsyncIterator[Config]:
    """A fetcher service in this process, allowed one REST call a minute."""
    data_dir = Path(mesh_environ["MESH_DATA_DIR"])
    limits = sim_env(sim, data_dir, MASSIVE_REST_CALLS_PER_MINUTE="1")
    env = {**mesh_environ, **{k: v for k, v in limits.items() if k.startswith("MASSIVE_")}}
    config = config_of(env, tmp_path)
    svc = FetcherService(config)
    task = asyncio.create_task(service._amain(svc, "fetcher"))
    deadline = time.monotonic() + 20
    while not await asyncio.to_thread(_answers, config):
        assert time.monotonic() < deadline, "the fetcher did not come up"
    yield config
    svc.runtime.stopping.set()  # type: ignore[union-attr]
    assert await asyncio.wait_for(task, 10) == 0


def _answers(config: Config) -> bool:
    try:
        return client.call("fetcher", "ping", config=config, timeout=0.5) == "pong"
    except ControlError:
        return False


async def call(config: Config, cmd: str, **args: Any) -> Any:
    return await asyncio.to_thread(client.call, "fetcher", cmd, args, config=config, timeout=5)


async def job_when(
    config: Config, job_id: str, predicate: Callable[[JobView], bool], timeout: float = 20
) -> JobView:
    async def poll() -> JobView:
        while not predicate(job := read(await call(config, "job", job_id=job_id), JobView)):
            await asyncio.sleep(0.05)
        return job

    return await asyncio.wait_for(poll(), timeout)


async def test_fetch_jobs_cancelled_queued_or_running_stop_and_the_next_job_runs(
    fetcher: Config, days: list[dt.date]
) -> None:
    window = {"start": str(days[-2]), "end": str(days[-1]), "interval": "1h"}
    slow = read(
        await call(fetcher, "fetch", symbols=["AAPL", "MSFT"], method="rest", **window), JobView
    )
    queued = read(
        await call(fetcher, "fetch", symbols="SPY", method="flat_file", **window), JobView
    )
    assert slow.state is JobState.QUEUED and slow.kind == "fetch"
    assert slow.topic == f"job.{slow.job_id}" and slow.args["symbols"] == ["AAPL", "MSFT"]
    await job_when(fetcher, slow.job_id, lambda job: "per-minute REST limit" in job.message)

    answer = read(await call(fetcher, "cancel", job_id=queued.job_id), JobView)
    assert answer.state is JobState.CANCELLED and answer.message == "cancelled"
    answer = read(await call(fetcher, "cancel", job_id=slow.job_id), JobView)
    assert answer.state is JobState.RUNNING  # it stops at its next request or wait
    started = time.monotonic()
    stopped = await job_when(fetcher, slow.job_id, lambda job: job.state.finished, timeout=5)
    assert stopped.state is JobState.CANCELLED and stopped.message == "cancelled"
    assert time.monotonic() - started < 2, "the job waited out the minute before stopping"

    # as traded: flat files alone, no REST call (the minute's are spent; adjusting reads splits)
    after = read(
        await call(fetcher, "fetch", symbols="SPY", method="flat_file", adjusted=False, **window),
        JobView,
    )
    done = await job_when(fetcher, after.job_id, lambda job: job.state.finished)
    assert done.state is JobState.DONE and done.progress == 1.0, done.message
    assert done.result["rows"] > 0 and done.result["method_used"] == "flat_file"
    jobs = read(await call(fetcher, "jobs"), list[JobView])
    assert [(j.job_id, j.state) for j in jobs] == [
        (after.job_id, JobState.DONE),
        (queued.job_id, JobState.CANCELLED),
        (slow.job_id, JobState.CANCELLED),
    ]
    counters = await call(fetcher, "counters")
    assert counters["jobs_cancelled"] == 2 and counters["jobs_done"] == 1
    assert counters["jobs_failed"] == 0 and counters["jobs_queued"] == 0
    with pytest.raises(ControlError, match="no job 'f-nope'"):
        await call(fetcher, "cancel", job_id="f-nope")
