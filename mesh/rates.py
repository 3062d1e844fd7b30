"""Per-second rates for heartbeat counters, without per-event work: callers add counts in bulk."""

from __future__ import annotations

import time


class RateMeter:
    """Counts events and reports a rate over the last completed window (default 1 s)."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self.total = 0
        self._mark_time = time.monotonic()
        self._mark_total = 0
        self._rate = 0.0

    def add(self, n: int = 1) -> None:
        self.total += n

    @property
    def rate(self) -> float:
        now = time.monotonic()
        elapsed = now - self._mark_time
        if elapsed >= self.window:
            self._rate = (self.total - self._mark_total) / elapsed
            self._mark_time, self._mark_total = now, self.total
        return self._rate
