"""Bus batches -> chunks of at most `batch_rows` rows per q table, flushed after `flush_ms` at the latest.

KX's throughput advice (tick profiling whitepaper) is to publish many rows per `.u.upd`; market
data arrives on the bus in batches of whatever size ingest saw. This module rebatches per table:
a chunk goes out as soon as it holds `batch_rows` rows, or when its oldest row has waited
`flush_ms`, whichever comes first. Batch-level fields (a BarBatch's `interval` and `replaces`)
become per-row columns here, because one q `bar` table holds every interval. Paper trading's
records (`Order`, `Fill`, `Pnl`) come one per message and are one row each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np

from mesh.kdb.buffer import Chunk
from mesh.kdb.schema import BATCH_FIELDS, TABLE_BY_BATCH, QTable

DEFAULT_BATCH_ROWS = 1000
DEFAULT_FLUSH_MS = 50.0


class _Pending:
    def __init__(self, table: QTable) -> None:
        self.table = table
        self.fields = sorted(
            {c.source for c in table.columns}, key=[c.source for c in table.columns].index
        )
        self.pieces: dict[str, list[Any]] = {
            f: [] for f in self.fields
        }  # per field: the batches' columns, joined on emit
        self.rows = 0
        self.since = 0.0  # monotonic time the oldest pending row arrived

    def take(self) -> dict[str, Any]:
        """Every pending column joined into one (a numpy array when the pieces are arrays)."""
        joined = {name: _join(pieces) for name, pieces in self.pieces.items()}
        self.pieces = {f: [] for f in self.fields}
        return joined


def _join(pieces: list[Any]) -> Any:
    if len(pieces) == 1:
        return pieces[0]
    if all(isinstance(piece, np.ndarray) for piece in pieces):
        return np.concatenate(pieces)
    return list(
        chain.from_iterable(
            piece.tolist() if isinstance(piece, np.ndarray) else piece for piece in pieces
        )
    )


class Batcher:
    """Accumulates batches per table and hands finished chunks to `emit`."""

    def __init__(
        self,
        emit: Callable[[Chunk], Any],
        batch_rows: int = DEFAULT_BATCH_ROWS,
        flush_ms: float = DEFAULT_FLUSH_MS,
    ) -> None:
        if batch_rows < 1 or flush_ms <= 0:
            raise ValueError("batch_rows must be at least 1 and flush_ms positive")
        self.emit = emit
        self.batch_rows = batch_rows
        self.flush_after = flush_ms / 1000
        self._pending = {batch: _Pending(table) for batch, table in TABLE_BY_BATCH.items()}

    def add(self, batch: Any, now: float | None = None) -> bool:
        """Take one bus batch (QuoteBatch, TradeBatch or BarBatch) or one paper record (Order,
        Fill, Pnl: one row); False for any other payload.

        Columns may be lists or numpy arrays (a subscriber with `columnar=True`); they are kept
        as they come and joined once per chunk.
        """
        pending = self._pending.get(type(batch))
        if pending is None:
            return False
        single = pending.table.per_message
        n = 1 if single else len(batch)
        if n == 0:
            return True
        now = time.monotonic() if now is None else now
        if pending.rows == 0:
            pending.since = now
        for name in pending.fields:
            value = getattr(batch, name)
            pending.pieces[name].append([value] * n if single or name in BATCH_FIELDS else value)
        pending.rows += n
        if pending.rows >= self.batch_rows:
            self._emit_full(pending, now)
        return True

    def _emit_full(self, pending: _Pending, now: float) -> None:
        size = self.batch_rows
        rows = pending.rows
        cols = pending.take()
        start = 0
        while rows - start >= size:
            end = start + size
            self.emit(
                Chunk(
                    pending.table.name,
                    cols
                    if (start, end) == (0, rows)
                    else {k: v[start:end] for k, v in cols.items()},
                    size,
                )
            )
            start = end
        pending.rows = rows - start
        if pending.rows:
            pending.pieces = {k: [v[start:]] for k, v in cols.items()}
            pending.since = now

    def flush_due(self, now: float | None = None) -> None:
        """Emit every table whose oldest row has waited `flush_ms`."""
        now = time.monotonic() if now is None else now
        for pending in self._pending.values():
            if pending.rows and now - pending.since >= self.flush_after:
                self._emit_rest(pending)

    def flush_all(self) -> None:
        for pending in self._pending.values():
            if pending.rows:
                self._emit_rest(pending)

    def _emit_rest(self, pending: _Pending) -> None:
        rows = pending.rows
        self.emit(Chunk(pending.table.name, pending.take(), rows))
        pending.rows = 0

    def next_due(self, now: float | None = None) -> float | None:
        """Seconds until the next time-based flush, or None when nothing is pending."""
        now = time.monotonic() if now is None else now
        waits = [
            pending.since + self.flush_after - now
            for pending in self._pending.values()
            if pending.rows
        ]
        return max(0.0, min(waits)) if waits else None

    @property
    def pending_rows(self) -> int:
        return sum(p.rows for p in self._pending.values())
