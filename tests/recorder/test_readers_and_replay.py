"""What users do with a recording: read it with pandas, polars, DuckDB, pyarrow; replay it; the seeds' API."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.dataset as ds

from mesh import topics
from mesh.bus import Bus
from mesh.client import Publisher
from mesh.config import Config
from mesh.recorder.replay import replay_batches, replay_events
from mesh.recorder.session import Session
from mesh.recording import WebSocketDataRecorder, read_recording
from mesh.schema import Quote, QuoteBatch, Trade, TradeBatch
from tests.recorder.helpers import quotes, trades, wait_for


def _record(tmp_path: Path) -> Path:
    session = Session("r", data_dir=tmp_path).open()
    for i in range(6):
        session.write("quotes", quotes(i * 100, 100))
        session.write("trades", trades(i * 20, 20, step_ns=35_000_000))  # same pace as the quotes
        if i == 2:
            session.rotate()
            session.promote_pending()
    session.stop()
    return tmp_path / "recordings" / "r"


def test_pandas_polars_duckdb_and_pyarrow_read_the_tables_directly(tmp_path: Path) -> None:
    folder = _record(tmp_path)
    assert ds.dataset(folder / "quotes", format="parquet").count_rows() == 600
    assert len(pd.read_parquet(folder / "trades")) == 120
    assert pl.read_parquet(str(folder / "quotes" / "*.parquet")).height == 600
    con = duckdb.connect()
    (n, first) = con.execute(
        f"select count(*), min(ts_event) from read_parquet('{folder}/quotes/*.parquet')"
    ).fetchone()
    assert n == 600 and first.year == 2023
    assert (
        con.execute(f"select sum(transactions) from '{folder}/bars_1s.parquet'").fetchone()[0]
        == 120
    )
    assert (
        str(pl.read_parquet(str(folder / "trades" / "*.parquet")).schema["ts_event"])
        == "Datetime(time_unit='ns', time_zone='UTC')"
    )


def test_replay_yields_every_event_in_recorded_order_with_original_times(tmp_path: Path) -> None:
    folder = _record(tmp_path)
    events = list(replay_events(folder))
    assert len(events) == 720
    recv = [e.ts_recv for e in events]
    assert recv == sorted(recv)
    q = [e for e in events if isinstance(e, Quote)]
    t = [e for e in events if isinstance(e, Trade)]
    assert [e.sequence for e in q] == list(range(600)) and [e.sequence for e in t] == list(
        range(120)
    )
    sent = quotes(0, 100)
    assert (q[5].ts_event, q[5].bid_price, q[5].symbol) == (
        sent.ts_event[5],
        sent.bid_price[5],
        sent.symbol[5],
    )
    assert t[0].conditions == [12, 37] and t[1].conditions == []
    batches = list(replay_batches(folder, max_rows=50, symbols=["AAPL"]))
    assert all(isinstance(b, QuoteBatch | TradeBatch) and len(b) <= 50 for b in batches)
    assert {s for b in batches for s in b.symbol} == {"AAPL"}
    assert sum(len(b) for b in batches) == 150 + 30


def test_websocket_data_recorder_api_records_saves_and_reads_back(
    bus: Bus, mesh_config: Config
) -> None:
    recorder = WebSocketDataRecorder(symbols=["AAPL", "MSFT"], config=mesh_config)
    recorder.start()
    assert recorder.is_recording
    with Publisher("ingest", mesh_config.bus_pub) as pub:
        time.sleep(0.3)
        for i in range(10):
            pub.publish(topics.quotes(), quotes(i * 100, 100))
        pub.publish(topics.trades(), trades(0, 40))
        wait_for(
            lambda: (
                recorder.stats["rows"]["quotes"] == 500 and recorder.stats["rows"]["trades"] == 20
            )
        )
    recorder.stop()
    path = recorder.save_dataset("live_session_20250104")
    assert path == str(mesh_config.data_dir.absolute() / "recordings" / "live_session_20250104")
    df = recorder.get_recorded_dataframe()
    assert len(df) == 500 and set(df["symbol"]) == {"AAPL", "MSFT"}
    assert len(read_recording(path, "trades")) == 20
    bars = read_recording(path, "bars_1s")
    assert bars["transactions"].sum() == 20
    # a second recording saved under the same name is appended
    again = WebSocketDataRecorder(symbols="AAPL", config=mesh_config)
    again.start()
    with Publisher("ingest2", mesh_config.bus_pub) as pub:
        time.sleep(0.3)
        pub.publish(topics.quotes(), quotes(1000, 100))
        wait_for(lambda: again.stats["rows"]["quotes"] == 25)
    again.stop()
    assert again.save_dataset("live_session_20250104") == path
    df = read_recording(path)
    assert len(df) == 525 and df["sequence"].is_unique
