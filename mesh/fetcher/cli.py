"""`massive fetch` and `massive quota`: history and the quota from the shell.

`massive fetch` runs in this process (no fetcher service needed) against the same quota ledger
as every other process; it says which method it picked and why, shows a progress bar on stderr
while it downloads, writes a dataset under data/historical/ and ends with one summary line.
`--dry-run` prints the plan and its cost without spending anything. `massive quota` reads the
ledger directly, so it works whether or not the mesh is running.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from mesh.argtypes import non_negative_int, worker_count
from mesh.commandline import CliError, load_config
from mesh.fetcher.ledger import human_bytes
from mesh.fetcher.request import INTERVALS, METHODS

if TYPE_CHECKING:
    from mesh.commandline import Subparsers


def register(subparsers: Subparsers) -> None:
    fetch = subparsers.add_parser(
        "fetch",
        help="download history over REST or S3 flat files (auto-chosen), within the quota",
        description="Fetch bars for SYMBOLS over [--start, --end] (New York trading dates, inclusive), split-adjusted unless --unadjusted. auto uses REST for <= 5 symbols and <= 7 days, flat files otherwise; a failing flat-file path falls back to REST when the quota allows. The result is written to $MESH_DATA_DIR/historical/NAME/ (bars_<interval>.parquet + manifest.json; docs/data.md).",
    )
    fetch.add_argument("symbols", metavar="SYMBOLS", help="comma-separated tickers, e.g. AAPL,MSFT")
    fetch.add_argument(
        "--start", required=True, metavar="YYYY-MM-DD", help="first date (inclusive)"
    )
    fetch.add_argument("--end", required=True, metavar="YYYY-MM-DD", help="last date (inclusive)")
    fetch.add_argument(
        "--interval", default="1d", metavar="|".join(INTERVALS), help="bar interval (default 1d)"
    )
    fetch.add_argument(
        "--method",
        default="auto",
        metavar="|".join(METHODS),
        help="auto (default), rest or flat_file",
    )
    fetch.add_argument(
        "--unadjusted",
        action="store_true",
        help="bars as traded; by default prices are split-adjusted (as Massive's aggregates are)",
    )
    fetch.add_argument(
        "--name",
        metavar="NAME",
        help="dataset name under data/historical/ (default: from the request)",
    )
    fetch.add_argument(
        "--out", metavar="PATH", help="also write the bars to PATH (.parquet or .csv)"
    )
    fetch.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and its cost (REST calls, files, bytes); spend nothing",
    )
    fetch.add_argument(
        "--no-fallback",
        action="store_true",
        help="fail instead of falling back to REST when flat files fail",
    )
    fetch.add_argument(
        "--workers",
        type=worker_count,
        metavar="N",
        help="flat-file days fetched at once, one process each (default: every core when the span has more than one day; 1 = one after the other in this process)",
    )
    fetch.add_argument(
        "--cluster",
        metavar="local|ADDRESS",
        type=_cluster,
        help="run the flat-file days on Dask: `local` starts a cluster of --workers processes here; tcp://HOST:PORT uses a running scheduler whose workers are on this machine (needs massive-mesh[cluster]; workers elsewhere cannot reach the quota ledger and are refused)",
    )
    fetch.add_argument(
        "--json", action="store_true", help="machine-readable output (the plan, or the report)"
    )
    fetch.set_defaults(func=cmd_fetch)

    quota = subparsers.add_parser(
        "quota",
        help="REST calls this minute and today, flat-file bytes this month, against the limits",
        description="Show the quota ledger's counts against the limits. A damaged ledger is reported (exit 1) and stops every quota-spending command until `massive quota --repair` replaces it; the repair counts the current minute, day and month as spent unless you say what was used (from Massive's dashboard).",
    )
    quota.add_argument("--json", action="store_true", help="machine-readable output")
    quota.add_argument(
        "--repair",
        action="store_true",
        help="replace a damaged ledger (kept as quota.sqlite.damaged-<time>) by one that counts this minute, day and month as spent",
    )
    quota.add_argument(
        "--rest-today",
        type=non_negative_int,
        metavar="N",
        help="with --repair: REST calls really used today (UTC), instead of the daily limit",
    )
    quota.add_argument(
        "--bytes-month",
        type=_size,
        metavar="SIZE",
        help="with --repair: flat-file bytes really used this month (UTC), e.g. 2.5GB, instead of the monthly allowance",
    )
    quota.set_defaults(func=cmd_quota)


PRELOAD = ("mesh.fetcher.bulk", "boto3", "botocore.config")  # imported once by a pool's fork server


def _cluster(text: str) -> str:
    from mesh.parallel import ExecutorError, check_cluster

    try:
        return check_cluster(text)
    except ExecutorError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"cluster {text!r}: ")) from None


def _size(text: str) -> int:
    from mesh.config import ConfigError, parse_bytes

    try:
        return parse_bytes("--bytes-month", text, "the command line")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fail(message: str, code: int) -> CliError:
    return CliError(message, code)


def cmd_fetch(args: argparse.Namespace) -> int:
    from mesh.fetcher import datasets
    from mesh.fetcher.errors import BadRequest, FetchError
    from mesh.fetcher.fetch import Fetcher, Interrupted
    from mesh.fetcher.request import make_request

    config = load_config()
    try:
        request = make_request(
            args.symbols,
            args.start,
            args.end,
            args.interval,
            args.method,
            adjusted=not args.unadjusted,
        )
        if args.name:
            datasets.check_name(args.name)
        if not args.dry_run:  # where the result goes must be writable before anything is spent
            datasets.check_destination(config.data_location)
            if args.out:
                datasets.check_export(args.out)
    except BadRequest as exc:
        raise _fail(str(exc), 2) from None
    fetcher = Fetcher(config, days=_day_executor(args, len(request.trading_days)))
    if args.dry_run:
        try:
            plan = fetcher.plan(request)
        except FetchError as exc:
            raise _fail(str(exc), 1) from None
        if args.json:
            print(json.dumps(plan.as_dict(), indent=2))
        else:
            print("\n".join(plan.lines()))
        return 0 if plan.fits else 1
    from mesh.fetcher.plan import choose

    method, reason = choose(request)
    print(f"method: {method} ({reason})", file=sys.stderr)
    name = args.name or datasets.default_name(
        request.symbols, request.interval, request.start.isoformat(), request.end.isoformat()
    )
    try:
        with _ProgressBar(enabled=not args.json) as bar:
            bars, report = fetcher.run(request, progress=bar.update, fallback=not args.no_fallback)
    except BadRequest as exc:
        raise _fail(str(exc), 2) from None
    except Interrupted as exc:
        if exc.bars is not None:
            info = {**request.as_dict(), **exc.report.as_dict()}
            path = datasets.write_dataset(exc.bars, config.data_location, name, info)
            raise _fail(f"{exc}; the finished days are in dataset {name!r} ({path})", 130) from None
        raise _fail(str(exc), 130) from None
    except FetchError as exc:
        raise _fail(str(exc), 1) from None
    info = {**request.as_dict(), **report.as_dict()}
    try:
        path = datasets.write_dataset(bars, config.data_location, name, info)
    except OSError as exc:
        raise _fail(
            f"fetched {report.rows:,} rows but cannot write dataset {name!r} under {config.shown_data_location}/historical: {exc.strerror or exc}",
            1,
        ) from None
    info.update(dataset=name, path=str(path))
    if args.out:
        try:
            info["out"] = str(datasets.export(bars, args.out))
        except BadRequest as exc:
            raise _fail(str(exc), 2) from None
        except OSError as exc:
            raise _fail(
                f"dataset {name!r} written to {path}, but --out {args.out!r} failed: {exc.strerror or exc}",
                1,
            ) from None
    if report.fallback:
        print(report.fallback, file=sys.stderr)
    for failed in report.failed_days:
        print(f"{failed['day']} {failed['status']}: {failed['reason']}", file=sys.stderr)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{report.summary()} -> {path}" + (f" and {info['out']}" if args.out else ""))
    if report.failed_days:
        raise _fail(
            f"{len(report.failed_days)} day(s) missing from dataset {name!r} (listed above); rerunning the same command fetches only what is missing (fetched day files are read from the cache)",
            1,
        )
    return 0


def _day_executor(args: argparse.Namespace, days: int) -> Any:
    """Where the flat-file days run: this process, a process pool or Dask (mesh/fetcher/bulk.py)."""
    import os

    from mesh import parallel
    from mesh.fetcher.bulk import DayExecutor

    cluster = args.cluster or os.environ.get(parallel.ADDRESS_VAR) or None
    workers = args.workers or ((os.cpu_count() or 1) if days > 1 else 1)
    if cluster is None:
        workers = min(workers, days)  # no more processes than day files
    if workers == 1 and cluster is None:
        return DayExecutor(None, 1)
    return DayExecutor(
        lambda: parallel.open_executor(workers, cluster, preload=PRELOAD),
        workers,
        remote=cluster not in (None, "local"),
    )


class _ProgressBar:
    """A rich progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None
        self._fallback_said = False

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("starting", total=1.0)
        return self

    def update(self, fraction: float, message: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        if total > 1:
            self._progress.update(
                self._task, description=message[:60], completed=fraction * total, total=total
            )
        else:
            self._progress.update(
                self._task, description=message[:60], completed=fraction, total=1.0
            )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def cmd_quota(args: argparse.Namespace) -> int:
    from mesh.fetcher.ledger import LedgerError, QuotaLedger

    if (args.rest_today is not None or args.bytes_month is not None) and not args.repair:
        raise _fail("--rest-today and --bytes-month only go with --repair", 2)
    ledger = QuotaLedger.for_config(load_config())
    if args.repair:
        try:
            done = ledger.repair(rest_today=args.rest_today, bytes_month=args.bytes_month)
        except LedgerError as exc:
            raise _fail(str(exc), 1) from None
        except OSError as exc:
            raise _fail(
                f"cannot repair the quota ledger {ledger.path}: {exc.strerror or exc}", 1
            ) from None
        if args.json:
            print(json.dumps(done, indent=2))
        else:
            print(
                f"replaced the damaged quota ledger ({done['damaged']}); the old file is kept as {done['kept']}. "
                f"Counted as spent: {done['rest_calls_today']} REST call(s) today, {human_bytes(done['s3_bytes_month'])} of flat files this month"
            )
        return 0
    try:
        snap = ledger.snapshot()
    except LedgerError as exc:
        raise _fail(str(exc), 1) from None
    if args.json:
        print(json.dumps(snap, indent=2))
        return 1 if snap.get("damaged") else 0
    if snap.get("damaged"):
        raise _fail(snap["damaged"], 1)

    def of(used: int, limit: int, fmt: Any = str) -> str:
        return f"{fmt(used)} of {fmt(limit)}" if limit else f"{fmt(used)} (no limit)"

    print(
        f"REST calls this minute   {of(snap['rest_calls_minute'], snap['rest_calls_per_minute'])}   (last 60 s)"
    )
    print(
        f"REST calls today         {of(snap['rest_calls_today'], snap['rest_calls_per_day'])}   (UTC day {snap['day']}, resets {snap['day_resets']})"
    )
    print(
        f"flat-file bytes          {of(snap['s3_bytes_month'], snap['s3_bytes_per_month'], human_bytes)} in {snap['s3_files_month']} file(s)   (UTC month {snap['month']})"
    )
    if snap["throttled_24h"] or snap["refused_24h"]:
        print(
            f"last 24 h                {snap['throttled_24h']} answered 429 by the server, {snap['refused_24h']} refused here to stay within the limits"
        )
    return 0
