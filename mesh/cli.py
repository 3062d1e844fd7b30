"""`massive`: run a service, watch the bus, check the mesh, and drive services from the shell.

Every subcommand reads the same configuration (mesh.config) and talks to the mesh only through
the bus, so the shell, the TUI and user scripts all see one truth.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from mesh import auth, control
from mesh.argtypes import positive_float, positive_int
from mesh.config import Config, ConfigError

log = logging.getLogger("massive")

# service name -> module with `main(config, argv) -> int`; the Procfile runs `massive run NAME`
SERVICES: dict[str, str] = {
    "bus": "mesh.bus",
    "sim": "mesh.sim",
    "kdb": "mesh.kdb.service",
    "recorder": "mesh.recorder.service",
    "ingest": "mesh.ingest.service",
    "fetcher": "mesh.fetcher.service",
    "backtester": "mesh.backtest.service",
}


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 1 (2 for bad usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _load_config() -> Config:
    try:
        return Config.load()
    except ConfigError as exc:
        raise CliError(f"configuration: {exc}", 2) from None


# --- run -----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from mesh.service import setup_logging

    setup_logging()
    module = importlib.import_module(SERVICES[args.name])
    config = _load_config()
    return int(module.main(config, list(args.service_args)))


# --- tap -----------------------------------------------------------------------------------------


def cmd_tap(args: argparse.Namespace) -> int:
    import msgspec

    from mesh.client import Subscriber
    from mesh.wire import to_json_dict

    config = _load_config()
    encoder = msgspec.json.Encoder()
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    printed = 0
    out = sys.stdout.buffer
    with Subscriber(args.prefixes, args.endpoint or config.bus_sub, config=config) as sub:
        try:
            while args.count is None or printed < args.count:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                msg = sub.recv(timeout=remaining if remaining is not None else 1.0)
                if msg is None:
                    continue
                out.write(encoder.encode(to_json_dict(msg)) + b"\n")
                out.flush()
                printed += 1
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:
            return 0
    if sub.stats.malformed_total or sub.stats.gaps:
        print(
            f"tap: {printed} printed, {sub.stats.malformed_total} malformed skipped, {sub.stats.gaps} missing by sequence",
            file=sys.stderr,
        )
    return 0


# --- status --------------------------------------------------------------------------------------

KEY_COUNTERS = (
    "msgs_per_s",
    "events_per_s",
    "events",
    "connection",
    "reconnects",
    "rows",
    "malformed",
    "gaps",
    "dropped",
    "loop_lag_s",
    "control_rejected",
)


def _quiet(key: str, value: Any) -> bool:
    """Counters shown only when they say something: a loop lag under a second, no rejections."""
    return (key == "loop_lag_s" and isinstance(value, int | float) and value < 1) or (
        key == "control_rejected" and value == 0
    )


def cmd_status(args: argparse.Namespace) -> int:
    config = _load_config()
    if warning := config.auth_warning():
        print(f"warning: {warning}", file=sys.stderr)
    try:
        reply = control.request(
            config.bus_ctl, "bus", "services", timeout=args.timeout, keys=auth.client_keys(config)
        )
    except control.ControlError as exc:
        if args.json:
            print(json.dumps({"bus": {"up": False, "error": str(exc)}}))
        else:
            print(f"bus        DOWN   {exc}")
        return 1
    report: dict[str, Any] = reply.result
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(f"{'SERVICE':<11}{'UP':<6}{'STATE':<10}{'AGE':>6}  COUNTERS")
        for name, entry in report.items():
            counters = entry["counters"]
            shown = [
                f"{k}={counters[k]}"
                for k in KEY_COUNTERS
                if k in counters and not _quiet(k, counters[k])
            ] or [f"{k}={v}" for k, v in list(counters.items())[:6]]
            up = "up" if entry["up"] else "DOWN"
            detail = f"  ({entry['message']})" if entry.get("message") else ""
            print(
                f"{name:<11}{up:<6}{entry['state']:<10}{entry['age_s']:>5.1f}s  {' '.join(shown)}{detail}"
            )
    return 0 if all(entry["up"] for entry in report.values()) else 1


# --- config --------------------------------------------------------------------------------------


def cmd_config(args: argparse.Namespace) -> int:
    config = _load_config()
    if args.json:
        print(json.dumps(config.as_json(), indent=2))
    else:
        rows = config.as_table()
        width = max(len(r[0]) for r in rows)
        for var, value, source in rows:
            print(f"{var:<{width}}  {value:<40}  [{source}]")
    return 0


# --- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="massive",
        description="massive-mesh: Massive.com market data through a ZeroMQ process mesh.",
        epilog="Start the whole mesh with `honcho start`; configuration comes from the environment, .env and api_keys.properties (see `massive config`).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="run one service in the foreground (what each Procfile line calls)"
    )
    run.add_argument("name", choices=sorted(SERVICES), help="the service to run")
    run.add_argument(
        "service_args",
        nargs=argparse.REMAINDER,
        help="options for the service (see `massive run NAME --help`)",
    )
    run.set_defaults(func=cmd_run)

    tap = sub.add_parser(
        "tap",
        help="print bus messages as JSON lines",
        description="Print every bus message whose topic starts with one of PREFIX (all if none) as one JSON line: topic, type, header, payload.",
    )
    tap.add_argument(
        "prefixes",
        nargs="*",
        metavar="PREFIX",
        help="topic prefixes such as md.quote. or sys.heartbeat.",
    )
    tap.add_argument("--count", type=positive_int, help="stop after N messages")
    tap.add_argument("--seconds", type=positive_float, help="stop after S seconds")
    tap.add_argument("--endpoint", help="bus subscriber endpoint (default MESH_BUS_SUB)")
    tap.set_defaults(func=cmd_tap)

    status = sub.add_parser(
        "status", help="one-shot mesh health: each service up/down with key counters"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--timeout",
        type=positive_float,
        default=2.0,
        help="seconds to wait for the bus (default 2)",
    )
    status.set_defaults(func=cmd_status)

    cfg = sub.add_parser(
        "config",
        help="print the effective configuration and where each value came from (secrets redacted)",
    )
    cfg.add_argument("--json", action="store_true", help="machine-readable output")
    cfg.set_defaults(func=cmd_config)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


# Later modules add their subcommands here (record, fetch, quota, backtest, kdb).
EXTRA_COMMANDS: list[Callable[[Any], None]] = []

from mesh.recorder.cli import register as _register_record  # noqa: E402

EXTRA_COMMANDS.append(_register_record)

from mesh.kdb.cli import register as _register_kdb  # noqa: E402

EXTRA_COMMANDS.append(_register_kdb)

from mesh.backtest.cli import register as _register_backtest  # noqa: E402

EXTRA_COMMANDS.append(_register_backtest)

from mesh.fetcher.cli import register as _register_fetch  # noqa: E402

EXTRA_COMMANDS.append(_register_fetch)

from mesh.auth_cli import register as _register_auth  # noqa: E402

EXTRA_COMMANDS.append(_register_auth)


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
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `massive ... | head`: the reader has gone, and that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    # Import ourselves by name so that `python -m mesh.cli` and the `massive` script share one
    # module (and one CliError class) with the subcommand modules.
    from mesh.cli import main as _main

    sys.exit(_main())
