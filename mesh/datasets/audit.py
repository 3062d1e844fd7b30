"""`audit.json`: what reconciliation, healing and the quality check found in a recording, and did.

A recording's `manifest.json` has one writer, the recorder, which rewrites it from memory after
every slice, possibly while a user reconciles the same session. So what is learned *about* a
recording lives beside it, in `audit.json`, whose writers (`massive reconcile`, `massive heal`,
the fetcher's automatic mode, the quality check) take a lock on the session for their
read-modify-write. Each file has exactly one kind of writer and neither can undo the other.
Readers see both as the session's manifest: `massive data show` merges them.

The healed layer (`healed/trades/part-NNNNNN.parquet`, `healed/quotes/...`) counts only once a
`Heal` here lists its files: a heal writes its Parquet files first, then this file in one rename,
so a heal killed at any moment leaves either the old audit (its files ignored, removed by the
next heal) or the new one.

The records are typed (msgspec structs, immutable); `read_audit` never raises for a damaged or
foreign file that is merely unreadable as an audit: the session is then "not reconciled". Its
writers refuse to replace such a file (`locked` raises), since the heals it lists would be lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import msgspec

from mesh.datasets import atomic
from mesh.datasets.errors import damaged
from mesh.files import read_regular

log = logging.getLogger(__name__)

AUDIT = "audit.json"
LOCK = ".audit.lock"
HEALED = "healed"  # the healed layer's folder inside a recording
MAX_SPANS_LISTED = 1_000  # per symbol and kind; the counts always cover every row

# Every number in the file (ns since the epoch, counts, bytes) is an int64, as in the recording:
# a file saying otherwise is not an audit (its times would be past any date a reader can show).
Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class Method(StrEnum):
    """Where Massive's own record of a span was read."""

    REST = "rest"
    FLAT_FILE = "flat_file"


class EventKind(StrEnum):
    """The recorded tables that reconcile: named as the recording's table folders."""

    TRADES = "trades"
    QUOTES = "quotes"


class Span(msgspec.Struct, frozen=True):
    """A run of consecutive rows (SIP time of the first and last, ns since the epoch)."""

    from_ns: Int
    to_ns: Int
    rows: Int


class Cost(msgspec.Struct, frozen=True):
    rest_calls: Int = 0
    s3_bytes: Int = 0


class SymbolResult(msgspec.Struct, frozen=True, kw_only=True):
    """One symbol and kind compared with Massive's record over the session's span."""

    symbol: str
    kind: EventKind
    recorded: Int  # rows in the recording (capture, plus healed when reconciled after a heal)
    reference: Int  # rows Massive has in the compared span
    matched: Int  # equal on the key and every compared field
    missing: Int  # at Massive, not in the recording
    extra: Int  # in the recording, not at Massive
    differing: Int  # same key, some compared field differs
    healed: Int = 0  # of `recorded`, rows that came from the healed layer
    missing_spans: tuple[Span, ...] = ()  # at most MAX_SPANS_LISTED, in time order

    @property
    def completeness_pct(self) -> float:
        """Share of Massive's rows the recording holds exactly (100 when Massive has none)."""
        if self.reference == 0:
            return 100.0
        return round(100.0 * self.matched / self.reference, 4)

    @property
    def complete(self) -> bool:
        return self.missing == 0 and self.differing == 0


class Reconciliation(msgspec.Struct, frozen=True, kw_only=True):
    checked_ns: Int
    method: Method
    cost: Cost
    from_ns: Int  # the compared span
    to_ns: Int
    results: tuple[SymbolResult, ...]

    @property
    def complete(self) -> bool:
        return all(r.complete for r in self.results)


class HealedSpan(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    kind: EventKind
    from_ns: Int
    to_ns: Int
    rows: Int  # rows added to the healed layer for this span


class Heal(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # "heal-20261204T210500Z"
    at_ns: Int
    method: Method
    files: tuple[str, ...]  # relative to the session folder: "healed/trades/part-000001.parquet"
    spans: tuple[HealedSpan, ...]
    unhealed: tuple[HealedSpan, ...] = ()  # still missing (the quota ran out); rows = expected
    cost: Cost = Cost()

    @property
    def complete(self) -> bool:
        return not self.unhealed


class QualityIssue(StrEnum):
    CROSSED_QUOTE = "crossed_quote"  # bid > ask
    LOCKED_QUOTE = "locked_quote"  # bid == ask
    OUT_OF_ORDER = "out_of_order"  # an event earlier than the one before it
    DUPLICATE = "duplicate"  # the same key twice
    OUTSIDE_NBBO = "outside_nbbo"  # a trade far outside the quote in force
    PRICE_SPIKE = "price_spike"  # a jump far beyond the symbol's usual moves
    BAD_PRICE = "bad_price"  # a trade price not finite or not positive; a quote side not finite
    SILENCE = "silence"  # longer without events than the symbol's activity allows


class QualityFinding(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    issue: QualityIssue
    count: Int
    examples: tuple[Span, ...] = ()  # where (a few); rows = events involved


class Quality(msgspec.Struct, frozen=True, kw_only=True):
    checked_ns: Int
    findings: tuple[QualityFinding, ...]


class Audit(msgspec.Struct, frozen=True, kw_only=True):
    """Everything in audit.json; each part is absent until something wrote it."""

    reconciliation: Reconciliation | None = None
    heals: tuple[Heal, ...] = ()
    quality: Quality | None = None

    def healed_files(self) -> list[str]:
        """The healed layer's files that count, in the order they were written."""
        return [f for heal in self.heals for f in heal.files]


def read_audit(session: Path) -> Audit:
    """The session's audit (empty if none, or if the file cannot be read as one)."""
    found = _read(Path(session))
    if isinstance(found, str):
        log.warning("ignoring %s: %s", Path(session) / AUDIT, found)
        return Audit()
    return found


def _read(session: Path) -> Audit | str:
    """The session's audit (empty if none), or why its file cannot be read as one."""
    path = session / AUDIT
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        return Audit()
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    try:
        return msgspec.json.decode(raw, type=Audit)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        return f"not an audit: {exc}"


def write_audit(session: Path, audit: Audit) -> None:
    """Replace the session's audit.json in one rename (call inside `locked`)."""
    data = msgspec.to_builtins(audit)
    atomic.write_json(Path(session) / AUDIT, data)


@contextlib.contextmanager
def locked(session: Path) -> Iterator[Audit]:
    """Hold the session's audit lock; yields the audit as it is now (read under the lock).

    Two reconciles or heals of one session take turns instead of losing each other's results.
    The lock is an advisory `flock` on `.audit.lock`, released when the process ends, so a
    writer killed with `kill -9` never leaves it held. An audit.json that cannot be read as one
    (edited by hand, or written by a newer version) raises DatasetError: a writer replacing it
    would drop the heals it lists, and the next heal would remove their files as a killed heal's.
    """
    folder = Path(session)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        found = _read(folder)
        if isinstance(found, str):
            raise damaged(
                folder / AUDIT, f"{found}; left as it is, nothing stored (fix it, or move it aside)"
            )
        yield found
    finally:
        os.close(fd)
