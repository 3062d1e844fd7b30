"""History as deep as Massive's: every trading day from 2003-09-10, day bars and intraday alike;
before it and after today, Massive's 403 for a timeframe the plan does not cover."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest
from massive import RESTClient
from massive.exceptions import BadResponse

from mesh.sim import daycache, market
from mesh.sim.server import SimServer
from tests.sim.test_rest import KEY, flat_file, s3_client

D = dt.date


@pytest.fixture
def rest(http_sim: SimServer) -> RESTClient:
    return RESTClient(api_key=KEY, base=http_sim.rest_url, retries=0)


def test_a_2003_day_bar_comes_through_the_official_client_and_matches_open_close(
    rest: RESTClient,
) -> None:
    bars = list(rest.list_aggs("AAPL", 1, "day", "2003-09-08", "2003-09-12"))
    days = [market.et_date_of_ns(b.timestamp * 1_000_000) for b in bars]
    assert days == [D(2003, 9, 10), D(2003, 9, 11), D(2003, 9, 12)]  # coverage starts 09-10
    first = bars[0]
    assert first.low <= min(first.open, first.close) <= max(first.open, first.close) <= first.high
    oc = rest.get_daily_open_close_agg("AAPL", "2003-09-10")
    assert (oc.open, oc.high, oc.low, oc.close, oc.volume) == (
        first.open,
        first.high,
        first.low,
        first.close,
        first.volume,
    )


def test_a_2015_minute_bar_and_trade_are_built_on_demand(rest: RESTClient) -> None:
    minutes = list(rest.list_aggs("AAPL", 1, "minute", "2015-06-03", "2015-06-03", limit=50_000))
    assert len(minutes) > 300
    assert all(market.et_date_of_ns(b.timestamp * 1_000_000) == D(2015, 6, 3) for b in minutes)
    trades = list(rest.list_trades("AAPL", timestamp="2015-06-03", limit=5, order="asc"))
    assert trades and market.et_date_of_ns(trades[0].sip_timestamp) == D(2015, 6, 3)
    day = rest.get_daily_open_close_agg("AAPL", "2015-06-03")
    assert day.pre_market == minutes[0].open  # the tape behind both is the same
    assert min(m.low for m in minutes) <= day.low <= day.high <= max(m.high for m in minutes)


def test_last_week_has_day_and_minute_bars(rest: RESTClient) -> None:
    window = market.HistoryWindow.ending_before(market.today_et())
    day = window.intraday[-5]
    bars = list(rest.list_aggs("MSFT", 1, "day", day.isoformat(), day.isoformat()))
    minutes = list(rest.list_aggs("MSFT", 1, "minute", day.isoformat(), day.isoformat()))
    assert len(bars) == 1 and minutes
    assert max(m.high for m in minutes) >= bars[0].high


def test_a_2004_day_has_minute_bars_trades_and_quotes_that_make_its_day_bar(
    rest: RESTClient,
) -> None:
    (bar,) = rest.list_aggs("KO", 1, "day", "2004-03-03", "2004-03-03", adjusted=False)
    minutes = list(rest.list_aggs("KO", 1, "minute", "2004-03-03", "2004-03-03", limit=50_000))
    assert len(minutes) >= 390  # a liquid symbol has a bar in every regular-hours minute
    assert max(m.high for m in minutes) >= bar.high and min(m.low for m in minutes) <= bar.low
    trades = list(rest.list_trades("KO", timestamp="2004-03-03", limit=50_000, order="asc"))
    assert len(trades) == bar.transactions and sum(t.size for t in trades) == bar.volume
    quotes = list(rest.list_quotes("KO", timestamp="2004-03-03", limit=5, order="asc"))
    assert quotes and market.et_date_of_ns(quotes[0].sip_timestamp) == D(2004, 3, 3)


def test_a_range_before_coverage_is_outside_the_plans_timeframe(rest: RESTClient) -> None:
    for call in (
        lambda: list(rest.list_aggs("AAPL", 1, "day", "2003-01-01", "2003-09-09")),
        lambda: list(rest.list_aggs("AAPL", 1, "minute", "2001-12-31", "2001-12-31")),
        lambda: list(rest.list_trades("AAPL", timestamp="2003-09-09", limit=5)),
        lambda: rest.get_daily_open_close_agg("AAPL", "2003-09-09"),
        lambda: rest.get_grouped_daily_aggs("2003-09-09"),
    ):
        with pytest.raises(BadResponse, match="NOT_AUTHORIZED.*timeframe"):
            call()
    # a range that reaches into coverage serves what it covers
    days = list(rest.list_aggs("AAPL", 1, "day", "2003-01-01", "2003-09-11"))
    assert [market.et_date_of_ns(b.timestamp * 1_000_000) for b in days] == [
        D(2003, 9, 10),
        D(2003, 9, 11),
    ]


def test_a_weekend_inside_coverage_has_no_open_close_and_an_empty_grouped_day(
    rest: RESTClient,
) -> None:
    with pytest.raises(BadResponse, match="NOT_FOUND"):
        rest.get_daily_open_close_agg("AAPL", "2010-03-13")  # a Saturday
    assert rest.get_grouped_daily_aggs("2010-03-13") == []


def test_a_future_date_is_outside_the_plans_timeframe(rest: RESTClient) -> None:
    future = (market.today_et() + dt.timedelta(days=400)).isoformat()
    for call in (
        lambda: list(rest.list_aggs("AAPL", 1, "day", future, future)),
        lambda: list(rest.list_trades("AAPL", timestamp=future, limit=5)),
        lambda: rest.get_daily_open_close_agg("AAPL", future),
    ):
        with pytest.raises(BadResponse, match="NOT_AUTHORIZED.*timeframe"):
            call()
    # a range that runs on into the future serves what has happened
    today = market.today_et()
    since = (today - dt.timedelta(days=10)).isoformat()
    assert list(rest.list_aggs("AAPL", 1, "day", since, future))


def test_day_bars_from_2003_to_today_come_in_one_request_and_from_disk_the_next_time(
    http_sim: SimServer,
) -> None:
    today = market.today_et()
    url = f"/v2/aggs/ticker/DIA/range/1/day/2003-09-10/{today.isoformat()}"
    with httpx.Client(base_url=http_sim.rest_url, timeout=120) as client:
        started = time.monotonic()
        body = client.get(url, params={"apiKey": KEY, "limit": 50_000}).json()
        cold = time.monotonic() - started
        started = time.monotonic()
        again = client.get(url, params={"apiKey": KEY, "limit": 50_000}).json()
        warm = time.monotonic() - started
    window = market.HistoryWindow.ending_before(today)
    assert body["resultsCount"] == len(window.day_bars) and again == {
        **body,
        "request_id": again["request_id"],
    }
    assert cold < 60 and warm < 5, (cold, warm)
    # every completed year is now on disk, where a new process reads it instead of drawing it
    root = daycache.cache_root()
    assert root is not None
    years = {p.stem for p in root.glob(f"*/seed{market.DEFAULT_SEED}-*/DIA/*.npz")}
    assert years >= {str(y) for y in range(2003, today.year)}


def test_a_2010_month_listing_is_quick_and_lists_every_trading_day(http_sim: SimServer) -> None:
    s3 = s3_client(http_sim)
    started = time.monotonic()
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket="flatfiles", Prefix="us_stocks_sip/day_aggs_v1/2010/03/"
    )
    keys = [o["Key"] for page in pages for o in page.get("Contents", ())]
    assert time.monotonic() - started < 10
    days = [D.fromisoformat(k.rsplit("/", 1)[1][:10]) for k in keys]
    assert days == market.trading_days(D(2010, 3, 1), D(2010, 3, 31)) and len(days) == 23
    none = s3.list_objects_v2(Bucket="flatfiles", Prefix="us_stocks_sip/day_aggs_v1/2003/08/")
    assert "Contents" not in none


def test_rest_and_flat_files_agree_on_an_old_day(http_sim: SimServer, rest: RESTClient) -> None:
    day = D(2010, 3, 15)
    frame = flat_file(http_sim, "day_aggs_v1", day).set_index("ticker")
    grouped = {  # flat files hold prices as traded
        g.ticker: g for g in rest.get_grouped_daily_aggs(day.isoformat(), adjusted=False)
    }
    assert sorted(grouped) == sorted(frame.index)
    for ticker, g in grouped.items():
        row = frame.loc[ticker]
        assert (row.open, row.high, row.low, row.close, row.volume) == (
            g.open,
            g.high,
            g.low,
            g.close,
            g.volume,
        )
    (bar,) = rest.list_aggs("AAPL", 1, "day", day.isoformat(), day.isoformat(), adjusted=False)
    assert (bar.open, bar.close, bar.volume) == (
        frame.loc["AAPL"].open,
        frame.loc["AAPL"].close,
        frame.loc["AAPL"].volume,
    )
    assert bar.timestamp * 1_000_000 == frame.loc["AAPL"].window_start


def test_the_walk_before_2014_meets_the_later_days_without_a_jump() -> None:
    path = market.daily_path(market.DEFAULT_SEED, "AAPL")
    before, after = path.index[D(2013, 12, 31)], path.index[D(2014, 1, 2)]
    assert after == before + 1
    assert 0.8 < path.close[after] / path.close[before] < 1.25
    assert D(2003, 9, 9) not in path.index and D(2003, 9, 10) in path.index


def _built(sim: SimServer) -> int:
    assert sim.s3 is not None
    return sim.s3.gateway.files_built


def test_listing_years_with_a_delimiter_builds_no_file(http_sim: SimServer) -> None:
    s3 = s3_client(http_sim)
    built = _built(http_sim)
    listed = s3.list_objects_v2(
        Bucket="flatfiles", Prefix="us_stocks_sip/day_aggs_v1/", Delimiter="/"
    )
    years = [p["Prefix"] for p in listed["CommonPrefixes"]]
    last_year = market.HistoryWindow.ending_before(market.today_et()).day_bars[-1].year
    assert years == [f"us_stocks_sip/day_aggs_v1/{y}/" for y in range(2003, last_year + 1)]
    assert "Contents" not in listed and _built(http_sim) == built


def test_a_paged_listing_builds_only_the_pages_asked_for(http_sim: SimServer) -> None:
    s3 = s3_client(http_sim)
    built = _built(http_sim)
    first = s3.list_objects_v2(Bucket="flatfiles", Prefix="us_stocks_sip/trades_v1/", MaxKeys=2)
    assert [o["Key"] for o in first["Contents"]] == [
        "us_stocks_sip/trades_v1/2003/09/2003-09-10.csv.gz",
        "us_stocks_sip/trades_v1/2003/09/2003-09-11.csv.gz",
    ]
    assert first["IsTruncated"] and _built(http_sim) == built + 2
    second = s3.list_objects_v2(
        Bucket="flatfiles",
        Prefix="us_stocks_sip/trades_v1/",
        MaxKeys=2,
        ContinuationToken=first["NextContinuationToken"],
    )
    assert [o["Key"][-17:-7] for o in second["Contents"]] == ["2003-09-12", "2003-09-15"]
    body = s3.get_object(Bucket="flatfiles", Key=second["Contents"][0]["Key"])
    assert body["ContentLength"] == second["Contents"][0]["Size"]
    assert body["ETag"] == second["Contents"][0]["ETag"]
    months = s3.get_paginator("list_objects_v2").paginate(
        Bucket="flatfiles", Prefix="us_stocks_sip/minute_aggs_v1/2015/", Delimiter="/"
    )
    prefixes = [p["Prefix"][-3:] for page in months for p in page.get("CommonPrefixes", ())]
    assert prefixes == [f"{m:02d}/" for m in range(1, 13)]


def test_a_page_of_minute_bars_over_years_builds_only_the_days_it_needs(
    http_sim: SimServer,
) -> None:
    today = market.today_et()
    url = f"/v2/aggs/ticker/AAPL/range/1/minute/2003-01-01/{today.isoformat()}"
    with httpx.Client(base_url=http_sim.rest_url, timeout=60) as client:
        started = time.monotonic()
        oldest = client.get(url, params={"apiKey": KEY, "limit": 1000, "sort": "asc"}).json()
        newest = client.get(url, params={"apiKey": KEY, "limit": 1000, "sort": "desc"}).json()
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed
    assert market.et_date_of_ns(oldest["results"][0]["t"] * 1_000_000) == D(2003, 9, 10)
    last = market.HistoryWindow.ending_before(today).intraday[-1]
    assert market.et_date_of_ns(newest["results"][0]["t"] * 1_000_000) == last
    assert oldest["resultsCount"] == newest["resultsCount"] == 1000
    assert "next_url" in oldest and "next_url" in newest
