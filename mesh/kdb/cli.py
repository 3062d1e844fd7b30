"""`massive kdb ...`: `load DATASET` into a tickerplant/RDB, and `schema` to print the q tables.

Registered in mesh/cli.py through `register(subparsers)`. Kept import-light (PyKX, pyarrow and
rich load only when a command runs) so that `massive --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from mesh.argtypes import positive_int
from mesh.commandline import BAD_USAGE, CliError, load_config
from mesh.kdb.defaults import (
    DEFAULT_LOAD_BATCH_ROWS,
    DEFAULT_LOAD_FUNCTION,
    DEFAULT_LOAD_TIMEOUT_S,
)

if TYPE_CHECKING:
    from mesh.commandline import Subparsers


def register(subparsers: Subparsers) -> None:
    kdb = subparsers.add_parser(
        "kdb",
        help="kdb+: load a recorded or historical dataset, print the q schema",
        description="kdb+ tools. The live publisher is the `kdb` service (`massive run kdb`).",
    )
    sub = kdb.add_subparsers(dest="kdb_command", required=True, metavar="COMMAND")

    load = sub.add_parser(
        "load",
        help="push a recorded or historical dataset into kdb+",
        description="Push a dataset into a kdb+ tickerplant (or an RDB/HDB process) with async calls of (table; column list), in batches, confirmed at the end. "
        "DATASET is a Parquet file or folder, or a NAME under $MESH_DATA_DIR/recordings or $MESH_DATA_DIR/historical.",
    )
    load.add_argument(
        "dataset", metavar="DATASET", help="path, or recording/historical dataset name"
    )
    load.add_argument(
        "--batch-rows",
        type=positive_int,
        default=DEFAULT_LOAD_BATCH_ROWS,
        help=f"rows per call (default {DEFAULT_LOAD_BATCH_ROWS})",
    )
    load.add_argument(
        "--target",
        metavar="HOST:PORT",
        help="where to send (default KDB_TICKERPLANT); credentials come only from KDB_TICKERPLANT, and only for its own host:port",
    )
    load.add_argument(
        "--function",
        default=DEFAULT_LOAD_FUNCTION,
        help=f"q function called with (table; columns) (default {DEFAULT_LOAD_FUNCTION}; `upd` for an RDB)",
    )
    load.add_argument(
        "--interval",
        help="bar interval of historical files (1s, 1m, 5m, 15m, 30m, 1h, 1d; default: from the timestamps)",
    )
    load.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_LOAD_TIMEOUT_S,
        help=f"give up after kdb+ takes nothing for this many seconds (default {DEFAULT_LOAD_TIMEOUT_S:g})",
    )
    load.add_argument(
        "--capture-only",
        action="store_true",
        help="a recording's capture alone, without the rows a heal added (default: both)",
    )
    load.set_defaults(func=cmd_load)

    schema = sub.add_parser(
        "schema",
        help="print the q table definitions (q/sym.q) or the column mapping",
        description="Print the kdb+ tables the publisher writes.",
    )
    schema.add_argument(
        "--mapping", action="store_true", help="print record field -> q column -> q type instead"
    )
    schema.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from mesh.kdb.schema import mapping_rows, render_sym_q

    if args.mapping:
        for table, field, column, qtype, note in mapping_rows():
            print(f"{table:<6} {field:<13} -> {column:<13} {qtype:<10} {note}".rstrip())
    else:
        print("\n".join(render_sym_q()))
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    try:
        return _load(args)
    except CliError as exc:
        print(f"massive kdb load: {exc}", file=sys.stderr)
        return exc.code


def _load(args: argparse.Namespace) -> int:
    from mesh.datasets import storage
    from mesh.kdb.ipc import QIPCError
    from mesh.kdb.load import DatasetError, LoadError, Source, discover, load, resolve

    config = load_config()
    target = _target(args.target, config.kdb_tickerplant)
    try:
        folder = storage.local_datasets(config.data_location, config.data_dir, args.dataset)
        path = resolve(args.dataset, folder, capture_only=args.capture_only)
        sources = discover(path)
    except DatasetError as exc:
        raise CliError(str(exc)) from None
    total = sum(s.rows for s in sources)
    print(
        f"loading {total:,} rows from {path} ({', '.join(f'{s.path.name}: {s.table}' for s in sources)}) into kdb+ at {target.host}:{target.port}",
        file=sys.stderr,
    )

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    start = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("kdb load", total=total)

        def advance(source: Source, rows: int) -> None:
            bar.update(task, advance=rows, description=source.table)

        try:
            confirmed = load(
                path,
                target,
                batch_rows=args.batch_rows,
                function=args.function,
                interval=args.interval,
                timeout=args.timeout,
                progress=advance,
                sources=sources,
            )
        except (QIPCError, LoadError, DatasetError) as exc:
            raise CliError(str(exc)) from None
    seconds = time.monotonic() - start
    rows = sum(confirmed.values())
    detail = ", ".join(f"{table} {n:,}" for table, n in confirmed.items())
    print(
        f"loaded {rows:,} rows ({detail}) into kdb+ at {target.host}:{target.port} in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)"
    )
    return 0


def _target(spec: str | None, configured: Any) -> Any:
    from mesh.config import KdbTarget

    if spec is None:
        if configured is None:
            raise CliError(
                "no kdb+ target: set KDB_TICKERPLANT=host:port[:user:password] or pass --target host:port",
                BAD_USAGE,
            )
        return configured
    host, _, port = spec.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(
            f"--target {spec!r}: expected host:port (credentials go in KDB_TICKERPLANT, never on the command line)",
            BAD_USAGE,
        )
    if configured is not None and (configured.host, configured.port) == (host, int(port)):
        return configured  # the same endpoint: keep its credentials
    return KdbTarget(host, int(port))
