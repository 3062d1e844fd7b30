"""`massive run NAME [OPTIONS]`: run one service in the foreground (what each Procfile line calls).

Each service module has `main(config, argv) -> int` and parses its own options, so
`massive run NAME --help` shows them. Service modules are imported only when one runs, which
keeps `massive --help` fast and keeps the command line out of the services' import graph.
"""

from __future__ import annotations

import argparse
import importlib
from typing import TYPE_CHECKING

from mesh.commandline import load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers

# service name -> module with `main(config, argv) -> int`; the Procfile runs `massive run NAME`
SERVICES: dict[str, str] = {
    "bus": "mesh.bus",
    "sim": "mesh.sim",
    "kdb": "mesh.kdb.service",
    "recorder": "mesh.recorder.service",
    "ingest": "mesh.ingest.service",
    "fetcher": "mesh.fetcher.service",
    "backtester": "mesh.backtest.service",
    "strategy": "mesh.paper.service",
}


def register(subparsers: Subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="run one service in the foreground (what each Procfile line calls)"
    )
    run.add_argument("name", choices=sorted(SERVICES), help="the service to run")
    run.add_argument(
        "service_args",
        nargs=argparse.REMAINDER,
        help="options for the service (see `massive run NAME --help`)",
    )
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from mesh.service import setup_logging

    setup_logging()
    module = importlib.import_module(SERVICES[args.name])
    config = load_config()
    return int(module.main(config, list(args.service_args)))
