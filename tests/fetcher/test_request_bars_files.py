"""Pure parts: request checks, resampling, and reading day files (header, truncation, prefixes)."""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from mesh import calendar
from mesh.fetcher.bars import MINUTE_SCHEMA, resample
from mesh.fetcher.errors import BadRequest
from mesh.fetcher.minutefile import DamagedFile, read_minute_file
from mesh.fetcher.plan import choose
from mesh.fetcher.request import make_request

TODAY = dt.date(2024, 3, 15)  # a Friday
HEADER = "ticker,volume,open,close,high,low,window_start,transactions\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((["AAPL"], "2024-03-08", "2024-03-01"), "end 2024-03-01 is before start 2024-03-08"),
        ((["AAPL"], "2024-03-01", "2024-04-01"), "end 2024-04-01 is in the future"),
        ((["AAPL"], "2024-03-09", "2024-03-10"), "holds no trading day"),
        ((["AAPL"], "2024-03-29", "2024-03-29"), "holds no trading day"),  # Good Friday
        ((["AA$PL"], "2024-03-01", "2024-03-08"), "unknown symbol 'AA$PL'"),
        ((["AAPL"], "March 1", "2024-03-08"), "not a date"),
        ((["AAPL"], "2024-03-01", "2024-03-08", "7m"), "unknown interval '7m'"),
        ((["AAPL"], "2024-03-01", "2024-03-08", "1d", "ftp"), "unknown method 'ftp'"),
        (([], "2024-03-01", "2024-03-08"), "no symbols"),
        ((["AAPL"], "1850-01-01", "1850-01-05"), "outside the NYSE calendar's range"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(args: tuple, message: str) -> None:
    with pytest.raises(BadRequest, match=message.replace("$", r"\$")):
        make_request(*args, today=dt.date(2024, 3, 30) if "03-29" in str(args) else TODAY)


def test_symbols_are_normalised_and_the_range_counts_trading_days() -> None:
    req = make_request(
        "aapl, brk.b,AAPL", "2024-03-01", "2024-03-08", "5min", "flat-file", today=TODAY
    )
    assert req.symbols == ("AAPL", "BRK.B") and req.interval == "5m" and req.method == "flat_file"
    assert req.days == 8 and len(req.trading_days) == 6


def test_auto_rule_boundaries() -> None:
    five = ["A", "B", "C", "D", "E"]
    assert choose(make_request(five, "2024-03-01", "2024-03-07", today=TODAY))[0] == "rest"
    assert (
        choose(make_request([*five, "F"], "2024-03-01", "2024-03-07", today=TODAY))[0]
        == "flat_file"
    )
    assert choose(make_request(five, "2024-03-01", "2024-03-08", today=TODAY))[0] == "flat_file"
    assert (
        choose(make_request(["A"], "2024-01-01", "2024-03-08", "1d", "rest", today=TODAY))[0]
        == "rest"
    )


def test_calendar_knows_nyse_holidays() -> None:
    assert not calendar.is_trading_day(dt.date(2024, 7, 4))
    assert not calendar.is_trading_day(dt.date(2024, 11, 28))
    assert not calendar.is_trading_day(dt.date(2022, 6, 20))  # Juneteenth observed
    assert calendar.is_trading_day(dt.date(2024, 7, 5))


def _minutes(rows: Sequence[tuple[str, int, float, float, float, float, float, int]]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table(dict(zip(MINUTE_SCHEMA.names, cols, strict=True)), schema=MINUTE_SCHEMA)


def test_resample_to_five_minutes_and_days() -> None:
    day = dt.date(2024, 3, 14)
    t0 = calendar.midnight_ns(day) + (9 * 60 + 30) * 60 * 10**9  # 09:30 New York
    m = 60 * 10**9
    rows = [
        ("MSFT", t0, 10, 11, 9, 10.5, 100, 2),
        ("AAPL", t0 + m, 20, 22, 19, 21, 10, 1),
        ("AAPL", t0, 19, 20, 18, 20, 30, 3),
        ("AAPL", t0 + 5 * m, 21, 21, 20, 20, 0, 1),
        ("AAPL", t0 + m, 20, 22, 19, 21, 10, 1),  # a duplicate minute is counted once
    ]
    bars = resample(_minutes(rows), "5m", day, day).to_pylist()
    assert [(b["symbol"], b["ts_start"].minute, b["ts_end"].minute) for b in bars] == [
        ("AAPL", 30, 35),
        ("AAPL", 35, 40),
        ("MSFT", 30, 35),
    ]
    first = bars[0]
    assert (
        first["open"],
        first["high"],
        first["low"],
        first["close"],
        first["volume"],
        first["transactions"],
    ) == (19, 22, 18, 21, 40, 4)
    assert first["vwap"] == pytest.approx((30 * (20 + 18 + 20) / 3 + 10 * (22 + 19 + 21) / 3) / 40)
    assert bars[1]["vwap"] == pytest.approx((21 + 20 + 20) / 3)  # no volume: plain typical price
    daily = resample(_minutes(rows), "1d", day, day).to_pylist()
    assert [(b["ts_start"].isoformat(), b["ts_end"].isoformat()) for b in daily] == [
        ("2024-03-14T04:00:00+00:00", "2024-03-15T04:00:00+00:00")
    ] * 2  # midnight EDT to midnight EDT
    assert (
        resample(
            _minutes(rows), "1h", day + dt.timedelta(days=1), day + dt.timedelta(days=1)
        ).num_rows
        == 0
    )


def _day_file(path: Path, body: str, header: str = HEADER) -> Path:
    path.write_bytes(gzip.compress((header + body).encode()))
    return path


def test_day_file_filter_keeps_exact_symbols_only(tmp_path: Path) -> None:
    body = "".join(
        f"{sym},100,1,2,3,0.5,{i * 60_000_000_000},5\n"
        for i, sym in enumerate(["A", "AA", "AAP", "AAPL", "AAPLW", "B", "AAPL"])
    )
    table = read_minute_file(_day_file(tmp_path / "d.csv.gz", body), ["AAPL", "A"])
    assert sorted(table["symbol"].to_pylist()) == ["A", "AAPL", "AAPL"]
    assert table.schema == MINUTE_SCHEMA


def test_day_file_with_quoted_tickers_is_still_read(tmp_path: Path) -> None:
    body = '"AAPL",100,1,2,3,0.5,60000000000,5\nMSFT,1,1,1,1,1,60000000000,1\n'
    table = read_minute_file(_day_file(tmp_path / "q.csv.gz", body), ["AAPL"])
    assert table["symbol"].to_pylist() == ["AAPL"]


def test_changed_header_is_refused(tmp_path: Path) -> None:
    path = _day_file(
        tmp_path / "h.csv.gz",
        "AAPL,1,1,1,1,1,1,1\n",
        header="ticker,volume,open,close,high,low,timestamp,transactions\n",
    )
    with pytest.raises(DamagedFile, match="unexpected CSV header"):
        read_minute_file(path, ["AAPL"])


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    path = _day_file(tmp_path / "t.csv.gz", "".join(f"AAPL,1,1,1,1,1,{i},1\n" for i in range(5000)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(DamagedFile, match="ends early"):
        read_minute_file(path, ["AAPL"])


def test_unparsable_value_is_refused(tmp_path: Path) -> None:
    path = _day_file(tmp_path / "v.csv.gz", "AAPL,1,1,abc,1,1,60000000000,1\n")
    with pytest.raises(DamagedFile, match="does not parse"):
        read_minute_file(path, ["AAPL"])
