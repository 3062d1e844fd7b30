"""What the WebSocket feed streams from: a pluggable source of event steps.

A source is an async iterator of `Step`s, each paced by the source itself (history playback
ticks with the sim's clock, the synthetic generator with the wall clock, a replay sleeps by the
recorded gaps). A step renders
into a `Batch` for a given delay (0 for `/stocks`, 15 minutes for `/delayed/stocks`), and the
feed filters each batch per connection by the integer kind and symbol codes it carries.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mesh.sim import frames


class Codes:
    """An append-only name <-> small integer table, shared by sources and subscriptions."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        for name in names:
            self.code(name)

    def code(self, name: str) -> int:
        found = self.index.get(name)
        if found is not None:
            return found
        with self._lock:
            if name not in self.index:
                self.index[name] = len(self.names)
                self.names.append(name)
            return self.index[name]

    def __len__(self) -> int:
        return len(self.names)


# Stock channels Massive serves; the sim generates T, Q, A and AM.
KINDS = Codes(["T", "Q", "A", "AM", "LULD", "NOI", "FMV", "LV"])
SYMBOLS = Codes()


@dataclass
class Batch:
    """Rendered events: loose (individually encoded) ones first, then fixed-width rows."""

    rows: np.ndarray  # (n, width) uint8; each row one JSON object followed by ","
    row_kinds: np.ndarray  # kind code per row
    row_symbols: np.ndarray  # symbol code per row
    loose: list[bytes] = field(default_factory=list)
    loose_kinds: list[int] = field(default_factory=list)
    loose_symbols: list[int] = field(default_factory=list)
    row_kind_set: frozenset[int] | None = None  # kinds among the rows, if the source knows

    def kinds_present(self) -> frozenset[int]:
        if self.row_kind_set is None:
            self.row_kind_set = frozenset(np.unique(self.row_kinds).tolist())
        return self.row_kind_set

    def __len__(self) -> int:
        return len(self.rows) + len(self.loose)


EMPTY_ROWS = np.empty((0, 1), np.uint8)


class Step(Protocol):
    """One step of a source; `render` is called at most once per distinct delay."""

    def render(self, delay_ms: int) -> Batch: ...


class Source(Protocol):
    def steps(self) -> AsyncIterator[Step]: ...


_TIME_FIELDS = ("t", "s", "e", "trft")


class DictStep:
    """Events given as Massive event dicts (a replayed frame, a test); rendered with msgspec."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def render(self, delay_ms: int) -> Batch:
        loose, kinds, symbols = [], [], []
        for event in self.events:
            if delay_ms:
                event = {
                    k: (v - delay_ms if k in _TIME_FIELDS and isinstance(v, int) else v)
                    for k, v in event.items()
                }
            loose.append(frames.encode_event(event))
            kinds.append(KINDS.code(str(event.get("ev", ""))))
            symbols.append(
                SYMBOLS.code(str(event.get("sym") or event.get("T") or event.get("pair") or ""))
            )
        empty = np.empty(0, np.int64)
        return Batch(EMPTY_ROWS, empty, empty, loose, kinds, symbols)
