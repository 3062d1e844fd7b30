"""Finding and loading datasets: recordings, historical downloads, Parquet paths; errors; multi-symbol portfolios."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesh.backtest import datasets
from mesh.backtest.errors import BacktestError, DatasetError, DataUnfit
from mesh.backtest.frames import resample
from mesh.backtest.runner import Options, run_backtest
from tests.backtest.helpers import (
    DAY,
    MIN,
    SEC,
    T0,
    quotes_table,
    random_bars,
    random_quotes,
    write_history,
    write_recording,
)


def test_names_resolve_to_recordings_then_history_and_paths_to_parquet(tmp_path: Path) -> None:
    write_recording(tmp_path, "live", random_quotes(1000))
    write_history(tmp_path, "daily")
    assert datasets.resolve("live", tmp_path).kind == "recording"
    assert datasets.resolve("daily", tmp_path).kind == "historical"
    path = datasets.resolve(str(tmp_path / "historical" / "daily" / "bars.parquet"), tmp_path)
    assert (path.kind, sorted(path.tables)) == ("file", ["bars"])
    assert datasets.resolve(str(tmp_path / "recordings" / "live"), tmp_path).kind == "recording"


def test_a_name_in_both_places_must_be_qualified(tmp_path: Path) -> None:
    write_recording(tmp_path, "same", random_quotes(100))
    write_history(tmp_path, "same")
    with pytest.raises(
        DatasetError,
        match="both a recording and a historical dataset: say recording:same or historical:same",
    ):
        datasets.resolve("same", tmp_path)
    assert datasets.resolve("historical:same", tmp_path).kind == "historical"
    assert datasets.resolve("recording:same", tmp_path).kind == "recording"


def test_an_unknown_dataset_names_the_places_looked_and_the_known_ones(tmp_path: Path) -> None:
    write_history(tmp_path, "daily")
    with pytest.raises(
        DatasetError, match=r"no dataset 'dialy'.*not a path; known datasets: daily"
    ):
        datasets.resolve("dialy", tmp_path)
    with pytest.raises(DatasetError, match="no dataset"):
        datasets.resolve("/no/such/file.parquet", tmp_path)
    bad = tmp_path / "notes.parquet"
    bad.write_text("not parquet")
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        datasets.resolve(str(bad), tmp_path)
    odd = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"a": [1]}), odd)
    with pytest.raises(
        DatasetError, match=r"unknown columns \(a\): expected bars .* quotes .* trades"
    ):
        datasets.resolve(str(odd), tmp_path)


def test_listing_shows_symbols_time_ranges_and_gaps(tmp_path: Path) -> None:
    q = random_quotes(2000, symbols=("AAA", "BBB"))
    write_recording(tmp_path, "live", q, gaps=2, missing=7)
    write_history(tmp_path, "daily", symbols=("CCC",), n=10)
    listed = {d["name"]: d for d in datasets.list_datasets(tmp_path)}
    ts = q.column("ts_event").cast(pa.int64()).to_numpy()
    assert listed["live"]["symbols"] == ["AAA", "BBB"]
    assert (listed["live"]["start_ns"], listed["live"]["end_ns"]) == (int(ts.min()), int(ts.max()))
    assert (listed["live"]["gaps_total"], listed["live"]["missing_total"]) == (2, 7)
    assert listed["daily"]["symbols"] == ["CCC"]
    assert listed["daily"]["start_ns"] == T0 and listed["daily"]["end_ns"] == T0 + 9 * DAY
    assert listed["daily"]["start"] == "2023-11-14T22:13:20Z"


def test_int64_and_timestamp_time_columns_load_the_same_bars(tmp_path: Path) -> None:
    write_history(tmp_path / "a", "h")
    write_history(tmp_path / "b", "h", int_times=True)
    one = datasets.load(datasets.resolve("h", tmp_path / "a"))
    two = datasets.load(datasets.resolve("h", tmp_path / "b"))
    for sym in ("AAA", "BBB"):
        assert np.array_equal(one.bars[sym].ts, two.bars[sym].ts)
        assert np.array_equal(one.bars[sym].close, two.bars[sym].close)
    assert one.interval_ns == DAY


def test_a_file_without_a_symbol_column_is_one_symbol_named_after_it(tmp_path: Path) -> None:
    b = random_bars(50)
    path = tmp_path / "SPY.parquet"
    pq.write_table(
        pa.table(
            {
                "timestamp": pa.array(b.ts // 1_000_000).cast(pa.timestamp("ms", tz="UTC")),
                "open": b.open,
                "high": b.high,
                "low": b.low,
                "close": b.close,
            }
        ),
        path,
    )
    market = datasets.load(datasets.resolve(str(path), tmp_path))
    assert market.symbols == ["SPY"] and len(market.bars["SPY"]) == 50 and market.interval_ns == MIN


def test_bars_resample_to_coarser_intervals_and_refuse_finer_ones() -> None:
    b = random_bars(10)
    five = resample(b, 5 * MIN)
    assert len(five) == 3  # T0 is 20 s into a minute, so 10 minutes touch 3 five-minute windows
    assert (five.ts % (5 * MIN) == 0).all()
    for i, start in enumerate(five.ts):
        inside = (b.ts >= start) & (b.ts < start + 5 * MIN)
        assert five.open[i] == b.open[inside][0] and five.close[i] == b.close[inside][-1]
        assert five.high[i] == b.high[inside].max() and five.low[i] == b.low[inside].min()
    with pytest.raises(BacktestError, match="cannot make 30s bars from 1m bars"):
        resample(b, 30 * SEC)


def test_recordings_build_mid_bars_from_quotes_at_any_interval(tmp_path: Path) -> None:
    ts = T0 + np.array([1, 20, 59, 61, 130]) * SEC
    q = quotes_table(
        ts,
        "AAA",
        np.array([99.0, 100.0, 101.0, 102.0, 103.0]),
        np.array([99.2, 100.2, 101.2, 102.2, 103.2]),
    )
    write_recording(tmp_path, "rec", q)
    market = datasets.load(datasets.resolve("rec", tmp_path), interval="1m")
    b = market.bars["AAA"]
    start = (T0 // MIN) * MIN
    assert b.ts.tolist() == [start, start + MIN, start + 2 * MIN]  # T0 is 20 s into a minute
    assert b.open.tolist() == pytest.approx(
        [99.1, 101.1, 103.1]
    ) and b.close.tolist() == pytest.approx([100.1, 102.1, 103.1])
    assert market.bar_source == "mid"


def test_missing_symbols_and_missing_quotes_are_clear_errors(tmp_path: Path) -> None:
    write_history(tmp_path, "daily")
    with pytest.raises(DataUnfit, match="no data for ZZZ; its symbols: AAA, BBB"):
        run_backtest("daily", "buy-and-hold", data_dir=tmp_path, symbols=["ZZZ"])
    with pytest.raises(DataUnfit, match="has no quotes, so it cannot fill at the bid and ask"):
        run_backtest("daily", "buy-and-hold", data_dir=tmp_path, fills="quotes")
    with pytest.raises(BacktestError, match="unknown option 'colour'"):
        run_backtest("daily", "buy-and-hold", data_dir=tmp_path, colour="red")


def test_several_symbols_run_as_an_equal_weight_portfolio(tmp_path: Path) -> None:
    write_history(tmp_path, "daily", symbols=("AAA", "BBB"), n=200)
    both = run_backtest(
        "daily",
        "ma-crossover",
        {"fast": 5, "slow": 20},
        data_dir=tmp_path,
        cash=10_000.0,
        commission_bps=1.0,
    )
    one = {
        s: run_backtest(
            "daily",
            "ma-crossover",
            {"fast": 5, "slow": 20},
            data_dir=tmp_path,
            cash=5_000.0,
            commission_bps=1.0,
            symbols=[s],
        )
        for s in ("AAA", "BBB")
    }
    assert both.curve.equity == pytest.approx(one["AAA"].curve.equity + one["BBB"].curve.equity)
    assert both.metrics["trades"] == one["AAA"].metrics["trades"] + one["BBB"].metrics["trades"]
    assert set(both.per_symbol) == {"AAA", "BBB"}
    assert both.per_symbol["AAA"]["total_return"] == pytest.approx(
        one["AAA"].metrics["total_return"]
    )


def test_quote_fills_on_a_recording_pay_the_recorded_spread(tmp_path: Path) -> None:
    q = random_quotes(4000, symbols=("AAA",), spread=0.10)
    write_recording(tmp_path, "rec", q, gaps=1, missing=3)
    on_quotes = run_backtest("rec", "buy-and-hold", data_dir=tmp_path)
    on_bars = run_backtest("rec", "buy-and-hold", data_dir=tmp_path, fills="bars")
    assert on_quotes.fills_mode == "quotes" and on_bars.fills_mode == "bars"
    fill = on_quotes.runs["AAA"].fills
    assert fill.price[0] - fill.ref_price[0] == pytest.approx(
        0.05
    )  # bought at the ask: half the spread above the mid
    assert on_quotes.metrics["slippage_paid"] == pytest.approx(fill.qty[0] * 0.05)
    assert (
        on_quotes.metrics["dataset_gaps"] == 1
        and on_quotes.metrics["dataset_missing_messages"] == 3
    )


def test_options_are_checked() -> None:
    with pytest.raises(BacktestError, match="fills 'sometimes'"):
        Options(fills="sometimes").check()
    with pytest.raises(BacktestError, match="cash must be positive"):
        Options(cash=0).check()
    with pytest.raises(BacktestError, match="commission-bps must not be negative"):
        Options(commission_bps=-1).check()
