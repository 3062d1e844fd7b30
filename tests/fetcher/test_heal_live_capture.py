"""End to end: a session recorded from the sim's live feed (ingest -> bus -> recorder), with a
stretch of its trades taken out of a copy, is healed back to what was captured.

The sim plays 2026-12-04 from 09:30 ET at 60x, ingest subscribes to every trade and quote and the
recorder records until 60 trades are in. A copy of the session loses the middle third of its AAPL trades;
its reconciliation (written by hand from REST's rows of that stretch) lists them as missing, and
`heal` puts them back: the copy's AAPL trades then equal the original capture's, field by field
at the WebSocket's millisecond resolution, although REST's times are in nanoseconds.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mesh import datasets
from mesh.datasets import TableKind, audit
from mesh.datasets.audit import Cost, EventKind, Method, Reconciliation, Span, SymbolResult
from mesh.fetcher.heal import heal
from mesh.fetcher.ledger import Limits, QuotaLedger
from mesh.fetcher.rest import RestClient
from tests.meshproc import Mesh, wait_for

MS = 1_000_000


def _record(mesh: Mesh) -> None:
    mesh.point_at_sim()
    mesh.start("bus")
    mesh.wait_up(["bus"], 20)
    mesh.start(
        "sim", *mesh.sim_args("--at", "2026-12-04T09:30", "--speed", "60", "--symbols", "AAPL,MSFT")
    )
    mesh.start("recorder")
    mesh.wait_up(["sim", "recorder"], 60)
    mesh.call("recorder", "start", name="played")
    mesh.start("ingest", "--subscriptions", "Q.*,T.*")
    mesh.wait_recording()
    wait_for(lambda: _trades_recorded(mesh) >= 60, 60, 0.3, "60 trades in the recording")
    mesh.stop_recording(settle=1)


def _trades_recorded(mesh: Mesh) -> int:
    rows = (mesh.call("recorder", "status", timeout=2).get("session") or {}).get("rows") or {}
    return int(rows.get("trades", 0)) if isinstance(rows, dict) else 0


def _aapl_trades(folder: Path) -> list[tuple[Any, ...]]:
    table = datasets.open_path(folder).table(TableKind.TRADES)
    assert table is not None
    data = datasets.read_table(table, symbols=["AAPL"])
    ts = data.column("ts_event").cast(pa.int64()).to_pylist()
    return sorted(
        (t // MS, i, p, s, x, tuple(sorted(c or [])))
        for t, i, p, s, x, c in zip(
            ts, *(data.column(n).to_pylist() for n in ("trade_id", "price", "size", "exchange", "conditions")), strict=True
        )
    )  # fmt: skip


def test_a_live_capture_with_a_stretch_of_trades_removed_is_healed_back_to_the_capture(
    tmp_path: Path,
) -> None:
    with Mesh(tmp_path / "data") as mesh:
        _record(mesh)
        config = mesh.config
        _heal_a_copy(tmp_path, config)


def _heal_a_copy(tmp_path: Path, config: Any) -> None:
    """Remove a stretch of AAPL trades from a copy, reconcile it by hand, heal it."""
    recordings = tmp_path / "data" / "recordings"
    shutil.copytree(recordings / "played", recordings / "holed")
    holed = recordings / "holed"
    captured = _aapl_trades(holed)
    assert len(captured) >= 9, f"only {len(captured)} AAPL trades recorded"
    lo_ms, hi_ms = captured[len(captured) // 3][0], captured[2 * len(captured) // 3][0]
    for part in sorted((holed / "trades").glob("part-*.parquet")):
        rows = pq.read_table(part)
        ms = pc.divide(rows.column("ts_event").cast(pa.int64()), MS)
        inside = pc.and_(
            pc.equal(rows.column("symbol"), "AAPL"),
            pc.and_(pc.greater_equal(ms, lo_ms), pc.less_equal(ms, hi_ms)),
        )
        pq.write_table(rows.filter(pc.invert(inside)), part)  # fmt: skip
    left = _aapl_trades(holed)
    assert len(left) < len(captured)

    ledger = QuotaLedger(tmp_path / "by-hand.sqlite", Limits(0, 0, 0))
    with RestClient(config.rest_url, config.api_key, ledger) as client:
        served = client.trades("AAPL", lo_ms * MS, hi_ms * MS + MS - 1)
    kept = {(r[1], r[4]) for r in left}
    gone = sorted(
        t
        for t, i, x in zip(served["ts_event"], served["trade_id"], served["exchange"], strict=True)
        if (i, x) not in kept
    )
    result = SymbolResult(
        symbol="AAPL", kind=EventKind.TRADES, recorded=len(left), reference=len(served["ts_event"]),
        matched=len(served["ts_event"]) - len(gone), missing=len(gone), extra=0, differing=0,
        missing_spans=(Span(from_ns=gone[0], to_ns=gone[-1], rows=len(gone)),),
    )  # fmt: skip
    found = Reconciliation(
        checked_ns=time.time_ns(), method=Method.REST, cost=Cost(rest_calls=1),
        from_ns=lo_ms * MS, to_ns=hi_ms * MS, results=(result,),
    )  # fmt: skip
    with audit.locked(holed):
        audit.write_audit(holed, audit.Audit(reconciliation=found))

    report = heal("holed", config)

    assert report.complete and report.rows == {"trades": len(captured) - len(left)}
    assert _aapl_trades(holed) == captured
    assert (
        datasets.open_path(holed, capture_only=True).tables["trades"].rows
        < datasets.open_path(holed).tables["trades"].rows
    )
