"""The fetcher service reconciles and heals recordings: on request (`reconcile`, `heal` commands,
run as jobs) and by itself once a recording's day is over and its flat files exist.

The recordings are a played sim day written by the real recorder: every trade and quote of a
symbol on 2026-12-04, received now (as `sim --at` plays a past day), so the recording's span is
the day itself and Massive's record of it is the sim's REST and flat files.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mesh import calendar, client, service
from mesh.bus import Bus
from mesh.config import Config
from mesh.control import ControlError
from mesh.datasets import audit, live
from mesh.fetcher import auto
from mesh.fetcher.service import FetcherService
from mesh.recorder.session import Session
from mesh.replies import JobView, read
from mesh.schema import JobState, QuoteBatch, TradeBatch
from mesh.sim.server import SimServer
from tests.datasets.quality_helpers import DAY, tape
from tests.fetcher.conftest import config_of, sim_env

SYMBOLS = ("AAPL",)
HOLE_FROM = calendar.midnight_ns(DAY) + (10 * 3600 + 15 * 60) * 1_000_000_000  # 10:15 New York
HOLE_TO = HOLE_FROM + 60 * 1_000_000_000  # one minute of trades and quotes left out


def _keep(batch: Any, keep: list[bool]) -> Any:
    fields = {name: getattr(batch, name) for name in batch.__struct_fields__}
    return type(batch)(
        **{k: [x for x, ok in zip(v, keep, strict=True) if ok] for k, v in fields.items()}
    )


def record_played(data_dir: Path, name: str, *, hole: bool = False) -> Path:
    """SYMBOLS' whole sim day, received now, written by the recorder; `hole` leaves a minute out."""
    trades, quotes = tape(SYMBOLS)
    session = Session(name, data_dir=data_dir).open()
    now = time.time_ns()
    batches: list[Any] = []
    for batch in (quotes, trades):
        batch = msgspec.structs.replace(
            batch, ts_recv=[now + i for i in range(len(batch.ts_event))]
        )
        if hole:
            batch = _keep(batch, [not (HOLE_FROM <= t < HOLE_TO) for t in batch.ts_event])
        batches.append(batch)
    session.write("quotes", batches[0])
    session.write("trades", batches[1])
    session.stop()
    assert isinstance(batches[0], QuoteBatch) and isinstance(batches[1], TradeBatch)
    return data_dir / "recordings" / name


class Fetcher:
    """A fetcher service running in this process against the sim, and a way to talk to it."""

    def __init__(self, service_: FetcherService, config: Config) -> None:
        self.service = service_
        self.config = config

    async def call(self, cmd: str, **args: Any) -> Any:
        return await asyncio.to_thread(
            client.call, "fetcher", cmd, args, config=self.config, timeout=10
        )

    async def until(self, what: str, predicate: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)

    def counters(self) -> dict[str, Any]:
        return self.service.counters()

    def jobs(self) -> list[JobView]:
        return self.service.jobs.views()


@pytest.fixture
async def start_fetcher(
    sim: SimServer,
    bus: Bus,
    mesh_environ: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[..., Any]]:
    """Starts the fetcher with extra settings; it looks for recordings every 0.2 s (not a minute)."""
    monkeypatch.setattr(auto, "SCAN_EVERY_S", 0.2)
    started: list[tuple[FetcherService, asyncio.Task[int]]] = []

    async def start(**settings: str) -> Fetcher:
        data_dir = Path(mesh_environ["MESH_DATA_DIR"])
        limits = sim_env(sim, data_dir)
        env = {**mesh_environ, **{k: v for k, v in limits.items() if k.startswith("MASSIVE_")}}
        config = config_of({**env, **settings}, tmp_path)
        svc = FetcherService(config)
        started.append((svc, asyncio.create_task(service._amain(svc, "fetcher"))))
        deadline = time.monotonic() + 20
        while not await asyncio.to_thread(_answers, config):
            assert time.monotonic() < deadline, "the fetcher did not come up"
        return Fetcher(svc, config)

    yield start
    for svc, task in started:
        svc.runtime.stopping.set()  # type: ignore[union-attr]
        assert await asyncio.wait_for(task, 10) == 0


def _answers(config: Config) -> bool:
    try:
        return client.call("fetcher", "ping", config=config, timeout=0.5) == "pong"
    except ControlError:
        return False


def _reconciliation(folder: Path) -> audit.Reconciliation | None:
    return audit.read_audit(folder).reconciliation


async def test_a_finished_recording_is_reconciled_by_itself_and_one_being_recorded_is_left_alone(
    start_fetcher: Callable[..., Any], mesh_environ: dict[str, str]
) -> None:
    data_dir = Path(mesh_environ["MESH_DATA_DIR"])
    done = record_played(data_dir, "friday")
    busy = record_played(data_dir, "still-recording")
    lock = live.hold(busy)  # as the recorder holds it while it writes the session
    try:
        fetcher = await start_fetcher()
        await fetcher.until(
            "the automatic reconcile", lambda: fetcher.counters()["auto_reconciled"] == 1
        )
        found = _reconciliation(done)
        assert found is not None and found.complete
        assert found.method is audit.Method.FLAT_FILE  # a whole day: the day's flat files
        assert sum(r.matched for r in found.results) > 1000
        await asyncio.sleep(1.0)  # several more scans
        assert _reconciliation(busy) is None
        assert [(j.kind, j.args.get("session"), j.state) for j in fetcher.jobs()] == [
            ("reconcile", "friday", JobState.DONE)
        ]
        assert fetcher.counters()["auto_reconciled"] == 1  # reconciled once, not once a scan
        assert fetcher.counters()["auto_failed"] == 0
    finally:
        live.release(lock)


async def test_with_auto_heal_an_incomplete_recording_is_healed_to_complete(
    start_fetcher: Callable[..., Any], mesh_environ: dict[str, str]
) -> None:
    folder = record_played(Path(mesh_environ["MESH_DATA_DIR"]), "holed", hole=True)
    fetcher = await start_fetcher(MESH_AUTO_HEAL="on")
    await fetcher.until("the automatic heal", lambda: fetcher.counters()["auto_healed"] == 1, 60)
    stored = audit.read_audit(folder)
    assert stored.reconciliation is not None and stored.reconciliation.complete
    assert len(stored.heals) == 1 and sum(s.rows for s in stored.heals[0].spans) > 0
    kinds = [(j.kind, j.state) for j in reversed(fetcher.jobs())]
    assert kinds == [("reconcile", JobState.DONE), ("heal", JobState.DONE)]
    assert "reconciled again: complete" in fetcher.jobs()[0].result["summary"]
    assert fetcher.counters()["auto_reconciled"] == 1


async def test_with_auto_reconcile_off_nothing_is_reconciled(
    start_fetcher: Callable[..., Any], mesh_environ: dict[str, str]
) -> None:
    folder = record_played(Path(mesh_environ["MESH_DATA_DIR"]), "friday")
    fetcher = await start_fetcher(MESH_AUTO_RECONCILE="off")
    await asyncio.sleep(1.5)
    assert _reconciliation(folder) is None and fetcher.jobs() == []
    assert fetcher.counters()["auto_reconciled"] == 0


async def test_a_reconcile_the_quota_refuses_fails_once_and_is_not_retried_within_the_hour(
    start_fetcher: Callable[..., Any], mesh_environ: dict[str, str]
) -> None:
    folder = record_played(Path(mesh_environ["MESH_DATA_DIR"]), "friday")
    fetcher = await start_fetcher(MASSIVE_S3_BYTES_PER_MONTH="1000", MASSIVE_REST_CALLS_PER_DAY="1")
    await fetcher.until("the refused reconcile", lambda: fetcher.counters()["auto_failed"] == 1)
    await asyncio.sleep(1.5)  # several more scans
    jobs = fetcher.jobs()
    assert [(j.kind, j.state) for j in jobs] == [("reconcile", JobState.FAILED)]
    assert "not reconciled" in jobs[0].message
    assert fetcher.counters()["auto_failed"] == 1 and _reconciliation(folder) is None


async def test_reconcile_and_heal_commands_plan_queue_jobs_and_refuse_bad_requests(
    start_fetcher: Callable[..., Any], mesh_environ: dict[str, str]
) -> None:
    folder = record_played(Path(mesh_environ["MESH_DATA_DIR"]), "holed", hole=True)
    fetcher = await start_fetcher(MESH_AUTO_RECONCILE="off")
    plan = await fetcher.call("reconcile", session="holed", dry_run=True)
    assert plan["dry_run"] and plan["plan"]["method"] == "flat_file" and plan["plan"]["fits"]
    assert _reconciliation(folder) is None  # a dry run stores nothing
    queued = read(
        await fetcher.call("reconcile", session="holed", symbols="AAPL", job_id="rec-1"), JobView
    )
    assert (queued.job_id, queued.kind, queued.topic) == ("rec-1", "reconcile", "job.rec-1")
    await fetcher.until(
        "the reconcile job", lambda: fetcher.service.jobs.view("rec-1").state.finished
    )
    done = fetcher.service.jobs.view("rec-1")
    assert done.state is JobState.DONE, done.message
    assert done.message.startswith("holed: incomplete") and done.message.endswith("by flat_file")
    assert done.result["reconciliation"]["results"][0]["missing"] > 0
    spans = await fetcher.call("heal", session="holed", dry_run=True)
    assert spans["dry_run"] and spans["spans_from"] == "reconciliation" and spans["spans"]
    read(await fetcher.call("heal", session="holed", job_id="heal-1"), JobView)
    await fetcher.until("the heal job", lambda: fetcher.service.jobs.view("heal-1").state.finished)
    healed = fetcher.service.jobs.view("heal-1")
    assert healed.state is JobState.DONE and "reconciled again: complete" in healed.message
    assert healed.result["summary"] == healed.message
    for args, said in [
        ({"session": "nope"}, "no recording 'nope'"),
        ({"session": "holed", "method": "carrier-pigeon"}, "method 'carrier-pigeon'"),
        ({"session": "holed", "symbols": [1, 2]}, "symbols: expected a list of tickers"),
    ]:
        with pytest.raises(ControlError, match=said):
            await fetcher.call("reconcile", **args)
    with pytest.raises(ControlError, match="no recording '../x'"):
        await fetcher.call("heal", session="../x")
