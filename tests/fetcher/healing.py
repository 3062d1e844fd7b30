"""A recording with holes, made by the real recorder from the sim's own history, for heal tests.

The sim's live feed is its REST history, so a recording of it is REST's rows as the recorder
stores them. `record_with_holes` fetches a minute of two symbols' trades and quotes from the sim
(with a ledger of its own, so the test's quota is untouched), writes them through a recorder
`Session` except the rows inside the holes, and `reconcile_by_hand` writes the audit.json a
reconciliation of it would: the holes as missing spans.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh import calendar
from mesh.config import Config
from mesh.datasets import audit
from mesh.datasets.audit import Cost, EventKind, Method, Reconciliation, Span, SymbolResult
from mesh.fetcher.ledger import Limits, QuotaLedger
from mesh.fetcher.rest import RestClient
from mesh.recorder.session import Session
from mesh.schema import QuoteBatch, TradeBatch

SYMBOLS = ("AAPL", "MSFT")
S = 1_000_000_000


@dataclass(frozen=True)
class Hole:
    symbol: str
    kind: EventKind
    from_ns: int  # [from_ns, to_ns) of SIP time is left out of the recording
    to_ns: int


@dataclass
class Recorded:
    folder: Path
    start_ns: int
    end_ns: int
    history: dict[tuple[str, EventKind], dict[str, list[Any]]]  # REST's rows of the whole span
    holes: list[Hole]

    def missing(self, hole: Hole) -> list[int]:
        """Positions of REST's rows that the hole left out."""
        times = self.history[(hole.symbol, hole.kind)]["ts_event"]
        return [i for i, t in enumerate(times) if hole.from_ns <= t < hole.to_ns]


def history(
    config: Config, tmp: Path, symbol: str, kind: EventKind, lo: int, hi: int
) -> dict[str, list[Any]]:
    """REST's rows of [lo, hi], as the fetcher reads them (its ledger kept aside)."""
    ledger = QuotaLedger(tmp / "fixture-ledger.sqlite", Limits.from_config(config))
    with RestClient(config.rest_url, config.api_key, ledger) as client:
        fetch = client.trades if kind is EventKind.TRADES else client.quotes
        return fetch(symbol, lo, hi, recv_ns=lo)


def record_with_holes(
    config: Config,
    tmp: Path,
    day: dt.date,
    name: str,
    holes_s: list[tuple[str, EventKind, int, int]],
) -> Recorded:
    """A minute from 10:00 New York of `day`, recorded but for the holes (seconds after 10:00)."""
    start = calendar.midnight_ns(day) + 10 * 3600 * S
    end = start + 60 * S
    holes = [Hole(sym, kind, start + a * S, start + b * S) for sym, kind, a, b in holes_s]
    rows = {
        (sym, kind): history(config, tmp, sym, kind, start, end)
        for sym in SYMBOLS
        for kind in (EventKind.TRADES, EventKind.QUOTES)
    }
    session = Session(name, data_dir=config.data_dir).open()
    for (sym, kind), cols in rows.items():
        keep = [
            i
            for i, t in enumerate(cols["ts_event"])
            if not any(
                h.symbol == sym and h.kind is kind and h.from_ns <= t < h.to_ns for h in holes
            )
        ]
        kept = {c: [v[i] for i in keep] for c, v in cols.items()}
        kept["ts_recv"] = [t + 2_000_000 for t in kept["ts_event"]]  # received 2 ms later
        batch = TradeBatch(**kept) if kind is EventKind.TRADES else QuoteBatch(**kept)
        session.write(str(kind), batch)
    session.stop()
    return Recorded(Path(config.data_dir) / "recordings" / name, start, end, rows, holes)


def reconcile_by_hand(recorded: Recorded) -> Reconciliation:
    """audit.json as a reconciliation of the recording would leave it: each hole a missing span."""
    results = []
    for (sym, kind), cols in recorded.history.items():
        spans = []
        for hole in recorded.holes:
            if hole.symbol == sym and hole.kind is kind:
                gone = [cols["ts_event"][i] for i in recorded.missing(hole)]
                spans.append(Span(from_ns=gone[0], to_ns=gone[-1], rows=len(gone)))
        missing = sum(s.rows for s in spans)
        total = len(cols["ts_event"])
        results.append(
            SymbolResult(
                symbol=sym,
                kind=kind,
                recorded=total - missing,
                reference=total,
                matched=total - missing,
                missing=missing,
                extra=0,
                differing=0,
                missing_spans=tuple(spans),
            )
        )
    found = Reconciliation(
        checked_ns=time.time_ns(),
        method=Method.REST,
        cost=Cost(rest_calls=len(results)),
        from_ns=recorded.start_ns,
        to_ns=recorded.end_ns,
        results=tuple(results),
    )
    with audit.locked(recorded.folder) as current:
        audit.write_audit(recorded.folder, audit.Audit(reconciliation=found, heals=current.heals))
    return found
