"""Parameter sweeps: every run of a grid on every core or on a Dask cluster, one results table.

A run is one strategy with one set of parameters on the chosen symbols as one equal-weight
portfolio, or, per symbol, on one symbol. Runs go to an executor (`mesh.parallel`) as small
records (`RunTask`: dataset name or path, data folder, options, strategy name, parameters,
symbol); each worker process loads the dataset once and keeps it (`_market`, cached per dataset
and options), and looks the strategy up by its name (a `FILE:function` or `module:function` is
loaded again in the worker). A run sends back its metrics only.

    MESH_DATA_DIR/sweeps/<sweep_id>/results.parquet   one row per finished run, in run order
    MESH_DATA_DIR/sweeps/<sweep_id>/sweep.json        the spec, state, total and done

MESH_DATA_DIR may be an s3:// location (mesh.datasets.storage): the sweep's files are written
there, all or nothing, and a worker on any machine reads the dataset from it (through its own
local copy, brought up to date once per worker process).

Run order is the serial order: strategy, parameter sets in grid order, symbol. Results are the
same whatever the executor, because every run is the same computation on the same data. The
finished rows are written every few seconds and when the sweep stops for any reason, so Ctrl-C
keeps them and `resume` runs only what is missing. At the end the best `top` runs (by `sort`)
are run once more here and saved as ordinary run folders (`report.save`).
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from mesh import parallel
from mesh.backtest import datasets, pool, report
from mesh.backtest.errors import BacktestError, DatasetError
from mesh.backtest.runner import BacktestResult, Options, plan, prepare, simulate
from mesh.backtest.strategies import Strategy, get_strategy
from mesh.config import local_state_dir
from mesh.datasets import storage

SWEEPS = "sweeps"
RESULTS = "results.parquet"
SPEC = "sweep.json"
LOCK = ".lock"  # held while a process runs the sweep
PORTFOLIO = "portfolio"
CHECKPOINT_S = 2.0
CHUNKS = 100  # a large sweep goes out in about this many tasks...
CHUNK_MAX = 32  # ...of at most this many runs each
FIXED_COLUMNS = ("run", "strategy", "params", "symbol")
PRELOAD = pool.PRELOAD  # what a pool worker needs, imported once (and the dataset, read once)
SHOWN_METRICS = ("total_return", "sharpe", "max_drawdown", "trades")


class SweepInterrupted(BacktestError):
    """Ctrl-C stopped a sweep; its finished runs are saved and `resume` finishes it."""

    def __init__(self, sweep: Sweep) -> None:
        super().__init__(
            f"interrupted after {sweep.done} of {sweep.total} runs; nothing saved (--no-save)"
            if sweep.spec.get("no_save")
            else f"interrupted: {sweep.done} of {sweep.total} runs saved in {sweep.folder}; "
            f"resume with: massive backtest --resume {sweep.sweep_id}"
        )
        self.sweep = sweep


@dataclass(frozen=True)
class RunTask:
    """One run, by reference: what a worker needs to load the data and run it."""

    dataset: str
    data_dir: str  # MESH_DATA_DIR: a folder or an s3:// location (no keys: those are AWS_*)
    options: str  # the Options as sorted JSON (also the worker's cache key)
    strategy: str
    params: str  # the parameters the caller set, as JSON
    symbol: str | None  # None: the selected symbols as one portfolio


@lru_cache(maxsize=2)  # a worker keeps the last two datasets it loaded (a sweep uses one)
def _market(dataset: str, data_dir: str, options: str) -> datasets.Market:
    folder = storage.local_datasets(data_dir, local_state_dir(data_dir), dataset)
    return prepare(dataset, Options.from_dict(json.loads(options)), folder)


@lru_cache(maxsize=64)
def _strategy(name: str) -> Strategy:
    return get_strategy(name)


def simulate_task(task: RunTask) -> BacktestResult:
    """The run `task` describes, on the dataset this process loaded for it (loaded once)."""
    options = Options.from_dict(json.loads(task.options))
    market = _market(task.dataset, task.data_dir, task.options)
    if task.symbol is not None:
        bars = market.bars[task.symbol]
        quotes = {task.symbol: market.quotes[task.symbol]} if task.symbol in market.quotes else {}
        market = replace(
            market, bars={task.symbol: bars}, quotes=quotes, interval_ns=bars.interval_ns
        )
    return simulate(market, _strategy(task.strategy), json.loads(task.params), options)


def market_of(sweep: Sweep) -> datasets.Market:
    """The dataset a sweep runs on, as its workers load it (cached in this process too)."""
    task = sweep.tasks[0]
    return _market(task.dataset, task.data_dir, task.options)


def run_task(task: RunTask) -> dict[str, Any]:
    """One run's metrics."""
    return simulate_task(task).metrics


def run_chunk(tasks: tuple[RunTask, ...]) -> list[dict[str, Any]]:
    """A worker's part of a sweep: a few consecutive runs' metrics (one round trip for several
    runs of a large sweep, whose runs may take a millisecond each)."""
    return [run_task(task) for task in tasks]


def chunk_size(runs: int) -> int:
    """Runs per task: 1 up to a few hundred runs, then more, up to CHUNK_MAX."""
    return max(1, min(CHUNK_MAX, runs // CHUNKS))


options_key = pool.options_key


@dataclass
class Sweep:
    """A sweep's spec, its runs in order, and the rows of the runs finished so far."""

    sweep_id: str
    folder: storage.Location
    spec: dict[str, Any]
    tasks: list[RunTask]
    labels: list[tuple[str, dict[str, Any], str]]  # (strategy, resolved params, symbol) per run
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    state: str = "running"
    top: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.tasks)

    @property
    def done(self) -> int:
        return len(self.rows)

    def row(self, index: int, metrics: dict[str, Any]) -> dict[str, Any]:
        strategy, params, symbol = self.labels[index]
        row: dict[str, Any] = {"run": index, "strategy": strategy}
        for name in self.spec["param_columns"]:
            row[_param_column(name)] = _cell(params.get(name))
        row["params"] = json.dumps(params, sort_keys=False, default=str)
        row["symbol"] = symbol
        for key, value in metrics.items():
            if key not in row:
                row[key] = value
        return row

    def table(self) -> Any:
        import pyarrow as pa

        rows = [self.rows[i] for i in sorted(self.rows)]
        if not rows:
            return pa.table({c: pa.array([], pa.string()) for c in FIXED_COLUMNS})
        try:
            return pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column of mixed kinds: as text
            return pa.Table.from_pylist([{k: _text(v) for k, v in r.items()} for r in rows])

    def write(self) -> None:
        """`results.parquet`, then `sweep.json`, each all or nothing (mesh.datasets.storage)."""
        if self.spec.get("no_save"):
            return
        self.folder.write_table(RESULTS, self.table())
        doc = {
            **self.spec,
            "state": self.state,
            "total": self.total,
            "done": self.done,
            "updated": _now(),
            "top": self.top,
        }
        self.folder.write_json(SPEC, doc)


def _param_column(name: str) -> str:
    return f"param_{name}" if name in FIXED_COLUMNS or name in METRIC_NAMES else name


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def _text(value: Any) -> Any:
    return None if value is None else str(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _metric_names() -> tuple[str, ...]:
    import numpy as np

    from mesh.backtest import metrics
    from mesh.backtest.engine import Fills, Trades

    empty = {k: np.zeros(0) for k in Trades.__dataclass_fields__}
    fills = {k: np.zeros(0) for k in Fills.__dataclass_fields__}
    m = metrics.compute(
        np.ones(2),
        np.arange(2, dtype=np.int64),
        1.0,
        start_ts=0,
        interval_ns=60_000_000_000,
        exposure=0.0,
        trades=Trades(**empty),
        fills=Fills(**fills),
    )
    return (
        *m,
        "fills_mode",
        "orders",
        "orders_unfilled",
        "dataset_gaps",
        "dataset_missing_messages",
    )


METRIC_NAMES = _metric_names()


_absolute = pool.absolute


def sweeps_root(data_dir: Path | str) -> storage.Location:
    return storage.Location(data_dir).join(SWEEPS)


def new_sweep(
    dataset: str,
    strategies: list[str],
    params: list[str],
    options: Options,
    data_dir: Path | str,
    *,
    per_symbol: bool = False,
    top: int = 10,
    sort: str = "sharpe",
    no_save: bool = False,
) -> Sweep:
    """Check everything and load the dataset here (a bad name or value fails before any work)."""
    data_dir = _absolute(data_dir)  # the same folder for workers wherever they start
    options = options.check()
    runs = plan(strategies, params)
    check_sort(sort, runs)
    market = _market(dataset, str(data_dir), options_key(options))
    symbols = market.symbols if per_symbol else None
    sweep_id = report.new_run_id(dataset, "-".join(dict.fromkeys(strategies)))
    spec = {
        "sweep_id": sweep_id,
        "created": _now(),
        "dataset": dataset,
        "strategies": list(strategies),
        "params": list(params),
        "options": asdict(options),
        "per_symbol": per_symbol,
        "symbols": symbols,
        "top_k": top,
        "sort": sort,
        "no_save": no_save,
    }
    return _build(spec, sweeps_root(data_dir).join(sweep_id), data_dir)


def _build(spec: dict[str, Any], folder: storage.Location, data_dir: Path | str) -> Sweep:
    options = Options.from_dict(spec["options"])
    key = options_key(options)
    runs = plan(spec["strategies"], spec["params"])
    tasks: list[RunTask] = []
    labels: list[tuple[str, dict[str, Any], str]] = []
    param_columns: list[str] = []
    for name, params in runs:
        strategy = _strategy(name)
        resolved = strategy.resolve(params)
        for p in resolved:
            if p not in param_columns:
                param_columns.append(p)
        for symbol in spec["symbols"] or [None]:
            tasks.append(
                RunTask(spec["dataset"], str(data_dir), key, name, json.dumps(params), symbol)
            )
            labels.append((strategy.name, resolved, symbol or PORTFOLIO))
    spec = {**spec, "param_columns": param_columns}
    return Sweep(spec["sweep_id"], folder, spec, tasks, labels)


def read_sweep(sweep_id: str, data_dir: Path | str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A saved sweep's `sweep.json` and its rows, in run order (no strategy is loaded)."""
    root = sweeps_root(data_dir)
    doc: Any = None
    rows: list[dict[str, Any]] = []
    if sweep_id and "/" not in sweep_id and not sweep_id.startswith((".", "?", "#")):
        folder = root.join(sweep_id)
        try:
            _check_regular(folder, SPEC)
            doc = folder.read_json(SPEC)
            if isinstance(doc, dict) and folder.exists(RESULTS):
                _check_regular(folder, RESULTS)
                rows = folder.read_table(RESULTS).to_pylist()
        except (OSError, ValueError) as exc:
            raise BacktestError(f"sweep {sweep_id!r} is unreadable: {exc}") from None
    if not isinstance(doc, dict):
        raise BacktestError(f"no sweep {sweep_id!r} under {root} (see massive backtest --sweeps)")
    if (wrong := _misshapen(doc)) is not None:
        raise BacktestError(f"sweep {sweep_id!r} is damaged: its sweep.json has {wrong}")
    return doc, sorted((r for r in rows if r.get("run") is not None), key=lambda r: r["run"])


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _misshapen(doc: dict[str, Any]) -> str | None:
    """What is wrong with a saved sweep.json's fields (None: nothing), before any is used."""
    checks = {
        "dataset": lambda v: isinstance(v, str),
        "strategies": _texts,
        "params": _texts,
        "options": lambda v: isinstance(v, dict),
    }
    optional = {
        "symbols": _texts,
        "param_columns": _texts,
        "sort": lambda v: isinstance(v, str),
        "state": lambda v: isinstance(v, str),
        "top_k": lambda v: isinstance(v, int) and not isinstance(v, bool),
    }
    for key, ok in checks.items():
        if not ok(doc.get(key)):
            return f"no valid {key!r}"
    for key, ok in optional.items():
        if doc.get(key) is not None and not ok(doc[key]):
            return f"no valid {key!r}"
    return None


def _check_regular(folder: storage.Location, name: str) -> None:
    """A local sweep file must be a plain file: a FIFO would hang the read, and a symlink would
    have a resumed sweep rewrite a file outside the data folder."""
    if not folder.is_local:
        return
    try:
        mode = os.lstat(folder.path(name)).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise ValueError(f"{folder.uri(name)} is not a regular file")


def load_sweep(sweep_id: str, data_dir: Path | str) -> Sweep:
    """A saved sweep, its runs planned again and the rows it has: ready to resume."""
    data_dir = _absolute(data_dir)
    doc, rows = read_sweep(sweep_id, data_dir)
    try:
        sweep = _build(doc, sweeps_root(data_dir).join(sweep_id), data_dir)
    except BacktestError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BacktestError(
            f"sweep {sweep_id!r} is damaged: its sweep.json lacks or mistypes {exc}"
        ) from None
    sweep.state = doc.get("state", "interrupted")
    sweep.top = doc.get("top") or []
    for row in rows:
        if isinstance(row["run"], bool) or not isinstance(row["run"], int):
            raise BacktestError(
                f"sweep {sweep_id!r} is damaged: its results.parquet has run {row['run']!r}"
            )
        if 0 <= int(row["run"]) < sweep.total:
            sweep.rows[int(row["run"])] = row
    return sweep


def list_sweeps(data_dir: Path | str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    root = sweeps_root(data_dir)
    for name in root.list_dirs():
        try:
            _check_regular(root.join(name), SPEC)
            doc = root.join(name).read_json(SPEC)
        except (OSError, ValueError) as exc:
            out.append({"sweep_id": name, "state": "unreadable", "error": str(exc)})
            continue
        if not isinstance(doc, dict):
            continue
        if (wrong := _misshapen(doc)) is not None:
            out.append(
                {"sweep_id": name, "state": "unreadable", "error": f"sweep.json has {wrong}"}
            )
            continue
        out.append(
            {
                k: doc.get(k)
                for k in ("sweep_id", "state", "done", "total", "dataset", "strategies", "created")
            }
        )
    return out


def check_sort(sort: str, runs: list[tuple[str, dict[str, Any]]] | None = None) -> None:
    """`sort` names a metric, a fixed column or a parameter of the planned `runs`."""
    known = set(METRIC_NAMES) | {"run", "strategy", "symbol"}
    for name, _ in runs or []:
        known |= {p.name for p in _strategy(name).params}
    _check_sort(sort, known)


def _check_sort(sort: str, known: set[str]) -> None:
    if sort not in known:
        raise BacktestError(
            f"cannot sort by {sort!r}; metrics: {', '.join(m for m in METRIC_NAMES if m not in ('start', 'end'))}"
        )


def check_sort_columns(sort: str, spec: dict[str, Any]) -> None:
    """`sort` names a metric, a fixed column or a parameter column of a saved sweep."""
    params = spec.get("param_columns") or []
    _check_sort(
        sort, {*METRIC_NAMES, "run", "strategy", "symbol", *params, *map(_param_column, params)}
    )


def run_sweep(
    sweep: Sweep,
    workers: int | None = None,
    cluster: str | None = None,
    on_result: Callable[[Sweep, int], None] | None = None,
) -> Sweep:
    """Run the sweep's missing runs; rows are saved as they come and when it stops for any reason.

    `on_result(sweep, index)` is called after each run (a progress bar). Ctrl-C raises
    `SweepInterrupted` after the finished rows are saved; a failing run marks the sweep failed
    and its error is raised; an executor that cannot be had (`parallel.ExecutorError`) is raised
    before anything is written.
    """
    todo = [i for i in range(sweep.total) if i not in sweep.rows]
    if todo:
        first = parallel.open_executor(1 if len(todo) == 1 else workers, cluster, preload=PRELOAD)
        with first as executor, _exclusive(sweep):  # a bad cluster writes nothing
            opened = [False]

            def executors() -> Any:
                if not opened[0]:
                    opened[0] = True
                    from contextlib import nullcontext

                    return nullcontext(executor)
                return parallel.open_executor(workers, cluster, preload=PRELOAD)

            sweep.state = "running"
            sweep.write()
            last = [time.monotonic(), CHECKPOINT_S]  # when written, and the wait until next

            size = chunk_size(len(todo))
            chunks = [tuple(todo[i : i + size]) for i in range(0, len(todo), size)]

            def finished(k: int, metrics: list[dict[str, Any]]) -> None:
                for index, m in zip(chunks[k], metrics, strict=True):
                    sweep.rows[index] = sweep.row(index, m)
                    if on_result is not None:
                        on_result(sweep, index)
                if time.monotonic() - last[0] >= last[1]:
                    started = time.monotonic()
                    sweep.write()
                    # a large table is written less often: at most a tenth of the time goes to it
                    last[:] = [
                        time.monotonic(),
                        max(CHECKPOINT_S, 10 * (time.monotonic() - started)),
                    ]

            try:
                work = [tuple(sweep.tasks[i] for i in chunk) for chunk in chunks]
                parallel.run_tasks(executors, work, run_chunk, finished)
            except KeyboardInterrupt:
                sweep.state = "interrupted"
                sweep.write()
                raise SweepInterrupted(sweep) from None
            except BaseException as exc:
                sweep.state = "failed"
                sweep.write()
                if isinstance(exc, parallel.ExecutorError) and exc.index is not None:
                    runs = chunks[exc.index]
                    raise BacktestError(
                        f"{_describe(sweep, runs)} stopped the sweep: "
                        f"{str(exc).replace(f'task {exc.index} ', 'it ')}; "
                        f"{sweep.done} of {sweep.total} runs saved"
                    ) from None
                if isinstance(exc, BacktestError | DatasetError | parallel.ExecutorError):
                    raise
                if not isinstance(exc, Exception):
                    raise
                # the engine's own trouble (a cluster that went away, a worker killed each time
                # it ran a task): one line, and the finished runs are kept for --resume
                resume = (
                    ""
                    if sweep.spec.get("no_save")
                    else f"; resume with: massive backtest --resume {sweep.sweep_id}"
                )
                text = str(exc).strip()
                why = (
                    f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
                )
                address = cluster or os.environ.get(parallel.ADDRESS_VAR)
                if address and type(exc).__name__ == "CancelledError":
                    why = f"lost the Dask scheduler at {address}"
                raise BacktestError(
                    f"sweep stopped after {sweep.done} of {sweep.total} runs: {why}{resume}"
                ) from exc
    sweep.state = "done"
    sweep.write()
    return sweep


def _describe(sweep: Sweep, runs: tuple[int, ...]) -> str:
    """`run 7 (mystrat fast=10 on AAPL)`, or `runs 32-63 (from mystrat fast=10 on AAPL)`."""

    def one(run: int) -> str:
        strategy, _, symbol = sweep.labels[run]
        shown = " ".join(f"{k}={v}" for k, v in json.loads(sweep.tasks[run].params).items())
        return f"{' '.join(filter(None, [strategy, shown]))} on {symbol}"

    if len(runs) == 1:
        return f"run {runs[0]} ({one(runs[0])})"
    return f"runs {runs[0]}-{runs[-1]} (from {one(runs[0])}, one of them)"


@contextmanager
def _exclusive(sweep: Sweep) -> Iterator[None]:
    """Only one process runs a sweep at a time (a second --resume of it is refused in one line).

    The lock is the operating system's (`flock` on `.lock` in the sweep's folder), so it goes
    with the process that held it, however that process ended. A sweep in S3 has its lock in the
    local state folder: it keeps a second run off this machine only."""
    if sweep.spec.get("no_save"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # no flock on this platform: nothing to guard with
        yield
        return
    if sweep.folder.is_local:
        folder = Path(sweep.folder.root)
    else:  # no flock in S3: the lock is this machine's, in the local state folder
        state = local_state_dir(sweep.folder.raw_location)
        folder = state / "locks" / SWEEPS / sweep.sweep_id
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BacktestError(
                f"sweep {sweep.sweep_id} is running in another process; wait for it, or stop it first"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def sorted_rows(
    rows: list[dict[str, Any]], sort: str, symbol: str | None = None
) -> list[dict[str, Any]]:
    """Best first: numbers high to low (None and NaN last), text A to Z; ties in run order."""
    if symbol:
        rows = [r for r in rows if str(r.get("symbol", "")).upper() == symbol.upper()]
    rows = sorted(rows, key=lambda r: r["run"])

    def key(row: dict[str, Any]) -> tuple[int, Any]:
        value = row.get(sort)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (2, 0)
        if isinstance(value, bool | int | float):
            return (0, -value)
        return (1, str(value))

    return sorted(rows, key=key)


def save_run(task: RunTask, data_dir: str | None) -> BacktestResult:
    """One of a sweep's best runs again, in full (equity, trades and fills), and its run folder
    under `data_dir` (None: not saved)."""
    result = simulate_task(task)
    if data_dir is not None:
        report.save(result, data_dir)
    return result


def save_top(
    sweep: Sweep, data_dir: Path | str, save: bool = True, workers: int | None = None
) -> list[BacktestResult]:
    """Run the best `top_k` runs again (full equity, trades and fills) and save their folders.

    On this machine's process pool when `workers` allow it (its fork server, still up from the
    sweep, holds the dataset: the new workers start at once), else here. Runs on a Dask cluster
    come back here: their folders go to this machine's MESH_DATA_DIR."""
    best = sorted_rows(list(sweep.rows.values()), sweep.spec["sort"])[: sweep.spec["top_k"]]
    chosen = sorted(best, key=lambda r: r["run"])
    tasks = [sweep.tasks[row["run"]] for row in chosen]
    n = min(len(tasks), workers or os.cpu_count() or 1) if pool.uses_pool(workers, None) else 1
    where = str(data_dir) if save else None
    if n > 1:  # uses_pool: no Dask scheduler in the environment either
        # a worker that dies is replaced and its run goes again, as in the sweep
        try:
            results = parallel.run_tasks(
                lambda: parallel.open_executor(n, preload=PRELOAD),
                tasks,
                partial(save_run, data_dir=where),
            )
        except parallel.ExecutorError as exc:
            resume = (
                ""
                if sweep.spec.get("no_save")
                else f"; run them again with: massive backtest --resume {sweep.sweep_id}"
            )
            raise BacktestError(f"the best runs were not saved: {exc}{resume}") from None
    else:
        results = [save_run(task, where) for task in tasks]
    if save:
        sweep.top = [
            {"run": row["run"], "run_id": r.run_id, "run_dir": r.run_dir}
            for row, r in zip(chosen, results, strict=True)
        ]
        sweep.write()
    return results


def shown_columns(spec: dict[str, Any], sort: str) -> list[str]:
    columns = ["run", "strategy", *(_param_column(p) for p in spec.get("param_columns") or [])]
    if spec.get("per_symbol"):
        columns.append("symbol")
    columns += [m for m in SHOWN_METRICS if m not in columns]
    if sort not in columns:
        columns.append(sort)
    return columns


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as aligned text: numbers to the right."""

    def text(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 1e6 else f"{value:,.0f}"
        return str(value)

    cells = [[text(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(r.get(c), int | float) or r.get(c) is None for r in rows) for c in columns
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(columns), *(line(row) for row in cells)])
