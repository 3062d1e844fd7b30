"""`massive status [--json]`: one-shot mesh health, each service up or down with key counters.

One request to the bus, which knows every service that has registered and when it last beat.
Exit 0 when every service is up, 1 otherwise (so scripts can wait on it). Ingest's lag is its
newest event's age less the sim's `clock_offset_s` (mesh.health.ingest_lag_s), so a sim replaying
a past session does not make ingest look behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from mesh import auth, control, health
from mesh.argtypes import positive_float
from mesh.commandline import load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers

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


def register(subparsers: Subparsers) -> None:
    status = subparsers.add_parser(
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


def _quiet(key: str, value: Any) -> bool:
    """Counters shown only when they say something: a loop lag under a second, no rejections."""
    return (key == "loop_lag_s" and isinstance(value, int | float) and value < 1) or (
        key == "control_rejected" and value == 0
    )


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config()
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
    if isinstance(report.get("ingest"), dict):
        sim = report.get("sim") or {}
        report["ingest"]["lag_s"] = health.ingest_lag_s(
            report["ingest"].get("counters") or {}, sim.get("counters") or {}
        )
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
            if name == "ingest" and entry.get("lag_s") is not None:
                lag = entry["lag_s"]
                shown.append(f"lag={lag:.1f}s" + (" LAGGING" if lag > health.LAG_WARNING_S else ""))
            detail = f"  ({entry['message']})" if entry.get("message") else ""
            print(
                f"{name:<11}{up:<6}{entry['state']:<10}{entry['age_s']:>5.1f}s  {' '.join(shown)}{detail}"
            )
    return 0 if all(entry["up"] for entry in report.values()) else 1
