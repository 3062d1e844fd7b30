"""Data folders for the dataset tests: the kept version-1 fixtures, and small current datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mesh import bar_schema
from mesh.intervals import DAY, MINUTE, Interval

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v1"
V1_RECORDING = "v1-recording"
V1_HISTORICAL = "AAPL-MSFT_5m_2024-12-04_2024-12-04"
T0 = 1_733_322_600_000_000_000  # 2024-12-04T14:30:00Z


def copy_v1(data_dir: Path) -> Path:
    """The kept version-1 recording and fetched dataset, copied under `data_dir` (never edited in place)."""
    for place in ("recordings", "historical"):
        shutil.copytree(FIXTURES / place, data_dir / place, dirs_exist_ok=True)
    return data_dir


def bars(
    symbols: tuple[str, ...] = ("AAA", "BBB"), n: int = 5, interval: Interval = MINUTE
) -> pa.Table:
    """Current-schema bars, n per symbol."""
    starts = np.concatenate([T0 + np.arange(n, dtype=np.int64) * interval.ns for _ in symbols])
    close = np.arange(len(starts), dtype=float) + 100.0
    return bar_schema.from_columns(
        [s for s in symbols for _ in range(n)],
        starts,
        interval,
        open=close - 0.5,
        high=close + 1,
        low=close - 1,
        close=close,
        volume=np.full(len(starts), 10.0),
        vwap=close,
        transactions=np.ones(len(starts), dtype=np.int64),
    )


def write_historical(data_dir: Path, name: str, interval: Interval = DAY, n: int = 5) -> Path:
    """A current historical dataset, as the fetcher writes one (bars_<interval>.parquet, manifest)."""
    folder = data_dir / "historical" / name
    folder.mkdir(parents=True, exist_ok=True)
    table = bars(n=n, interval=interval)
    pq.write_table(table, folder / f"bars_{interval.name}.parquet")
    manifest = {
        "schema_version": 2,
        "kind": "historical",
        "name": name,
        "symbols": ["AAA", "BBB"],
        "interval": interval.name,
        "files": [f"bars_{interval.name}.parquet"],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def record(
    data_dir: Path, name: str, *, symbols: tuple[str, ...] = ("AAPL", "MSFT"), seed: int = 0
) -> Path:
    """A recording written by the real recorder: four minutes of quotes and trades."""
    from mesh.recorder.session import Session
    from tests.recorder.helpers import quotes, trades

    session = Session(name, data_dir=data_dir).open()
    session.write("quotes", quotes(0, 400, symbols=symbols, step_ns=600_000_000, seed=seed))
    session.write("trades", trades(0, 240, symbols=symbols, step_ns=1_000_000_000, seed=seed))
    session.stop()
    return data_dir / "recordings" / name


def fetch(data_dir: Path, name: str, interval: str = "1m") -> Path:
    """A historical dataset written by the real fetcher writer, from minute aggregates."""
    import datetime as dt

    from mesh import calendar
    from mesh.fetcher.bars import MINUTE_SCHEMA, resample
    from mesh.fetcher.datasets import write_dataset

    day = dt.date(2024, 12, 4)
    open_ns = calendar.midnight_ns(day) + (9 * 60 + 30) * 60 * 10**9
    rows = [
        (sym, open_ns + m * 60 * 10**9, 100.0 + m, 101.0 + m, 99.0 + m, 100.5 + m, 1000.0, 10)
        for sym in ("SPY", "QQQ")
        for m in range(30)
    ]
    minutes = pa.table(
        dict(zip(MINUTE_SCHEMA.names, zip(*rows, strict=True), strict=True)), schema=MINUTE_SCHEMA
    )
    bars = resample(minutes, interval, day, day)
    info = {
        "symbols": ["QQQ", "SPY"],
        "interval": interval,
        "start": str(day),
        "end": str(day),
        "method": "rest",
    }
    return write_dataset(bars, data_dir, name, info)
