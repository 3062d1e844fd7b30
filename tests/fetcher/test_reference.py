"""The fetcher's `reference` answer: company names, previous closes and the market's state, from
the sim's REST API at a chosen played clock, cached for the day and within the quota."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from massive import RESTClient

from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.reference import MarketPhase, ReferenceBook, scheduled_phase
from mesh.sim import market
from mesh.sim.clock import SimClock, session_at
from tests.fetcher.conftest import config_of, sim_env
from tests.simulator import ThreadedSim


def _sim_at(instant: dt.datetime) -> ThreadedSim:
    wall = time.time_ns()
    clock = SimClock(session_at(instant, wall))
    return ThreadedSim(symbols=["AAPL", "MSFT"], clock=clock, s3=False)


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
    assert first["rest_calls"] == 4  # market status, the previous day's closes, two names
    assert again["rest_calls"] == 0 and again["symbols"] == first["symbols"]


def test_a_quota_that_refuses_says_so_and_keeps_what_it_has(tmp_path: Path) -> None:
    at = dt.datetime(2026, 12, 4, 18, 0, tzinfo=market.ET)
    with _sim_at(at) as sim:
        config = config_of(
            sim_env(sim, tmp_path / "data", MASSIVE_REST_CALLS_PER_MINUTE="3"), tmp_path
        )
        book = ReferenceBook(config, QuotaLedger.for_config(config))
        started = time.monotonic()
        answer = book.answer(["AAPL", "MSFT"])
        assert time.monotonic() - started < 10  # refused at once, never waited for
    assert answer["market"]["state"] == "after-hours"
    assert answer["symbols"]["AAPL"]["name"] and answer["symbols"]["AAPL"]["previous_close"]
    assert answer["pending"] == ["MSFT"]
    assert "per-minute limit" in answer["refused"] and answer["retry_after_s"] > 0
    assert answer["rest_calls"] == 3


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
