"""A recording's healed layer: every reader sees capture + healed rows in time, or the capture
alone when asked, and a healed file counts only once audit.json lists it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesh import datasets
from mesh.backtest import datasets as backtest_data
from mesh.datasets import TableKind, audit
from mesh.datasets.audit import Audit, EventKind, Heal, HealedSpan, Method
from mesh.datasets.columns import STORAGE
from mesh.kdb import load as kdb_load
from mesh.recorder.promote import rewrite_bars
from mesh.recorder.replay import replay_events
from mesh.recorder.session import Session
from mesh.recording import read_recording
from mesh.schema import Trade
from tests.datasets.test_data_cli import run
from tests.recorder.helpers import quotes, trades

SYMBOLS = ("AAPL", "MSFT")
HOLE = range(100, 120)  # trades (by sequence) the capture missed
STEP = 1_000_000_000


def _storage(batch: object) -> pa.Table:
    cols = {f: getattr(batch, f) for f in STORAGE["trades"].names}
    return pa.table(
        {f.name: pa.array(cols[f.name], pa.int64() if pa.types.is_timestamp(f.type) else f.type) for f in STORAGE["trades"]}
    ).cast(STORAGE["trades"])  # fmt: skip


@pytest.fixture
def healed(tmp_path: Path) -> Path:
    """A recording whose trades 100..119 were missed, then healed (file listed, bars rebuilt)."""
    data_dir = tmp_path / "data"
    session = Session("mended", data_dir=data_dir).open()
    session.write("quotes", quotes(0, 400, symbols=SYMBOLS, step_ns=600_000_000))
    session.write("trades", trades(0, HOLE.start, symbols=SYMBOLS, step_ns=STEP))
    session.write("trades", trades(HOLE.stop, 240 - HOLE.stop, symbols=SYMBOLS, step_ns=STEP))
    session.stop()
    folder = data_dir / "recordings" / "mended"
    fetched = _storage(trades(HOLE.start, len(HOLE), symbols=SYMBOLS, step_ns=STEP))
    fetched = fetched.set_column(fetched.schema.get_field_index("ts_recv"), "ts_recv", pa.array([time.time_ns()] * fetched.num_rows, pa.int64()).cast(STORAGE["trades"].field("ts_recv").type))  # fmt: skip
    fetched = fetched.append_column("source", pa.array(["rest /v3/trades"] * fetched.num_rows))
    rel = "healed/trades/part-000001.parquet"
    (folder / "healed" / "trades").mkdir(parents=True)
    pq.write_table(fetched, folder / rel)
    span = HealedSpan(symbol="AAPL", kind=EventKind.TRADES, from_ns=0, to_ns=1, rows=len(HOLE))
    entry = Heal(id="heal-1", at_ns=time.time_ns(), method=Method.REST, files=(rel,), spans=(span,))
    with audit.locked(folder):
        audit.write_audit(folder, Audit(heals=(entry,)))
    rewrite_bars(data_dir / "recordings", "mended")
    return folder


def _sequences(table: pa.Table) -> list[int]:
    return table.column("sequence").to_pylist()


def test_readers_get_captured_and_healed_rows_in_time_and_the_capture_alone_when_asked(
    healed: Path,
) -> None:
    dataset = datasets.open_path(healed)
    table = dataset.table(TableKind.TRADES)
    assert table is not None and (table.rows, table.captured_rows, table.healed_rows) == (
        240,
        220,
        20,
    )
    assert _sequences(datasets.read_table(table)) == list(range(240))
    captured = dataset.table(TableKind.TRADES, capture_only=True)
    assert captured is not None and captured.rows == 220
    assert _sequences(datasets.read_table(captured)) == [s for s in range(240) if s not in HOLE]
    assert datasets.open_path(healed, capture_only=True).tables["trades"].rows == 220
    assert dataset.capture_only().tables["trades"].rows == 220

    rows = datasets.read_table(table, columns=["price"], symbols=["AAPL"], source=True)
    assert rows.column_names == ["symbol", "price", "source"]
    with_source = datasets.read_table(table, source=True)
    sources = dict(
        zip(_sequences(with_source), with_source.column("source").to_pylist(), strict=True)
    )
    assert {s for s, src in sources.items() if src == "rest /v3/trades"} == set(HOLE)
    assert all(src is None for s, src in sources.items() if s not in HOLE)
    assert "source" not in datasets.read_table(table).column_names

    batches = [b for _, b in datasets.iter_batches(table, 50)]
    assert all(b.num_rows <= 50 for b in batches)
    assert pa.concat_tables(batches).equals(datasets.read_table(table))


def test_the_backtester_kdb_load_replay_and_read_recording_see_the_healed_rows(
    healed: Path,
) -> None:
    data_dir = healed.parents[1]
    captured = sum(trades(0, HOLE.start, symbols=SYMBOLS, step_ns=STEP).size) + sum(
        trades(HOLE.stop, 240 - HOLE.stop, symbols=SYMBOLS, step_ns=STEP).size
    )
    mended = sum(trades(HOLE.start, len(HOLE), symbols=SYMBOLS, step_ns=STEP).size)
    for capture_only, volume in (
        (False, captured + mended),
        (True, captured),
    ):
        spec = backtest_data.resolve("mended", data_dir, capture_only=capture_only)
        market = backtest_data.load(spec, bar_source="trades")
        assert sum(float(b.volume.sum()) for b in market.bars.values()) == volume

    for capture_only, count in ((False, 240), (True, 220)):
        sources = kdb_load.discover(kdb_load.resolve("mended", data_dir, capture_only=capture_only))
        (trade_source,) = [s for s in sources if s.table == "trade"]
        assert trade_source.rows == count
        assert sum(c.rows for c in kdb_load.chunks(trade_source, 64)) == count

        replayed = [
            e for e in replay_events(healed, capture_only=capture_only) if isinstance(e, Trade)
        ]
        assert len(replayed) == count
        assert [t.ts_event for t in replayed] == sorted(t.ts_event for t in replayed)

        assert len(read_recording(healed, "trades", capture_only=capture_only)) == count

    bars = read_recording(healed, "bars_1s")
    assert int(bars.transactions.sum()) == 240  # rebuilt from capture + healed layer


def test_a_healed_file_audit_json_does_not_list_is_not_read(healed: Path) -> None:
    """What a heal killed before writing audit.json leaves: readers pass it over."""
    stray = healed / "healed" / "trades" / "part-000002.parquet"
    pq.write_table(pq.read_table(healed / "healed" / "trades" / "part-000001.parquet"), stray)
    assert datasets.open_path(healed).tables["trades"].rows == 240
    assert len(read_recording(healed, "trades")) == 240
    assert len([e for e in replay_events(healed) if isinstance(e, Trade)]) == 240

    (healed / "healed" / "trades" / "part-000001.parquet").unlink()  # a listed file removed by hand
    assert datasets.open_path(healed).tables["trades"].rows == 220


def test_massive_data_shows_rows_as_captured_plus_healed_and_the_heals(
    healed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MESH_DATA_DIR", str(healed.parents[1]))
    code, out, _ = run(["data", "show", "mended"], capsys)
    assert code == 0 and " captured + 20 healed)" in out
    assert (
        "heals:          1, 20 rows added, 0 REST calls" in out and "reconciled:     never" in out
    )
    code, out, _ = run(["data", "list", "--json"], capsys)
    (info,) = json.loads(out)
    assert info["healed_rows"] == {"trades": 20} and info["heals"][0]["rows"] == 20
    code, out, _ = run(["data", "list"], capsys)
    assert "healed 20 of the rows" in out
    code, out, _ = run(["data", "show", "mended", "--json"], capsys)
    shown = json.loads(out)
    (trade_table,) = [t for t in shown["table_details"] if t["name"] == "trades"]
    assert trade_table["healed_files"] == ["healed/trades/part-000001.parquet"]
    assert shown["audit"]["heals"][0]["id"] == "heal-1"


def test_the_duckdb_glob_of_data_md_reads_capture_and_healed_layer_with_their_source(
    healed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    monkeypatch.chdir(healed.parents[2])
    rows = duckdb.sql("""
        select count(*) filter (where source is null) as captured, count(source) as healed
        from read_parquet(['data/recordings/mended/trades/*.parquet',
                           'data/recordings/mended/healed/trades/*.parquet'], union_by_name=true)
    """).fetchall()
    assert rows == [(220, 20)]
