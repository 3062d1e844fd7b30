"""`massive`: run a service, watch the bus, check the mesh, and drive services from the shell.

Every subcommand reads the same configuration (mesh.config) and talks to the mesh only through
the bus, so the shell, the TUI and user scripts all see one truth.

The subcommands come from an explicit list of command modules, `COMMANDS`, each with
`register(subparsers)` (mesh.commandline.CommandModule). Nothing imports this module: command
modules take what they share (CliError, load_config, the parser class) from mesh.commandline.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mesh import (
    auth,
    auth_cli,
    config_cli,
    control,
    data_cli,
    heal_cli,
    paper_cli,
    reconcile_cli,
    run_cli,
    status_cli,
    tap_cli,
)
from mesh.backtest import cli as backtest_cli
from mesh.commandline import CliError, CommandModule, OneLineParser
from mesh.fetcher import cli as fetcher_cli
from mesh.files import StorageError
from mesh.kdb import cli as kdb_cli
from mesh.recorder import cli as recorder_cli

# Every `massive` subcommand, in the order `massive --help` lists them. A new command is a module
# with `register(subparsers)` added here (and to the import contracts' list in pyproject.toml).
COMMANDS: tuple[CommandModule, ...] = (
    run_cli,  # run NAME
    tap_cli,  # tap [PREFIX...]
    status_cli,  # status
    config_cli,  # config
    recorder_cli,  # record start|stop|status
    fetcher_cli,  # fetch, quota
    reconcile_cli,  # reconcile SESSION
    heal_cli,  # heal SESSION
    backtest_cli,  # backtest
    paper_cli,  # paper start|stop|status|compare
    kdb_cli,  # kdb load|schema
    data_cli,  # data list|show|migrate
    auth_cli,  # auth add|list|revoke
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="massive",
        description="massive-mesh: Massive.com market data through a ZeroMQ process mesh.",
        epilog="Start the whole mesh with `honcho start`; configuration comes from the environment, .env and api_keys.properties (see `massive config`).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"massive: {exc}", file=sys.stderr)
        return exc.code
    except control.ControlError as exc:
        print(f"massive: {exc}", file=sys.stderr)
        return 1
    except auth.AuthError as exc:  # a key that cannot be made or read (MESH_KEY_FILE, state/auth)
        print(f"massive: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:  # MESH_DATA_DIR=s3://... that cannot be reached or used
        print(f"massive: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `massive ... | head`: the reader has gone, and that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
