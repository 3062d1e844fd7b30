"""The two bounded buffers around the sender thread, counted in rows so memory stays bounded.

- `ChunkQueue`: between the bus reader and the sender. When kdb+ is slow or away it fills up; then
  the oldest rows are dropped (and counted), so that once kdb+ is back it receives the freshest
  data and the bus reader never waits. `massive kdb load` instead waits for room (lossless).
- `ReplayBuffer`: messages written to the socket since the last confirmed round trip. An async
  send to a dead peer can "succeed", so these are sent again after a reconnect: delivery is
  at-least-once, and a consumer that must not see duplicates keys on (`sym`, `sequence`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any


@dataclass
class Chunk:
    """Rows for one q table: batch field name -> `rows` values (lists or numpy arrays)."""

    table: str
    columns: dict[str, Any]
    rows: int


class ChunkQueue:
    """A FIFO of chunks holding at most `max_rows` rows (one larger chunk is let in when empty)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows = 0
        self.dropped: Counter[str] = Counter()  # table -> rows dropped
        self._items: deque[Chunk] = deque()
        self._cond = threading.Condition()

    def put(self, chunk: Chunk, *, block: bool = False, timeout: float | None = None) -> bool:
        """Queue `chunk`. Without `block`, drop the oldest rows to make room (never waits).

        With `block`, wait up to `timeout` for room; returns False if there was none.
        """
        with self._cond:
            if block:
                deadline = None if timeout is None else time.monotonic() + timeout
                while self._items and self.rows + chunk.rows > self.max_rows:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining if remaining is not None else 0.5)
            else:
                while self._items and self.rows + chunk.rows > self.max_rows:
                    old = self._items.popleft()
                    self.rows -= old.rows
                    self.dropped[old.table] += old.rows
            self._items.append(chunk)
            self.rows += chunk.rows
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Chunk | None:
        """The oldest chunk, waiting up to `timeout` seconds; None if there is none."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
                if not self._items:
                    return None
            chunk = self._items.popleft()
            self.rows -= chunk.rows
            self._cond.notify_all()
            return chunk

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Sent:
    """One message on the wire, kept until a round trip confirms it."""

    table: str
    rows: int
    message: bytes


class ReplayBuffer:
    """Messages sent since the last confirmed round trip, oldest first."""

    def __init__(self) -> None:
        self._items: deque[Sent] = deque()
        self.rows = 0
        self.bytes = 0

    def add(self, sent: Sent) -> None:
        self._items.append(sent)
        self.rows += sent.rows
        self.bytes += len(sent.message)

    def confirm(self) -> list[Sent]:
        """Everything in the buffer has been processed by kdb+: forget it and return it."""
        items = list(self._items)
        self._items.clear()
        self.rows = self.bytes = 0
        return items

    def pending(self) -> list[Sent]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)
