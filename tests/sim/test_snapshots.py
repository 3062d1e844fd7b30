"""Stock snapshots, judged by Massive's official client against REST at the same played instant."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
from massive import RESTClient
from massive.exceptions import BadResponse

from mesh.sim import history, market, snapshots
from mesh.sim.clock import SimClock, session_at
from tests.simulator import ThreadedSim

KEY = "sim-demo-key"
SYMBOLS = ["AAPL", "INTC", "MSFT"]
DAY = dt.date(2024, 11, 26)  # a Tuesday; the Monday before is the previous session
PREV = dt.date(2024, 11, 25)


def _et(day: dt.date, hh: int, mm: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), tzinfo=market.ET)


@pytest.fixture(scope="module", params=[(9, 35), (4, 5)], ids=["0935", "0405"])
def played(request: pytest.FixtureRequest) -> Iterator[tuple[RESTClient, int]]:
    wall = time.time_ns()
    at = _et(DAY, *request.param)
    clock = SimClock(session_at(at, wall), wall=lambda: wall)  # time stands still
    with ThreadedSim(clock=clock, symbols=SYMBOLS, s3=False) as sim:
        yield RESTClient(api_key=KEY, base=sim.rest_url, retries=0), clock.now_ns()


def test_a_ticker_snapshot_matches_rest_trades_quotes_and_bars_at_the_played_instant(
    played: tuple[RESTClient, int],
) -> None:
    client, now_ns = played
    snap = client.get_snapshot_ticker("stocks", "AAPL")
    today = {"timestamp_gte": history.session_bounds_ns(DAY)[0], "timestamp_lte": now_ns}
    trades = list(client.list_trades("AAPL", order="desc", limit=1, **today))[:1]
    quotes = list(client.list_quotes("AAPL", order="desc", limit=1, **today))[:1]
    prev = client.get_aggs("AAPL", 1, "day", PREV, PREV)[0]
    minutes = client.get_aggs("AAPL", 1, "minute", DAY, DAY)
    assert snap.ticker == "AAPL"
    assert (snap.prev_day.close, snap.prev_day.volume) == (prev.close, prev.volume)
    assert quotes, "the sim quotes AAPL from 04:00"
    quote = quotes[0]
    assert (
        snap.last_quote.bid_price,
        snap.last_quote.ask_price,
        snap.last_quote.sip_timestamp,
    ) == (
        quote.bid_price,
        quote.ask_price,
        quote.sip_timestamp,
    )
    if not trades:  # no trade yet today: lastTrade and todaysChange stay 0
        assert (snap.last_trade.price, snap.todays_change) == (0, 0)
        assert snap.updated == quote.sip_timestamp
        return
    trade = trades[0]
    assert (snap.last_trade.price, snap.last_trade.sip_timestamp) == (
        trade.price,
        trade.sip_timestamp,
    )
    assert snap.todays_change == pytest.approx(trade.price - prev.close, abs=1e-4)
    assert snap.todays_change_percent == pytest.approx(
        (trade.price - prev.close) / prev.close * 100, abs=1e-3
    )
    if minutes:
        assert (snap.min.timestamp, snap.min.close) == (minutes[-1].timestamp, minutes[-1].close)
        assert snap.min.accumulated_volume == sum(m.volume for m in minutes)
    assert snap.updated == max(trade.sip_timestamp, quote.sip_timestamp)


def test_the_day_bar_stays_zero_until_the_regular_session_trades(
    played: tuple[RESTClient, int],
) -> None:
    client, now_ns = played
    snap = client.get_snapshot_ticker("stocks", "AAPL")
    open_ns = history.session_bounds_ns(DAY)[1]
    if now_ns < open_ns:
        assert (snap.day.open, snap.day.close, snap.day.volume) == (0, 0, 0)
        return
    minutes = client.get_aggs("AAPL", 1, "minute", DAY, DAY)
    regular = [m for m in minutes if m.timestamp >= open_ns // 1_000_000]
    assert snap.day.open == regular[0].open
    assert snap.day.high >= max(m.high for m in regular)
    assert snap.day.volume >= sum(m.volume for m in minutes)


def test_every_listed_ticker_and_a_chosen_few_parse_in_the_official_client(
    played: tuple[RESTClient, int],
) -> None:
    client, _ = played
    every = client.get_snapshot_all("stocks")
    few = client.get_snapshot_all("stocks", ["MSFT", "AAPL", "NOPE"])
    assert sorted(s.ticker for s in every) == SYMBOLS
    assert [s.ticker for s in few] == ["MSFT", "AAPL"]
    single = client.get_snapshot_ticker("stocks", "MSFT")
    assert few[0].last_trade.price == single.last_trade.price


def test_gainers_and_losers_are_ranked_by_todays_change_percent(
    played: tuple[RESTClient, int],
) -> None:
    client, _ = played
    every = {s.ticker: s.todays_change_percent for s in client.get_snapshot_all("stocks")}
    gainers = client.get_snapshot_direction("stocks", "gainers")
    losers = client.get_snapshot_direction("stocks", "losers")
    up = [s.todays_change_percent for s in gainers]
    down = [s.todays_change_percent for s in losers]
    assert up == sorted(up, reverse=True) and all(p > 0 for p in up)
    assert down == sorted(down) and all(p < 0 for p in down)
    assert {s.ticker for s in gainers} | {s.ticker for s in losers} <= set(every)
    assert len(gainers) + len(losers) == sum(1 for p in every.values() if p)


def test_an_unknown_ticker_snapshot_is_not_found(played: tuple[RESTClient, int]) -> None:
    client, _ = played
    with pytest.raises(BadResponse, match="Ticker not found"):
        client.get_snapshot_ticker("stocks", "NOPE")


def _source(at: dt.datetime) -> snapshots.SnapshotSource:
    window = market.HistoryWindow.ending_before(DAY)
    return snapshots.SnapshotSource(
        1,
        history.DEFAULT_SCALE,
        window.day_bars,
        window.intraday + (DAY,),
        int(at.timestamp()) * 10**9,
    )


def test_at_0345_the_snapshot_is_cleared_but_keeps_the_previous_day() -> None:
    snap = snapshots.ticker_snapshot(_source(_et(DAY, 3, 45)), "AAPL")
    prev = history.day_bar(1, "AAPL", PREV)
    assert snap["day"]["c"] == snap["min"]["c"] == snap["lastTrade"]["p"] == 0
    assert snap["todaysChange"] == snap["updated"] == 0
    assert (snap["prevDay"]["c"], snap["prevDay"]["v"]) == (float(prev.c[0]), int(prev.v[0]))


def test_before_0330_the_snapshot_still_shows_the_last_session_as_it_ended() -> None:
    snap = snapshots.ticker_snapshot(_source(_et(DAY, 3, 0)), "AAPL")
    last = history.day_trades(1, "AAPL", PREV)
    assert snap["lastTrade"]["t"] == int(last.sip_ns[-1])
    assert snap["day"]["c"] == float(history.day_bar(1, "AAPL", PREV).c[0])


def test_the_free_plan_gets_no_snapshots() -> None:
    with ThreadedSim(symbols=["AAPL"], s3=False, free_keys=("free",)) as sim:
        client = RESTClient(api_key="free", base=sim.rest_url, retries=0)
        with pytest.raises(BadResponse, match="NOT_AUTHORIZED"):
            client.get_snapshot_ticker("stocks", "AAPL")
