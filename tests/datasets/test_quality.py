"""The data-quality report: a clean sim day is clean, and each problem put into a copy of it is
found once, on the right symbol, at the right time; damaged rows give findings, not exceptions."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mesh import calendar
from mesh.datasets import quality
from mesh.datasets.audit import QualityFinding, QualityIssue
from tests.datasets.quality_helpers import DAY, record_day

SYMBOLS = ("AAPL", "MSFT", "KO")
NOON = calendar.midnight_ns(DAY) + 12 * 3600 * calendar.NS


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_day(tmp_path_factory.mktemp("data"), "clean", SYMBOLS)


def copy(clean: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clean, tmp_path / "recordings" / "copy"))


def edit(session: Path, table: str, change: Callable[[pa.Table], pa.Table]) -> None:
    """Rewrite the recording's one file of `table` with `change` applied to its rows."""
    (path,) = sorted((session / table).glob("*.parquet"))
    rows = pq.read_table(path)
    pq.write_table(change(rows).cast(rows.schema), path)


def ns(rows: pa.Table) -> np.ndarray:
    return pc.cast(rows.column("ts_event"), pa.int64()).to_numpy()


def at_noon(rows: pa.Table, symbol: str = "AAPL", *, round_lot: bool = False) -> int:
    """The index of `symbol`'s first row at or after 12:00 ET (a round lot without conditions)."""
    ok = (rows.column("symbol").to_numpy(zero_copy_only=False) == symbol) & (ns(rows) >= NOON)
    if round_lot:
        ok &= np.array([not c for c in rows.column("conditions").to_pylist()])
    return int(np.flatnonzero(ok)[0])


def put(rows: pa.Table, column: str, index: int, value: object) -> pa.Table:
    values = rows.column(column).to_pylist()
    values[index] = value
    i = rows.schema.get_field_index(column)
    return rows.set_column(i, column, pa.array(values, rows.schema.field(i).type))


def only(findings: list[QualityFinding], issue: QualityIssue) -> QualityFinding:
    (finding,) = [f for f in findings if f.issue is issue]
    return finding


def et(ns_: int) -> str:
    return dt.datetime.fromtimestamp(ns_ / 1e9, calendar.ET).strftime("%H:%M:%S.%f")


def test_a_clean_sim_day_has_no_findings(clean: Path) -> None:
    report = quality.check(clean)
    assert report.findings == ()
    assert quality.summary(report) == "clean"


def test_a_crossed_quote_is_found_once_at_its_time(clean: Path, tmp_path: Path) -> None:
    session = copy(clean, tmp_path)
    quotes = pq.read_table(next((session / "quotes").glob("*.parquet")))
    i = at_noon(quotes)
    edit(
        session, "quotes", lambda q: put(q, "bid_price", i, q.column("ask_price")[i].as_py() + 0.05)
    )
    findings = quality.check(session).findings
    assert [(f.symbol, f.issue, f.count) for f in findings] == [
        ("AAPL", QualityIssue.CROSSED_QUOTE, 1)
    ]
    assert findings[0].examples[0].from_ns == ns(quotes)[i]


def test_a_duplicated_trade_is_found_once(clean: Path, tmp_path: Path) -> None:
    session = copy(clean, tmp_path)
    trades = pq.read_table(next((session / "trades").glob("*.parquet")))
    i = at_noon(trades, "MSFT")
    edit(session, "trades", lambda t: pa.concat_tables([t.slice(0, i + 1), t.slice(i, len(t) - i)]))
    findings = quality.check(session).findings
    assert [(f.symbol, f.issue, f.count) for f in findings] == [("MSFT", QualityIssue.DUPLICATE, 1)]
    assert findings[0].examples[0].to_ns == ns(trades)[i]


def test_an_event_out_of_order_is_found_once(clean: Path, tmp_path: Path) -> None:
    session = copy(clean, tmp_path)
    trades = pq.read_table(next((session / "trades").glob("*.parquet")))
    symbol = trades.column("symbol").to_numpy(zero_copy_only=False)
    first = at_noon(trades)
    second = int(np.flatnonzero((symbol == "AAPL") & (np.arange(len(symbol)) > first))[0])
    assert ns(trades)[second] > ns(trades)[first]
    order = np.arange(len(trades))
    order[[first, second]] = order[[second, first]]
    edit(session, "trades", lambda t: t.take(order))
    findings = quality.check(session).findings
    assert [(f.symbol, f.issue, f.count) for f in findings] == [
        ("AAPL", QualityIssue.OUT_OF_ORDER, 1)
    ]
    late = findings[0].examples[0]
    assert (late.from_ns, late.to_ns) == (ns(trades)[first], ns(trades)[second])


def test_a_trade_five_dollars_away_is_outside_the_nbbo(clean: Path, tmp_path: Path) -> None:
    session = copy(clean, tmp_path)
    trades = pq.read_table(next((session / "trades").glob("*.parquet")))
    i = at_noon(trades, round_lot=True)
    edit(session, "trades", lambda t: put(t, "price", i, t.column("price")[i].as_py() + 5))
    finding = only(list(quality.check(session).findings), QualityIssue.OUTSIDE_NBBO)
    assert (finding.symbol, finding.count) == ("AAPL", 1)
    assert finding.examples[0].from_ns == ns(trades)[i]


def test_a_tenfold_price_is_one_spike(clean: Path, tmp_path: Path) -> None:
    session = copy(clean, tmp_path)
    trades = pq.read_table(next((session / "trades").glob("*.parquet")))
    i = at_noon(trades, "KO", round_lot=True)
    edit(session, "trades", lambda t: put(t, "price", i, t.column("price")[i].as_py() * 10))
    findings = list(quality.check(session).findings)
    spike = only(findings, QualityIssue.PRICE_SPIKE)
    assert (spike.symbol, spike.count) == ("KO", 1)
    assert spike.examples[0].to_ns == ns(trades)[i]
    assert {f.issue for f in findings} <= {QualityIssue.PRICE_SPIKE, QualityIssue.OUTSIDE_NBBO}


def test_a_five_minute_hole_in_a_liquid_symbol_is_one_silence(clean: Path, tmp_path: Path) -> None:
    session = copy(clean, tmp_path)
    hole = (NOON, NOON + 5 * 60 * calendar.NS)

    def drop(rows: pa.Table) -> pa.Table:
        t = ns(rows)
        inside = (rows.column("symbol").to_numpy(zero_copy_only=False) == "AAPL") & (
            (t >= hole[0]) & (t < hole[1])
        )
        return rows.filter(pa.array(~inside))

    edit(session, "trades", drop)
    edit(session, "quotes", drop)
    findings = quality.check(session).findings
    assert [(f.symbol, f.issue, f.count) for f in findings] == [("AAPL", QualityIssue.SILENCE, 1)]
    quiet = findings[0].examples[0]
    assert et(quiet.from_ns) < "12:00:00" and et(quiet.to_ns) >= "12:05:00"
    assert quiet.to_ns - quiet.from_ns < 6 * 60 * calendar.NS


def test_nan_prices_are_bad_prices_not_an_exception(clean: Path, tmp_path: Path) -> None:
    session = copy(clean, tmp_path)
    edit(session, "trades", lambda t: put(t, "price", at_noon(t), float("nan")))
    edit(session, "quotes", lambda q: put(q, "bid_price", at_noon(q, "MSFT"), float("nan")))
    bad = sorted(
        (f.symbol, f.count)
        for f in quality.check(session).findings
        if f.issue is QualityIssue.BAD_PRICE
    )
    assert bad == [("AAPL", 1), ("MSFT", 1)]


def test_empty_tables_have_nothing_to_report(clean: Path, tmp_path: Path) -> None:
    session = copy(clean, tmp_path)
    edit(session, "trades", lambda t: t.slice(0, 0))
    edit(session, "quotes", lambda q: q.slice(0, 0))
    assert quality.check(session).findings == ()


def test_a_quotes_only_session_is_checked_on_its_quotes(tmp_path: Path) -> None:
    session = record_day(tmp_path / "data", "quotes-only", ("SPY",), tables=("quotes",))
    assert not (session / "trades").exists()
    assert quality.check(session).findings == ()


def test_the_summary_counts_each_issue_across_symbols() -> None:
    from mesh.datasets.audit import Quality

    findings = (
        QualityFinding(symbol="AAPL", issue=QualityIssue.CROSSED_QUOTE, count=1),
        QualityFinding(symbol="MSFT", issue=QualityIssue.CROSSED_QUOTE, count=1),
        QualityFinding(symbol="KO", issue=QualityIssue.SILENCE, count=1),
    )
    assert (
        quality.summary(Quality(checked_ns=0, findings=findings)) == "2 crossed quotes, 1 silence"
    )
    assert quality.summary(None) == "not checked"


def test_a_silence_between_the_recorders_runs_is_not_a_silence() -> None:
    ten = calendar.midnight_ns(DAY) + 10 * 3600 * calendar.NS
    second, minute = calendar.NS, 60 * calendar.NS
    times = [ten + i * second for i in range(3600) if not 30 * 60 <= i < 40 * 60]
    trades = pa.table(
        {
            "symbol": ["AAPL"] * len(times),
            "price": [100.0 + (i % 2) * 0.01 for i in range(len(times))],
            "trade_id": [str(i) for i in range(len(times))],
            "exchange": [4] * len(times),
            "ts_event": pa.array(times, pa.timestamp("ns", tz="UTC")),
        }
    )
    one_run = [(ten, ten + 60 * minute)]
    (silence,) = quality.find(trades, None, runs=one_run)
    assert (silence.issue, silence.count) == (QualityIssue.SILENCE, 1)
    assert et(silence.examples[0].from_ns) == "10:29:59.000000"
    stopped_for_the_hole = [(ten, ten + 29 * minute), (ten + 41 * minute, ten + 60 * minute)]
    assert quality.find(trades, None, runs=stopped_for_the_hole) == []


def test_hostile_rows_give_findings_never_an_exception() -> None:
    T = pa.timestamp("ns", tz="UTC")
    times = [0, -(10**18), 2**62, NOON, NOON, NOON + 1]
    trades = pa.table(
        {
            "symbol": ["", "X", "X", "X", "X", "Y"],
            "price": [float("inf"), -1.0, 0.0, float("nan"), 1e300, 5.0],
            "size": [1, 2, 3, 4, 5, 6],
            "exchange": pa.array([None, 4, 4, 4, 4, None], pa.int64()),
            "trade_id": pa.array([None, "1", "1", None, "2", "2"], pa.string()),
            "conditions": pa.array([None, [], [37, None], None, [12], []], pa.list_(pa.int64())),
            "ts_event": pa.array(times, T),
        }
    )
    quotes = pa.table(
        {
            "symbol": ["X", "X", "Y"],
            "bid_price": [float("-inf"), 2.0, 0.0],
            "ask_price": [1.0, float("nan"), 0.0],
            "sequence": pa.array([None, None, 1], pa.int64()),
            "ts_event": pa.array([NOON, 0, 2**62], T),
        }
    )
    findings = quality.find(trades, quotes, runs=[(0, 2**62)])
    bad = {f.symbol: f.count for f in findings if f.issue is QualityIssue.BAD_PRICE}
    assert bad == {"": 1, "X": 5}
    assert quality.find(trades.slice(0, 0), None) == []
    assert quality.find(None, quotes.drop_columns(["sequence"])) != []
    assert quality.find(trades.drop_columns(["trade_id", "conditions", "exchange"]), None) != []


def test_nights_and_weekends_are_not_silences() -> None:
    friday, monday = dt.date(2026, 12, 4), dt.date(2026, 12, 7)
    second = calendar.NS
    times = [calendar.midnight_ns(friday) + 19 * 3600 * second + i * second for i in range(3600)]
    times += [calendar.midnight_ns(monday) + 4 * 3600 * second + i * second for i in range(3600)]
    trades = pa.table(
        {
            "symbol": ["AAPL"] * len(times),
            "price": [100.0] * len(times),
            "ts_event": pa.array(times, pa.timestamp("ns", tz="UTC")),
        }
    )
    assert quality.find(trades, None, runs=[(times[0], times[-1])]) == []


def test_many_findings_are_all_counted_and_five_are_listed(clean: Path, tmp_path: Path) -> None:
    session = copy(clean, tmp_path)
    quotes = pq.read_table(next((session / "quotes").glob("*.parquet")))
    aapl = np.flatnonzero(quotes.column("symbol").to_numpy(zero_copy_only=False) == "AAPL")
    every_other = aapl[::2]  # quotes in time order: no two of them in a row

    def lock(q: pa.Table) -> pa.Table:
        bid = q.column("bid_price").to_numpy().copy()
        bid[every_other] = q.column("ask_price").to_numpy()[every_other]
        return q.set_column(1, "bid_price", pa.array(bid))

    edit(session, "quotes", lock)
    (locked,) = quality.check(session).findings
    assert (locked.symbol, locked.issue, locked.count) == (
        "AAPL",
        QualityIssue.LOCKED_QUOTE,
        len(every_other),
    )
    assert [e.from_ns for e in locked.examples] == ns(quotes)[every_other[:5]].tolist()
