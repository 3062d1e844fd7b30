"""The fetcher's `reference` answer: company names, previous closes and the market's state, from
the sim's REST API at a chosen played clock, cached for the day and within the quota; names come
from pages of the ticker list, not one call per symbol."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import pytest
from massive import RESTClient

from mesh.fetcher import reference
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.reference import MarketPhase, ReferenceBook, scheduled_phase
from mesh.sim import market
from mesh.sim.clock import SimClock, session_at
from tests.fetcher.conftest import config_of, sim_env
from tests.simulator import ThreadedSim


def _sim_at(instant: dt.datetime, symbols: list[str] | None = None) -> ThreadedSim:
    wall = time.time_ns()
    clock = SimClock(session_at(instant, wall))
    return ThreadedSim(symbols=symbols or ["AAPL", "MSFT"], clock=clock, s3=False)


def _calls_by_endpoint(ledger: QuotaLedger) -> dict[str, int]:
    with sqlite3.connect(ledger.path) as db:
        rows = db.execute("SELECT endpoint, COUNT(*) FROM rest_calls GROUP BY endpoint").fetchall()
    return {endpoint: count for endpoint, count in rows}


class SteppedClock:
    """The ledger's wall clock, moved on by hand to open the next minute's window."""

    def __init__(self) -> None:
        self.ns = time.time_ns()

    def __call__(self) -> int:
        return self.ns


def test_names_previous_closes_and_the_market_state_come_from_rest_and_are_kept_for_the_day(
    tmp_path: Path,
) -> None:
    at = dt.datetime(2026, 12, 4, 10, 0, tzinfo=market.ET)
    with _sim_at(at) as sim:
        config = config_of(sim_env(sim, tmp_path / "data"), tmp_path)
        book = ReferenceBook(config, QuotaLedger.for_config(config))
        first = book.answer(["AAPL", "MSFT"])
        rest = RESTClient(api_key="sim-demo-key", base=sim.rest_url, retries=0)
        prev = rest.get_previous_close_agg("AAPL")[0]
        details = rest.get_ticker_details("AAPL")
        again = book.answer("AAPL,MSFT")
    assert first["market"]["state"] == "open"
    assert first["market"]["server_time"].startswith("2026-12-04T10:0")
    aapl = first["symbols"]["AAPL"]
    assert aapl["name"] == details.name and aapl["name"]
    assert aapl["previous_close"] == prev.close
    assert aapl["previous_day"] == "2026-12-03"
    assert first["pending"] == [] and first["refused"] == "" and first["error"] == ""
    assert first["rest_calls"] == 3  # market status, the previous day's closes, one list page
    assert again["rest_calls"] == 0 and again["symbols"] == first["symbols"]


def test_a_quota_that_refuses_says_so_and_keeps_what_it_has(tmp_path: Path) -> None:
    at = dt.datetime(2026, 12, 4, 18, 0, tzinfo=market.ET)
    with _sim_at(at) as sim:
        config = config_of(
            sim_env(sim, tmp_path / "data", MASSIVE_REST_CALLS_PER_MINUTE="2"), tmp_path
        )
        book = ReferenceBook(config, QuotaLedger.for_config(config))
        started = time.monotonic()
        answer = book.answer(["AAPL", "MSFT"])
        assert time.monotonic() - started < 10  # refused at once, never waited for
    assert answer["market"]["state"] == "after-hours"
    assert answer["symbols"]["AAPL"]["previous_close"] and answer["symbols"]["AAPL"]["name"] is None
    assert answer["pending"] == ["AAPL", "MSFT"]
    assert "per-minute limit" in answer["refused"] and answer["retry_after_s"] > 0
    assert answer["rest_calls"] == 2


def test_every_default_symbol_is_named_by_one_call_to_the_ticker_list(tmp_path: Path) -> None:
    at = dt.datetime(2026, 12, 4, 10, 0, tzinfo=market.ET)
    symbols = list(market.DEFAULT_SYMBOLS)
    with _sim_at(at, symbols) as sim:
        config = config_of(sim_env(sim, tmp_path / "data"), tmp_path)
        ledger = QuotaLedger.for_config(config)
        answer = ReferenceBook(config, ledger).answer(symbols)
        rest = RESTClient(api_key="sim-demo-key", base=sim.rest_url, retries=0)
        details = {symbol: rest.get_ticker_details(symbol).name for symbol in symbols}
    assert len(symbols) == 36 and answer["pending"] == []
    assert {s: answer["symbols"][s]["name"] for s in symbols} == details
    assert all(details.values())
    assert answer["rest_calls"] == 3  # market status, the previous day's closes, the ticker list
    assert _calls_by_endpoint(ledger) == {
        "/v1/marketstatus/now": 1,
        "/v2/aggs/grouped/locale/us/market/stocks/2026-12-03": 1,
        "/v3/reference/tickers": 1,
    }


def test_a_list_that_pages_is_read_only_where_the_symbols_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reference, "LIST_PAGE", 5)  # the sim's 36 tickers as 8 pages
    at = dt.datetime(2026, 12, 4, 10, 0, tzinfo=market.ET)
    symbols = list(market.DEFAULT_SYMBOLS)
    with _sim_at(at, symbols) as sim:
        config = config_of(sim_env(sim, tmp_path / "data"), tmp_path)
        book = ReferenceBook(config, QuotaLedger.for_config(config))
        ends = book.answer("AAPL,XOM")  # a page from AAPL, then one from XOM: nothing between
        everything = book.answer(symbols)
    assert ends["symbols"]["AAPL"]["name"] == market.profile("AAPL").name
    assert ends["symbols"]["XOM"]["name"] == market.profile("XOM").name
    assert ends["rest_calls"] == 2 + 2
    assert everything["pending"] == []
    # the first page named AAPL to AVGO too: the 30 symbols left, from BAC to WMT, 5 a page
    assert everything["rest_calls"] == 6
    assert all(everything["symbols"][s]["name"] == market.profile(s).name for s in symbols)


def test_symbols_the_dashboard_meets_later_are_named_by_the_page_already_read(
    tmp_path: Path,
) -> None:
    at = dt.datetime(2026, 12, 4, 10, 0, tzinfo=market.ET)
    with _sim_at(at, list(market.DEFAULT_SYMBOLS)) as sim:
        config = config_of(sim_env(sim, tmp_path / "data"), tmp_path)
        book = ReferenceBook(config, QuotaLedger.for_config(config))
        first = book.answer("AAPL,SPY")  # the first quotes of the day
        later = [book.answer(s) for s in ("NVDA", "WMT", "ADBE", "XOM")]  # as they appear
    assert first["rest_calls"] == 3  # market status, previous closes, one list page
    assert [a["rest_calls"] for a in later] == [0, 0, 0, 0]
    assert [
        a["symbols"][s]["name"] for a, s in zip(later, ("NVDA", "WMT", "ADBE", "XOM"), strict=True)
    ] == [market.profile(s).name for s in ("NVDA", "WMT", "ADBE", "XOM")]


def test_a_symbol_the_list_lacks_is_asked_about_once_and_stays_unnamed(tmp_path: Path) -> None:
    at = dt.datetime(2026, 12, 4, 10, 0, tzinfo=market.ET)
    with _sim_at(at, ["AAPL", "MSFT", "XOM"]) as sim:
        config = config_of(sim_env(sim, tmp_path / "data"), tmp_path)
        ledger = QuotaLedger.for_config(config)
        book = ReferenceBook(config, ledger)
        first = book.answer("AAPL,NOPE,XOM")
        again = book.answer("AAPL,NOPE,XOM")
    assert first["symbols"]["NOPE"]["name"] is None and first["error"] == ""
    assert first["symbols"]["AAPL"]["name"] and first["symbols"]["XOM"]["name"]
    assert first["pending"] == []  # NOPE has no name, and that is known
    assert first["rest_calls"] == 2 + 2  # one list page, then NOPE's details (a 404)
    assert again["rest_calls"] == 0 and again["symbols"] == first["symbols"]
    assert _calls_by_endpoint(ledger)["/v3/reference/tickers/NOPE"] == 1


def test_names_the_quota_refuses_come_with_the_next_minute(tmp_path: Path) -> None:
    at = dt.datetime(2026, 12, 4, 10, 0, tzinfo=market.ET)
    symbols = list(market.DEFAULT_SYMBOLS)
    with _sim_at(at, symbols) as sim:
        config = config_of(
            sim_env(sim, tmp_path / "data", MASSIVE_REST_CALLS_PER_MINUTE="2"), tmp_path
        )
        clock = SteppedClock()
        book = ReferenceBook(config, QuotaLedger.for_config(config, clock=clock))
        refused = book.answer(symbols)
        clock.ns += 61 * 1_000_000_000
        named = book.answer(symbols)
    assert refused["pending"] == symbols and "per-minute limit" in refused["refused"]
    assert all(refused["symbols"][s]["previous_close"] for s in symbols)
    assert named["pending"] == [] and named["refused"] == "" and named["rest_calls"] == 1
    assert all(named["symbols"][s]["name"] == market.profile(s).name for s in symbols)


def test_the_schedule_knows_pre_market_early_closes_and_holidays() -> None:
    def at(day: dt.date, hour: int, minute: int = 0) -> MarketPhase:
        return scheduled_phase(dt.datetime.combine(day, dt.time(hour, minute), market.ET))

    friday, black_friday = dt.date(2026, 12, 4), dt.date(2026, 11, 27)
    assert at(friday, 3, 59) is MarketPhase.CLOSED
    assert at(friday, 4) is MarketPhase.PRE_MARKET
    assert at(friday, 9, 30) is MarketPhase.OPEN
    assert at(friday, 16) is MarketPhase.AFTER_HOURS
    assert at(friday, 20) is MarketPhase.CLOSED
    assert at(black_friday, 12) is MarketPhase.EARLY_CLOSE
    assert at(black_friday, 13, 30) is MarketPhase.AFTER_HOURS
    assert at(dt.date(2026, 12, 25), 12) is MarketPhase.CLOSED
    assert at(dt.date(2026, 12, 5), 12) is MarketPhase.CLOSED  # a Saturday
