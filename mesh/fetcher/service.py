"""`massive run fetcher`: fetch and backfill jobs over the control channel, progress on the bus.

The dashboard's fetch form and History view talk to this service: `plan` answers at once with
the method and cost, `fetch` and `backfill` queue a job and answer with its id, and the job
reports on `job.<id>` (JobUpdate: queued, running with progress, done with the dataset, or failed
with the reason). Jobs run one at a time in a worker thread, so the control channel always
answers within a second. The quota is published on `sys.quota` once a second; it is read from
the shared ledger, so it also shows calls made by `massive fetch` and scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh import topics
from mesh.config import Config
from mesh.fetcher import backfill as gap_backfill
from mesh.fetcher import datasets
from mesh.fetcher.errors import BadRequest, Cancelled, FetchError
from mesh.fetcher.fetch import Fetcher
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.request import make_request
from mesh.schema import JobUpdate, Stats
from mesh.service import Runtime, Service, run_service

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.1  # at most 10 updates a second per job
KEEP_JOBS = 50


@dataclass
class Job:
    """One queued or finished job, as `jobs`/`job` return it."""

    job_id: str
    kind: str
    args: dict[str, Any]
    state: str = "queued"
    progress: float = 0.0
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "args": self.args,
            "state": self.state,
            "progress": round(self.progress, 4),
            "message": self.message,
            "result": self.result,
            "topic": topics.job(self.job_id),
            "created": self.created,
        }


class FetcherService(Service):
    """Runs fetch and backfill jobs one at a time and publishes the quota."""

    name = "fetcher"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.ledger = QuotaLedger.for_config(config)
        self.jobs: dict[str, Job] = {}
        self._order: deque[str] = deque()
        self._queue: asyncio.Queue[Job] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._prefix = f"f{os.getpid() % 100000}-{int(time.time()) % 100000}"
        self.done = 0
        self.failed = 0
        self._quota: dict[str, Any] = {}

    async def run(self, runtime: Runtime) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        worker = asyncio.create_task(self._worker(runtime))
        try:
            while not runtime.stopping.is_set():
                try:
                    self._quota = await asyncio.to_thread(self.ledger.snapshot)
                    runtime.publish(topics.QUOTA, Stats(service=self.name, stats=self._quota))
                except Exception as exc:  # a locked or damaged ledger must not stop the service
                    log.warning("cannot read the quota ledger: %s", exc)
                try:
                    await asyncio.wait_for(runtime.stopping.wait(), timeout=1.0)
                except TimeoutError:
                    pass
        finally:
            for job in self.jobs.values():
                job.cancel.set()
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    def counters(self) -> dict[str, Any]:
        q = self._quota
        return {
            "jobs_queued": sum(j.state == "queued" for j in self.jobs.values()),
            "jobs_running": sum(j.state == "running" for j in self.jobs.values()),
            "jobs_done": self.done,
            "jobs_failed": self.failed,
            "rest_calls_today": q.get("rest_calls_today", 0),
            "rest_calls_minute": q.get("rest_calls_minute", 0),
            "s3_bytes_month": q.get("s3_bytes_month", 0),
        }

    # --- jobs ----------------------------------------------------------------------------------

    def _publish(self, job: Job) -> None:
        """Publish the job's state (call on the event loop thread)."""
        if self.runtime is not None:
            self.runtime.publish(
                topics.job(job.job_id),
                JobUpdate(
                    job_id=job.job_id,
                    kind=job.kind,
                    state=job.state,
                    progress=job.progress,
                    message=job.message,
                    result=job.result,
                ),
            )

    def _publish_threadsafe(self, job: Job) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._publish, job)

    def _add(self, kind: str, args: dict[str, Any], message: str) -> Job:
        if self._queue is None:
            raise RuntimeError("the fetcher is starting; try again in a moment")
        job = Job(f"{self._prefix}-{next(self._ids)}", kind, args, message=message)
        self.jobs[job.job_id] = job
        self._order.append(job.job_id)
        while len(self._order) > KEEP_JOBS:
            old = self.jobs.get(self._order[0])
            if old is not None and old.state in ("queued", "running"):
                break
            self.jobs.pop(self._order.popleft(), None)
        self._queue.put_nowait(job)
        self._publish(job)
        return job

    async def _worker(self, runtime: Runtime) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            if job.cancel.is_set():
                continue
            job.state, job.message = "running", "starting"
            self._publish(job)
            try:
                job.result = await asyncio.to_thread(self._execute, job)
                job.state, job.progress = "done", 1.0
                job.message = job.result.get("summary") or job.result.get("message", "done")
                self.done += 1
            except Cancelled:
                job.state, job.message = "failed", "cancelled"
                self.failed += 1
            except FetchError as exc:
                job.state, job.message = "failed", str(exc)
                self.failed += 1
            except Exception as exc:  # a bug in one job must not stop the worker
                log.exception("job %s failed", job.job_id)
                job.state, job.message = "failed", f"{type(exc).__name__}: {exc}"
                self.failed += 1
            self._publish(job)

    def _execute(self, job: Job) -> dict[str, Any]:
        last = [0.0]

        def progress(fraction: float, message: str, done: int = 0, total: int = 0) -> None:
            job.progress, job.message = max(job.progress, min(fraction, 0.99)), message
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL or "falling back" in message:
                last[0] = now
                self._publish_threadsafe(job)

        if job.kind == "fetch":
            a = job.args
            request = make_request(a["symbols"], a["start"], a["end"], a["interval"], a["method"])
            fetcher = Fetcher(self.config, ledger=self.ledger, cancel=job.cancel)
            bars, report = fetcher.run(request, progress=progress, fallback=a.get("fallback", True))
            info = {**request.as_dict(), **report.as_dict()}
            name = a.get("name") or datasets.default_name(
                request.symbols,
                request.interval,
                request.start.isoformat(),
                request.end.isoformat(),
            )
            path = datasets.write_dataset(bars, self.config.data_dir, name, info)
            return {
                **info,
                "dataset": name,
                "path": str(path),
                "summary": f"{report.summary()} -> {name}",
            }
        gaps = job.args.get("gaps") or []
        if job.args.get("session"):
            gaps = gaps + gap_backfill.gaps_from_recording(
                Path(self.config.data_dir) / "recordings" / job.args["session"]
            )
        backfill_report = gap_backfill.backfill(
            gaps,
            self.config,
            name=job.args.get("name"),
            ledger=self.ledger,
            cancel=job.cancel,
            progress=lambda f, m: progress(f, m),
        )
        if not backfill_report.get("ok"):
            raise FetchError(backfill_report["message"])
        return backfill_report

    # --- commands ------------------------------------------------------------------------------

    async def cmd_plan(
        self,
        symbols: str | list[str],
        start: str,
        end: str,
        interval: str = "1d",
        method: str = "auto",
    ) -> dict[str, Any]:
        """Method, reason and cost of a fetch (REST calls, files, bytes, fits in the quota); spends nothing.

        Planning may list flat files on S3, so it runs in a thread: heartbeats and other commands
        go on meanwhile.
        """
        request = make_request(symbols, start, end, interval, method)
        return await asyncio.to_thread(
            lambda: Fetcher(self.config, ledger=self.ledger).plan(request).as_dict()
        )

    def cmd_fetch(
        self,
        symbols: str | list[str],
        start: str,
        end: str,
        interval: str = "1d",
        method: str = "auto",
        name: str | None = None,
        fallback: bool = True,
    ) -> dict[str, Any]:
        """Queue a fetch; progress and the result come on job.<id>. Bad input is refused here."""
        request = make_request(symbols, start, end, interval, method)
        if name:
            datasets.check_name(name)
        args = {**request.as_dict(), "name": name, "fallback": bool(fallback)}
        job = self._add(
            "fetch",
            args,
            f"queued: {','.join(request.symbols)} {request.start}..{request.end} {request.interval}",
        )
        return job.as_dict()

    def cmd_backfill(
        self,
        gaps: list[dict[str, Any]] | None = None,
        session: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Queue a backfill of gap records (symbol, kind, ts_from, ts_to) and/or a recording's gaps."""
        if not gaps and not session:
            raise BadRequest(
                "give gaps (records with symbol, kind, ts_from, ts_to) or a recording session name"
            )
        if session and not (Path(self.config.data_dir) / "recordings" / session).is_dir():
            raise BadRequest(
                f"no recording {session!r} under {Path(self.config.data_dir) / 'recordings'}"
            )
        if name:
            datasets.check_name(name)
        job = self._add(
            "backfill",
            {"gaps": list(gaps or []), "session": session, "name": name},
            "queued: gap backfill",
        )
        return job.as_dict()

    def cmd_jobs(self) -> list[dict[str, Any]]:
        """Recent jobs, newest first."""
        return [self.jobs[j].as_dict() for j in reversed(self._order) if j in self.jobs]

    def cmd_job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise BadRequest(f"no job {job_id!r}")
        return job.as_dict()

    def cmd_cancel(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise BadRequest(f"no job {job_id!r}")
        if job.state == "queued":
            job.state, job.message = "failed", "cancelled"
            self.failed += 1
            self._publish(job)
        job.cancel.set()
        return job.as_dict()

    def cmd_quota(self) -> dict[str, Any]:
        """The shared ledger's counts and limits (as on sys.quota)."""
        return self.ledger.snapshot()

    def cmd_datasets(self) -> list[dict[str, Any]]:
        """Manifests of data/historical/ datasets, newest first."""
        return datasets.list_datasets(self.config.data_dir)


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="massive run fetcher",
        description="Fetch history (REST or S3 flat files) and backfill gaps on request over the control channel; publishes job.<id> and sys.quota.",
    )


def main(config: Config, argv: list[str] | None = None) -> int:
    """`massive run fetcher`."""
    build_parser().parse_args(argv or [])
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run_service(FetcherService(config))
