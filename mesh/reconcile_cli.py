"""`massive reconcile SESSION`: how complete a recording is, against Massive's own trades and quotes.

Runs in this process against the same quota ledger as every other process (no service needed).
It says which method it picked and why on stderr, prints a table per symbol and kind — rows
recorded, rows at Massive, matched, missing, extra, differing, completeness — and the missing
spans as New York clock times; `--json` prints the stored result instead (audit.json's
`reconciliation`), `--dry-run` the plan and its cost without spending anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from mesh.commandline import BAD_USAGE, FAILED, CliError, load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers
    from mesh.datasets.audit import Reconciliation

EPILOG = """\
examples:
  massive reconcile my-session
  massive reconcile my-session --symbols AAPL,MSFT --method rest
  massive reconcile my-session --dry-run
see docs/fetcher.md, "Reconciling a recording\""""


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "reconcile",
        help="compare a recording with Massive's trades and quotes: what it is missing, row for row",
        description="Compare the recording SESSION with Massive's own trades and quotes over the span it recorded (REST /v3/trades, /v3/quotes or the day's trades_v1/quotes_v1 flat files), row for row, and store the result in the session's audit.json. auto uses flat files for a large span of a completed day (more than 5 symbols or 30 minutes), REST otherwise, within the quota.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("session", metavar="SESSION", help="a recording's name (or path)")
    parser.add_argument(
        "--symbols",
        metavar="A,B",
        help="only these symbols (default: the ones the session subscribed to)",
    )
    parser.add_argument(
        "--method",
        default="auto",
        choices=("auto", "rest", "flat_file"),
        help="where to read Massive's rows: auto (default), rest or flat_file",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be compared, how, and what it costs; spend nothing",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the stored result (or the plan) as JSON"
    )
    parser.set_defaults(func=cmd_reconcile)


def cmd_reconcile(args: argparse.Namespace) -> int:
    from mesh.datasets import DatasetError
    from mesh.fetcher.errors import BadRequest, FetchError, QuotaExceeded
    from mesh.fetcher.ledger import LedgerError
    from mesh.fetcher.reconcile import reconcile

    if not args.session.strip():
        raise CliError("give a recording's name (see `massive data list`)", BAD_USAGE)
    symbols = None
    if args.symbols is not None:
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
        if not symbols:
            raise CliError("--symbols: give at least one ticker, e.g. AAPL,MSFT", BAD_USAGE)
    config = load_config()
    progress = _Progress(enabled=sys.stderr.isatty() and not args.json)
    try:
        report = reconcile(
            args.session,
            config,
            symbols=symbols,
            method=args.method,
            dry_run=args.dry_run,
            progress=progress,
        )
    except DatasetError as exc:
        raise CliError(str(exc), FAILED) from None
    except BadRequest as exc:
        raise CliError(str(exc), BAD_USAGE) from None
    except QuotaExceeded as exc:
        raise CliError(f"quota: {exc}", FAILED) from None
    except (FetchError, LedgerError) as exc:
        raise CliError(str(exc), FAILED) from None
    finally:
        progress.close()
    plan = report.plan
    if args.dry_run:
        if args.json:
            print(json.dumps(plan.as_dict(), indent=2))
        else:
            print(f"session   {report.session}")
            print("\n".join(plan.lines()))
        return 0 if plan.fits else FAILED
    print(f"method: {plan.method.value} ({plan.reason})", file=sys.stderr)
    result = report.reconciliation
    assert result is not None
    if args.json:
        import msgspec

        print(json.dumps(msgspec.to_builtins(result), indent=2))
        return 0
    for line in table(report.session, result):
        print(line)
    return 0


def table(session: str, result: Reconciliation) -> list[str]:
    """The human-readable result: the table, the missing spans, one closing line."""
    from mesh import calendar
    from mesh.datasets.audit import MAX_SPANS_LISTED, Method
    from mesh.fetcher.ledger import human_bytes
    from mesh.fetcher.reconcile import clock

    cost = (
        f"{result.cost.rest_calls} REST call(s)"
        if result.method is Method.REST
        else f"{human_bytes(result.cost.s3_bytes)} of flat files downloaded"
    )
    first, last = calendar.et_date_of_ns(result.from_ns), calendar.et_date_of_ns(result.to_ns)
    span = f"{first} {clock(result.from_ns)}–{'' if last == first else f'{last} '}{clock(result.to_ns)}"
    out = [f"{session}: {span} ET compared by {result.method.value} ({cost})"]
    head = (
        "symbol",
        "kind",
        "recorded",
        "at Massive",
        "matched",
        "missing",
        "extra",
        "differing",
        "complete",
    )
    rows = [
        (
            r.symbol, r.kind.value, f"{r.recorded:,}", f"{r.reference:,}", f"{r.matched:,}",
            f"{r.missing:,}", f"{r.extra:,}", f"{r.differing:,}", f"{r.completeness_pct:.2f}%",
        )
        for r in result.results
    ]  # fmt: skip
    widths = [max(len(str(x)) for x in column) for column in zip(head, *rows, strict=True)]
    for row in (head, *rows):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    spans = [(r, s) for r in result.results for s in r.missing_spans]
    if spans:
        out.append("missing spans:")
        out += [
            f"  {r.symbol} {r.kind.value}  {clock(s.from_ns)}–{clock(s.to_ns)}  {s.rows:,} row(s)"
            for r, s in spans
        ]
    out += [
        f"  {r.symbol} {r.kind.value}: only the first {len(r.missing_spans):,} spans are listed"
        for r in result.results
        if len(r.missing_spans) >= MAX_SPANS_LISTED
    ]
    missing = sum(r.missing for r in result.results)
    differing = sum(r.differing for r in result.results)
    if result.complete:
        out.append("complete: the recording holds every row Massive has for its span")
    else:
        out.append(
            f"incomplete: {missing:,} row(s) missing, {differing:,} differing (stored in audit.json; `massive heal` puts missing rows back)"
        )
    return out


class _Progress:
    """One rewritten line on stderr (a terminal only) for a reconcile that takes a while."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._shown = False
        self._last = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        sys.stderr.write(f"\r{fraction * 100:3.0f}% {message[:70]:<70}")
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\r" + " " * 76 + "\r")
            sys.stderr.flush()
