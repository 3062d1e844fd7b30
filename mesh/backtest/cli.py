"""`massive backtest DATASET --strategy NAME [--param k=v ...] [--json]`: run, compare, sweep, list.

Runs in the shell's own process (no service needed), on the same code the backtester service
uses. A `module:function` strategy is the user's own code and is loaded here, in the user's
process; it is never sent to the service (which runs only built-ins and MESH_STRATEGY_PATH files). `--strategy` may repeat (a side-by-side comparison on the same data); a parameter given as
a comma-separated list (`--param fast=5,10,20`) sweeps every combination. `--param NAME.k=v`
sets a parameter for one strategy only. Heavy modules are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.commandline import CliError, load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers

DESCRIPTION = """\
Backtest strategies on a recording (MESH_DATA_DIR/recordings/NAME), a historical dataset
(MESH_DATA_DIR/historical/NAME) or a Parquet path. Bar data fills at the next bar's open plus
commission and slippage; recordings with quotes fill at the ask (buys) and bid (sells).
Every run is saved to MESH_DATA_DIR/backtests/<run>/ unless --no-save."""

EPILOG = """\
examples:
  massive backtest --datasets
  massive backtest --strategies
  massive backtest demo --strategy ma-crossover --param fast=5 --param slow=20
  massive backtest demo --strategy buy-and-hold --strategy mean-reversion --interval 5m
  massive backtest data/historical/spy --strategy ma-crossover --param fast=5,10,20 --commission-bps 1
  massive backtest demo --strategy mystrategies:rsi --param lookback=14 --fills quotes --cap-size
see docs/backtest.md for strategies, costs and metrics"""


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
        help="only these symbols (default: all, as an equal-weight portfolio)",
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
    p.add_argument("--no-save", action="store_true", help="do not write data/backtests/<run>/")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--datasets", action="store_true", help="list datasets with their symbols and time ranges"
    )
    p.add_argument(
        "--strategies", action="store_true", help="list built-in strategies and their parameters"
    )
    p.set_defaults(func=cmd_backtest)


def _fail(message: str, code: int = 1) -> Exception:
    return CliError(message, code)


def cmd_backtest(args: argparse.Namespace) -> int:
    from mesh.backtest.errors import BacktestError, DatasetError

    config = load_config()
    try:
        if args.strategies:
            return _list_strategies(args.json)
        if args.datasets:
            return _list_datasets(_local_datasets(config, None), args.json)
        if not args.dataset:
            raise _fail("give a DATASET (see `massive backtest --datasets`)", 2)
        if not args.strategy:
            raise _fail(
                "give at least one --strategy NAME (see `massive backtest --strategies`)", 2
            )
        return _run(args, _local_datasets(config, args.dataset), config.data_dir)
    except DatasetError as exc:
        raise _fail(str(exc), 1) from None
    except BacktestError as exc:
        raise _fail(str(exc), 2) from None


def _local_datasets(config: Any, spec: str | None) -> Path:
    """The folder datasets are read from: MESH_DATA_DIR, or the local copy of an s3:// one."""
    from mesh.datasets import storage

    try:
        return storage.local_datasets(config.data_location, config.data_dir, spec)
    except OSError as exc:
        raise _fail(f"MESH_DATA_DIR: {exc}", 1) from None


def _run(args: argparse.Namespace, data_dir: Path, runs_dir: Path) -> int:
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
    results = run_many(args.dataset, list(runs), data_dir=data_dir, options=options)
    if not args.no_save:
        for r in results:
            report.save(r, runs_dir)
    if args.json:
        out = {
            "dataset": results[0].dataset,
            "runs": [
                {
                    "run_id": r.run_id,
                    "run_dir": r.run_dir,
                    "strategy": r.strategy,
                    "label": r.label,
                    "params": r.params,
                    "metrics": r.metrics,
                    "per_symbol": r.per_symbol,
                    "elapsed_s": round(r.elapsed_s, 6),
                }
                for r in results
            ],
        }
        print(json.dumps(out, indent=2, default=report._json_default))
        return 0
    print(report.table(results[0]) if len(results) == 1 else report.comparison(results))
    if not args.no_save:
        print()
        for r in results:
            print(f"saved {r.label}: {r.run_dir}")
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


def _list_datasets(data_dir: Any, as_json: bool) -> int:
    from mesh.backtest.datasets import list_datasets

    items = list_datasets(data_dir)
    if as_json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print(
            f"no datasets under {data_dir} (record one with `massive record start NAME`, or fetch history with `massive fetch`)"
        )
        return 0
    print(f"{'NAME':<24}{'KIND':<12}{'START':<22}{'END':<22}{'ROWS':>10}  SYMBOLS")
    for d in items:
        if "error" in d:
            print(f"{d['name']:<24}{d['kind']:<12}unreadable: {d['error']}", file=sys.stdout)
            continue
        rows = sum((d.get("rows") or {}).values())
        syms = d.get("symbols", [])
        shown = ",".join(syms[:6]) + (f" (+{len(syms) - 6})" if len(syms) > 6 else "")
        print(
            f"{d['name']:<24}{d['kind']:<12}{d['start'] or '-':<22}{d['end'] or '-':<22}{rows:>10,d}  {shown}"
        )
    return 0
