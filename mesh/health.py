"""Liveness from heartbeats: one rule, used by the bus, `massive status` and the TUI.

A service beats once per `interval` seconds; one that has missed 3 beats is down.
"""

from __future__ import annotations

import time

MISSED_BEATS_FOR_DOWN = 3
GRACE_SECONDS = 0.5


def is_up(last_seen_ns: int, interval: float = 1.0, now_ns: int | None = None) -> bool:
    now = time.time_ns() if now_ns is None else now_ns
    return (now - last_seen_ns) / 1e9 <= MISSED_BEATS_FOR_DOWN * interval + GRACE_SECONDS


def age_seconds(last_seen_ns: int, now_ns: int | None = None) -> float:
    now = time.time_ns() if now_ns is None else now_ns
    return max(0.0, (now - last_seen_ns) / 1e9)
