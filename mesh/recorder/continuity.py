"""The recorder's own account of each source's stream, so that every break upstream is a recorded gap.

Ingest records the gaps of its own reconnects, but it cannot record what it did not live to see:
when ingest is killed, when the bus restarts, or when the recorder itself is down, the recorder is
the one that notices. It keeps a `GapTracker` per source over what it recorded (per kind and symbol,
the last Massive `sequence` and `ts_event`; one dict update per batch). When its view of a source's
stream breaks, the first event of each symbol afterwards closes a per-symbol gap, from the last
event recorded before the break to it.

To bound a break across its own crash, the recorder saves the trackers' positions once a second
(`SNAPSHOT_FILE` in the session's write-ahead folder, replaced atomically) and resumes from them: a
snapshot older than the crash only makes the gaps wider, never loses one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from mesh.files import replace_file
from mesh.gaps import KINDS, GapTracker, Position
from mesh.schema import Gap

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "positions.json"
SNAPSHOT_EVERY = 1.0  # seconds between snapshots while data flows
INTERRUPTED = "the recording was interrupted (the recorder was down or failed); events until it resumed may be missing"


class Continuity:
    """Per-source gap trackers over what was recorded, their snapshot, and the gaps they close."""

    def __init__(self) -> None:
        self._trackers: dict[str, GapTracker] = {}
        self._resumed: tuple[str, int] | None = (
            None  # (reason, since ns) for sources first seen after a resume
        )
        self._saved_at = 0.0
        self.changed = False  # events observed since the last snapshot

    def reset(self) -> None:
        """A new run with nothing before it."""
        self._trackers.clear()
        self._resumed = None
        self.changed = False

    def resume(self, snapshot: dict[str, Any], reason: str = INTERRUPTED) -> None:
        """A run that continues an interrupted one: `snapshot` is what `snapshot()` returned then."""
        self.reset()
        since = int(snapshot.get("written_ns") or time.time_ns())
        self._resumed = (reason, since)
        for source, kinds in (snapshot.get("sources") or {}).items():
            try:
                positions = {
                    kind: {
                        str(symbol): Position(int(seq), int(ts))
                        for symbol, (seq, ts) in (kinds.get(kind) or {}).items()
                    }
                    for kind in KINDS
                }
            except (AttributeError, TypeError, ValueError) as exc:
                log.warning(
                    "ignoring a damaged gap snapshot entry for %r (%s): its symbols count as new after the interruption",
                    source,
                    exc,
                )
                positions = {}
            self._tracker(str(source)).resume(positions, reason, since)

    def _tracker(self, source: str) -> GapTracker:
        tracker = self._trackers.get(source)
        if tracker is None:
            tracker = self._trackers[source] = GapTracker(forget_after=None, newcomers=True)
            if self._resumed is not None:
                tracker.resume({}, *self._resumed)
        return tracker

    # --- the stream --------------------------------------------------------------------------

    def broke(self, source: str, kind: str, reason: str) -> None:
        """The recorder's view of `source`'s `kind` stream broke (messages lost, a restart upstream)."""
        tracker = self._trackers.get(source)
        if tracker is not None:
            tracker.disconnected(reason, time.time_ns(), (kind,))

    def observe(self, source: str, topic: str, kind: str, batch: Any) -> list[dict[str, Any]]:
        """Account for a recorded batch; returns gap rows for symbols resuming after a break."""
        self.changed = True
        gaps = self._tracker(source).observe(kind, batch.symbol, batch.sequence, batch.ts_event)
        return [gap_row(gap, source, topic) for gap in gaps] if gaps else []

    def open_rows(self, end_ns: int, topics: dict[str, str]) -> list[dict[str, Any]]:
        """At a stop: an open-ended gap for every symbol whose stream broke and never resumed.

        `to_sequence` is 0 (no later event recorded) and `ts_to` the end of the run.
        """
        rows = []
        for source, tracker in self._trackers.items():
            for p in tracker.unresolved():
                gap = Gap(
                    symbol=p.symbol,
                    kind=p.kind,
                    from_sequence=p.sequence,
                    to_sequence=0,
                    ts_from=p.ts,
                    ts_to=end_ns,
                    reason=f"{p.reason}; no later event before the recording stopped",
                )
                rows.append(gap_row(gap, source, topics.get(p.kind, "")))
        return rows

    # --- the snapshot ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        sources: dict[str, Any] = {}
        for source, tracker in self._trackers.items():
            sources[source] = {
                kind: {symbol: [p.sequence, p.ts] for symbol, p in symbols.items()}
                for kind, symbols in tracker.positions().items()
            }
        return {"format": 1, "written_ns": time.time_ns(), "sources": sources}

    def save_due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.changed and now - self._saved_at >= SNAPSHOT_EVERY

    def save(self, directory: Path) -> None:
        """Replace the snapshot in `directory` atomically (a rename: a crash leaves the old or the new one).

        Not fsync'd: it is rewritten every second, and an older snapshot only widens the gaps. A
        write that fails (a full disk) leaves no temporary file behind.
        """
        data = json.dumps(self.snapshot(), separators=(",", ":"))
        directory.mkdir(parents=True, exist_ok=True)
        replace_file(directory / SNAPSHOT_FILE, data, durable=False)
        self._saved_at = time.monotonic()
        self.changed = False


def load(directory: Path) -> dict[str, Any] | None:
    """The snapshot a previous run left in `directory`, or None if there is none.

    A damaged one still says that a run was interrupted, though not where each symbol stood: it
    becomes an empty snapshot as of the file's time, so that every symbol's first event after the
    resume opens a gap from then (sequence 0: unknown).
    """
    path = directory / SNAPSHOT_FILE
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("sources"), dict):
            return data
        problem = "not a snapshot"
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problem = str(exc)
    log.warning(
        "gap snapshot %s is damaged (%s): every symbol's first event after the resume opens a gap",
        path,
        problem,
    )
    return empty_snapshot(path.stat().st_mtime_ns if path.exists() else time.time_ns())


def empty_snapshot(since_ns: int) -> dict[str, Any]:
    """A snapshot that knows only when the knowledge ends (no position of any symbol)."""
    return {"format": 1, "written_ns": since_ns, "sources": {}}


def discard(directory: Path) -> None:
    """Forget the snapshot (the session ended cleanly: nothing is left to bound)."""
    for name in (SNAPSHOT_FILE, f".{SNAPSHOT_FILE}.tmp"):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


def gap_row(gap: Gap, source: str, topic: str) -> dict[str, Any]:
    """A gap the recorder inferred, as a row of the gaps table.

    `missing` is 0 (unknown): Massive's sequence numbers are not contiguous per symbol, so the
    difference of two of them does not count events.
    """
    return {
        "symbol": gap.symbol,
        "kind": gap.kind,
        "from_sequence": gap.from_sequence,
        "to_sequence": gap.to_sequence,
        "ts_from": gap.ts_from,
        "ts_to": gap.ts_to,
        "reason": gap.reason,
        "source": source,
        "topic": topic,
        "missing": 0,
    }
