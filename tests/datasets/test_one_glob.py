"""Recorded and fetched bars are one table to any engine: one glob, one schema, every row.

Two recordings written by the real recorder and one dataset written by the real fetcher share
`<data>/*/*/bars_1m.parquet`; DuckDB, polars and pyarrow.dataset each read all of their rows in
one query, with the one bar schema (mesh/bar_schema.py). Datasets written at schema version 1 join
the glob once `massive data migrate` has rewritten them.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from mesh import cli, datasets
from mesh.bar_schema import BAR_SCHEMA
from tests.datasets.helpers import copy_v1, fetch, record


def minute_bars(data_dir: Path) -> str:
    return f"{data_dir}/*/*/bars_1m.parquet"


def test_two_recordings_and_a_fetch_are_one_table_to_duckdb_polars_and_pyarrow(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    files = [
        record(data, "morning") / "bars_1m.parquet",
        record(data, "evening", symbols=("NVDA", "TSLA"), seed=5) / "bars_1m.parquet",
        fetch(data, "etfs") / "bars_1m.parquet",
    ]
    assert sorted(glob.glob(minute_bars(data))) == sorted(map(str, files))
    for file, kind in zip(files, ("recording", "recording", "historical"), strict=True):
        manifest = json.loads((file.parent / "manifest.json").read_text())
        assert (manifest["kind"], manifest["schema_version"]) == (kind, 2)
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    symbols = {"AAPL", "MSFT", "NVDA", "TSLA", "QQQ", "SPY"}
    assert all(pq.read_schema(f).remove_metadata() == BAR_SCHEMA for f in files)

    con = duckdb.connect()
    found = con.execute(
        f"select count(*), count(distinct symbol), min(ts_start) < max(ts_start) from '{minute_bars(data)}'"
    ).fetchone()
    assert found == (rows, len(symbols), True)
    described = con.execute(f"describe select * from '{minute_bars(data)}'").fetchall()
    assert [c[0] for c in described] == list(BAR_SCHEMA.names)

    frame = pl.scan_parquet(minute_bars(data)).collect()
    assert frame.height == rows and set(frame["symbol"].unique()) == symbols
    assert frame.columns == list(BAR_SCHEMA.names)
    assert frame.schema["ts_start"] == pl.Datetime("ns", "UTC")

    table = ds.dataset(sorted(glob.glob(minute_bars(data))), format="parquet").to_table()
    assert table.num_rows == rows and table.schema.remove_metadata() == BAR_SCHEMA
    fetched = table.filter(ds.field("symbol") == "SPY")
    assert fetched.column("ts_recv").null_count == fetched.num_rows  # history was not received live
    recorded = table.filter(ds.field("symbol") == "AAPL")
    assert recorded.column("ts_recv").null_count == 0


def test_old_datasets_join_the_glob_after_migrate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = copy_v1(tmp_path / "data")
    record(data, "today")
    every_bar = f"{data}/*/*/bars_*.parquet"
    before = pl.scan_parquet(every_bar).collect()
    assert set(before["symbol"].unique()) == {
        "AAPL",
        "MSFT",
        "NVDA",
        "TSLA",
    }  # the old fetch is bars.parquet
    monkeypatch.setenv("MESH_DATA_DIR", str(data))
    assert cli.main(["data", "migrate", "--all"]) == 0
    after = pl.scan_parquet(every_bar).collect()
    assert after.columns == list(BAR_SCHEMA.names)
    fetched = datasets.resolve("AAPL-MSFT_5m_2024-12-04_2024-12-04", data).bar_tables()[0]
    assert after.height == before.height + fetched.rows
