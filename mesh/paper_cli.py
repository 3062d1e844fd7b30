"""`massive paper start|stop|status|compare`: strategies traded live on the bus, and the proof.

`start`, `stop` and `status` go to the `strategy` service over the control channel (a session
lives as long as that service, not this shell command); `compare` runs here, reading the
session's journal and its recording (docs/paper.md).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from mesh import client, control
from mesh.commandline import BAD_USAGE, FAILED, CliError, load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers

SERVICE = "strategy"
EPILOG = """\
examples:
  massive paper start demo --strategy ma-crossover --param fast=3 --param slow=8 \\
      --symbols AAPL,MSFT --interval 1s
  massive paper status
  massive paper stop demo
  massive paper compare demo
see docs/paper.md"""


def register(subparsers: Subparsers) -> None:
    paper = subparsers.add_parser(
        "paper",
        help="run a strategy live on the bus as a paper trader, and compare it with its backtest",
        description="Paper trading: a backtester strategy evaluated at each bar close on live quotes, its orders filled against live quotes exactly as the backtester fills recorded ones (the strategy service must be running). `compare` proves it: the backtest of the session's recording gives the same fills.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = paper.add_subparsers(dest="paper_command", required=True, metavar="ACTION")
    start = sub.add_parser("start", help="start paper session NAME")
    start.add_argument("name", metavar="NAME", help="session name: letters, digits, '_', '-'")
    start.add_argument(
        "--strategy",
        required=True,
        help="a built-in (see `massive backtest --list`) or FILE:function",
    )
    start.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="a strategy parameter (repeat)"
    )
    start.add_argument(
        "--symbols",
        metavar="A,B",
        help="the symbols to trade (default: every symbol quoted so far)",
    )
    start.add_argument("--interval", default="1s", choices=("1s", "1m"), help="bar interval")
    start.add_argument(
        "--fills", default="quotes", choices=("quotes",), help="fill against live quotes"
    )
    start.add_argument(
        "--cash", type=float, default=100_000.0, help="starting cash (split per symbol)"
    )
    start.add_argument("--commission-bps", type=float, default=0.0, help="commission in bps")
    start.add_argument("--latency-ms", type=float, default=0.0, help="bar close to market, ms")
    start.add_argument("--cap-size", action="store_true", help="fill at most the quoted size")
    start.add_argument("--whole-shares", action="store_true", help="trade whole shares only")
    start.add_argument("--json", action="store_true", help="machine-readable output")
    start.set_defaults(func=cmd_start)

    stop = sub.add_parser("stop", help="stop paper session NAME (and the recording it started)")
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--json", action="store_true", help="machine-readable output")
    stop.set_defaults(func=cmd_stop)

    status = sub.add_parser("status", help="every paper session: state, positions, P&L")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    compare = sub.add_parser(
        "compare", help="backtest NAME's recording and match its fills with the live ones"
    )
    compare.add_argument("name", metavar="NAME")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.set_defaults(func=cmd_compare)


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--param {pair!r}: expected NAME=VALUE, e.g. fast=5", BAD_USAGE)
        out[key.strip()] = value.strip()
    return out


def cmd_start(args: argparse.Namespace) -> int:
    symbols = None
    if args.symbols is not None:
        symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        if not symbols:
            raise CliError("--symbols: give at least one ticker, e.g. AAPL,MSFT", BAD_USAGE)
    request = {
        "name": args.name,
        "strategy": args.strategy,
        "params": _params(args.param),
        "symbols": symbols,
        "interval": args.interval,
        "fills": args.fills,
        "cash": args.cash,
        "commission_bps": args.commission_bps,
        "latency_ms": args.latency_ms,
        "cap_size": args.cap_size,
        "whole_shares": args.whole_shares,
    }
    view = client.call(
        SERVICE, "start", request, config=load_config(), timeout=15.0, busy_wait=control.BUSY_WAIT
    )
    _print_session(view, args.json)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    view = client.call(
        SERVICE, "stop", {"name": args.name}, config=load_config(), timeout=15.0,
        busy_wait=control.BUSY_WAIT,
    )  # fmt: skip
    _print_session(view, args.json)
    return 0 if view.get("state") == "stopped" else 1


def cmd_status(args: argparse.Namespace) -> int:
    report = client.call(SERVICE, "status", config=load_config(), busy_wait=control.BUSY_WAIT)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    sessions = report.get("sessions") or []
    if not sessions:
        print("no paper sessions (start one with `massive paper start`)")
    for view in sessions:
        _print_session(view, False)
    return 1 if any(v.get("state") == "failed" for v in sessions) else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mesh.backtest.errors import BacktestError
    from mesh.datasets import DatasetError
    from mesh.paper.compare import compare
    from mesh.paper.session import PaperError

    try:
        result = compare(args.name, load_config())
    except (PaperError, BacktestError, DatasetError) as exc:
        raise CliError(str(exc), FAILED) from None
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(result["summary"])
        for title, rows in (
            ("live only", result["live_only"]),
            ("backtest only", result["backtest_only"]),
        ):
            for row in rows[:20]:
                print(
                    f"  {title}: {row['symbol']} {row['time']} {row['qty']:+g} @ {row['price']:g}"
                )
        for line in result["explanations"]:
            print(f"  why: {line}")
    return 0 if result["exact"] else 1


def _print_session(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(view, indent=2, default=str))
        return
    positions = ", ".join(f"{s} {q:+g}" for s, q in (view.get("positions") or {}).items() if q)
    equity, initial = view.get("equity"), view.get("initial_cash") or 0.0
    pnl = f"P&L {equity - initial:+,.2f}" if isinstance(equity, int | float) else ""
    print(
        f"{view['name']}: {view['state']} — {view['strategy']} on {','.join(view['symbols'])} "
        f"at {view['interval']}; recording {view.get('recording') or '-'}; "
        f"{view.get('orders', 0)} orders, {view.get('fills', 0)} fills {pnl}"
        + (f"; holding {positions}" if positions else "")
    )
    if view.get("lost"):
        print(f"  {view['lost']}")
    if view.get("error"):
        print("  " + view["error"].replace("\n", "\n  "))
