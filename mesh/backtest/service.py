"""`massive run backtester`: backtest jobs from the control channel, progress and results on the bus.

Commands (what the TUI's backtest view sends; every one is answered at once):

    datasets()                       -> [{name, kind, symbols, start, end, rows, ...}]
    strategies()                     -> [{name, description, params: [{name, default, type, help}]}]
    run(dataset, strategy, params={}, options={}, save=True, job_id=None)
                                     -> {job_id, state: "queued", runs, progress_topic, result_topic}
    jobs()                           -> [{job_id, state, progress, message, ...}] (newest first)
    result(job_id)                   -> the finished job's result (what bt.result.<id> carried)
    cancel(job_id)                   -> {job_id, state}

`strategy` is a name or a list of names (a comparison): a built-in, or `FILE:function` from a .py
file inside a directory listed in `MESH_STRATEGY_PATH` (see mesh/backtest/strategy_path.py). Any
other reference (`os:system`, a module name, a path outside those directories) is refused before
anything is imported: whoever can reach the bus must not be able to run code here. `params` works as on the command line
(`{"fast": 5}` for every strategy that has it, `{"ma-crossover.fast": 5}` for one, `"5,10,20"` to
sweep). A job is checked before it is queued (unknown dataset, strategy or parameter: an error
reply), then runs in a worker thread, one job at a time. It publishes `JobUpdate`s on `job.<id>`
(queued, running with progress 0..1, done or failed) and, when done, one `JobUpdate` on
`bt.result.<id>` whose `result` is {"dataset": ..., "runs": [report.summary(run), ...]}: metrics,
a downsampled equity curve and the trades of each run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mesh import topics
from mesh.backtest.strategy_path import StrategyPath
from mesh.config import Config
from mesh.schema import JobUpdate
from mesh.service import Runtime, Service, run_service

log = logging.getLogger(__name__)

KIND = "backtest"
PROGRESS_INTERVAL = 0.1  # seconds between progress messages of one job


@dataclass
class Job:
    job_id: str
    dataset: str
    runs: list[tuple[str, dict[str, Any]]]
    options: Any
    save: bool
    strategies: dict[str, Any] = field(default_factory=dict)  # name as asked -> the loaded Strategy
    state: str = "queued"
    progress: float = 0.0
    message: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: str = ""

    def status(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "progress": round(self.progress, 4),
            "message": self.message,
            "dataset": self.dataset,
            "runs": [{"strategy": s, "params": p} for s, p in self.runs],
            "created": self.created,
            "finished": self.finished,
            "error": self.error,
            "run_dirs": [r.get("run_dir") for r in (self.result or {}).get("runs", [])],
        }


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _plain(value: Any) -> Any:
    """Numpy scalars and tuples turned into what msgpack carries."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


class BacktesterService(Service):
    """Runs backtest jobs one at a time in a worker thread; see the module docstring for the commands."""

    name: ClassVar[str] = "backtester"

    def __init__(
        self,
        config: Config,
        *,
        max_points: int = 500,
        max_trades: int = 500,
        keep_jobs: int = 100,
        strategy_path: StrategyPath | None = None,
    ) -> None:
        super().__init__(config)
        # where user strategies may come from: MESH_STRATEGY_PATH, read once at start
        self.strategy_path = (
            strategy_path if strategy_path is not None else StrategyPath.from_environ()
        )
        self.max_points = max_points
        self.max_trades = max_trades
        self.keep_jobs = keep_jobs
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: asyncio.Queue[Job] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.done = self.failed = self.cancelled = self.runs_done = 0
        self.last_job_s = 0.0

    # --- service ---------------------------------------------------------------------------------

    async def run(self, runtime: Runtime) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        while not runtime.stopping.is_set():
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(runtime.stopping.wait())
            done, _ = await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                stopper.cancel()
                break
            stopper.cancel()
            job = getter.result()
            if job.cancel.is_set():
                continue
            await self._execute(runtime, job)
        for job in self.jobs.values():
            job.cancel.set()

    def counters(self) -> dict[str, Any]:
        states = [j.state for j in self.jobs.values()]
        return {
            "jobs_queued": states.count("queued"),
            "jobs_running": states.count("running"),
            "jobs_done": self.done,
            "jobs_failed": self.failed,
            "jobs_cancelled": self.cancelled,
            "runs": self.runs_done,
            "last_job_s": round(self.last_job_s, 3),
        }

    # --- commands --------------------------------------------------------------------------------

    async def cmd_datasets(self) -> list[dict[str, Any]]:
        from mesh.backtest.datasets import list_datasets

        return _plain(await asyncio.to_thread(list_datasets, self.config.data_dir))  # type: ignore[no-any-return]

    def cmd_strategies(self) -> list[dict[str, Any]]:
        from mesh.backtest.strategies import list_strategies

        return _plain(list_strategies())  # type: ignore[no-any-return]

    async def cmd_run(
        self,
        dataset: str,
        strategy: str | list[str],
        params: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        save: bool = True,
        job_id: str | None = None,
    ) -> dict[str, Any]:
        from mesh.backtest import datasets
        from mesh.backtest.runner import Options, plan

        if self._queue is None or self.runtime is None:
            raise RuntimeError("the backtester is not running yet")
        job_id = job_id or f"bt-{secrets.token_hex(4)}"
        topics.job(job_id)  # a bad id fails here, with the topic rules in the message
        if job_id in self.jobs and self.jobs[job_id].state in ("queued", "running"):
            raise ValueError(f"job {job_id!r} is already {self.jobs[job_id].state}")
        opts = Options.from_dict(dict(options or {}))
        names = strategy if isinstance(strategy, list) else [strategy]
        if not all(isinstance(name, str) for name in names):
            raise ValueError("strategy: expected a name or a list of names")
        for name in names:  # every reference is checked before any file is loaded
            self.strategy_path.check(name)
        loaded = await asyncio.to_thread(lambda: {n: self.strategy_path.load(n) for n in names})
        runs = plan(names, dict(params or {}), load=loaded.__getitem__)
        await asyncio.to_thread(
            datasets.resolve, dataset, self.config.data_dir
        )  # unknown dataset: an error reply now
        job = Job(job_id, dataset, runs, opts, bool(save), loaded)
        self.jobs[job_id] = job
        self.jobs.move_to_end(job_id)
        self._trim()
        self._publish(job)
        self._queue.put_nowait(job)
        return {
            "job_id": job_id,
            "state": job.state,
            "runs": len(runs),
            "progress_topic": topics.job(job_id),
            "result_topic": topics.backtest_result(job_id),
        }

    def cmd_jobs(self) -> list[dict[str, Any]]:
        return [j.status() for j in reversed(self.jobs.values())]

    def cmd_result(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        if job.state != "done" or job.result is None:
            raise ValueError(
                f"job {job_id!r} is {job.state}{': ' + job.error if job.error else ''}; no result"
            )
        return job.result

    def cmd_cancel(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        if job.state in ("queued", "running"):
            job.cancel.set()
            if job.state == "queued":
                self._finish(job, "failed", "cancelled")
                self.cancelled += 1
        return {"job_id": job_id, "state": job.state}

    # --- jobs ------------------------------------------------------------------------------------

    def _job(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise ValueError(f"no job {job_id!r}") from None

    def _trim(self) -> None:
        while len(self.jobs) > self.keep_jobs:
            oldest = next(
                (k for k, j in self.jobs.items() if j.state not in ("queued", "running")), None
            )
            if oldest is None:
                break
            del self.jobs[oldest]

    def _publish(self, job: Job, result: dict[str, Any] | None = None) -> None:
        if self.runtime is None:
            return
        self.runtime.publish(
            topics.job(job.job_id),
            JobUpdate(
                job_id=job.job_id,
                kind=KIND,
                state=job.state,
                progress=job.progress,
                message=job.message,
                result=result or {},
            ),
        )

    def _finish(self, job: Job, state: str, message: str) -> None:
        job.state, job.message, job.finished = state, message, time.time()
        if state == "done":
            job.progress = 1.0
            if job.result is None:
                raise RuntimeError(f"backtest job {job.job_id} is done but has no result")
            runs = job.result["runs"]
            brief = {
                "run_ids": [r["run_id"] for r in runs],
                "run_dirs": [r["run_dir"] for r in runs],
                "metrics": [r["metrics"] for r in runs],
            }
            self._publish(job, brief)
        else:
            job.error = message
            self._publish(job)
        if self.runtime is not None:
            full = job.result if state == "done" else {"error": message}
            self.runtime.publish(
                topics.backtest_result(job.job_id),
                JobUpdate(
                    job_id=job.job_id,
                    kind=KIND,
                    state=state,
                    progress=job.progress,
                    message=message,
                    result=full or {},
                ),
            )

    async def _execute(self, runtime: Runtime, job: Job) -> None:
        from mesh.backtest.errors import BacktestError, Cancelled

        loop = asyncio.get_running_loop()
        job.state, job.message = "running", "loading"
        self._publish(job)
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        last = [0.0]

        def progress(fraction: float, message: str) -> None:
            if job.cancel.is_set():
                raise Cancelled("cancelled")
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL or fraction >= 1.0:
                last[0] = now
                job.progress, job.message = min(max(fraction, 0.0), 0.999), message
                loop.call_soon_threadsafe(self._publish, job)

        def work() -> None:
            try:
                value = self._compute(job, progress)
            except BaseException as exc:  # handed to the event loop, which reports it on the bus
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, value, None)

        started = time.perf_counter()
        threading.Thread(target=work, name=f"backtest-{job.job_id}", daemon=True).start()
        stop_wait: asyncio.Future[Any] = asyncio.ensure_future(runtime.stopping.wait())
        await asyncio.wait([future, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        self.last_job_s = time.perf_counter() - started
        if not future.done():  # stopping: the daemon thread is abandoned
            job.cancel.set()
            self._finish(job, "failed", "the backtester stopped")
            return
        try:
            job.result = _plain(future.result())
        except Cancelled:
            self.cancelled += 1
            self._finish(job, "failed", "cancelled")
        except BacktestError as exc:
            self.failed += 1
            self._finish(job, "failed", str(exc))
        except Exception as exc:
            self.failed += 1
            log.exception("backtest job %s failed", job.job_id)
            self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
        else:
            self.done += 1
            self.runs_done += len(job.runs)
            labels = ", ".join(r["label"] for r in job.result["runs"][:3])  # type: ignore[index]
            self._finish(job, "done", f"{len(job.runs)} run(s) on {job.dataset}: {labels}")

    def _compute(self, job: Job, progress: Any) -> dict[str, Any]:
        from mesh.backtest import report
        from mesh.backtest.runner import run_many

        results = run_many(
            job.dataset,
            [(job.strategies[name], params) for name, params in job.runs],
            data_dir=self.config.data_dir,
            options=job.options,
            progress=progress,
        )
        if job.save:
            for r in results:
                report.save(r, self.config.data_dir)
        return {
            "dataset": results[0].dataset,
            "runs": [report.summary(r, self.max_points, self.max_trades) for r in results],
        }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="massive run backtester",
        description="Run backtest jobs sent over the control channel (see docs/backtest.md).",
    )
    parser.add_argument(
        "--max-points",
        type=int,
        default=500,
        help="equity points per run in bt.result messages (default 500)",
    )
    parser.add_argument(
        "--max-trades",
        type=int,
        default=500,
        help="trades per run in bt.result messages, the latest ones (default 500)",
    )
    return parser


def main(config: Config, argv: list[str] | None = None) -> int:
    """`massive run backtester`."""
    args = build_parser().parse_args(argv or [])
    if args.max_points < 2 or args.max_trades < 0:
        log.error("--max-points must be at least 2 and --max-trades not negative")
        return 2
    from mesh.backtest.errors import StrategyError

    try:
        strategy_path = StrategyPath.from_environ()
    except StrategyError as exc:
        log.error("%s", exc)
        return 2
    log.info("user strategies: .py files in MESH_STRATEGY_PATH (%s)", strategy_path.describe())
    return run_service(
        BacktesterService(
            config,
            max_points=args.max_points,
            max_trades=args.max_trades,
            strategy_path=strategy_path,
        )
    )
