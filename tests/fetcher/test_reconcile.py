"""`reconcile`: a recording of the sim's feed compared with the sim's REST and flat files.

The sim's live feed is its history, so a session recorded from it is complete; rows taken out of
the recording, or changed, must show up exactly where they were.
"""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mesh.config import Config
from mesh.datasets import audit
from mesh.datasets.audit import EventKind, Method
from mesh.fetcher.errors import QuotaExceeded
from mesh.fetcher.flatfiles import key_for
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.reconcile import reconcile
from mesh.sim.server import SimServer
from tests.fetcher.conftest import config_of, sim_env
from tests.fetcher.recordings import et_ns, rewrite, write_recording

SYMBOLS = ("AAPL", "MSFT", "SPY")


@pytest.fixture(scope="module")
def day(days: list[dt.date]) -> dt.date:
    return days[-2]  # a completed day: its flat files are published


def key(result: audit.SymbolResult) -> tuple[object, ...]:
    return (
        result.symbol, result.kind, result.recorded, result.reference, result.matched,
        result.missing, result.extra, result.differing, result.missing_spans,
    )  # fmt: skip


def test_a_recording_of_the_feed_is_complete_by_rest_and_by_flat_file_alike(
    sim_config: Config, day: dt.date
) -> None:
    write_recording(sim_config.data_dir, "played", day, "10:00", "10:20", SYMBOLS)
    by_rest = reconcile("played", sim_config, method="rest")
    by_file = reconcile("played", sim_config, method="flat_file")
    assert by_rest.reconciliation is not None and by_file.reconciliation is not None
    assert (
        by_rest.reconciliation.method is Method.REST and by_rest.reconciliation.cost.rest_calls == 6
    )
    assert (
        by_file.reconciliation.method is Method.FLAT_FILE
        and by_file.reconciliation.cost.s3_bytes > 0
    )
    for found in (by_rest.reconciliation, by_file.reconciliation):
        assert found.complete
        assert [(r.symbol, r.kind) for r in found.results] == [
            (s, k) for k in (EventKind.TRADES, EventKind.QUOTES) for s in SYMBOLS
        ]
        assert all(r.recorded == r.reference == r.matched > 0 for r in found.results)
        assert all(r.completeness_pct == 100.0 for r in found.results)
    assert list(map(key, by_rest.reconciliation.results)) == list(
        map(key, by_file.reconciliation.results)
    )
    stored = audit.read_audit(sim_config.data_dir / "recordings" / "played")
    assert stored.reconciliation == by_file.reconciliation


def test_rows_cut_from_the_recording_are_missing_exactly_there(
    sim_config: Config, day: dt.date
) -> None:
    folder = write_recording(sim_config.data_dir, "holed", day, "10:00", "10:10", ("AAPL", "SPY"))
    lo, hi = et_ns(day, "10:03:00"), et_ns(day, "10:03:30")
    before = rewrite(folder, "trades", keep=None)
    times = before.column("ts_event").cast(pa.int64()).to_numpy()
    is_spy = np.array(before.column("symbol").to_pylist()) == "SPY"
    cut = is_spy & (times >= lo) & (times < hi)
    assert cut.sum() > 3
    rewrite(folder, "trades", keep=~cut)
    found = reconcile("holed", sim_config, method="rest").reconciliation
    assert found is not None and not found.complete
    spy = next(r for r in found.results if r.symbol == "SPY" and r.kind is EventKind.TRADES)
    assert (spy.missing, spy.extra, spy.differing) == (int(cut.sum()), 0, 0)
    assert spy.matched == spy.reference - spy.missing
    (span,) = spy.missing_spans
    assert span.rows == int(cut.sum())
    assert span.from_ns // 1_000_000 * 1_000_000 == times[cut].min()
    assert span.to_ns // 1_000_000 * 1_000_000 == times[cut].max()
    assert all(r.complete for r in found.results if r is not spy)
    missing = reconcile("holed", sim_config, method="rest").missing[EventKind.TRADES]
    assert missing.num_rows == int(cut.sum())
    assert set(missing.column("symbol").to_pylist()) == {"SPY"}


def test_a_changed_price_is_one_differing_trade(sim_config: Config, day: dt.date) -> None:
    folder = write_recording(sim_config.data_dir, "changed", day, "11:00", "11:05", ("MSFT",))
    before = rewrite(folder, "trades")
    rewrite(folder, "trades", price=(7, before.column("price")[7].as_py() + 0.01))
    found = reconcile("changed", sim_config, method="rest").reconciliation
    assert found is not None
    trades = next(r for r in found.results if r.kind is EventKind.TRADES)
    assert (trades.differing, trades.missing, trades.extra) == (1, 0, 0)
    assert trades.matched == trades.reference - 1


def test_a_quotes_only_session_reconciles_only_its_quotes_and_symbols(
    sim_config: Config, day: dt.date
) -> None:
    write_recording(
        sim_config.data_dir, "quoted", day, "14:00", "14:05", ("AAPL", "MSFT"), kinds=("quotes",)
    )
    found = reconcile("quoted", sim_config).reconciliation
    assert found is not None and found.method is Method.REST  # 2 symbols, 5 minutes: small
    assert [(r.symbol, r.kind) for r in found.results] == [
        ("AAPL", EventKind.QUOTES),
        ("MSFT", EventKind.QUOTES),
    ]
    assert found.complete
    (one,) = reconcile("quoted", sim_config, symbols=["msft"]).reconciliation.results  # type: ignore[union-attr]
    assert (one.symbol, one.kind, one.complete) == ("MSFT", EventKind.QUOTES, True)


def test_auto_uses_flat_files_for_a_large_span_of_a_completed_day(
    sim_config: Config, day: dt.date
) -> None:
    write_recording(sim_config.data_dir, "long", day, "12:00", "12:45", ("SPY",), kinds=("trades",))
    report = reconcile("long", sim_config)
    assert report.plan.method is Method.FLAT_FILE and "large span" in report.plan.reason
    assert report.reconciliation is not None and report.reconciliation.complete


def test_a_dry_run_spends_nothing_and_says_what_it_would_cost(
    sim_config: Config, day: dt.date
) -> None:
    folder = write_recording(sim_config.data_dir, "planned", day, "10:00", "10:05", SYMBOLS)
    ledger = QuotaLedger.for_config(sim_config)
    before = ledger.snapshot()
    report = reconcile("planned", sim_config, dry_run=True, ledger=ledger)
    after = ledger.snapshot()
    assert (after["rest_calls_today"], after["s3_bytes_month"]) == (
        before["rest_calls_today"],
        before["s3_bytes_month"],
    )
    assert report.reconciliation is None and report.plan.method is Method.REST
    assert report.plan.rest_calls == 6 and report.plan.fits
    assert audit.read_audit(folder).reconciliation is None


def test_a_reconcile_beyond_the_days_rest_calls_is_refused_before_any_is_sent(
    sim: SimServer, tmp_path: Path, day: dt.date
) -> None:
    config = config_of(sim_env(sim, tmp_path / "data", MASSIVE_REST_CALLS_PER_DAY="4"), tmp_path)
    folder = write_recording(config.data_dir, "thrifty", day, "10:00", "10:05", SYMBOLS)
    with pytest.raises(QuotaExceeded, match="at least 6 REST call"):
        reconcile("thrifty", config, method="rest")
    assert QuotaLedger.for_config(config).snapshot()["rest_calls_today"] == 0
    assert audit.read_audit(folder).reconciliation is None
    dry = reconcile("thrifty", config, method="rest", dry_run=True)
    assert not dry.plan.fits and "4 left today" in dry.plan.problems[0]


def test_auto_turns_to_flat_files_when_rest_would_not_fit(
    sim: SimServer, tmp_path: Path, day: dt.date
) -> None:
    config = config_of(sim_env(sim, tmp_path / "data", MASSIVE_REST_CALLS_PER_DAY="1"), tmp_path)
    write_recording(config.data_dir, "small", day, "10:00", "10:02", ("AAPL",))
    report = reconcile("small", config)
    assert report.plan.method is Method.FLAT_FILE and "left today" in report.plan.reason
    assert report.reconciliation is not None and report.reconciliation.complete
    assert QuotaLedger.for_config(config).snapshot()["rest_calls_today"] == 0


def test_a_live_run_is_compared_over_its_whole_clock_span_so_a_late_start_shows_as_missing(
    sim_config: Config, day: dt.date
) -> None:
    write_recording(
        sim_config.data_dir, "late", day, "13:00:10", "13:05", ("SPY",),
        kinds=("trades",), live_run=("13:00", "13:05"),
    )  # fmt: skip
    report = reconcile("late", sim_config)
    assert report.plan.pieces[0].from_ns == et_ns(day, "13:00")
    found = report.reconciliation
    assert found is not None
    (spy,) = found.results
    (span,) = spy.missing_spans
    assert spy.missing == span.rows > 0 and spy.extra == spy.differing == 0
    assert et_ns(day, "13:00") <= span.from_ns <= span.to_ns < et_ns(day, "13:00:10")


def test_day_files_in_the_cache_cost_nothing_and_a_damaged_one_is_fetched_again(
    sim_config: Config, day: dt.date
) -> None:
    write_recording(sim_config.data_dir, "cached", day, "15:00", "15:10", ("AAPL",))
    first = reconcile("cached", sim_config, method="flat_file")
    assert first.reconciliation is not None and first.reconciliation.cost.s3_bytes > 0
    again = reconcile("cached", sim_config, method="flat_file")
    assert again.reconciliation is not None and again.reconciliation.cost.s3_bytes == 0
    assert again.plan.files_cached == again.plan.files == 2
    trades_file = sim_config.data_dir / "flatfiles" / key_for(day, "trades_v1")
    size = trades_file.stat().st_size
    with open(trades_file, "r+b") as f:  # same size, broken gzip: only a full read finds it
        f.seek(size // 2)
        f.write(b"\0" * 64)
    healed = reconcile("cached", sim_config, method="flat_file")
    assert healed.reconciliation is not None
    assert healed.reconciliation.cost.s3_bytes == size
    assert healed.reconciliation.results == first.reconciliation.results


def test_a_cached_day_file_with_a_row_that_does_not_convert_is_fetched_again(
    sim_config: Config, day: dt.date
) -> None:
    """A valid gzip and CSV whose AAPL row has condition codes that are not numbers, or no SIP
    time: rejected by the same full read that finds a broken gzip, so the day is fetched again."""
    write_recording(sim_config.data_dir, "odd-rows", day, "15:00", "15:10", ("AAPL",))
    first = reconcile("odd-rows", sim_config, method="flat_file")
    assert first.reconciliation is not None
    trades_file = sim_config.data_dir / "flatfiles" / key_for(day, "trades_v1")
    size = trades_file.stat().st_size
    header = "ticker,conditions,exchange,id,price,sequence_number,sip_timestamp,size,tape"
    for row in ('AAPL,"12,x",4,1,100.5,5,1,10,3', "AAPL,,4,1,100.5,5,,10,3"):
        trades_file.write_bytes(_gzip_of_size(f"{header}\n{row}\n", size))
        again = reconcile("odd-rows", sim_config, method="flat_file")
        assert again.reconciliation is not None
        assert again.reconciliation.cost.s3_bytes == size
        assert again.reconciliation.results == first.reconciliation.results


def _gzip_of_size(text: str, size: int) -> bytes:
    """`text` gzipped (stored, not compressed) to exactly `size` bytes, padded with a row of a
    ticker nobody asks for: the cache takes a file of the bucket's size for the bucket's file."""
    for pad in range(size - len(text) - 20, 0, -1):
        data = gzip.compress(
            f"{text}ZZZZ,,4,{'x' * pad},1,1,1,1,3\n".encode(), compresslevel=0, mtime=0
        )
        if len(data) == size:
            return data
        if len(data) < size:
            break
    raise AssertionError(f"no stored gzip of {size} bytes")


def test_rows_with_event_times_no_day_can_hold_do_not_stretch_the_compared_span(
    sim_config: Config, day: dt.date
) -> None:
    """One trade stamped 1970 and one 2262 (a damaged or hand-made recording): the span is still
    the session's own, and the two trades count as missing at the times Massive has them."""
    write_recording(sim_config.data_dir, "odd-times", day, "15:00", "15:10", ("AAPL",))
    before = reconcile("odd-times", sim_config, method="rest", dry_run=True).plan.pieces
    folder = sim_config.data_dir / "recordings" / "odd-times"
    rewrite(folder, "trades", ts_event=(0, dt.datetime(2262, 4, 1, tzinfo=dt.UTC)))
    rewrite(folder, "trades", ts_event=(1, dt.datetime(1970, 1, 2, tzinfo=dt.UTC)))

    assert reconcile("odd-times", sim_config, method="rest", dry_run=True).plan.pieces == before
    assert reconcile("odd-times", sim_config, dry_run=True).plan.pieces == before  # auto
    found = reconcile("odd-times", sim_config, method="rest").reconciliation
    assert found is not None
    trades = next(r for r in found.results if r.kind is EventKind.TRADES)
    assert (trades.missing, trades.extra, trades.differing) == (2, 0, 0)
