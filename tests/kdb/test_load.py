"""`massive kdb load DATASET`: recordings and historical Parquet into a (fake) tickerplant."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesh import calendar, cli
from mesh.datasets.columns import STORAGE
from mesh.kdb.schema import TABLES
from mesh.recorder.columns import WAL
from tests.conftest import free_port
from tests.kdb.conftest import Q_EPOCH, T0, bars, paper_records, quotes, trades

DAY = 86_400_000_000_000


def write_records(path: Path, batch: Any) -> None:
    """A Parquet file whose columns are the record fields, as recordings store them."""
    rows = [msgspec.structs.asdict(r) for r in batch.rows()]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("KDB_TICKERPLANT", "MESH_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path / "data"))
    session = tmp_path / "data/recordings/morning"  # the recorder's layout
    write_records(session / "quotes" / "part-000001.parquet", quotes(2500))
    write_records(session / "trades" / "part-000001.parquet", trades(40))
    write_records(session / "bars_1m.parquet", bars(7))
    write_records(session / "mid_bars_1m.parquet", bars(3))  # quote mids: not kdb+'s bars
    (session / "manifest.json").write_text('{"kind": "recording", "schema_version": 2}')
    days = [calendar.midnight_ns(dt.date(2024, 1, d)) for d in (8, 9, 11, 12)]  # New York days
    hist = pa.table(
        {
            "symbol": ["AAPL"] * 4,
            "timestamp": pa.array(days, pa.timestamp("ns", tz="UTC")),
            "open": [1.0, 2.0, 3.0, 4.0],
            "high": [1.5, 2.5, 3.5, 4.5],
            "low": [0.5, 1.5, 2.5, 3.5],
            "close": [1.2, 2.2, 3.2, 4.2],
            "volume": [1e6, 2e6, 3e6, 4e6],
            "vwap": [1.1, 2.1, 3.1, 4.1],
            "transactions": [10, 20, None, 40],
        }
    )
    (tmp_path / "data/historical/aapl_1d").mkdir(
        parents=True
    )  # as the fetcher wrote it at version 1
    pq.write_table(hist, tmp_path / "data/historical/aapl_1d/bars.parquet")
    (tmp_path / "data/historical/aapl_1d/manifest.json").write_text('{"kind": "historical-bars"}')
    return tmp_path / "data"


def test_a_recording_by_name_loads_every_table_in_batches(
    data_dir: Path, make_tp: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tp = make_tp()
    port = tp.start()
    code = cli.main(
        ["kdb", "load", "morning", "--target", f"127.0.0.1:{port}", "--batch-rows", "1000"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "loaded 2,547 rows (quote 2,500, trade 40, bar 7)" in out.out
    quote_upds = tp.upds("quote")
    assert [u.rows for u in quote_upds] == [1000, 1000, 500]
    names = TABLES["quote"].names
    assert [s for u in quote_upds for s in u.column("sequence", names)] == list(range(2500))
    assert quote_upds[0].column("ts_event", names)[0] == T0 - Q_EPOCH
    [trade] = tp.upds("trade")
    assert trade.column("conditions", TABLES["trade"].names)[:2] == [[], [12, 37]]
    [bar] = tp.upds("bar")
    assert bar.column("interval", TABLES["bar"].names) == ["1m"] * 7  # bars_1m
    assert tp.raw_messages()[-1][1] == 1  # ends with a confirming round trip


def test_version_1_historical_bars_get_their_interval_from_the_timestamps(
    data_dir: Path, make_tp: Any
) -> None:
    tp = make_tp()
    port = tp.start()
    assert cli.main(["kdb", "load", "aapl_1d", "--target", f"127.0.0.1:{port}"]) == 0
    [bar] = tp.upds("bar")
    names = TABLES["bar"].names
    start = bar.column("ts_start", names)
    assert bar.column("interval", names) == ["1d"] * 4
    assert [e - s for s, e in zip(start, bar.column("ts_end", names), strict=True)] == [DAY] * 4
    assert start == [d - Q_EPOCH for d in days_of(data_dir)]
    assert bar.column("transactions", names) == [10, 20, 0, 40]
    assert bar.column("close", names) == [1.2, 2.2, 3.2, 4.2]


def days_of(data_dir: Path) -> list[int]:
    stamps = pq.read_table(data_dir / "historical/aapl_1d/bars.parquet").column("timestamp")
    return [int(v) for v in stamps.cast(pa.int64()).to_pylist()]


def test_a_parquet_file_of_bars_takes_its_interval_from_the_option(
    data_dir: Path, make_tp: Any, tmp_path: Path
) -> None:
    tp = make_tp()
    port = tp.start()
    own = tmp_path / "mine.parquet"
    write_records(own, bars(4))
    assert cli.main(["kdb", "load", str(own), "--target", f"127.0.0.1:{port}"]) == 0
    assert (
        cli.main(["kdb", "load", str(own), "--target", f"127.0.0.1:{port}", "--interval", "5 min"])
        == 0
    )
    first, second = tp.upds("bar")
    names = TABLES["bar"].names
    assert first.column("interval", names) == ["1m"] * 4  # each bar's own width
    assert second.column("interval", names) == ["5m"] * 4


def test_an_unknown_dataset_says_where_it_looked(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["kdb", "load", "nope", "--target", "127.0.0.1:5010"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"massive kdb load: no dataset 'nope': not a recording in {data_dir / 'recordings'}, "
        f"not a historical dataset in {data_dir / 'historical'}, not a path; "
        "known datasets: aapl_1d, morning\n"
    )


def test_an_unreachable_target_fails_at_once_with_a_clear_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("KDB_TICKERPLANT", f"127.0.0.1:{port}:loader:hunter2-pw")
    assert cli.main(["kdb", "load", "morning"]) == 1
    err = capsys.readouterr().err
    assert f"cannot connect to kdb+ at 127.0.0.1:{port}" in err and "hunter2" not in err


def test_no_target_at_all_is_a_usage_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["kdb", "load", "morning"]) == 2
    assert "KDB_TICKERPLANT" in capsys.readouterr().err


def test_a_recordings_paper_orders_fills_and_pnl_load_into_their_tables(
    data_dir: Path, make_tp: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    session = data_dir / "recordings/papered"  # as the recorder stores them (timestamp columns)
    orders, fills, pnls = paper_records("momo", 3)
    for table, records in (("orders", orders), ("fills", fills), ("pnl", pnls)):
        rows = [msgspec.structs.asdict(r) for r in records]
        (session / table).mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pylist(rows, schema=WAL[table]).cast(STORAGE[table]),
            session / table / "part-000001.parquet",
        )
    write_records(session / "quotes" / "part-000001.parquet", quotes(5))
    (session / "manifest.json").write_text('{"kind": "recording", "schema_version": 2}')
    tp = make_tp()
    port = tp.start()
    code = cli.main(["kdb", "load", "papered", "--target", f"127.0.0.1:{port}"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "loaded 14 rows (quote 5, order 3, fill 3, pnl 3)" in out.out
    [pnl] = tp.upds("pnl")
    names = TABLES["pnl"].names
    assert pnl.column("ts", names) == [p.ts - Q_EPOCH for p in pnls]
    assert pnl.column("fill_count", names) == [1, 2, 3]
    assert pnl.column("name", names) == ["momo"] * 3
    [order] = tp.upds("order")
    assert order.column("bar_end", TABLES["order"].names) == [o.bar_end - Q_EPOCH for o in orders]
    [fill] = tp.upds("fill")
    assert fill.column("price", TABLES["fill"].names) == [f.price for f in fills]
