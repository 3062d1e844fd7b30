"""From decoded bus messages to session writes: the part the service and the Python API share.

It checks that each payload belongs on its topic (anything else is counted and skipped), turns
sequence gaps on the bus and ingest's gap records into rows of the gaps table, and hands quote and
trade batches to the session untouched (columns, not rows), and paper trading's records (`Order`,
`Fill`, `Pnl` on `strat.<kind>.<name>`) as one row each. Whatever breaks its view of a source's
stream (messages lost on the bus, the source restarting) is handed to `continuity`, which records
per-symbol gaps when the symbols resume.
"""

from __future__ import annotations

import logging
from typing import Any

from mesh import topics
from mesh.recorder.columns import FILLS, ORDERS, PNL, QUOTES, TRADES, RejectedBatch
from mesh.recorder.continuity import Continuity
from mesh.recorder.session import Session
from mesh.schema import Fill, GapBatch, Order, Pnl, QuoteBatch, TradeBatch
from mesh.wire import Message

log = logging.getLogger(__name__)

PREFIXES = (topics.quotes(), topics.trades(), topics.gaps(), topics.PAPER)
_KIND_TABLE = {topics.QUOTE: (QuoteBatch, QUOTES), topics.TRADE: (TradeBatch, TRADES)}
_PAPER_TABLE = {topics.ORDER: (Order, ORDERS), topics.FILL: (Fill, FILLS), topics.PNL: (Pnl, PNL)}


class Intake:
    """Routes messages into the current session and counts what it could not keep."""

    def __init__(self) -> None:
        self.unexpected = 0  # good frames of a type that does not belong on their topic
        self.rejected = 0  # batches whose columns could not be stored
        self.idle = 0  # market-data messages received while nothing was recording
        self.bus_gaps = 0  # sequence gaps seen on the bus while recording
        self.restarts = 0  # sources whose sequence started again while recording
        self.continuity = Continuity()
        self._last: dict[tuple[str, str], tuple[int, int]] = {}

    def handle(self, session: Session | None, msg: Message, missing: int) -> None:
        """Write `msg` to `session`; `missing` is the number of messages lost just before it.

        Raises `wal.WalError` (or OSError) when the disk refuses: the caller fails the session.
        """
        key = (msg.header.src, msg.topic)
        previous = self._last.get(key)
        self._last[key] = (msg.header.seq, msg.header.ts_send)
        if session is None or session.state != "recording":
            self.idle += 1
            return
        payload = msg.payload
        parts = msg.topic.split(".")
        kind = parts[1] if len(parts) == 3 and parts[0] == "md" else ""
        if previous is not None and (missing or msg.header.seq <= previous[0]):
            self._broke(session, msg, previous, missing, kind)
        if kind == topics.GAP and isinstance(payload, GapBatch):
            session.write_gaps(gap_rows(payload, msg.header.src, msg.topic))
            return
        if len(parts) == 3 and parts[0] == "strat":
            paper = _PAPER_TABLE.get(parts[1])
            if paper is None or not isinstance(payload, paper[0]):
                self.unexpected += 1
                return
            try:
                session.write_records(paper[1], [payload])
            except RejectedBatch as exc:
                self._reject(exc)
            return
        expected = _KIND_TABLE.get(kind)
        if expected is None or not isinstance(payload, expected[0]):
            self.unexpected += 1
            return
        try:
            session.write(expected[1], payload)
        except RejectedBatch as exc:
            self._reject(exc)
            return
        rows = self.continuity.observe(msg.header.src, msg.topic, kind, payload)
        if rows:
            session.write_gaps(rows)

    def _reject(self, exc: RejectedBatch) -> None:
        self.rejected += 1
        if self.rejected == 1:
            log.warning(
                "skipping a batch that cannot be stored (%s); further ones are only counted", exc
            )

    def _broke(
        self, session: Session, msg: Message, previous: tuple[int, int], missing: int, kind: str
    ) -> None:
        """Messages from a source were lost on the bus, or the source restarted (its sequence started again)."""
        src, topic = msg.header.src, msg.topic
        if missing:
            self.bus_gaps += 1
            reason = f"{missing} message(s) from {src} on {topic} missing on the bus"
            session.write_gaps(
                [
                    {
                        "symbol": "",
                        "kind": "bus",
                        "from_sequence": previous[0],
                        "to_sequence": msg.header.seq,
                        "ts_from": previous[1],
                        "ts_to": msg.header.ts_send,
                        "source": src,
                        "topic": topic,
                        "missing": missing,
                        "reason": reason,
                    }
                ]
            )
        else:
            self.restarts += 1
            reason = f"{src} restarted (its sequence on {topic} started again): events it had not yet published may be missing"
        if kind in _KIND_TABLE:
            self.continuity.broke(src, kind, reason)


def gap_rows(batch: GapBatch, source: str, topic: str) -> list[dict[str, Any]]:
    """Ingest's gap records (rare, a few at a time) as rows of the gaps table."""
    names = batch.__struct_fields__
    rows = [
        dict(zip(names, values, strict=True))
        for values in zip(*(getattr(batch, n) for n in names), strict=True)
    ]
    for row in rows:
        row.update(
            source=source,
            topic=topic,
            missing=max(0, row["to_sequence"] - row["from_sequence"] - 1),
        )
    return rows
