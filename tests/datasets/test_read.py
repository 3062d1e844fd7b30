"""Reading: version-1 bars come back in the one bar schema, times in any unit come back as ns UTC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesh import datasets
from mesh.bar_schema import BAR_SCHEMA
from mesh.intervals import MINUTE
from mesh.times import TIME
from tests.datasets.helpers import V1_HISTORICAL, V1_RECORDING, copy_v1


def test_version_1_fetched_bars_read_in_the_current_schema(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    dataset = datasets.resolve(V1_HISTORICAL, tmp_path)
    [table] = dataset.bar_tables()
    assert (table.name, table.version, table.interval and table.interval.name) == (
        "bars_5m",
        1,
        "5m",
    )
    bars = datasets.read_table(table)
    assert bars.schema == BAR_SCHEMA and bars.num_rows == 24
    start = bars.column("ts_start").cast(pa.int64()).to_numpy()
    end = bars.column("ts_end").cast(pa.int64()).to_numpy()
    assert (end - start == 300 * 10**9).all() and bars.column("ts_recv").null_count == 24
    old = pq.read_table(table.files[0])
    assert start.tolist() == old.column("timestamp").cast(pa.int64()).to_pylist()


def test_a_recording_reads_every_table_with_symbol_filters(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    dataset = datasets.resolve(V1_RECORDING, tmp_path)
    quotes = dataset.table(datasets.TableKind.QUOTES)
    assert quotes is not None
    aapl = datasets.read_table(quotes, columns=["ts_event", "bid_price"], symbols=["AAPL"])
    assert aapl.column_names == ["symbol", "ts_event", "bid_price"]
    assert set(aapl.column("symbol").to_pylist()) == {"AAPL"} and 0 < aapl.num_rows < quotes.rows
    assert datasets.read_table(dataset.bar_tables()[0]).schema == BAR_SCHEMA


def test_times_in_any_unit_and_files_without_symbols_read_the_same(tmp_path: Path) -> None:
    starts = 1_700_000_000 + np.arange(4) * 60
    prices = {
        "open": [1.0, 2, 3, 4],
        "high": [2.0, 3, 4, 5],
        "low": [0.5, 1, 2, 3],
        "close": [1.5, 2, 3, 4],
    }
    pq.write_table(pa.table({"t": pa.array(starts), **prices}), tmp_path / "SPY.parquet")
    seconds = datasets.read_table(
        datasets.resolve(str(tmp_path / "SPY.parquet"), tmp_path).bar_tables()[0]
    )
    ms = pa.array(starts * 1000).cast(pa.timestamp("ms", tz="America/New_York"))
    pq.write_table(
        pa.table({"symbol": ["SPY"] * 4, "timestamp": ms, **prices}), tmp_path / "b.parquet"
    )
    dataset = datasets.resolve(str(tmp_path / "b.parquet"), tmp_path)
    zoned = datasets.read_table(dataset.bar_tables()[0])
    assert seconds.drop_columns(["vwap"]).equals(zoned.drop_columns(["vwap"]))
    assert seconds.column("symbol").to_pylist() == ["SPY"] * 4
    assert seconds.column("ts_start").type == TIME
    assert seconds.column("ts_start").cast(pa.int64()).to_pylist() == (starts * 10**9).tolist()
    assert datasets.bar_interval(dataset.bar_tables()[0]) == MINUTE


def test_quotes_with_integer_millisecond_times_read_as_timestamps(tmp_path: Path) -> None:
    ms = 1_700_000_000_000 + np.arange(3)
    pq.write_table(
        pa.table(
            {"symbol": ["A"] * 3, "bid_price": [1.0] * 3, "ask_price": [1.1] * 3, "ts_event": ms}
        ),
        tmp_path / "q.parquet",
    )
    quotes = datasets.resolve(str(tmp_path / "q.parquet"), tmp_path).tables["quotes"]
    read = datasets.read_table(quotes)
    assert read.column("ts_event").type == TIME
    assert read.column("ts_event").cast(pa.int64()).to_pylist() == (ms * 10**6).tolist()


def test_the_python_readers_open_version_1_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mesh.config import Config
    from mesh.historical import list_datasets, load_dataset
    from mesh.recorder.replay import replay_events
    from mesh.recording import read_recording

    copy_v1(tmp_path)
    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path))
    config = Config.load({"MESH_DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    history = load_dataset(V1_HISTORICAL, config=config)
    assert list(history.columns) == list(BAR_SCHEMA.names) and len(history) == 24
    assert [d["name"] for d in list_datasets(config=config)] == [V1_HISTORICAL]
    assert len(read_recording(V1_RECORDING, "trades")) == 60
    assert list(read_recording(V1_RECORDING, "bars_1m").columns) == list(BAR_SCHEMA.names)
    folder = tmp_path / "recordings" / V1_RECORDING
    assert sum(1 for _ in replay_events(folder)) == 180
