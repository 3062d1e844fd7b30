"""Liveness and lag from heartbeats: one rule, used by the bus, `massive status` and the TUI.

A service beats once per `interval` seconds; one that has missed 3 beats is down.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

MISSED_BEATS_FOR_DOWN = 3
GRACE_SECONDS = 0.5


def is_up(last_seen_ns: int, interval: float = 1.0, now_ns: int | None = None) -> bool:
    now = time.time_ns() if now_ns is None else now_ns
    return (now - last_seen_ns) / 1e9 <= MISSED_BEATS_FOR_DOWN * interval + GRACE_SECONDS


def age_seconds(last_seen_ns: int, now_ns: int | None = None) -> float:
    now = time.time_ns() if now_ns is None else now_ns
    return max(0.0, (now - last_seen_ns) / 1e9)


LAG_WARNING_S = 5.0  # ingest's events older than this (less a past session's offset) are lagging


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def ingest_lag_s(ingest: Mapping[str, Any], sim: Mapping[str, Any]) -> float | None:
    """Ingest's lag: its newest event's age (`last_event_age_s`) less how far behind the wall
    clock the sim plays (`clock_offset_s` of the sim's heartbeat), so a past session replayed
    days later is not lag. None when ingest has seen no event yet (or the counter is unreadable).
    """
    age = _number(ingest.get("last_event_age_s"))
    if age is None or age < 0:
        return None
    offset = _number(sim.get("clock_offset_s")) or 0.0
    return max(0.0, age - offset) if offset > 0 else age
