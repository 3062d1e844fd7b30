"""`massive heal SESSION [--dry-run] [--json]`: fetch what a recording missed back into it.

The heal runs in this process (no fetcher service needed), against the same quota ledger as every
other process, and prints one line per span on stderr while it fetches. The rows go into the
recording's healed layer and audit.json (mesh/fetcher/heal.py, docs/fetcher.md "Healing a
recording"); every reader of the recording sees them from then on, unless asked for
`--capture-only`. Exit codes: 0 healed (or nothing to heal), 1 the heal failed (one line), 2 bad
usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from mesh.commandline import BAD_USAGE, FAILED, CliError, load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers
    from mesh.fetcher.heal import HealReport

EPILOG = """\
examples:
  massive heal demo --dry-run
  massive heal demo
  massive heal demo --json
see docs/fetcher.md, "Healing a recording\""""


def register(subparsers: Subparsers) -> None:
    heal = subparsers.add_parser(
        "heal",
        help="fetch the rows a recording missed (its reconciliation, or its gaps) into its healed layer",
        description="Fetch over REST, within the quota, the trades and quotes a recording is missing: the "
        "missing spans of its stored reconciliation (`massive reconcile`), or, if it has none, the gaps "
        "ingest reported while it recorded. New rows go to recordings/NAME/healed/ and audit.json; "
        "readers include them unless given --capture-only.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    heal.add_argument("session", metavar="SESSION", help="the recording's NAME (or folder)")
    heal.add_argument(
        "--dry-run", action="store_true", help="show the spans and the cost; spend nothing"
    )
    heal.add_argument("--json", action="store_true", help="machine-readable output (the report)")
    heal.set_defaults(func=cmd_heal)


def cmd_heal(args: argparse.Namespace) -> int:
    from mesh.datasets import DatasetError
    from mesh.fetcher.errors import FetchError
    from mesh.fetcher.heal import heal

    if not args.session.strip():
        raise CliError("give a recording NAME (see `massive data list`)", BAD_USAGE)
    config = load_config()
    try:
        report = heal(args.session, config, dry_run=args.dry_run, progress=_progress)
    except (FetchError, DatasetError) as exc:  # a damaged file of the recording: said, not raised
        raise CliError(str(exc), FAILED) from None
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _say(report)
    return 0


def _progress(fraction: float, message: str) -> None:
    print(f"heal: {fraction:4.0%} {message}", file=sys.stderr, flush=True)


def _say(report: HealReport) -> None:
    from mesh.times import iso

    verb = "to heal" if report.dry_run else "healed"
    if report.spans:
        print(f"{'SYMBOL':<10} {'KIND':<7} {'FROM (UTC)':<27} {'TO (UTC)':<27} {'ROWS':>9}")
    for span in report.spans:
        print(
            f"{span.symbol:<10} {span.kind:<7} {iso(span.from_ns) or '-':<27} "
            f"{iso(span.to_ns) or '-':<27} {span.rows:>9,}"
        )
    for span in report.unhealed:
        print(
            f"{span.symbol:<10} {span.kind:<7} {iso(span.from_ns) or '-':<27} "
            f"{iso(span.to_ns) or '-':<27} {'unhealed':>9}"
        )
    if report.spans:
        print(f"\n{len(report.spans)} span(s) {verb} (from the {report.spans_from})")
    for path in report.removed:
        print(f"removed {path}, left by a heal that did not finish")
    print(report.message)
    if report.reconcile_message:
        print(f"{report.session}: {report.reconcile_message}")
