"""Reference and market-status endpoints, judged by Massive's official client and raw httpx."""

from __future__ import annotations

import datetime as dt
import time
import warnings
from collections.abc import Iterator

import exchange_calendars as xcals
import httpx
import pandas as pd
import pytest
from massive import RESTClient
from massive.exceptions import BadResponse

from mesh.sim import conditions, corporate, exchanges, history, market, marketstatus
from mesh.sim.clock import SimClock, session_at
from mesh.sim.server import SimServer
from tests.simulator import ThreadedSim

KEY = "sim-demo-key"
ET = market.ET


@pytest.fixture
def rest(http_sim: SimServer) -> RESTClient:
    return RESTClient(api_key=KEY, base=http_sim.rest_url, retries=0)


@pytest.fixture
def http(http_sim: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=http_sim.rest_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def xnys() -> xcals.ExchangeCalendar:
    with warnings.catch_warnings():  # exchange-calendars reads .values, which pandas deprecates
        warnings.simplefilter("ignore")
        return xcals.get_calendar("XNYS", start="2012-01-01", end="2026-12-31")


# --- tickers -------------------------------------------------------------------------------------


def test_a_search_by_company_name_finds_both_alphabet_share_classes(rest: RESTClient) -> None:
    found = list(rest.list_tickers(search="alphabet"))
    assert sorted(t.ticker for t in found) == ["GOOG", "GOOGL"]
    assert {t.name for t in found} == {"Alphabet Inc. Class A", "Alphabet Inc. Class C"}
    assert all(t.market == "stocks" and t.primary_exchange == "XNAS" for t in found)


def test_the_ticker_list_pages_through_next_url_in_ticker_order(
    rest: RESTClient, http: httpx.Client
) -> None:
    first = http.get("/v3/reference/tickers", params={"apiKey": KEY, "limit": 5}).json()
    assert first["status"] == "OK" and first["count"] == 5 and "next_url" in first
    assert "cursor=" in first["next_url"] and KEY not in first["next_url"]
    listed = [t.ticker for t in rest.list_tickers(limit=5)]
    assert listed == sorted(market.DEFAULT_SYMBOLS)
    descending = [t.ticker for t in rest.list_tickers(limit=7, order="desc")]
    assert descending == sorted(market.DEFAULT_SYMBOLS, reverse=True)


def test_ticker_filters_pick_exchange_type_and_ranges(rest: RESTClient) -> None:
    etfs = {t.ticker for t in rest.list_tickers(type="ETF")}
    assert etfs == {"SPY", "QQQ", "IWM", "DIA", "GLD"}
    on_arca = {t.ticker for t in rest.list_tickers(exchange="ARCX")}
    assert on_arca == {"SPY", "IWM", "DIA", "GLD"}
    assert [t.ticker for t in rest.list_tickers(ticker="MSFT")] == ["MSFT"]
    between = [t.ticker for t in rest.list_tickers(ticker_gte="A", ticker_lt="B")]
    assert between == ["AAPL", "ADBE", "AMD", "AMZN", "AVGO"]
    assert list(rest.list_tickers(market="crypto")) == []
    assert list(rest.list_tickers(active=False)) == []


def test_ticker_details_describe_the_company_and_its_market_cap(rest: RESTClient) -> None:
    aapl = rest.get_ticker_details("AAPL")
    assert (aapl.ticker, aapl.name, aapl.type, aapl.primary_exchange) == (
        "AAPL",
        "Apple Inc.",
        "CS",
        "XNAS",
    )
    assert (aapl.cik, aapl.list_date, aapl.currency_name) == ("0000320193", "1980-12-12", "usd")
    assert aapl.composite_figi is not None and len(aapl.composite_figi) == 12
    close = market.previous_close(market.DEFAULT_SEED, "AAPL", market.today_et())
    assert aapl.share_class_shares_outstanding == market.PROFILES["AAPL"].shares_outstanding
    assert aapl.market_cap == pytest.approx(aapl.share_class_shares_outstanding * close)
    brk = rest.get_ticker_details("BRK.B")
    assert (brk.ticker_root, brk.ticker_suffix, brk.primary_exchange) == ("BRK", "B", "XNYS")
    spy = rest.get_ticker_details("SPY")
    assert (spy.type, spy.primary_exchange, spy.sic_code) == ("ETF", "ARCX", None)


def test_ticker_types_name_the_types_the_sim_lists(rest: RESTClient) -> None:
    types = {t.code: t.description for t in rest.get_ticker_types(asset_class="stocks")}
    assert types["CS"] == "Common Stock" and types["ETF"] == "Exchange Traded Fund"
    assert {market.profile(s).type for s in market.DEFAULT_SYMBOLS} <= set(types)
    assert rest.get_ticker_types(asset_class="crypto") == []


def test_an_unknown_ticker_has_massives_not_found_body(
    rest: RESTClient, http: httpx.Client
) -> None:
    with pytest.raises(BadResponse, match="Ticker not found"):
        rest.get_ticker_details("NOPE")
    response = http.get("/v3/reference/tickers/NOPE", params={"apiKey": KEY})
    body = response.json()
    assert response.status_code == 404
    assert body["status"] == "NOT_FOUND" and body["message"] == "Ticker not found."
    assert body["request_id"]


# --- market status -------------------------------------------------------------------------------


def test_market_status_now_parses_and_says_the_servers_time(rest: RESTClient) -> None:
    status = rest.get_market_status()
    assert status.market in ("open", "closed", "extended-hours")
    assert status.server_time is not None
    server = dt.datetime.fromisoformat(status.server_time)
    assert abs((server - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    expected = marketstatus.status_now(server)
    assert status.market == expected["market"]
    assert status.early_hours == expected["earlyHours"]
    assert status.after_hours == expected["afterHours"]
    assert status.exchanges is not None and status.exchanges.nyse == expected["market"]
    assert status.currencies is not None and status.currencies.crypto == "open"


def _et(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ET)


@pytest.mark.parametrize(
    ("instant", "state", "early", "after"),
    [
        ("2024-11-26T10:00", "open", False, False),  # a Tuesday morning
        ("2024-11-26T08:00", "extended-hours", True, False),  # pre-market
        ("2024-11-26T19:59", "extended-hours", False, True),  # after-hours
        ("2024-11-26T20:00", "closed", False, False),
        ("2024-11-26T03:59", "closed", False, False),
        ("2024-11-30T12:00", "closed", False, False),  # a Saturday
        ("2024-11-28T12:00", "closed", False, False),  # Thanksgiving
        ("2024-11-29T12:59", "open", False, False),  # the day after: closes at 13:00
        ("2024-11-29T13:30", "extended-hours", False, True),  # ... after-hours until 17:00
        ("2024-11-29T17:00", "closed", False, False),
        ("2012-10-29T10:00", "closed", False, False),  # Hurricane Sandy
    ],
)
def test_market_status_at_chosen_instants_follows_the_nyse_calendar(
    xnys: xcals.ExchangeCalendar, instant: str, state: str, early: bool, after: bool
) -> None:
    when = _et(instant)
    body = marketstatus.status_now(when)
    assert (body["market"], body["earlyHours"], body["afterHours"]) == (state, early, after)
    assert body["exchanges"] == {"nasdaq": state, "nyse": state, "otc": state}
    assert body["serverTime"] == when.isoformat(timespec="seconds")
    minute = pd.Timestamp(when.astimezone(dt.UTC).replace(tzinfo=None), tz="UTC")
    assert xnys.is_open_on_minute(minute) == (state == "open")


def test_every_quarter_hour_of_summer_and_year_end_2024_agrees_with_xnys(
    xnys: xcals.ExchangeCalendar,
) -> None:
    """Open exactly when XNYS is; pre-market 4 h before its open; after-hours 4 h after its close."""
    checked = 0
    for start, end in [("2024-06-28", "2024-07-08"), ("2024-11-22", "2025-01-03")]:
        minutes = pd.date_range(f"{start} 00:00", f"{end} 23:45", freq="15min", tz=ET)
        for minute in minutes:
            when = minute.to_pydatetime()
            body = marketstatus.status_now(when)
            day = pd.Timestamp(when.date())
            if xnys.is_session(day):
                opens, closes = xnys.session_open(day), xnys.session_close(day)
                pre = opens - pd.Timedelta(hours=5, minutes=30) <= minute < opens
                post = closes <= minute < closes + pd.Timedelta(hours=4)
            else:
                pre = post = False
            assert body["market"] == (
                "open"
                if xnys.is_open_on_minute(minute)
                else "extended-hours"
                if pre or post
                else "closed"
            ), when
            assert (body["earlyHours"], body["afterHours"]) == (pre, post), when
            checked += 1
    assert checked > 5000


@pytest.mark.parametrize(
    ("instant", "state", "early", "after"),
    [
        ("2024-11-26T10:00", "open", False, False),
        ("2024-11-26T08:00", "extended-hours", True, False),
        ("2024-11-29T13:30", "extended-hours", False, True),
    ],
)
def test_the_official_client_sees_the_market_at_the_sims_clock(
    instant: str, state: str, early: bool, after: bool
) -> None:
    wall = time.time_ns()
    clock = SimClock(session_at(_et(instant), wall), wall=lambda: wall)  # time stands still
    with ThreadedSim(clock=clock, symbols=["AAPL"], s3=False) as sim:
        client = RESTClient(api_key=KEY, base=sim.rest_url, retries=0)
        status = client.get_market_status()
        holidays = client.get_market_holidays()
    assert (status.market, status.early_hours, status.after_hours) == (state, early, after)
    assert status.server_time == _et(instant).isoformat(timespec="seconds")
    assert holidays[0].date >= instant[:10]  # type: ignore[operator]
    assert ("2024-12-25", "closed") in {(h.date, h.status) for h in holidays}


def test_the_early_close_is_the_calendars_1300(xnys: xcals.ExchangeCalendar) -> None:
    close = xnys.session_close(pd.Timestamp("2024-11-29")).tz_convert(ET)
    assert (close.hour, close.minute) == (13, 0)
    holidays = marketstatus.upcoming(_et("2024-11-01T12:00"))
    early = [h for h in holidays if h["date"] == "2024-11-29"]
    assert [h["exchange"] for h in early] == ["NYSE", "NASDAQ"]
    assert early[0] == {
        "exchange": "NYSE",
        "name": "Thanksgiving",
        "date": "2024-11-29",
        "status": "early-close",
        "open": "2024-11-29T14:30:00.000Z",
        "close": "2024-11-29T18:00:00.000Z",
    }


def test_upcoming_holidays_are_the_calendars_closures_for_a_year(
    xnys: xcals.ExchangeCalendar,
) -> None:
    start = _et("2024-11-01T12:00")
    rows = marketstatus.upcoming(start)
    closed = sorted({h["date"] for h in rows if h["status"] == "closed"})
    end = start.date() + dt.timedelta(days=marketstatus.UPCOMING_DAYS)
    weekdays = pd.bdate_range(start.date(), min(end, dt.date(2025, 12, 31)))
    sessions = set(xnys.sessions_in_range(weekdays[0], weekdays[-1]))
    expected = [d.date().isoformat() for d in weekdays if d not in sessions]
    assert [d for d in closed if d <= "2025-12-31"] == expected
    names = {h["date"]: h["name"] for h in rows}
    assert names["2024-11-28"] == "Thanksgiving" and names["2024-12-25"] == "Christmas"
    assert names["2025-01-20"] == "Martin Luther King, Jr. Day"
    assert names["2025-04-18"] == "Good Friday" and names["2025-07-04"] == "Independence Day"
    assert "2025-01-09" in closed  # the one-off closure XNYS knows
    assert all(h["exchange"] in ("NYSE", "NASDAQ") for h in rows)


def test_market_holidays_parse_in_the_official_client(rest: RESTClient) -> None:
    holidays = rest.get_market_holidays()
    assert holidays, "a year ahead always holds a holiday"
    today = market.today_et().isoformat()
    for h in holidays:
        assert h.date is not None and h.date >= today
        assert h.status in ("closed", "early-close")
        assert (h.open is not None) == (h.status == "early-close")


# --- conditions and exchanges --------------------------------------------------------------------


def test_conditions_list_every_condition_the_sims_trades_carry_with_massives_rules(
    rest: RESTClient,
) -> None:
    listed = {c.id: c for c in rest.list_conditions(asset_class="stocks", data_type="trade")}
    assert len(listed) == len(conditions.TABLE)
    for _, code in history.CONDITION_CODES:
        assert code in listed
    form_t = listed[conditions.FORM_T]
    assert form_t.name == "Form T" and form_t.type == "sale_condition"
    assert form_t.sip_mapping is not None and form_t.sip_mapping.CTA == "T"
    rules = form_t.update_rules
    assert rules is not None and rules.consolidated is not None
    assert (
        rules.consolidated.updates_high_low,
        rules.consolidated.updates_open_close,
        rules.consolidated.updates_volume,
    ) == (False, False, True)
    odd_lot = listed[conditions.ODD_LOT].update_rules
    assert odd_lot is not None and odd_lot.consolidated is not None
    assert odd_lot.consolidated.updates_high_low is False
    assert [c.id for c in rest.list_conditions(id=14)] == [14]
    assert all(c.sip_mapping.CTA for c in rest.list_conditions(sip="CTA"))  # type: ignore[union-attr]
    assert list(rest.list_conditions(data_type="nbbo")) == []


def test_exchanges_cover_every_venue_the_sims_history_prints_on(rest: RESTClient) -> None:
    listed = rest.get_exchanges(asset_class="stocks", locale="us")
    ids = {x.id for x in listed}
    assert set(history.EXCHANGES.tolist()) <= ids
    assert set(history.QUOTE_EXCHANGES.tolist()) <= ids
    nasdaq = next(x for x in listed if x.id == 12)
    assert (nasdaq.name, nasdaq.mic, nasdaq.participant_id) == ("Nasdaq", "XNAS", "T")
    assert len(listed) == len(exchanges.STOCK_EXCHANGES)
    assert rest.get_exchanges(asset_class="crypto") == []


# --- corporate actions ---------------------------------------------------------------------------


def test_splits_list_forward_and_reverse_splits_of_the_default_symbols(rest: RESTClient) -> None:
    nvda = list(rest.list_splits(ticker="NVDA"))
    assert [(s.execution_date, s.split_from, s.split_to) for s in nvda] == [
        ("2024-06-10", 1, 10),
        ("2021-07-20", 1, 4),
    ]
    reverse = list(rest.list_splits(reverse_split=True))
    assert [(s.ticker, s.split_from, s.split_to) for s in reverse] == [("INTC", 5, 1)]
    every = list(rest.list_splits(limit=3))
    assert len(every) == len(corporate.SPLITS)
    dates = [s.execution_date for s in every]
    assert dates == sorted(dates, reverse=True)  # newest first by default
    since = list(rest.list_splits(execution_date_gte="2024-01-01", order="asc"))
    assert [s.ticker for s in since] == ["WMT", "NVDA", "AVGO", "INTC"]
    assert all(s.ticker in market.DEFAULT_SYMBOLS for s in every)


def test_dividends_filter_by_ticker_dates_and_type(rest: RESTClient) -> None:
    aapl = list(
        rest.list_dividends(
            ticker="AAPL", ex_dividend_date_gte="2025-01-01", ex_dividend_date_lt="2026-01-01"
        )
    )
    assert len(aapl) == 4
    assert {d.cash_amount for d in aapl} == {0.26}
    assert all(d.frequency == 4 and d.dividend_type == "CD" and d.currency == "USD" for d in aapl)
    assert all(market.is_trading_day(dt.date.fromisoformat(d.ex_dividend_date)) for d in aapl)  # type: ignore[arg-type]
    special = list(rest.list_dividends(dividend_type="SC"))
    assert [(d.ticker, d.cash_amount, d.pay_date) for d in special] == [
        ("COST", 15.0, "2024-01-12")
    ]
    raised = list(rest.list_dividends(cash_amount_gt=1.2, ticker="JPM"))
    assert len(raised) == 8 and all(d.cash_amount > 1.2 for d in raised)  # type: ignore[operator]
    assert len(list(rest.list_dividends(limit=25))) == len(corporate.dividends())


# --- bad input and keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v3/reference/tickers", {"limit": "0"}),
        ("/v3/reference/tickers", {"limit": "1001"}),
        ("/v3/reference/tickers", {"order": "sideways"}),
        ("/v3/reference/tickers", {"sort": "price"}),
        ("/v3/reference/tickers", {"type": "SHARES"}),
        ("/v3/reference/tickers", {"active": "maybe"}),
        ("/v3/reference/tickers", {"date": "yesterday"}),
        ("/v3/reference/tickers", {"cursor": "!!!"}),
        ("/v3/reference/tickers/AAPL", {"date": "2024-02-30"}),
        ("/v3/reference/conditions", {"id": "twelve"}),
        ("/v3/reference/conditions", {"asset_class": "bonds"}),
        ("/v3/reference/exchanges", {"locale": "mars"}),
        ("/v3/reference/splits", {"execution_date.gte": "2024-13-01"}),
        ("/v3/reference/splits", {"reverse_split": "yes"}),
        ("/v3/reference/dividends", {"frequency": "3"}),
        ("/v3/reference/dividends", {"cash_amount.gt": "lots"}),
        ("/v3/reference/dividends", {"dividend_type": "XX"}),
    ],
)
def test_bad_parameters_get_massives_400_body(
    http: httpx.Client, path: str, params: dict[str, str]
) -> None:
    response = http.get(path, params={"apiKey": KEY, **params})
    body = response.json()
    assert response.status_code == 400, body
    assert body["status"] == "ERROR" and body["error"] and body["request_id"]


def test_reference_data_needs_a_key_but_no_paid_plan(http: httpx.Client) -> None:
    assert http.get("/v1/marketstatus/now").status_code == 401
    assert http.get("/v3/reference/tickers", params={"apiKey": "wrong"}).status_code == 401
    free = http.get("/v1/marketstatus/upcoming", params={"apiKey": "free-b"})
    assert free.status_code == 200 and isinstance(free.json(), list)
