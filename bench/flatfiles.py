"""Flat-file extraction: 20 symbols out of a full-market minute-aggregates day, resampled to 5m.

A synthetic day like Massive's `us_stocks_sip/minute_aggs_v1` file (about 10,000 tickers and
2.3 million rows between 04:00 and 20:00 New York time, gzipped CSV with the header
`ticker,volume,open,close,high,low,window_start,transactions`) is generated once into the temp
directory (not the repo) and reused by later runs. Measured, in the same run:

- ours: `mesh.fetcher.minutefile.read_minute_file` (streamed decompression, byte prefilter,
  pyarrow parse and filter) plus `mesh.fetcher.bars.resample(..., "5m")`;
- baseline: `pandas.read_csv` of the gz file, then the symbol filter.

Target: at least 3x faster than the baseline and under 2 s. The last line is the JSON summary.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mesh import calendar  # noqa: E402
from mesh.fetcher.bars import resample  # noqa: E402
from mesh.fetcher.minutefile import HEADER, read_minute_file  # noqa: E402

TICKERS = 10_000
ROWS = 2_400_000
DAY = dt.date(2024, 3, 7)
GZIP_LEVEL = 6
PICK = 20


def synthetic_day(path: Path, seed: int = 1) -> list[str]:
    """Write the synthetic day file; returns the tickers, sorted (as Massive's files are)."""
    rng = np.random.default_rng(seed)
    codes = rng.choice(26**4, TICKERS * 2, replace=False)
    lengths = rng.integers(1, 5, len(codes))
    names = sorted(
        {
            "".join(chr(65 + (int(c) // 26**k) % 26) for k in range(int(n)))
            for c, n in zip(codes, lengths, strict=True)
        }
    )
    rng.shuffle(names)
    names = sorted(names[:TICKERS])
    weights = rng.lognormal(0.0, 1.5, len(names))  # a few very active tickers, a long quiet tail
    lo, hi = 0.0, 1e6
    for _ in range(60):  # scale so that the capped counts add up to ROWS
        scale = (lo + hi) / 2
        lo, hi = (
            (scale, hi)
            if np.clip(weights * scale, 1, 960).astype(np.int64).sum() < ROWS
            else (lo, scale)
        )
    counts = np.clip(weights * scale, 1, 960).astype(np.int64)
    n = int(counts.sum())
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    minute = (np.arange(n) - offsets) * 960 // np.repeat(counts, counts)  # spread over 04:00-20:00
    window_start = calendar.midnight_ns(DAY) + 4 * 3_600_000_000_000 + minute * 60_000_000_000
    level = np.repeat(rng.uniform(1, 500, len(names)), counts) * np.exp(
        np.cumsum(rng.standard_normal(n) * 0.0005)
    )
    open_ = np.round(level, 2)
    close = np.round(level * np.exp(rng.standard_normal(n) * 0.001), 2)
    high = np.round(np.maximum(open_, close) * (1 + rng.random(n) * 0.001), 2)
    low = np.round(np.minimum(open_, close) * (1 - rng.random(n) * 0.001), 2)
    table = pa.table(
        {
            "ticker": pa.array(np.repeat(np.array(names, dtype=object), counts), pa.string()),
            "volume": rng.integers(1, 50_000, n),
            "open": open_,
            "close": close,
            "high": high,
            "low": low,
            "window_start": window_start,
            "transactions": rng.integers(1, 500, n),
        }
    )
    sink = pa.BufferOutputStream()
    pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False, quoting_style="none"))
    raw = (",".join(HEADER) + "\n").encode() + sink.getvalue().to_pybytes()
    gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(gz.compress(raw) + gz.flush())
    tmp.replace(path)
    return names


def main() -> None:
    folder = Path(tempfile.gettempdir()) / "massive-mesh-bench-flatfiles"
    folder.mkdir(exist_ok=True)
    path = folder / f"{DAY.isoformat()}-{TICKERS}x{ROWS}-l{GZIP_LEVEL}.csv.gz"
    if not path.exists():
        t0 = time.perf_counter()
        synthetic_day(path)
        print(f"generated {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rng = np.random.default_rng(7)
    tickers = (
        pcsv.read_csv(
            pa.input_stream(path, compression="gzip"),
            convert_options=pcsv.ConvertOptions(include_columns=["ticker"]),
        )["ticker"]
        .unique()
        .to_pylist()
    )
    symbols = sorted(rng.choice(np.array(tickers, dtype=object), PICK, replace=False).tolist())
    print(
        f"file: {path.stat().st_size / 1e6:.1f} MB gzipped, {len(tickers)} tickers; extracting {PICK} symbols",
        file=sys.stderr,
    )

    ours: list[float] = []
    for _ in range(3):
        t0 = time.perf_counter()
        minutes = read_minute_file(path, symbols)
        bars = resample(minutes, "5m", DAY, DAY)
        ours.append(time.perf_counter() - t0)
    base: list[float] = []
    for _ in range(2):
        t0 = time.perf_counter()
        frame = pd.read_csv(path)
        frame = frame[frame["ticker"].isin(symbols)]
        base.append(time.perf_counter() - t0)
    assert len(frame) == minutes.num_rows, (len(frame), minutes.num_rows)
    value, baseline = statistics.median(ours), statistics.median(base)
    print(
        f"ours {value:.3f} s ({minutes.num_rows} minute rows -> {bars.num_rows} 5m bars); pandas.read_csv + filter {baseline:.3f} s",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "flatfiles",
                "metric": "extract_20_symbols_resample_5m_seconds",
                "value": round(value, 3),
                "unit": "s",
                "baseline": round(baseline, 3),
                "ratio": round(baseline / value, 2),
                "target": "ratio >= 3 and value < 2 s",
            }
        )
    )


if __name__ == "__main__":
    main()
