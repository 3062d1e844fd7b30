"""Stock snapshots, judged by Massive's official client against REST at the same played instant."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from massive import RESTClient
from massive.exceptions import BadResponse

from mesh.sim import history, market, marketstatus, snapshots
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


# --- /v3/snapshot, the universal snapshot ---------------------------------------------------------


def test_the_universal_snapshot_parses_in_the_official_client_and_agrees_with_the_v2_snapshot(
    played: tuple[RESTClient, int],
) -> None:
    client, now_ns = played
    snaps = list(client.list_universal_snapshots(type="stocks", ticker_any_of=["MSFT", "AAPL"]))
    assert [s.ticker for s in snaps] == ["AAPL", "MSFT"]
    open_ns = history.session_bounds_ns(DAY)[1]
    for snap in snaps:
        v2 = client.get_snapshot_ticker("stocks", snap.ticker)
        assert snap.type == "stocks" and snap.error is None
        assert snap.name == client.get_ticker_details(snap.ticker).name
        assert snap.market_status == ("open" if now_ns >= open_ns else "early_trading")
        session = snap.session
        assert (session.open, session.high, session.low, session.close, session.volume) == (
            v2.day.open,
            v2.day.high,
            v2.day.low,
            v2.day.close,
            v2.day.volume,
        )
        assert session.previous_close == v2.prev_day.close
        assert (session.change, session.change_percent) == (
            v2.todays_change,
            v2.todays_change_percent,
        )
        assert (snap.last_quote.bid, snap.last_quote.ask, snap.last_quote.last_updated) == (
            v2.last_quote.bid_price,
            v2.last_quote.ask_price,
            v2.last_quote.sip_timestamp,
        )
        if v2.last_trade.sip_timestamp:
            assert (snap.last_trade.price, snap.last_trade.sip_timestamp) == (
                v2.last_trade.price,
                v2.last_trade.sip_timestamp,
            )
            assert session.price == v2.last_trade.price
        else:
            assert snap.last_trade is None


def test_the_universal_snapshot_changes_by_part_of_the_day_follow_the_trades(
    played: tuple[RESTClient, int],
) -> None:
    client, now_ns = played
    begin, open_ns, _, _ = history.session_bounds_ns(DAY)
    (snap,) = client.list_universal_snapshots(ticker_any_of=["AAPL"])
    prev_close = snap.session.previous_close
    pre = list(
        client.list_trades(
            "AAPL", order="desc", limit=1, timestamp_gte=begin, timestamp_lt=min(open_ns, now_ns)
        )
    )[:1]
    expected_early = round(pre[0].price - prev_close, 4) if pre else 0
    assert snap.session.early_trading_change == pytest.approx(expected_early, abs=1e-9)
    assert snap.session.late_trading_change == 0  # no after-hours trading yet
    if now_ns >= open_ns:  # a regular-session trade is the last one: its change is the day's
        assert snap.session.regular_trading_change == snap.session.change
    else:
        assert snap.session.regular_trading_change == 0


def test_the_universal_snapshot_pages_in_ticker_order(played: tuple[RESTClient, int]) -> None:
    client, _ = played
    first = json.loads(client.list_universal_snapshots(limit=2, raw=True).data)
    assert [r["ticker"] for r in first["results"]] == ["AAPL", "INTC"]
    assert "cursor=" in first["next_url"]
    assert [s.ticker for s in client.list_universal_snapshots(limit=2)] == SYMBOLS
    assert [s.ticker for s in client.list_universal_snapshots(limit=1, order="desc")] == SYMBOLS[
        ::-1
    ]
    assert [s.ticker for s in client.list_universal_snapshots(ticker_gte="B", ticker_lt="N")] == [
        "INTC",
        "MSFT",
    ]
    assert [s.ticker for s in client.list_universal_snapshots(params={"ticker": "MSFT"})] == [
        "MSFT"
    ]


def test_an_unknown_ticker_in_the_universal_snapshot_is_a_not_found_item(
    played: tuple[RESTClient, int],
) -> None:
    client, _ = played
    snaps = {s.ticker: s for s in client.list_universal_snapshots(ticker_any_of=["NOPE", "AAPL"])}
    assert (snaps["NOPE"].error, snaps["NOPE"].message, snaps["NOPE"].session) == (
        "NOT_FOUND",
        "Ticker not found.",
        None,
    )
    assert snaps["AAPL"].error is None and snaps["AAPL"].session is not None


@pytest.mark.parametrize(
    "query,says",
    [
        ("limit=0", "limit must be a whole number between 1 and 250"),
        ("limit=251", "limit must be a whole number between 1 and 250"),
        ("limit=ten", "limit must be a whole number between 1 and 250"),
        ("order=up", "order must be one of asc, desc"),
        ("type=bonds", "type must be one of stocks, options, fx, crypto, indices"),
        ("sort=price", "sort must be one of ticker"),
        ("cursor=!!", "Invalid cursor."),
        ("ticker.any_of=" + ",".join(f"T{i}" for i in range(251)), "at most 250 tickers"),
    ],
)
def test_a_bad_universal_snapshot_parameter_gets_massives_400(
    played: tuple[RESTClient, int], query: str, says: str
) -> None:
    client, _ = played
    url = f"{client.BASE}/v3/snapshot?{query}&apiKey={KEY}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    body = json.loads(refused.value.read())
    assert refused.value.code == 400
    assert body["status"] == "ERROR" and says in body["error"]


def test_the_official_client_raises_on_a_universal_snapshot_limit_over_250(
    played: tuple[RESTClient, int],
) -> None:
    client, _ = played
    with pytest.raises(BadResponse, match="between 1 and 250"):
        list(client.list_universal_snapshots(limit=251))


def test_the_free_plan_gets_no_universal_snapshot() -> None:
    with ThreadedSim(symbols=["AAPL"], s3=False, free_keys=("free",)) as sim:
        client = RESTClient(api_key="free", base=sim.rest_url, retries=0)
        with pytest.raises(BadResponse, match="NOT_AUTHORIZED"):
            list(client.list_universal_snapshots())


def test_before_0330_the_universal_snapshot_shows_the_last_sessions_after_hours_change() -> None:
    src = _source(_et(DAY, 3, 0))
    snap = snapshots.universal_snapshot(src, "AAPL", marketstatus.Phase.CLOSED)
    v2 = snapshots.ticker_snapshot(src, "AAPL")
    last = history.day_trades(1, "AAPL", PREV)
    assert int(last.sip_ns[-1]) >= history.session_bounds_ns(PREV)[2], "AAPL trades after hours"
    assert snap["session"]["close"] == v2["day"]["c"]
    assert snap["session"]["late_trading_change"] == round(
        float(last.price[-1]) - v2["day"]["c"], 4
    )
    assert snap["last_trade"]["sip_timestamp"] == int(last.sip_ns[-1])
