"""`massive config [--json]`: the effective configuration and where each value came from.

Secrets show as `<set>` (mesh.config.Secret); the simulator's public demo values show as they are.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from mesh.commandline import load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers


def register(subparsers: Subparsers) -> None:
    cfg = subparsers.add_parser(
        "config",
        help="print the effective configuration and where each value came from (secrets redacted)",
    )
    cfg.add_argument("--json", action="store_true", help="machine-readable output")
    cfg.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    config = load_config()
    if args.json:
        print(json.dumps(config.as_json(), indent=2))
    else:
        rows = config.as_table()
        width = max(len(r[0]) for r in rows)
        for var, value, source in rows:
            print(f"{var:<{width}}  {value:<40}  [{source}]")
    return 0
