"""`massive run fetcher`: fetch and backfill jobs over the control channel, progress on the bus.

The dashboard's fetch form and History view talk to this service: `plan` answers at once with
the method and cost, `fetch` and `backfill` queue a job and answer with its `JobView`
(mesh.replies), and the job reports on `job.<id>` (JobUpdate: queued, running with progress, then
done with the dataset, failed with the reason, or cancelled). mesh.jobs runs them one at a time in
a worker thread, so the control channel always answers within a second. The quota is published
on `sys.quota` once a second; it is read from the shared ledger, so it also shows calls made by
`massive fetch` and scripts.

`reconcile` and `heal` run mesh.fetcher.reconcile / mesh.fetcher.heal on a recording as jobs
too (a dry run answers at once with the plan). Automatic mode (MESH_AUTO_RECONCILE, on by
default, and MESH_AUTO_HEAL) looks once a minute for finished recordings whose day's flat files
exist and reconciles them, then heals the incomplete ones (mesh.fetcher.auto).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from mesh import topics
from mesh.argtypes import OneLineParser
from mesh.config import Config
from mesh.datasets import DatasetError, layout, storage
from mesh.fetcher import auto, datasets
from mesh.fetcher import backfill as gap_backfill
from mesh.fetcher.errors import BadRequest, FetchError, QuotaExceeded
from mesh.fetcher.fetch import Fetcher
from mesh.fetcher.heal import HealReport, heal
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.reconcile import METHODS, ReconcileReport, reconcile
from mesh.fetcher.reference import ReferenceBook
from mesh.fetcher.request import make_request
from mesh.jobs import Finished, JobContext, JobRunner, on_loop
from mesh.replies import JobView
from mesh.schema import Stats
from mesh.service import Runtime, Service, run_service

log = logging.getLogger(__name__)

GAP_KEYS = frozenset(("symbol", "kind", "ts_from", "ts_to"))  # what a backfill needs of a gap


def _is_gap(gap: object) -> bool:
    """A gap record as a control request carries one: the keys, text names, times in int ns."""
    return (
        isinstance(gap, dict)
        and GAP_KEYS <= gap.keys()
        and isinstance(gap["symbol"], str)
        and isinstance(gap["kind"], str)
        and all(
            isinstance(gap[k], int) and not isinstance(gap[k], bool) for k in ("ts_from", "ts_to")
        )
    )


KEEP_JOBS = 50


class FetcherService(Service):
    """Runs fetch and backfill jobs one at a time and publishes the quota."""

    name = "fetcher"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.ledger = QuotaLedger.for_config(config)
        self.served_rows: dict[int, int] = {}  # flat-file bytes reserved for remote workers
        self.jobs = JobRunner(
            self.name, id_prefix="f", keep=KEEP_JOBS, expected=(FetchError, DatasetError)
        )
        self._quota: dict[str, Any] = {}
        self.reference = ReferenceBook(config, self.ledger)
        self.auto = auto.AutoState()
        self._scanned = float("-inf")
        self._scanning: asyncio.Task[None] | None = None

    async def run(self, runtime: Runtime) -> None:
        self.jobs.start(on_loop(asyncio.get_running_loop(), runtime.publish))
        try:
            while not runtime.stopping.is_set():
                self._maybe_scan()
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
            if self._scanning is not None:
                await asyncio.gather(self._scanning, return_exceptions=True)
            await asyncio.to_thread(self.jobs.stop, 1.5)

    def counters(self) -> dict[str, Any]:
        q = self._quota
        return {
            **self.jobs.counters(),
            **self.auto.counters(),
            "rest_calls_today": q.get("rest_calls_today", 0),
            "rest_calls_minute": q.get("rest_calls_minute", 0),
            "s3_bytes_month": q.get("s3_bytes_month", 0),
        }

    # --- jobs ----------------------------------------------------------------------------------

    def _fetch(self, job: JobContext) -> Finished:
        a = job.args
        request = make_request(
            a["symbols"],
            a["start"],
            a["end"],
            a["interval"],
            a["method"],
            adjusted=a.get("adjusted", True),
        )
        fetcher = Fetcher(self.config, ledger=self.ledger, cancel=job.cancel)
        bars, report = fetcher.run(
            request,
            progress=lambda fraction, message, *_: job.progress(fraction, message),
            fallback=a.get("fallback", True),
        )
        info = {**request.as_dict(), **report.as_dict()}
        name = a.get("name") or datasets.default_name(
            request.symbols, request.interval, request.start.isoformat(), request.end.isoformat()
        )
        path = datasets.write_dataset(bars, self.config.data_location, name, info)
        summary = f"{report.summary()} -> {name}"
        return Finished({**info, "dataset": name, "path": str(path), "summary": summary}, summary)

    def _backfill(self, job: JobContext) -> Finished:
        gaps = job.args.get("gaps") or []
        if job.args.get("session"):
            gaps = gaps + gap_backfill.gaps_from_recording(
                Path(self.config.data_dir) / "recordings" / job.args["session"]
            )
        report = gap_backfill.backfill(
            gaps,
            self.config,
            name=job.args.get("name"),
            ledger=self.ledger,
            cancel=job.cancel,
            progress=job.progress,
        )
        if not report.get("ok"):
            raise FetchError(report["message"])
        return Finished(report, report.get("summary") or report.get("message", "done"))

    def _reconcile(self, job: JobContext) -> Finished:
        a = job.args
        report = reconcile(
            a["session"],
            self.config,
            symbols=a.get("symbols"),
            method=a.get("method", "auto"),
            ledger=self.ledger,
            cancel=job.cancel,
            progress=job.progress,
        )
        summary = reconcile_summary(report)
        return Finished({**report.as_dict(), "summary": summary}, summary)

    def _heal(self, job: JobContext) -> Finished:
        report = heal(
            job.args["session"],
            self.config,
            ledger=self.ledger,
            cancel=job.cancel,
            progress=job.progress,
        )
        summary = heal_summary(report)
        return Finished({**report.to_json(), "summary": summary}, summary)

    # --- automatic mode ------------------------------------------------------------------------

    def _maybe_scan(self) -> None:
        """At start and about once a minute, look for recordings to reconcile (in a thread)."""
        if self.config.data_remote:  # recordings in S3 are not rewritten (docs/data.md)
            return
        if not self.config.auto_reconcile or (self._scanning and not self._scanning.done()):
            return
        now = time.monotonic()
        if now - self._scanned < auto.SCAN_EVERY_S:
            return
        self._scanned = now
        self._scanning = asyncio.create_task(asyncio.to_thread(self._scan))

    def _scan(self) -> None:
        try:
            for found in auto.due(self.config, self.ledger, self.auto):
                self._queue_auto("reconcile", found.session, self._auto_reconcile)
        except Exception:  # a scan that fails must not stop the service; the next one tries again
            log.exception("automatic reconcile: the scan failed")

    def _queue_auto(self, kind: str, session: str, work: Any) -> None:
        """Queue an automatic job of `session`; the session counts as busy until it ends."""
        self.auto.start(session)
        try:
            self.jobs.submit(
                kind,
                {"session": session, "automatic": True}
                | ({"method": "auto"} if kind == "reconcile" else {}),
                work,
                message=f"queued: automatic {kind} of {session}",
            )
        except Exception as exc:  # the queue is full, or the service is stopping
            log.warning("automatic %s of %s not queued: %s", kind, session, exc)
            self.auto.finish(session)

    def _auto_reconcile(self, job: JobContext) -> Finished:
        session = job.args["session"]
        try:
            done = self._reconcile(job)
        except BaseException as exc:
            self._auto_failed("reconcile", session, exc)
            raise
        self.auto.count("reconciled")
        results = (done.result.get("reconciliation") or {}).get("results") or []
        if self.config.auto_heal and any(r.get("missing", 0) for r in results):
            log.info("automatic reconcile: %s; healing it next", done.message)
            self._queue_auto("heal", session, self._auto_heal)  # busy until the heal ends
        else:
            log.info("automatic reconcile: %s", done.message)
            self.auto.finish(session)
        return done

    def _auto_heal(self, job: JobContext) -> Finished:
        session = job.args["session"]
        try:
            done = self._heal(job)
        except BaseException as exc:
            self._auto_failed("heal", session, exc)
            raise
        log.info("automatic heal: %s", done.message)
        self.auto.count("healed")
        self.auto.finish(session)
        return done

    def _auto_failed(self, kind: str, session: str, exc: BaseException) -> None:
        log.warning("automatic %s of %s failed (next try in an hour): %s", kind, session, exc)
        self.auto.count("failed")
        self.auto.finish(session)

    # --- commands ------------------------------------------------------------------------------

    async def cmd_plan(
        self,
        symbols: str | list[str],
        start: str,
        end: str,
        interval: str = "1d",
        method: str = "auto",
        adjusted: bool = True,
    ) -> dict[str, Any]:
        """Method, reason and cost of a fetch (REST calls, files, bytes, fits in the quota); spends nothing.

        Planning may list flat files on S3, so it runs in a thread: heartbeats and other commands
        go on meanwhile.
        """
        request = make_request(symbols, start, end, interval, method, adjusted=adjusted)
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
        job_id: str | None = None,
        adjusted: bool = True,
    ) -> JobView:
        """Queue a fetch; progress and the result come on job.<id>. Bad input is refused here.

        A caller that names the job (`job_id`) can follow job.<id> from its very first update,
        even one published before this answer reaches it.
        """
        request = make_request(symbols, start, end, interval, method, adjusted=adjusted)
        if name:
            datasets.check_name(name)
        args = {**request.as_dict(), "name": name, "fallback": bool(fallback)}
        return self.jobs.submit(
            "fetch",
            args,
            self._fetch,
            job_id=job_id,
            message=f"queued: {','.join(request.symbols)} {request.start}..{request.end} {request.interval}",
        )

    def cmd_backfill(
        self,
        gaps: list[dict[str, Any]] | None = None,
        session: str | None = None,
        name: str | None = None,
    ) -> JobView:
        """Queue a backfill of gap records (symbol, kind, ts_from, ts_to) and/or a recording's gaps."""
        if not gaps and not session:
            raise BadRequest(
                "give gaps (records with symbol, kind, ts_from, ts_to) or a recording session name"
            )
        if gaps is not None and not (isinstance(gaps, list) and all(map(_is_gap, gaps))):
            raise BadRequest(
                "gaps: expected a list of records with symbol, kind, ts_from and ts_to (ns)"
            )
        self._local_only("a gap backfill")
        recordings = Path(self.config.data_dir) / "recordings"
        if session and not (
            isinstance(session, str)
            and layout.is_safe_name(session)
            and layout.is_folder(recordings / session)
        ):
            raise BadRequest(f"no recording {str(session)[:80]!r} under {recordings}")
        if name:
            datasets.check_name(name)
        return self.jobs.submit(
            "backfill",
            {"gaps": list(gaps or []), "session": session, "name": name},
            self._backfill,
            message="queued: gap backfill",
        )

    def _local_only(self, what: str) -> None:
        """BadRequest (one line) when datasets are in S3: `what` rewrites them in place."""
        try:
            storage.require_local(self.config.data_location, what)
        except OSError as exc:
            raise BadRequest(str(exc)) from None

    def _session(self, session: object) -> str:
        """A recording's name as a request gives it, or BadRequest (one line)."""
        self._local_only("reconciling or healing a recording")
        recordings = Path(self.config.data_dir) / "recordings"
        if not (
            isinstance(session, str)
            and layout.is_safe_name(session)
            and layout.is_folder(recordings / session)
        ):
            raise BadRequest(f"no recording {str(session)[:80]!r} under {recordings}")
        return session

    async def cmd_reconcile(
        self,
        session: str,
        symbols: str | list[str] | None = None,
        method: str = "auto",
        dry_run: bool = False,
        job_id: str | None = None,
    ) -> JobView | dict[str, Any]:
        """Reconcile a recording with Massive's trades and quotes (docs/fetcher.md): queue a job,
        or with `dry_run` answer at once with the plan and its cost (nothing is spent)."""
        name = self._session(session)
        if isinstance(symbols, str):
            symbols = [s.strip() for s in symbols.split(",") if s.strip()]
        if symbols is not None and not (
            isinstance(symbols, list) and symbols and all(isinstance(s, str) for s in symbols)
        ):
            raise BadRequest("symbols: expected a list of tickers (text), e.g. ['AAPL', 'MSFT']")
        if method not in METHODS:
            raise BadRequest(f"method {str(method)[:40]!r}: expected one of {', '.join(METHODS)}")
        if not isinstance(dry_run, bool):
            raise BadRequest("dry_run: expected true or false")
        args = {"session": name, "symbols": symbols, "method": method}
        if dry_run:
            return await asyncio.to_thread(
                lambda: reconcile(
                    name,
                    self.config,
                    symbols=symbols,
                    method=method,
                    dry_run=True,
                    ledger=self.ledger,
                ).as_dict()
            )
        return self.jobs.submit(
            "reconcile", args, self._reconcile, job_id=job_id, message=f"queued: reconcile {name}"
        )

    async def cmd_heal(
        self, session: str, dry_run: bool = False, job_id: str | None = None
    ) -> JobView | dict[str, Any]:
        """Heal a recording from its stored reconciliation (or its gaps) over REST: queue a job,
        or with `dry_run` answer at once with the spans and their cost (nothing is spent)."""
        name = self._session(session)
        if not isinstance(dry_run, bool):
            raise BadRequest("dry_run: expected true or false")
        if dry_run:
            return await asyncio.to_thread(
                lambda: heal(name, self.config, dry_run=True, ledger=self.ledger).to_json()
            )
        return self.jobs.submit(
            "heal", {"session": name}, self._heal, job_id=job_id, message=f"queued: heal {name}"
        )

    async def cmd_ledger_reserve(self, key: str, nbytes: int) -> dict[str, Any]:
        """Flat-file bytes about to be downloaded by a worker on another machine, spent in this
        machine's quota ledger: {"row": id} or {"refused": why, "limit": name} (docs/fetcher.md)."""
        if not isinstance(key, str) or not key or len(key) > 1024:
            raise ValueError("key: the flat file's key, a non-empty text")
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or not 0 <= nbytes < 2**53:
            raise ValueError("nbytes: the file's size in bytes, a whole number")
        try:
            row = await asyncio.to_thread(self.ledger.reserve_bytes, key, nbytes)
        except QuotaExceeded as exc:
            return {"refused": str(exc), "limit": exc.limit}
        self.served_rows[row] = nbytes
        return {"row": row}

    async def cmd_ledger_settle(self, row: int, nbytes: int) -> dict[str, Any]:
        """A remote worker's download stopped early: its reservation becomes what it transferred."""
        for name, value in (("row", row), ("nbytes", nbytes)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
                raise ValueError(f"{name}: a whole number")
        reserved = self.served_rows.get(row)
        if reserved is None or nbytes > reserved:
            raise ValueError(
                f"row {row}: not a reservation made through this service, or more than it reserved"
            )
        await asyncio.to_thread(self.ledger.settle_bytes, row, nbytes)
        self.served_rows[row] = nbytes
        return {"row": row}

    def cmd_jobs(self) -> list[JobView]:
        """Recent jobs, newest first."""
        return self.jobs.views()

    def cmd_job(self, job_id: str) -> JobView:
        return self.jobs.view(job_id)

    def cmd_cancel(self, job_id: str) -> JobView:
        """Cancel a job: a queued one at once, a running one at its next request or chunk."""
        return self.jobs.cancel(job_id)

    async def cmd_reference(self, symbols: str | list[str]) -> dict[str, Any]:
        """Company names, previous closes and the market's state (mesh.fetcher.reference), kept
        for the session day; REST calls count against the quota, and one it refuses is named in
        the answer, never waited for. Runs in a thread: heartbeats go on meanwhile."""
        return await asyncio.to_thread(self.reference.answer, symbols)

    def cmd_quota(self) -> dict[str, Any]:
        """The shared ledger's counts and limits (as on sys.quota)."""
        return self.ledger.snapshot()

    def cmd_datasets(self) -> list[dict[str, Any]]:
        """Manifests of data/historical/ datasets, newest first."""
        return datasets.list_datasets(
            storage.local_datasets(self.config.data_location, self.config.data_dir)
        )


def reconcile_summary(report: ReconcileReport) -> str:
    """One line: how complete the session was found, by which method."""
    result = report.reconciliation
    if result is None:
        return f"{report.session}: planned, not reconciled"
    missing = sum(r.missing for r in result.results)
    differing = sum(r.differing for r in result.results)
    reference = sum(r.reference for r in result.results)
    matched = sum(r.matched for r in result.results)
    pct = 100.0 if reference == 0 else 100.0 * matched / reference
    if result.complete:
        state = f"complete ({matched:,} rows matched)"
    else:
        state = f"incomplete ({pct:.2f}%): {missing:,} row(s) missing, {differing:,} differing"
    return f"{report.session}: {state}, by {result.method.value}"


def heal_summary(report: HealReport) -> str:
    """One line: what the heal put back and, if it reconciled again, whether it is now complete."""
    return (
        f"{report.message}; {report.reconcile_message}"
        if report.reconcile_message
        else report.message
    )


def build_parser() -> argparse.ArgumentParser:
    return OneLineParser(
        prog="massive run fetcher",
        description="Fetch history (REST or S3 flat files), backfill gaps, reconcile and heal recordings on request over the control channel, and reconcile finished recordings by itself (MESH_AUTO_RECONCILE, MESH_AUTO_HEAL); publishes job.<id> and sys.quota.",
    )


def main(config: Config, argv: list[str] | None = None) -> int:
    """`massive run fetcher`."""
    build_parser().parse_args(argv or [])
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run_service(FetcherService(config))
