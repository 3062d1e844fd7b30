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
