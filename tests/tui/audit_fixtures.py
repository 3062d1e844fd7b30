"""audit.json contents for the dashboard tests, written with the audit records themselves."""

from __future__ import annotations

from pathlib import Path

from mesh.datasets import audit
from mesh.datasets.audit import (
    Audit,
    Cost,
    EventKind,
    Heal,
    HealedSpan,
    Method,
    Quality,
    QualityFinding,
    QualityIssue,
    Reconciliation,
    SymbolResult,
)

T0 = 1_763_735_400_000_000_000  # 2025-11-21 14:30 UTC


def result(symbol: str, kind: EventKind, reference: int, matched: int) -> SymbolResult:
    return SymbolResult(
        symbol=symbol,
        kind=kind,
        recorded=matched,
        reference=reference,
        matched=matched,
        missing=reference - matched,
        extra=0,
        differing=0,
    )


def span(symbol: str, rows: int) -> HealedSpan:
    return HealedSpan(symbol=symbol, kind=EventKind.TRADES, from_ns=T0, to_ns=T0 + 10**9, rows=rows)


def write_checked(session: Path) -> None:
    """Two crossed quotes and a silence; trades 99.97% and quotes 100% complete; a heal that put
    back 41 rows and left 3 spans for later."""
    session.mkdir(parents=True, exist_ok=True)
    found = Audit(
        quality=Quality(
            checked_ns=T0,
            findings=(
                QualityFinding(symbol="AAPL", issue=QualityIssue.CROSSED_QUOTE, count=2),
                QualityFinding(symbol="MSFT", issue=QualityIssue.SILENCE, count=1),
            ),
        ),
        reconciliation=Reconciliation(
            checked_ns=T0,
            method=Method.REST,
            cost=Cost(rest_calls=4),
            from_ns=T0,
            to_ns=T0 + 3600 * 10**9,
            results=(
                result("AAPL", EventKind.TRADES, 20_000, 19_994),
                result("MSFT", EventKind.TRADES, 10_000, 9_997),
                result("AAPL", EventKind.QUOTES, 40_000, 40_000),
            ),
        ),
        heals=(
            Heal(
                id="heal-20251121T210000Z",
                at_ns=T0,
                method=Method.REST,
                files=("healed/trades/part-000001.parquet",),
                spans=(span("AAPL", 30), span("MSFT", 11)),
                unhealed=(span("AAPL", 5), span("AAPL", 7), span("MSFT", 2)),
            ),
        ),
    )
    with audit.locked(session):
        audit.write_audit(session, found)
