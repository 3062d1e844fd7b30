"""Fixture builders for the backtester tests: bars, and recording- and history-shaped Parquet folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mesh.backtest.frames import Bars

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
SEC = 1_000_000_000
MIN = 60 * SEC
DAY = 86_400 * SEC
TIME = pa.timestamp("ns", tz="UTC")


def bars(
    opens: list[float],
    closes: list[float],
    *,
    symbol: str = "TEST",
    step: int = MIN,
    highs: list[float] | None = None,
    lows: list[float] | None = None,
) -> Bars:
    o = np.asarray(opens, dtype=float)
    c = np.asarray(closes, dtype=float)
    h = np.maximum(o, c) if highs is None else np.asarray(highs, dtype=float)
    lo = np.minimum(o, c) if lows is None else np.asarray(lows, dtype=float)
    ts = T0 + np.arange(len(o), dtype=np.int64) * step
    return Bars.from_arrays(symbol, ts, o, h, lo, c, np.ones(len(o)), interval_ns=step)


def random_bars(n: int, seed: int = 0, symbol: str = "RND", step: int = MIN) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.0005, n))
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    ts = T0 + np.arange(n, dtype=np.int64) * step
    return Bars.from_arrays(symbol, ts, open_, high, low, close, np.ones(n), interval_ns=step)


def quotes_table(
    ts: np.ndarray,
    symbol: str | list[str],
    bid: np.ndarray,
    ask: np.ndarray,
    bid_size: np.ndarray | None = None,
    ask_size: np.ndarray | None = None,
    *,
    int_times: bool = False,
) -> pa.Table:
    n = len(ts)
    sym = [symbol] * n if isinstance(symbol, str) else list(symbol)
    bs = (
        np.full(n, 100, dtype=np.int64)
        if bid_size is None
        else np.asarray(bid_size, dtype=np.int64)
    )
    az = (
        np.full(n, 100, dtype=np.int64)
        if ask_size is None
        else np.asarray(ask_size, dtype=np.int64)
    )
    times = (
        pa.array(np.asarray(ts, dtype=np.int64))
        if int_times
        else pa.array(np.asarray(ts, dtype=np.int64), type=pa.int64()).cast(TIME)
    )
    return pa.table(
        {
            "symbol": sym,
            "bid_price": np.asarray(bid, float),
            "bid_size": bs,
            "ask_price": np.asarray(ask, float),
            "ask_size": az,
            "bid_exchange": np.full(n, 11),
            "ask_exchange": np.full(n, 12),
            "condition": np.zeros(n, dtype=np.int64),
            "tape": np.full(n, 3),
            "sequence": np.arange(n, dtype=np.int64),
            "ts_event": times,
            "ts_recv": times,
        }
    )


def write_recording(
    root: Path,
    name: str,
    quotes: pa.Table,
    trades: pa.Table | None = None,
    *,
    gaps: int = 0,
    missing: int = 0,
) -> Path:
    """A folder shaped like the recorder's: quotes/part-*.parquet, trades/part-*.parquet, manifest.json."""
    folder = root / "recordings" / name
    (folder / "quotes").mkdir(parents=True, exist_ok=True)
    half = quotes.num_rows // 2
    pq.write_table(quotes.slice(0, half), folder / "quotes" / "part-000001.parquet")
    pq.write_table(quotes.slice(half), folder / "quotes" / "part-000002.parquet")
    rows = {"quotes": quotes.num_rows}
    if trades is not None:
        (folder / "trades").mkdir(exist_ok=True)
        pq.write_table(trades, folder / "trades" / "part-000001.parquet")
        rows["trades"] = trades.num_rows
    ts = quotes.column("ts_event").cast(pa.int64()).to_numpy()
    manifest = {
        "format": 1,
        "name": name,
        "state": "stopped",
        "symbols": sorted(set(quotes.column("symbol").to_pylist())),
        "first_event_ns": int(ts.min()),
        "last_event_ns": int(ts.max()),
        "rows": rows,
        "gaps_total": gaps,
        "missing_total": missing,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def random_quotes(
    n: int,
    symbols: tuple[str, ...] = ("AAA", "BBB"),
    seed: int = 1,
    span_s: int = 3600,
    spread: float = 0.02,
) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = T0 + np.sort(rng.integers(0, span_s * SEC, n))
    sym = [symbols[i % len(symbols)] for i in range(n)]
    mid = 100 + np.cumsum(rng.normal(0, 0.01, n))
    return quotes_table(
        ts,
        sym,
        mid - spread / 2,
        mid + spread / 2,
        rng.integers(1, 500, n),
        rng.integers(1, 500, n),
    )


def write_history(
    root: Path,
    name: str,
    symbols: tuple[str, ...] = ("AAA", "BBB"),
    n: int = 300,
    step: int = DAY,
    seed: int = 3,
    *,
    int_times: bool = False,
) -> Path:
    """A historical dataset: Parquet bars with a `timestamp` column, plus manifest.json."""
    folder = root / "historical" / name
    folder.mkdir(parents=True, exist_ok=True)
    tables = []
    for k, sym in enumerate(symbols):
        b = random_bars(n, seed + k, sym, step)
        times = pa.array(b.ts) if int_times else pa.array(b.ts).cast(TIME)
        tables.append(
            pa.table(
                {
                    "symbol": [sym] * n,
                    "timestamp": times,
                    "open": b.open,
                    "high": b.high,
                    "low": b.low,
                    "close": b.close,
                    "volume": b.volume,
                    "vwap": b.close,
                    "transactions": np.ones(n, dtype=np.int64),
                }
            )
        )
    pq.write_table(pa.concat_tables(tables), folder / "bars.parquet")
    (folder / "manifest.json").write_text(
        json.dumps(
            {"name": name, "symbols": list(symbols), "interval": "1d" if step == DAY else "1m"}
        )
    )
    return folder
