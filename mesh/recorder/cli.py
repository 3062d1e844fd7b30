"""`massive record start NAME [--symbols A,B] | stop | status [--json]`: drive the recorder.

The commands go to the running recorder over the control channel (the TUI sends the same ones),
so a recording lives as long as the recorder process, not as long as this shell command.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from mesh import client, control
from mesh.commandline import load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers

SERVICE = "recorder"


def register(subparsers: Subparsers) -> None:
    record = subparsers.add_parser(
        "record",
        help="start, stop and inspect recordings (the recorder service must be running)",
        description="Control the recorder: sessions are written to MESH_DATA_DIR/recordings/<NAME>/ as Parquet.",
    )
    sub = record.add_subparsers(dest="record_command", required=True, metavar="ACTION")

    start = sub.add_parser("start", help="start recording NAME (an existing NAME is appended to)")
    start.add_argument(
        "name", metavar="NAME", help="session name: letters, digits, '.', '_' and '-'"
    )
    start.add_argument("--symbols", metavar="A,B", help="record only these symbols (default: all)")
    start.add_argument("--json", action="store_true", help="machine-readable output")
    start.set_defaults(func=cmd_start)

    stop = sub.add_parser("stop", help="finish the current recording (Parquet, bars, manifest)")
    stop.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for the last slice to be written (default 60)",
    )
    stop.add_argument("--json", action="store_true", help="machine-readable output")
    stop.set_defaults(func=cmd_stop)

    status = sub.add_parser("status", help="the current or last recording, with live counters")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)


def cmd_start(args: argparse.Namespace) -> int:
    config = load_config()
    report = client.call(
        SERVICE,
        "start",
        {"name": args.name, "symbols": args.symbols},
        config=config,
        timeout=10.0,
        busy_wait=control.BUSY_WAIT,
    )
    _print(report, args.json, f"recording {args.name!r}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    config = load_config()
    report = client.call(SERVICE, "stop", config=config, timeout=5.0, busy_wait=control.BUSY_WAIT)
    deadline = time.monotonic() + args.wait
    while (report.get("session") or {}).get("state") == "stopping" and time.monotonic() < deadline:
        time.sleep(0.2)
        report = client.call(SERVICE, "status", config=config, busy_wait=control.BUSY_WAIT)
    session = report.get("session") or {}
    _print(report, args.json, f"recording {session.get('session')!r} {session.get('state')}")
    return 0 if session.get("state") == "stopped" else 1


def cmd_status(args: argparse.Namespace) -> int:
    report = client.call(SERVICE, "status", config=load_config(), busy_wait=control.BUSY_WAIT)
    session = report.get("session")
    headline = "not recording" if not session else f"{session['session']}: {session['state']}"
    _print(report, args.json, headline)
    return 1 if session and session.get("state") == "failed" else 0


def _size(nbytes: int) -> str:
    """`234.5 MB` (decimal units, like `du --si`), and the exact count for small sizes."""
    if nbytes < 10_000:
        return f"{nbytes:,} bytes"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes:,} bytes"


def _print(report: dict[str, Any], as_json: bool, headline: str) -> None:
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return
    print(headline)
    session = report.get("session")
    if session:
        rows = session.get("rows_total") or {}
        print(f"  location   {session.get('location')}")
        print(
            f"  symbols    {','.join(session['symbols_requested']) if session.get('symbols_requested') else 'all'} ({session.get('symbols', 0)} seen)"
        )
        print(
            f"  duration   {session.get('duration_s', 0):.1f} s   events/s {report.get('events_per_s', 0):,.0f}"
        )
        print(
            f"  this run   {sum(session.get('rows', {}).values()):,} rows to the write-ahead log, {session.get('rows_promoted', 0):,} promoted"
        )
        stored = session.get("bytes_stored", session.get("bytes_written", 0))
        print(
            f"  stored     quotes {rows.get('quotes', 0):,}  trades {rows.get('trades', 0):,}  gaps {rows.get('gaps', 0):,}  files {session.get('files', 0)}  {_size(stored)} on disk"
        )
        depth = session.get("wal_depth", {})
        print(
            f"  WAL        {depth.get('segments', 0)} segment(s) waiting ({_size(session.get('wal_bytes_on_disk', 0))}), {depth.get('unsynced_bytes', 0):,} bytes not yet fsync'd"
        )
        if session.get("first_event"):
            print(f"  events     {session['first_event']} .. {session['last_event']}")
        if session.get("error"):
            print(f"  ERROR      {session['error']}")
    dropped = report.get("dropped", {})
    lost = (
        sum(dropped.get("malformed", {}).values())
        + dropped.get("unexpected", 0)
        + dropped.get("rejected", 0)
        + dropped.get("missing_on_bus", 0)
    )
    if lost:
        print(f"  not kept   {lost} message(s): {json.dumps(dropped)}")
