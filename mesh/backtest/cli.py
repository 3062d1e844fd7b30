"""`massive backtest DATASET --strategy NAME [--param k=v ...] [--json]`: run, compare, sweep, list.

Runs in the shell's own process (no service needed), on the same code the backtester service
uses. A `module:function` strategy is the user's own code and is loaded here, in the user's
process; it is never sent to the service (which runs only built-ins and MESH_STRATEGY_PATH files). `--strategy` may repeat (a side-by-side comparison on the same data); a parameter given as
a comma-separated list (`--param fast=5,10,20`) sweeps every combination. `--param NAME.k=v`
sets a parameter for one strategy only. More than one run is a sweep (mesh/backtest/sweep.py):
on every core, or on Dask, with a results table of its own. Heavy modules are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.argtypes import positive_int, worker_count
from mesh.commandline import CliError, load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers

DESCRIPTION = """\
Backtest strategies on a recording (MESH_DATA_DIR/recordings/NAME), a historical dataset
(MESH_DATA_DIR/historical/NAME) or a Parquet path. Bar data fills at the next bar's open plus
commission and slippage; recordings with quotes fill at the ask (buys) and bid (sells).
Every run is saved to MESH_DATA_DIR/backtests/<run>/ unless --no-save. Several runs (a
parameter grid, several strategies, --per-symbol) are a sweep: run in parallel on every core
(--workers, or on Dask with --cluster), one row per run in MESH_DATA_DIR/sweeps/<id>/, the best
--top K saved as run folders."""

EPILOG = """\
examples:
  massive backtest --datasets
  massive backtest --strategies
  massive backtest demo --strategy ma-crossover --param fast=5 --param slow=20
  massive backtest demo --strategy buy-and-hold --strategy mean-reversion --interval 5m
  massive backtest data/historical/spy --strategy ma-crossover --param fast=5,10,20 --commission-bps 1
  massive backtest demo --strategy mystrategies:rsi --param lookback=14 --fills quotes --cap-size
  massive backtest spy --strategy ma-crossover --param fast=5,10,20,40 --param slow=50,100,200 --per-symbol --top 5
  massive backtest spy --strategy ma-crossover --param fast=5,10 --cluster tcp://10.0.0.5:8786
  massive backtest --sweeps
  massive backtest --sweep SWEEP_ID --sort total_return --symbol AAPL --limit 10
  massive backtest --resume SWEEP_ID
see docs/backtest.md for strategies, costs, metrics and sweeps"""


def register(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "backtest",
        help="backtest strategies on recorded or historical data",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "dataset",
        nargs="?",
        metavar="DATASET",
        help="recording name, historical dataset name, or Parquet file/folder",
    )
    p.add_argument(
        "--strategy",
        "-s",
        action="append",
        default=[],
        metavar="NAME",
        help="built-in strategy (see --strategies) or your own module:function (run in this process); repeat to compare",
    )
    p.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="K=V",
        help="strategy parameter; V may be a comma-separated list to sweep; STRATEGY.K=V for one strategy",
    )
    p.add_argument(
        "--interval",
        metavar="1m",
        help="bar interval for signals (default: the data's own; 1m for quotes/trades)",
    )
    p.add_argument(
        "--symbols",
        "--symbol",
        metavar="A,B",
        help="only these symbols (default: all, as an equal-weight portfolio); with --sweep: only this symbol's runs",
    )
    p.add_argument(
        "--fills",
        choices=("auto", "bars", "quotes"),
        default="auto",
        help="bars: next bar's open + costs; quotes: at the ask/bid in force; auto: quotes when the data has them",
    )
    p.add_argument(
        "--bars",
        dest="bar_source",
        choices=("auto", "mid", "trades"),
        default="auto",
        help="recordings: build signal bars from quote mids or trade prices (default: mid when there are quotes)",
    )
    p.add_argument("--cash", type=float, default=100_000.0, help="starting equity (default 100000)")
    p.add_argument(
        "--commission-bps",
        type=float,
        default=0.0,
        metavar="BPS",
        help="commission per fill, basis points of notional",
    )
    p.add_argument(
        "--slippage-bps",
        type=float,
        default=0.0,
        metavar="BPS",
        help="bar fills: price moved against you, basis points",
    )
    p.add_argument(
        "--whole-shares", action="store_true", help="trade whole shares only (default: fractional)"
    )
    p.add_argument(
        "--cap-size",
        action="store_true",
        help="quote fills: take at most the quoted size per quote",
    )
    p.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="quote fills: order delay after the bar's close",
    )
    p.add_argument(
        "--periods-per-year",
        type=float,
        metavar="N",
        help="override the annualisation (bars per year)",
    )
    p.add_argument(
        "--check-lookahead",
        action="store_true",
        help="fail if a strategy's signals change when later bars are removed",
    )
    p.add_argument(
        "--capture-only",
        action="store_true",
        help="a recording's capture alone, without the rows a heal added (default: both)",
    )
    p.add_argument(
        "--per-symbol",
        action="store_true",
        help="one run per (parameter set, symbol) instead of one portfolio per parameter set",
    )
    p.add_argument(
        "--workers",
        type=worker_count,
        metavar="N",
        help="several runs: processes to run them on (default: every core; 1: in this process)",
    )
    p.add_argument(
        "--cluster",
        type=_cluster,
        metavar="ADDRESS",
        help="several runs: on Dask, `local` (a cluster of --workers processes here) or a scheduler's tcp://HOST:PORT (needs massive-mesh[cluster])",
    )
    p.add_argument(
        "--top",
        type=positive_int,
        default=10,
        metavar="K",
        help="a sweep saves its best K runs as run folders (default 10)",
    )
    p.add_argument(
        "--sort",
        metavar="METRIC",
        help="what 'best' means for --top and --sweep: a metric, high to low (default sharpe)",
    )
    p.add_argument(
        "--resume", metavar="SWEEP_ID", help="finish an interrupted sweep (only the missing runs)"
    )
    p.add_argument("--sweeps", action="store_true", help="list sweeps")
    p.add_argument(
        "--sweep",
        metavar="SWEEP_ID",
        help="show a sweep's results table (with --sort, --symbol, --limit, --json)",
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=20,
        metavar="N",
        help="--sweep: show the first N rows (default 20)",
    )
    p.add_argument("--no-save", action="store_true", help="do not write data/backtests/<run>/")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--datasets", action="store_true", help="list datasets with their symbols and time ranges"
    )
    p.add_argument(
        "--strategies", action="store_true", help="list built-in strategies and their parameters"
    )
    p.set_defaults(func=cmd_backtest)


def _cluster(text: str) -> str:
    from mesh.parallel import ExecutorError, check_cluster

    try:
        return check_cluster(text)
    except ExecutorError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"cluster {text!r}: ")) from None


def _fail(message: str, code: int = 1) -> Exception:
    return CliError(message, code)


def cmd_backtest(args: argparse.Namespace) -> int:
    from mesh.backtest.errors import BacktestError, DatasetError
    from mesh.parallel import ExecutorError

    config = load_config()
    try:
        if args.strategies:
            return _list_strategies(args.json)
        if args.datasets:
            return _list_datasets(config, args.json)
        if args.sweeps:
            return _list_sweeps(config.data_location, config.shown_data_location, args.json)
        if args.sweep:
            return _show_sweep(args, config.data_location)
        if args.resume:
            from mesh.backtest.sweep import load_sweep

            sweep = load_sweep(args.resume, config.data_location)
            return _sweep(args, config.data_dir, sweep)
        if not args.dataset:
            raise _fail("give a DATASET (see `massive backtest --datasets`)", 2)
        if not args.strategy:
            raise _fail(
                "give at least one --strategy NAME (see `massive backtest --strategies`)", 2
            )
        return _run(
            args, _local_datasets(config, args.dataset), config.data_dir, config.data_location
        )
    except DatasetError as exc:
        raise _fail(_shown(config, str(exc)), 1) from None
    except BacktestError as exc:
        from mesh.backtest.sweep import SweepInterrupted

        raise _fail(str(exc), 130 if isinstance(exc, SweepInterrupted) else 2) from None
    except ExecutorError as exc:
        raise _fail(str(exc), 1) from None


def _shown(config: Any, text: str) -> str:
    """`text` with paths in the local copy of an s3:// MESH_DATA_DIR shown as s3:// ones."""
    if not config.data_remote:
        return text
    from mesh.datasets import storage

    return storage.shown_path(text, config.data_location, config.data_dir)


def _shown_path(path: str, data_location: str, state_dir: Path) -> str:
    from mesh.datasets import storage

    return storage.shown_path(path, data_location, state_dir)


def _local_datasets(config: Any, spec: str | None) -> Path:
    """The folder datasets are read from: MESH_DATA_DIR, or the local copy of an s3:// one."""
    from mesh.datasets import storage

    try:
        return storage.local_datasets(config.data_location, config.data_dir, spec)
    except OSError as exc:
        raise _fail(f"MESH_DATA_DIR: {exc}", 1) from None


def _run(args: argparse.Namespace, data_dir: Path, runs_dir: Path, data_location: str) -> int:
    """`data_dir`: the folder datasets are read from; `runs_dir`: where run folders go;
    `data_location`: MESH_DATA_DIR (a folder or s3://), where sweeps go and workers read from."""
    from mesh.backtest import report
    from mesh.backtest.runner import Options, plan, run_many

    options = Options(
        interval=args.interval,
        fills=args.fills,
        bar_source=args.bar_source,
        symbols=[s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        if args.symbols
        else None,
        cash=args.cash,
        commission_bps=args.commission_bps,
        slippage_bps=args.slippage_bps,
        whole_shares=args.whole_shares,
        cap_size=args.cap_size,
        latency_ms=args.latency_ms,
        periods_per_year=args.periods_per_year,
        check_lookahead=args.check_lookahead,
        capture_only=args.capture_only,
    ).check()
    runs = plan(args.strategy, args.param)
    if len(runs) > 1 or args.per_symbol:
        from mesh.backtest import pool

        if pool.uses_pool(args.workers, args.cluster):  # its workers get ready while we do
            pool.start(args.dataset, data_location, pool.options_key(options))
        from mesh.backtest.sweep import new_sweep

        sweep = new_sweep(
            args.dataset,
            args.strategy,
            args.param,
            options,
            data_location,
            per_symbol=args.per_symbol,
            top=args.top,
            sort=args.sort or "sharpe",
            no_save=args.no_save,
        )
        return _sweep(args, runs_dir, sweep)
    results = run_many(args.dataset, list(runs), data_dir=data_dir, options=options)
    for r in results:  # the local copy of an s3:// MESH_DATA_DIR is shown as the s3:// dataset
        r.dataset["path"] = _shown_path(str(r.dataset.get("path", "")), data_location, runs_dir)
    if not args.no_save:
        for r in results:
            report.save(r, runs_dir)
    if args.json:
        out = {
            "dataset": results[0].dataset,
            "runs": [_run_json(r) for r in results],
        }
        print(json.dumps(out, indent=2, default=report._json_default))
        return 0
    print(report.table(results[0]) if len(results) == 1 else report.comparison(results))
    if not args.no_save:
        print()
        for r in results:
            print(f"saved {r.label}: {r.run_dir}")
    return 0


def _sweep(args: argparse.Namespace, runs_dir: Any, sweep: Any) -> int:
    """Run a sweep's missing runs with a progress bar, save its best runs (run folders under
    `runs_dir`), print them."""
    import time

    from mesh.backtest import report
    from mesh.backtest import sweep as sweeps

    finished_before = sweep.state == "done" and bool(sweep.top)
    todo = sweep.total - sweep.done
    # the process pool's fork server: started by `_run` for a new sweep, here for --resume
    pooled = sweeps.pool.uses_pool(args.workers, args.cluster) and (todo > 1 or not args.resume)
    if pooled and args.resume:
        task = sweep.tasks[0]
        sweeps.pool.start(task.dataset, task.data_dir, task.options)
    started = time.perf_counter()
    with _progress_bar(sweep.total, sweep.done) as advance:
        sweeps.run_sweep(sweep, args.workers, args.cluster, lambda s, i: advance())
    elapsed = time.perf_counter() - started
    saving = not sweep.spec.get("no_save")
    # a sweep resumed after it was done keeps the run folders it saved then
    results = (
        []
        if finished_before
        else sweeps.save_top(sweep, runs_dir, save=saving, workers=args.workers if pooled else 1)
    )
    sort = sweep.spec["sort"]
    best = sweeps.sorted_rows(list(sweep.rows.values()), sort)[: sweep.spec["top_k"]]
    folder = str(sweep.folder) if saving else None
    if args.json:
        market = sweeps.market_of(sweep)
        out = {
            "sweep_id": sweep.sweep_id if saving else None,
            "sweep_dir": folder,
            "state": sweep.state,
            "total": sweep.total,
            "done": sweep.done,
            "sort": sort,
            "ran": todo,  # runs done by this command (a resumed sweep: the missing ones)
            "elapsed_s": round(elapsed, 6),  # their wall time, start-up of the executor included
            "dataset": {
                **market.describe(),
                "path": _shown_path(
                    str(market.dataset.path), sweep.tasks[0].data_dir, Path(runs_dir)
                ),
            },
            "top": best,
            "runs": [_run_json(r) for r in results],
        }
        print(json.dumps(out, indent=2, default=report._json_default))
        return 0
    if results and sweep.total <= sweep.spec["top_k"] and not sweep.spec.get("per_symbol"):
        print(report.comparison(results))
    else:
        print(f"best {len(best)} of {sweep.total} runs by {sort}:")
        print(sweeps.format_table(best, sweeps.shown_columns(sweep.spec, sort)))
    if saving:
        print()
        print(f"saved sweep {sweep.sweep_id}: {folder} (massive backtest --sweep {sweep.sweep_id})")
        for top in sweep.top if finished_before else []:
            print(f"saved run {top['run']}: {top['run_dir']}")
        for r in results:
            where = f" on {','.join(r.dataset['symbols'])}" if sweep.spec.get("per_symbol") else ""
            print(f"saved {r.label}{where}: {r.run_dir}")
    return 0


def _progress_bar(total: int, done: int) -> Any:
    """A rich progress bar on stderr (runs done / total, runs per second, time left); a callable to advance it."""
    from contextlib import contextmanager

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} runs/s" if speed else "- runs/s")

    @contextmanager
    def bar() -> Any:
        console = Console(stderr=True)
        progress = Progress(
            TextColumn("sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            Rate(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,  # a log or a pipe gets no bar (nor a stray newline)
        )
        task = progress.add_task("sweep", total=total, completed=done)
        with progress:
            yield lambda: progress.advance(task)

    return bar()


def _list_sweeps(data_location: str, shown: str, as_json: bool) -> int:
    from mesh.backtest.sweep import list_sweeps

    items = list_sweeps(data_location)
    if as_json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print(f"no sweeps under {shown}")
        return 0
    print(f"{'SWEEP':<56}{'STATE':<13}{'RUNS':>13}  {'DATASET':<20}STRATEGIES")
    for d in items:
        runs = f"{d.get('done') or 0}/{d.get('total') or 0}"
        strategies = ",".join(d.get("strategies") or [])
        print(
            f"{d['sweep_id']:<56}{d.get('state') or '-':<13}{runs:>13}  {d.get('dataset') or '-':<20}{strategies}"
        )
    return 0


def _show_sweep(args: argparse.Namespace, data_dir: Any) -> int:
    from mesh.backtest import sweep as sweeps

    doc, all_rows = sweeps.read_sweep(args.sweep, data_dir)
    sort = args.sort or doc.get("sort") or "sharpe"
    sweeps.check_sort_columns(sort, doc)
    symbol = args.symbols.strip() if args.symbols else None
    rows = sweeps.sorted_rows(all_rows, sort, symbol)
    if symbol and not rows:
        raise _fail(f"sweep {args.sweep} has no runs on {symbol}", 1)
    shown = rows[: args.limit]
    state, done, total = doc.get("state"), len(all_rows), doc.get("total")
    if args.json:
        out = {"sweep_id": args.sweep, "state": state, "total": total, "done": done}
        print(json.dumps({**out, "sort": sort, "rows": shown}, indent=2))
        return 0
    print(
        f"sweep {args.sweep}: {state}, {done}/{total} runs, "
        f"{len(shown)} of {len(rows)} shown by {sort}"
    )
    print(sweeps.format_table(shown, sweeps.shown_columns(doc, sort)))
    return 0


def _list_strategies(as_json: bool) -> int:
    from mesh.backtest.strategies import list_strategies

    items = list_strategies()
    if as_json:
        print(json.dumps(items, indent=2))
        return 0
    for s in items:
        print(f"{s['name']}: {s['description']}")
        for p in s["params"]:
            choices = f" ({'|'.join(p['choices'])})" if p.get("choices") else ""
            print(
                f"    {p['name'] + '=' + str(p['default']):<22} {p['type']:<6}{p['help']}{choices}"
            )
    print("\nyour own: --strategy module:function (see docs/backtest.md, 'Writing a strategy')")
    return 0


def _list_datasets(config: Any, as_json: bool) -> int:
    from mesh.backtest.datasets import list_datasets

    items = list_datasets(_local_datasets(config, None))
    for item in items:  # paths in the local copy of an s3:// MESH_DATA_DIR, shown as s3:// ones
        for key in ("path", "error"):
            if isinstance(item.get(key), str):
                item[key] = _shown(config, item[key])
    if as_json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print(
            f"no datasets under {config.shown_data_location} (record one with `massive record start NAME`, or fetch history with `massive fetch`)"
        )
        return 0
    print(f"{'NAME':<24}{'KIND':<12}{'START':<22}{'END':<22}{'ROWS':>10}  SYMBOLS")
    for d in items:
        if d.get("error"):  # every listing has the key; a readable dataset's is None
            print(f"{d['name']:<24}{d['kind']:<12}unreadable: {d['error']}", file=sys.stdout)
            continue
        rows = sum((d.get("rows") or {}).values())
        syms = d.get("symbols", [])
        shown = ",".join(syms[:6]) + (f" (+{len(syms) - 6})" if len(syms) > 6 else "")
        print(
            f"{d['name']:<24}{d['kind']:<12}{d['start'] or '-':<22}{d['end'] or '-':<22}{rows:>10,d}  {shown}"
        )
    return 0


def _run_json(r: Any) -> dict[str, Any]:
    """One run as `--json` prints it (a single run, a comparison, or a sweep's saved best)."""
    return {
        "run_id": r.run_id,
        "run_dir": r.run_dir,
        "strategy": r.strategy,
        "label": r.label,
        "params": r.params,
        "metrics": r.metrics,
        "per_symbol": r.per_symbol,
        "elapsed_s": round(r.elapsed_s, 6),
    }
