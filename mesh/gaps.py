"""What a break in a stream cost: per symbol, the last event before the break and the first after it.

Massive's per-symbol sequence numbers increase but are not contiguous, so a gap cannot be seen
inside a healthy stream; it can be bounded across a break (a reconnect, a crashed process, messages
lost on the bus). On the hot path the tracker only remembers, per (kind, symbol), the last batch
that carried the symbol (one C-level dict update per batch); the (sequence, time) of its last event
there is looked up only when the stream breaks or a snapshot is taken. After a break it reports a
`Gap` for every symbol whose stream resumes.

Ingest uses it for its own reconnects; the recorder keeps one per source over what it recorded, so
that a break anywhere upstream (ingest's crash, the bus's restart, its own) is bounded in the
recording (see docs/recorder.md, "Gaps").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from mesh.schema import Gap

if TYPE_CHECKING:
    import numpy as np

IntColumn: TypeAlias = (
    "Sequence[int] | np.ndarray[tuple[int], np.dtype[np.int64]]"  # a list, or a numpy array
)
KINDS = ("quote", "trade")

# After a break, symbols that have not resumed within this many seconds are forgotten (ingest's
# default; a tracker built with forget_after=None remembers them until asked, see `unresolved`).
PENDING_SECONDS = 120.0


class Position(NamedTuple):
    """The last event known of one symbol: where a gap after it would start."""

    sequence: int
    ts: int  # ns UTC (the event's own time)


class Pending(NamedTuple):
    """A symbol whose stream broke and has not resumed yet."""

    kind: str
    symbol: str
    sequence: int
    ts: int
    reason: str


class GapTracker:
    """Per (kind, symbol) last events; `disconnected` marks a break, `observe` reports what it cost.

    `forget_after`: seconds after a break when symbols that have not resumed are dropped (None:
    never). `newcomers`: after a break, the first event of a symbol never seen before also opens a
    gap, from the break (sequence 0: unknown), since its earlier events may have been lost in it.
    """

    def __init__(
        self, *, forget_after: float | None = PENDING_SECONDS, newcomers: bool = False
    ) -> None:
        # kind -> symbol -> (symbols, sequences, times) columns of the last batch with that symbol
        # (lists, or numpy arrays)
        self._last: dict[str, dict[str, tuple[Sequence[str], IntColumn, IntColumn]]] = {
            kind: {} for kind in KINDS
        }
        self._pending: dict[str, dict[str, tuple[int, int, str]]] = {kind: {} for kind in KINDS}
        self._since: dict[str, tuple[int, str] | None] = dict.fromkeys(
            KINDS
        )  # newcomers: (break ns, reason)
        self._pending_since_ns = 0
        self.forget_after = forget_after
        self.newcomers = newcomers
        self.reason = ""
        self.detected = 0

    # --- the stream --------------------------------------------------------------------------

    def disconnected(self, reason: str, now_ns: int, kinds: Iterable[str] = KINDS) -> None:
        """The stream of `kinds` broke: everything seen so far is what the next events are compared with."""
        for kind in kinds:
            pending = self._pending[kind]
            latest = 0
            for symbol, position in self._positions(self._last[kind]).items():
                pending[symbol] = (position.sequence, position.ts, reason)
                latest = max(latest, position.ts)
            self._last[kind].clear()
            if self.newcomers and self._since[kind] is None:
                self._since[kind] = (latest or now_ns, reason)
        self._pending_since_ns = now_ns
        self.reason = reason

    def observe(
        self, kind: str, symbols: Sequence[str], sequences: IntColumn, times: IntColumn
    ) -> list[Gap]:
        """Record a batch's columns; returns gaps for symbols resuming after a break."""
        last = self._last[kind]
        fresh = dict.fromkeys(
            symbols, (symbols, sequences, times)
        )  # no tuple per event, unlike zip
        gaps: list[Gap] = []
        if self._pending[kind] or self._since[kind] is not None:
            gaps = self._resumed(kind, fresh, symbols, sequences, times)
        last.update(fresh)
        return gaps

    def _resumed(
        self,
        kind: str,
        fresh: dict[str, Any],
        symbols: Sequence[str],
        sequences: IntColumn,
        times: IntColumn,
    ) -> list[Gap]:
        last, pending, since = self._last[kind], self._pending[kind], self._since[kind]
        resumed = pending.keys() & fresh.keys()
        newcomers = fresh.keys() - last.keys() - pending.keys() if since is not None else set()
        gaps: list[Gap] = []
        if resumed or newcomers:
            wanted = resumed | newcomers
            first: dict[str, int] = {}
            for i, symbol in enumerate(symbols):
                if symbol in wanted and symbol not in first:
                    first[symbol] = i
                    if len(first) == len(wanted):
                        break
            for symbol, i in first.items():
                if symbol in resumed:
                    before_seq, before_ts, reason = pending.pop(symbol)
                else:
                    assert since is not None
                    before_seq, (before_ts, reason) = 0, since
                gaps.append(
                    Gap(
                        symbol=symbol,
                        kind=kind,
                        from_sequence=before_seq,
                        to_sequence=int(sequences[i]),
                        ts_from=before_ts,
                        ts_to=int(times[i]),
                        reason=reason,
                    )
                )
        if (
            pending
            and self.forget_after is not None
            and len(times)
            and times[-1] - self._pending_since_ns > self.forget_after * 1e9
        ):
            pending.clear()
        self.detected += len(gaps)
        return gaps

    # --- state that outlives a process -------------------------------------------------------

    def positions(self) -> dict[str, dict[str, Position]]:
        """Per kind, every symbol's last known event: seen since the last break, or still pending."""
        out: dict[str, dict[str, Position]] = {}
        for kind in KINDS:
            known = {
                symbol: Position(seq, ts) for symbol, (seq, ts, _) in self._pending[kind].items()
            }
            known.update(self._positions(self._last[kind]))
            out[kind] = known
        return out

    def resume(self, positions: dict[str, dict[str, Position]], reason: str, since_ns: int) -> None:
        """Start after a break this process did not see (it was not running): `positions` are the last
        events known before it (a snapshot), `since_ns` when that knowledge ends."""
        for kind in KINDS:
            pending = self._pending[kind]
            for symbol, position in positions.get(kind, {}).items():
                if symbol not in pending and symbol not in self._last[kind]:
                    pending[symbol] = (position.sequence, position.ts, reason)
            if self.newcomers and self._since[kind] is None:
                self._since[kind] = (since_ns, reason)
        self._pending_since_ns = since_ns
        self.reason = reason

    def unresolved(self) -> list[Pending]:
        """Symbols whose stream broke and never resumed (for an open-ended gap at the end)."""
        return [
            Pending(kind, symbol, seq, ts, reason)
            for kind in KINDS
            for symbol, (seq, ts, reason) in self._pending[kind].items()
        ]

    @staticmethod
    def _positions(
        last: dict[str, tuple[Sequence[str], IntColumn, IntColumn]],
    ) -> dict[str, Position]:
        """The (sequence, time) of each symbol's last event in the last batch that carried it."""
        by_batch: dict[int, tuple[tuple[Sequence[str], IntColumn, IntColumn], list[str]]] = {}
        for symbol, entry in last.items():
            by_batch.setdefault(id(entry), (entry, []))[1].append(symbol)
        out: dict[str, Position] = {}
        for (symbols, sequences, times), wanted in by_batch.values():
            index = dict(zip(symbols, range(len(symbols)), strict=True))  # the last occurrence wins
            for symbol in wanted:
                i = index[symbol]
                out[symbol] = Position(
                    int(sequences[i]), int(times[i])
                )  # plain ints, whatever the column type
        return out
