"""`massive tap [PREFIX...] [--count N] [--seconds S]`: print bus messages as JSON lines.

The reference extra subscriber: it sees the bus exactly as user code does, through
mesh.client.Subscriber, and says at the end what it skipped (malformed or missing by sequence).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from mesh.argtypes import positive_float, positive_int
from mesh.commandline import load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers


def register(subparsers: Subparsers) -> None:
    tap = subparsers.add_parser(
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


def cmd_tap(args: argparse.Namespace) -> int:
    import msgspec

    from mesh.client import Subscriber
    from mesh.wire import to_json_dict

    config = load_config()
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
