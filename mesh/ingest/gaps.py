"""What a reconnect cost: per symbol, the last event before the drop and the first after it.

Massive's per-symbol sequence numbers increase but are not contiguous, so a gap cannot be seen
inside a healthy stream; it can be bounded across a reconnect. On the hot path the tracker only
remembers, per (kind, symbol), the last batch that carried the symbol (one C-level dict update per
batch); the (sequence, time) of its last event there is looked up once, when the stream breaks.
After a reconnect it reports a `Gap` for every symbol whose stream resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from mesh.schema import Gap

if TYPE_CHECKING:
    import numpy as np

IntColumn: TypeAlias = "Sequence[int] | np.ndarray[tuple[int], np.dtype[np.int64]]"  # a list, or the scanner's array

# After a reconnect, symbols that have not resumed within this many seconds are forgotten.
PENDING_SECONDS = 120.0


class GapTracker:
    def __init__(self) -> None:
        # kind -> symbol -> (symbols, sequences, times) columns of the last batch with that symbol
        # (lists, or numpy arrays from the scanner)
        self._last: dict[str, dict[str, tuple[Sequence[str], IntColumn, IntColumn]]] = {"quote": {}, "trade": {}}
        self._pending: dict[str, dict[str, tuple[int, int]]] = {"quote": {}, "trade": {}}
        self._pending_since_ns = 0
        self.reason = ""
        self.detected = 0

    def disconnected(self, reason: str, now_ns: int) -> None:
        """The stream broke: everything seen so far is what the next events must be compared with."""
        for kind in ("quote", "trade"):
            pending = self._pending[kind]
            for symbol, (symbols, sequences, times) in self._last[kind].items():
                i = len(symbols) - 1 - list(reversed(symbols)).index(symbol)
                pending[symbol] = (int(sequences[i]), int(times[i]))  # plain ints, whatever the column type
            self._last[kind].clear()
        self._pending_since_ns = now_ns
        self.reason = reason

    def observe(self, kind: str, symbols: Sequence[str], sequences: IntColumn, times: IntColumn) -> list[Gap]:
        """Record a batch's columns; returns gaps for symbols resuming after a reconnect."""
        last = self._last[kind]
        pending = self._pending[kind]
        gaps: list[Gap] = []
        if pending:
            first = dict(zip(reversed(symbols), reversed(list(zip(map(int, sequences), map(int, times), strict=True))), strict=True))
            for symbol in pending.keys() & first.keys():
                before_seq, before_ts = pending.pop(symbol)
                after_seq, after_ts = first[symbol]
                gaps.append(Gap(symbol=symbol, kind=kind, from_sequence=before_seq, to_sequence=after_seq, ts_from=before_ts, ts_to=after_ts, reason=self.reason))
            if len(times) and times[-1] - self._pending_since_ns > PENDING_SECONDS * 1e9:
                pending.clear()
        last.update(dict.fromkeys(symbols, (symbols, sequences, times)))  # no tuple per event, unlike zip
        self.detected += len(gaps)
        return gaps
