"""Reconciling one full sim day of every default symbol (trades and quotes) against its flat files.

The day's `trades_v1` and `quotes_v1` files are built by the simulator's flat-file code (the
bytes its S3 serves) into the temp directory and read with `mesh.fetcher.ticks.read_day_file`,
as `massive reconcile --method flat_file` reads them. The recording is those rows as the
WebSocket carries them (event times in milliseconds, every symbol interleaved in time order, as
the recorder writes them), with a few hundred rows removed and a few prices changed. Measured, in the same run, on the same rows:

- ours: `mesh.fetcher.compare.compare` for trades and for quotes (keys, pairing, compared fields,
  per-symbol counts, missing spans);
- baseline: a plain pandas outer merge on the same keys with an indicator, the compared fields
  (without the trades' condition lists) and the per-symbol counts.

The figure is rows compared per second (recorded + reference rows). Target: at least 5x the
pandas merge, and the whole day (reading both files and comparing) under 10 s at the default
scale (`python bench/reconcile.py [SCALE]`, default the sim's 0.05 of a real day's activity). The
last line is the JSON summary.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import report  # noqa: E402
from mesh import calendar  # noqa: E402
from mesh.datasets.audit import EventKind  # noqa: E402
from mesh.fetcher.compare import KEYS, compare  # noqa: E402
from mesh.fetcher.ticks import read_day_file  # noqa: E402
from mesh.sim import history, market  # noqa: E402
from mesh.sim.flatfiles import FlatFiles, key_for  # noqa: E402

MS = 1_000_000
REMOVED_RUNS = 20  # holes cut into each kind of the recording, 10 rows each
CHANGED = 5  # prices changed in each kind
REPEATS = 7


def the_day() -> dt.date:
    today = calendar.today_et()
    return calendar.trading_days(today - dt.timedelta(days=10), today - dt.timedelta(days=1))[-1]


def build_files(day: dt.date, folder: Path, scale: float) -> dict[EventKind, Path]:
    window = market.HistoryWindow.ending_before(day + dt.timedelta(days=1))
    files = FlatFiles(market.DEFAULT_SEED, market.DEFAULT_SYMBOLS, lambda: window, scale)
    out = {}
    for kind, dataset in ((EventKind.TRADES, "trades_v1"), (EventKind.QUOTES, "quotes_v1")):
        path = folder / f"{scale:g}_{key_for(dataset, day).replace('/', '_')}"
        if not path.exists():
            path.write_bytes(files.build(key_for(dataset, day)))
        out[kind] = path
    return out


def recording_of(reference: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The reference as recorded: ms times, holes, a few changed prices."""
    n = reference.num_rows
    keep = np.ones(n, bool)
    for start in rng.integers(0, n - 10, REMOVED_RUNS):
        keep[start : start + 10] = False
    times = reference.column("ts_event").cast(pa.int64()).to_numpy() // MS * MS
    table = reference.set_column(
        reference.schema.get_field_index("ts_event"),
        "ts_event",
        pa.array(times).cast(reference.schema.field("ts_event").type),
    )
    price = "price" if "price" in table.column_names else "bid_price"
    values = table.column(price).to_numpy().copy()
    values[rng.integers(0, n, CHANGED)] += 0.01
    table = table.set_column(table.schema.get_field_index(price), price, pa.array(values))
    table = table.filter(pa.array(keep))
    # the recorder writes events in the order they arrive: every symbol interleaved, by time
    return table.take(pc.sort_indices(table, [("ts_event", "ascending")]))


def ours(kind: EventKind, recorded: pa.Table, reference: pa.Table) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    result = compare(kind, recorded, reference)
    seconds = time.perf_counter() - t0
    return (
        seconds,
        sum(r.missing for r in result.results),
        sum(r.differing for r in result.results),
    )


def pandas_merge(kind: EventKind, recorded: pa.Table, reference: pa.Table) -> tuple[float, int]:
    keys = list(KEYS[kind])
    fields = (
        ["price", "size"]
        if kind is EventKind.TRADES
        else ["bid_price", "bid_size", "bid_exchange", "ask_price", "ask_size", "ask_exchange"]
    )
    columns = list(dict.fromkeys([*keys, *fields, "ts_event"]))
    left = recorded.select(columns).to_pandas()
    right = reference.select(columns).to_pandas()
    t0 = time.perf_counter()
    merged = left.merge(right, on=keys, how="outer", indicator=True, suffixes=("_r", "_m"))
    both = merged[merged["_merge"] == "both"]
    differs = both["ts_event_r"].astype("int64") // MS != both["ts_event_m"].astype("int64") // MS
    for name in fields:
        differs |= both[f"{name}_r"] != both[f"{name}_m"]
    missing = int((merged["_merge"] == "right_only").sum())
    merged.assign(
        missing=merged["_merge"] == "right_only",
        extra=merged["_merge"] == "left_only",
    ).groupby("symbol")[["missing", "extra"]].sum()
    both.assign(differs=differs).groupby("symbol")["differs"].sum()
    return time.perf_counter() - t0, missing


def main() -> None:
    day = the_day()
    folder = Path(tempfile.gettempdir()) / "mesh-bench-reconcile"
    folder.mkdir(exist_ok=True)
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else history.DEFAULT_SCALE
    files = build_files(day, folder, scale)
    symbols = list(market.DEFAULT_SYMBOLS)
    rng = np.random.default_rng(7)
    t0 = time.perf_counter()
    reference = {k: read_day_file(p, k, symbols, recv_ns=0) for k, p in files.items()}
    read_s = time.perf_counter() - t0
    recorded = {k: recording_of(t, rng) for k, t in reference.items()}
    rows = sum(t.num_rows for t in reference.values()) + sum(t.num_rows for t in recorded.values())
    mine: list[float] = []
    base: list[float] = []
    for _ in range(REPEATS):
        took = 0.0
        for kind in EventKind:
            seconds, missing, differing = ours(kind, recorded[kind], reference[kind])
            took += seconds
            assert missing >= 10 * REMOVED_RUNS // 2 and differing == CHANGED, (missing, differing)
        mine.append(took)
        took = 0.0
        for kind in EventKind:
            seconds, missing_pd = pandas_merge(kind, recorded[kind], reference[kind])
            took += seconds
        base.append(took)
    value, baseline = rows / min(mine), rows / min(base)
    day_s = read_s + min(mine)
    trades = reference[EventKind.TRADES].num_rows
    quotes = reference[EventKind.QUOTES].num_rows
    print(
        f"{day} at scale {scale:g}: {len(symbols)} symbols, {trades:,} trades and {quotes:,} quotes at Massive; "
        f"reading both day files {read_s:.2f} s, comparing {min(mine) * 1000:.0f} ms "
        f"({value:,.0f} rows/s); pandas merge {min(base) * 1000:.0f} ms ({baseline:,.0f} rows/s); "
        f"the whole day {day_s:.2f} s",
        file=sys.stderr,
    )
    assert pc.sum(pc.is_null(reference[EventKind.TRADES].column("trade_id"))).as_py() == 0
    report(
        "reconcile",
        "rows_compared_per_second",
        value,
        "rows/s",
        baseline,
        "ratio >= 5 and the day (read + compare) < 10 s",
        day_seconds=round(day_s, 3),
        rows=rows,
        scale=scale,
    )


if __name__ == "__main__":
    main()
