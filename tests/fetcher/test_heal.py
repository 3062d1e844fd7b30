"""`massive heal`: a recording of the sim's history with holes gets REST's rows back, and every
reader sees them (or, asked for the capture only, does not)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesh import datasets
from mesh.datasets import TableKind, audit, live
from mesh.datasets.audit import EventKind
from mesh.fetcher.heal import HealError, heal
from mesh.fetcher.ledger import QuotaLedger
from mesh.recorder.session import Session
from mesh.recording import read_recording
from mesh.schema import TradeBatch
from mesh.sim.server import SimServer
from tests.fetcher.conftest import config_of, sim_env
from tests.fetcher.healing import Recorded, S, reconcile_by_hand, record_with_holes

HOLES = [("AAPL", EventKind.TRADES, 20, 30), ("MSFT", EventKind.QUOTES, 40, 45)]
COMPARED = {
    EventKind.TRADES: ["symbol", "price", "size", "exchange", "trade_id", "conditions", "tape", "sequence", "ts_event"],
    EventKind.QUOTES: ["symbol", "bid_price", "bid_size", "ask_price", "ask_size", "bid_exchange", "ask_exchange", "condition", "tape", "sequence", "ts_event"],
}  # fmt: skip


def _config(sim: SimServer, tmp_path: Path, **overrides: str) -> Any:
    return config_of(sim_env(sim, tmp_path / "data", **overrides), tmp_path)


def _recorded(sim: SimServer, tmp_path: Path, day: dt.date, name: str = "holes") -> Recorded:
    return record_with_holes(_config(sim, tmp_path), tmp_path, day, name, HOLES)


def _rows(
    folder: Path, kind: EventKind, symbol: str, *, capture_only: bool = False
) -> list[tuple[Any, ...]]:
    """The recording's rows of `symbol` as every reader gets them, in the order they come."""
    dataset = datasets.open_path(folder, capture_only=capture_only)
    table = dataset.table(TableKind(str(kind)))
    assert table is not None
    data = datasets.read_table(table, columns=COMPARED[kind], symbols=[symbol])
    data = data.set_column(
        data.schema.get_field_index("ts_event"),
        "ts_event",
        data.column("ts_event").cast(pa.int64()),
    )
    cols = {c: data.column(c).to_pylist() for c in COMPARED[kind]}
    return list(zip(*(cols[c] for c in COMPARED[kind]), strict=True))


def _history(recorded: Recorded, kind: EventKind, symbol: str) -> list[tuple[Any, ...]]:
    cols = recorded.history[(symbol, kind)]
    return list(zip(*(cols[c] for c in COMPARED[kind]), strict=True))


def test_a_heal_puts_the_missing_spans_back_and_the_recording_equals_rest_row_for_row(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    recorded = _recorded(sim, tmp_path, days[-1])
    reconcile_by_hand(recorded)
    before = {k: _rows(recorded.folder, k, s) for s, k, _, _ in HOLES}
    report = heal("holes", _config(sim, tmp_path))

    assert report.complete and report.spans_from == "reconciliation"
    expected = {h.kind: len(recorded.missing(h)) for h in recorded.holes}
    assert report.rows == {str(k): n for k, n in expected.items()} and all(expected.values())
    assert report.rest_calls == 2 and report.files == (
        "healed/quotes/part-000001.parquet",
        "healed/trades/part-000001.parquet",
    )
    for symbol, kind, _, _ in HOLES:
        assert _rows(recorded.folder, kind, symbol) == _history(recorded, kind, symbol)
        assert _rows(recorded.folder, kind, symbol, capture_only=True) == before[kind]
    untouched = _rows(recorded.folder, EventKind.TRADES, "MSFT")
    assert untouched == _history(recorded, EventKind.TRADES, "MSFT")

    stored = audit.read_audit(recorded.folder)
    assert [h.id for h in stored.heals] == [report.heal_id]
    assert stored.healed_files() == list(report.files)
    sources = pq.read_table(recorded.folder / "healed/trades/part-000001.parquet").column("source")
    assert set(sources.to_pylist()) == {"rest /v3/trades"}

    trades = read_recording(recorded.folder, "trades")
    assert len(trades) == sum(
        len(c["ts_event"]) for (_, k), c in recorded.history.items() if k is EventKind.TRADES
    )
    assert (
        len(read_recording(recorded.folder, "trades", capture_only=True))
        == len(trades) - expected[EventKind.TRADES]
    )

    # the bars were rebuilt from capture and healed layer: every AAPL trade is in a 1 s bar
    bars = read_recording(recorded.folder, "bars_1s")
    aapl = bars[bars.symbol == "AAPL"]
    assert int(aapl.transactions.sum()) == len(
        recorded.history[("AAPL", EventKind.TRADES)]["ts_event"]
    )
    hole = recorded.holes[0]
    inside = aapl[
        (aapl.ts_start.astype("int64") >= hole.from_ns)
        & (aapl.ts_start.astype("int64") < hole.to_ns)
    ]
    assert len(inside) > 0


def test_a_dry_run_shows_the_spans_and_their_cost_and_spends_nothing(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    recorded = _recorded(sim, tmp_path, days[-1])
    reconcile_by_hand(recorded)
    config = _config(sim, tmp_path)
    ledger = QuotaLedger.for_config(config)
    spent = ledger.snapshot()["rest_calls_today"]
    before = (recorded.folder / "audit.json").read_bytes()

    report = heal("holes", config, dry_run=True)

    assert report.dry_run and report.rest_calls == 0 and report.rest_calls_needed_at_least == 2
    assert [(s.symbol, s.kind, s.rows) for s in report.spans] == [
        (h.symbol, h.kind, len(recorded.missing(h))) for h in recorded.holes
    ]
    assert ledger.snapshot()["rest_calls_today"] == spent
    assert (recorded.folder / "audit.json").read_bytes() == before
    assert not (recorded.folder / "healed").exists()


def test_the_quota_running_out_heals_part_and_a_rerun_heals_the_rest(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    recorded = _recorded(sim, tmp_path, days[-1])
    reconcile_by_hand(recorded)

    first = heal("holes", _config(sim, tmp_path, MASSIVE_REST_CALLS_PER_DAY="1"))

    assert not first.complete and first.rest_calls == 1
    assert [(s.symbol, s.kind) for s in first.spans] == [("AAPL", EventKind.TRADES)]
    assert [(s.symbol, s.kind, s.rows) for s in first.unhealed] == [
        ("MSFT", EventKind.QUOTES, len(recorded.missing(recorded.holes[1])))
    ]
    assert audit.read_audit(recorded.folder).heals[-1].unhealed == first.unhealed
    assert _rows(recorded.folder, EventKind.TRADES, "AAPL") == _history(
        recorded, EventKind.TRADES, "AAPL"
    )

    with pytest.raises(HealError, match="the REST quota allows no call now"):
        heal("holes", _config(sim, tmp_path, MASSIVE_REST_CALLS_PER_DAY="1"))

    second = heal("holes", _config(sim, tmp_path, MASSIVE_REST_CALLS_PER_DAY="10"))

    assert second.complete and second.rest_calls == 1
    assert [(s.symbol, s.kind) for s in second.spans] == [("MSFT", EventKind.QUOTES)]
    for symbol, kind, _, _ in HOLES:
        assert _rows(recorded.folder, kind, symbol) == _history(recorded, kind, symbol)
    third = heal("holes", _config(sim, tmp_path))
    assert third.rest_calls == 0 and "nothing to heal" in third.message


def test_without_a_reconciliation_the_gaps_ingest_reported_are_healed(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    config = _config(sim, tmp_path)
    recorded = record_with_holes(
        config, tmp_path, days[-1], "gappy", [("AAPL", EventKind.TRADES, 20, 30)]
    )
    times = recorded.history[("AAPL", EventKind.TRADES)]["ts_event"]
    gone = recorded.missing(recorded.holes[0])
    before, after = times[gone[0] - 1], times[gone[-1] + 1]  # the events either side were received
    session = Session("gappy", data_dir=config.data_dir).open()
    session.write_gaps(
        [{"symbol": "AAPL", "kind": "trade", "from_sequence": 0, "to_sequence": 0, "ts_from": before, "ts_to": after, "reason": "test", "source": "ingest", "topic": "", "missing": len(gone)}]
    )  # fmt: skip
    session.stop()

    report = heal("gappy", config)

    assert report.spans_from == "gaps" and report.rows == {"trades": len(gone)}
    assert _rows(recorded.folder, EventKind.TRADES, "AAPL") == _history(
        recorded, EventKind.TRADES, "AAPL"
    )


def test_an_unlisted_healed_file_is_ignored_by_readers_and_removed_by_the_next_heal(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    """What a heal killed after writing its Parquet file but before audit.json leaves behind."""
    recorded = _recorded(sim, tmp_path, days[-1])
    reconcile_by_hand(recorded)
    old_audit = (recorded.folder / "audit.json").read_bytes()
    captured = _rows(recorded.folder, EventKind.TRADES, "AAPL")
    stray = recorded.folder / "healed/trades/part-000001.parquet"
    stray.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(recorded.folder / "trades/part-000001.parquet"), stray)
    (stray.parent / ".part-000002.parquet.999.tmp").write_bytes(b"half")

    assert _rows(recorded.folder, EventKind.TRADES, "AAPL") == captured
    assert datasets.describe(datasets.open_path(recorded.folder)).healed_rows == {}
    assert (recorded.folder / "audit.json").read_bytes() == old_audit

    report = heal("holes", _config(sim, tmp_path))

    assert set(report.removed) == {
        "healed/trades/.part-000002.parquet.999.tmp",
        "healed/trades/part-000001.parquet",
    }
    assert report.files == (
        "healed/quotes/part-000001.parquet",
        "healed/trades/part-000001.parquet",
    )
    assert _rows(recorded.folder, EventKind.TRADES, "AAPL") == _history(
        recorded, EventKind.TRADES, "AAPL"
    )
    assert sorted(p.name for p in stray.parent.iterdir()) == ["part-000001.parquet"]


def test_a_session_still_recording_is_refused_and_an_interrupted_one_must_be_recovered_first(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    config = _config(sim, tmp_path)
    session = Session("live", data_dir=config.data_dir).open()
    session.write("trades", TradeBatch(**_one_trade()))
    with pytest.raises(HealError) as refused:
        heal("live", config)
    assert str(refused.value) == "session live is still being recorded; stop the recorder first"

    live.release(session._live)  # what kill -9 does to the recorder's lock
    with pytest.raises(HealError, match="start the recorder .* to recover it, then heal"):
        heal("live", config, dry_run=True)


def _one_trade() -> dict[str, Any]:
    return {"symbol": ["AAPL"], "price": [1.0], "size": [1], "exchange": [4], "trade_id": ["1"], "conditions": [[]], "tape": [3], "sequence": [1], "ts_event": [S], "ts_recv": [S]}  # fmt: skip


def test_massive_heal_says_what_it_did_and_fails_in_one_line(
    sim: SimServer,
    tmp_path: Path,
    days: list[dt.date],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mesh.cli import main

    recorded = _recorded(sim, tmp_path, days[-1])
    reconcile_by_hand(recorded)
    for key, value in sim_env(sim, tmp_path / "data").items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)

    assert main(["heal", "holes", "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["dry_run"] and len(planned["spans"]) == 2 and planned["rest_calls"] == 0

    assert main(["heal", "holes"]) == 0
    out, err = capsys.readouterr()
    assert "healed 2 span(s)" in out and "AAPL" in out and "heal:" in err

    assert main(["data", "show", "holes"]) == 0
    shown = capsys.readouterr().out
    assert (
        "captured +" in shown
        and "healed)" in shown
        and "heals:" in shown
        and "reconciled:" in shown
    )

    assert main(["heal", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("massive: no dataset 'recording:nosuch'") and err.count("\n") == 1
    with pytest.raises(SystemExit) as usage:
        main(["heal"])
    assert usage.value.code == 2


def test_a_heal_killed_mid_run_leaves_the_recording_and_its_audit_as_they_were(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    """`kill -9` of `massive heal` while it waits for the per-minute REST limit (1 call a minute)."""
    recorded = _recorded(sim, tmp_path, days[-1])
    reconcile_by_hand(recorded)
    old_audit = (recorded.folder / "audit.json").read_bytes()
    env = sim_env(sim, tmp_path / "data", MASSIVE_REST_CALLS_PER_MINUTE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "heal", "holes"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (line := proc.stderr.readline()):  # type: ignore[union-attr]
            seen.append(line)
            if "2/2" in line:  # the second span waits for the minute's one call
                break
        assert any("2/2" in line for line in seen), seen
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    assert (recorded.folder / "audit.json").read_bytes() == old_audit
    assert _rows(recorded.folder, EventKind.TRADES, "AAPL") == _rows(
        recorded.folder, EventKind.TRADES, "AAPL", capture_only=True
    )
    report = heal("holes", _config(sim, tmp_path))  # the audit lock died with the process
    assert report.complete
    for symbol, kind, _, _ in HOLES:
        assert _rows(recorded.folder, kind, symbol) == _history(recorded, kind, symbol)
