"""`massive run backtester`: backtest jobs from the control channel, progress and results on the bus.

Commands (what the TUI's backtest view sends; every one is answered at once):

    datasets()                       -> [{name, kind, symbols, start, end, rows, ...}]
    strategies()                     -> [{name, description, params: [{name, default, type, help}]}]
    run(dataset, strategy, params={}, options={}, save=True, job_id=None)
                                     -> BacktestQueued {job_id, state: "queued", runs, progress_topic, result_topic}
    jobs()                           -> [BacktestJob {job_id, state, progress, message, dataset, runs, error, run_dirs, ...}]
    result(job_id)                   -> the finished job's result (what bt.result.<id> carried)
    cancel(job_id)                   -> BacktestJob

`strategy` is a name or a list of names (a comparison): a built-in, or `FILE:function` from a .py
file inside a directory listed in `MESH_STRATEGY_PATH` (see mesh/backtest/strategy_path.py). Any
other reference (`os:system`, a module name, a path outside those directories) is refused before
anything is imported: whoever can reach the bus must not be able to run code here. `params` works as on the command line
(`{"fast": 5}` for every strategy that has it, `{"ma-crossover.fast": 5}` for one, `"5,10,20"` to
sweep). A job is checked before it is queued (unknown dataset, strategy or parameter: an error
reply), then mesh.jobs runs it in a worker thread, one job at a time. It publishes `JobUpdate`s on
`job.<id>` (queued, running with progress 0..1, then done, failed or cancelled) and, when
finished, one `JobUpdate` on `bt.result.<id>` whose `result` is, when done, {"dataset": ...,
"runs": [report.summary(run), ...]}: metrics, a downsampled equity curve and the trades of each
run (else {"error": message}).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from mesh import topics
from mesh.argtypes import OneLineParser
from mesh.backtest.errors import BacktestError
from mesh.backtest.strategy_path import StrategyPath
from mesh.config import Config
from mesh.datasets import DatasetError, storage
from mesh.jobs import Finished, JobContext, JobRunner, Publish, on_loop
from mesh.replies import BacktestJob, BacktestQueued, BacktestRun, JobView
from mesh.schema import JobState, JobUpdate
from mesh.service import Runtime, Service, run_service

log = logging.getLogger(__name__)

KIND = "backtest"


def _plain(value: Any) -> Any:
    """Numpy scalars and tuples turned into what msgpack carries."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def backtest_job(view: JobView) -> BacktestJob:
    """The runner's view of a backtest job, with what `jobs` has always said of one."""
    failed = view.state in (JobState.FAILED, JobState.CANCELLED)
    return BacktestJob(
        **{**msgspec.structs.asdict(view), "result": {}},
        dataset=view.args.get("dataset", ""),
        runs=[BacktestRun(r["strategy"], r["params"]) for r in view.args.get("runs", [])],
        error=view.message if failed else "",
        run_dirs=list(view.result.get("run_dirs", [])),
    )


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
        self.jobs = JobRunner(
            self.name,
            id_prefix="bt",
            keep=keep_jobs,
            expected=(BacktestError, DatasetError),
            on_finished=self._publish_result,
        )
        self._publish: Publish = lambda topic, update: None  # on the event loop, once running
        self.runs_done = 0
        self.last_job_s = 0.0

    # --- service ---------------------------------------------------------------------------------

    async def run(self, runtime: Runtime) -> None:
        self._publish = on_loop(asyncio.get_running_loop(), runtime.publish)
        self.jobs.start(self._publish)
        try:
            await runtime.stopping.wait()
        finally:
            await asyncio.to_thread(self.jobs.stop, 1.5)

    def counters(self) -> dict[str, Any]:
        return {
            **self.jobs.counters(),
            "runs": self.runs_done,
            "last_job_s": round(self.last_job_s, 3),
        }

    # --- commands --------------------------------------------------------------------------------

    def _datasets(self, spec: str | None) -> Path:
        """Where datasets are read from: MESH_DATA_DIR, or the local copy of an s3:// one."""
        return storage.local_datasets(self.config.data_location, self.config.data_dir, spec)

    async def cmd_datasets(self) -> list[dict[str, Any]]:
        from mesh.backtest.datasets import list_datasets

        return _plain(await asyncio.to_thread(lambda: list_datasets(self._datasets(None))))  # type: ignore[no-any-return]

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
    ) -> BacktestQueued:
        from mesh.backtest import datasets
        from mesh.backtest.runner import Options, plan

        if job_id is not None:
            topics.job(job_id)  # a bad id fails here, with the topic rules in the message
        for what, given in (("options", options), ("params", params)):
            if given is not None and not isinstance(given, dict):
                raise ValueError(f"{what}: expected a map of names to values")
        if not isinstance(dataset, str):
            raise ValueError("dataset: expected a name, recording:NAME, historical:NAME or a path")
        opts = Options.from_dict(dict(options or {}))
        names = strategy if isinstance(strategy, list) else [strategy]
        if not all(isinstance(name, str) for name in names):
            raise ValueError("strategy: expected a name or a list of names")
        for name in names:  # every reference is checked before any file is loaded
            self.strategy_path.check(name)
        loaded = await asyncio.to_thread(lambda: {n: self.strategy_path.load(n) for n in names})
        runs = plan(names, dict(params or {}), load=loaded.__getitem__)
        await asyncio.to_thread(
            lambda: datasets.resolve(dataset, self._datasets(dataset))
        )  # unknown dataset: an error reply now

        def work(job: JobContext) -> Finished:
            return self._compute(job, dataset, [(loaded[s], p) for s, p in runs], opts, save)

        args = {
            "dataset": dataset,
            "runs": [{"strategy": s, "params": _plain(p)} for s, p in runs],
            "options": _plain(dict(options or {})),
            "save": bool(save),
        }
        view = self.jobs.submit(KIND, args, work, job_id=job_id)
        return BacktestQueued(
            job_id=view.job_id,
            state=view.state,
            runs=len(runs),
            progress_topic=view.topic,
            result_topic=topics.backtest_result(view.job_id),
        )

    def cmd_jobs(self) -> list[BacktestJob]:
        return [backtest_job(view) for view in self.jobs.views()]

    def cmd_result(self, job_id: str) -> dict[str, Any]:
        view = self.jobs.view(job_id)
        detail = self.jobs.detail(job_id)
        if view.state is not JobState.DONE or detail is None:
            why = f": {view.message}" if view.state.finished else ""
            raise ValueError(f"job {job_id!r} is {view.state}{why}; no result")
        return detail  # type: ignore[no-any-return]

    def cmd_cancel(self, job_id: str) -> BacktestJob:
        return backtest_job(self.jobs.cancel(job_id))

    # --- jobs ------------------------------------------------------------------------------------

    def _publish_result(self, view: JobView, detail: Any) -> None:
        """A finished job's whole result (or its error) on bt.result.<id>."""
        done = view.state is JobState.DONE
        if done:
            self.runs_done += len(view.args.get("runs", []))
        self._publish(
            topics.backtest_result(view.job_id),
            JobUpdate(
                job_id=view.job_id,
                kind=KIND,
                state=view.state,
                progress=view.progress,
                message=view.message,
                result=detail if done else {"error": view.message},
            ),
        )

    def _compute(
        self, job: JobContext, dataset: str, runs: list[tuple[Any, Any]], options: Any, save: bool
    ) -> Finished:
        from mesh.backtest import report
        from mesh.backtest.runner import run_many

        started = time.perf_counter()
        try:
            results = run_many(
                dataset,
                runs,
                data_dir=self._datasets(dataset),
                options=options,
                progress=job.progress,
            )
            if save:
                for r in results:
                    report.save(r, self.config.data_dir)
        finally:
            self.last_job_s = time.perf_counter() - started
        full: dict[str, Any] = _plain(
            {
                "dataset": results[0].dataset,
                "runs": [report.summary(r, self.max_points, self.max_trades) for r in results],
            }
        )
        brief = {
            "run_ids": [r["run_id"] for r in full["runs"]],
            "run_dirs": [r["run_dir"] for r in full["runs"]],
            "metrics": [r["metrics"] for r in full["runs"]],
        }
        labels = ", ".join(r["label"] for r in full["runs"][:3])
        return Finished(brief, f"{len(runs)} run(s) on {dataset}: {labels}", detail=full)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
