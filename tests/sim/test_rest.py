"""The REST API through Massive's official client and raw httpx, errors included."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator

import boto3
import httpx
import pandas as pd
import pytest
from botocore.config import Config as BotoConfig
from massive import RESTClient
from massive.exceptions import BadResponse

from mesh.sim import market
from mesh.sim.server import SimServer

KEY = "sim-demo-key"


@pytest.fixture
def rest(http_sim: SimServer) -> RESTClient:
    return RESTClient(api_key=KEY, base=http_sim.rest_url, retries=0)


@pytest.fixture
def http(http_sim: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=http_sim.rest_url, timeout=30) as client:
        yield client


def s3_client(sim: SimServer, access: str = "sim-demo-access", secret: str = "sim-demo-secret"):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=sim.s3_endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=BotoConfig(
            signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}
        ),
    )


def flat_file(sim: SimServer, dataset: str, day: market.dt.date) -> pd.DataFrame:
    key = f"us_stocks_sip/{dataset}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"
    body = s3_client(sim).get_object(Bucket="flatfiles", Key=key)["Body"].read()
    return pd.read_csv(io.BytesIO(gzip.decompress(body)))


def last_days(n: int) -> list[market.dt.date]:
    return list(market.HistoryWindow.ending_before(market.today_et()).intraday[-n:])


def test_list_aggs_pages_through_next_url_and_matches_the_minute_flat_file(
    http_sim: SimServer, rest: RESTClient
) -> None:
    day = last_days(1)[0]
    pages = rest.get_aggs("AAPL", 1, "minute", day.isoformat(), day.isoformat(), limit=200)
    assert len(pages) == 200  # one page is the limit
    bars = list(rest.list_aggs("AAPL", 1, "minute", day.isoformat(), day.isoformat(), limit=200))
    assert len(bars) > 400  # several pages were followed
    file = flat_file(http_sim, "minute_aggs_v1", day)
    aapl = file[file.ticker == "AAPL"].reset_index(drop=True)
    assert len(aapl) == len(bars)
    for bar, row in zip(bars, aapl.itertuples(), strict=True):
        assert (bar.timestamp * 1_000_000, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.transactions) == (
            row.window_start, row.open, row.high, row.low, row.close, row.volume, row.transactions,
        )  # fmt: skip


def test_day_bars_match_day_aggs_flat_files_and_cover_two_years(
    http_sim: SimServer, rest: RESTClient
) -> None:
    days = last_days(3)
    bars = list(rest.list_aggs("MSFT", 1, "day", days[0].isoformat(), days[-1].isoformat()))
    assert [market.et_date_of_ns(b.timestamp * 1_000_000) for b in bars] == days
    for bar, day in zip(bars, days, strict=True):
        row = flat_file(http_sim, "day_aggs_v1", day).set_index("ticker").loc["MSFT"]
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
            row.open,
            row.high,
            row.low,
            row.close,
            row.volume,
        )
    today = market.today_et()
    history = list(
        rest.list_aggs(
            "SPY",
            1,
            "day",
            (today - market.dt.timedelta(days=2 * 365)).isoformat(),
            today.isoformat(),
            limit=50_000,
        )
    )
    assert len(history) >= 495  # two years of trading days
    dates = {market.et_date_of_ns(b.timestamp * 1_000_000) for b in history}
    assert all(market.is_trading_day(d) for d in dates)  # no weekends or holidays


def test_desc_sort_and_hour_bars_are_consistent(rest: RESTClient) -> None:
    day = last_days(1)[0].isoformat()
    asc = list(rest.list_aggs("NVDA", 1, "hour", day, day))
    desc = list(rest.list_aggs("NVDA", 1, "hour", day, day, sort="desc", limit=120))
    assert [b.timestamp for b in desc] == [b.timestamp for b in reversed(asc)]
    minutes = list(rest.list_aggs("NVDA", 1, "minute", day, day, limit=50_000))
    assert sum(b.volume for b in asc) == sum(b.volume for b in minutes)
    assert max(b.high for b in asc) == max(b.high for b in minutes)


def test_list_trades_and_quotes_page_with_cursors_newest_first(rest: RESTClient) -> None:
    day = last_days(1)[0].isoformat()
    trades = list(rest.list_trades("AAPL", timestamp=day, limit=700))
    assert len(trades) > 1400
    stamps = [t.sip_timestamp for t in trades]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps)
    assert all(t.price > 0 and t.size > 0 and t.exchange for t in trades)
    everything = list(rest.list_trades("AAPL", timestamp=day, limit=50_000))
    assert [t.sip_timestamp for t in everything] == stamps
    quotes = list(
        rest.list_quotes("AAPL", timestamp_gte=day, timestamp_lt=day, order="asc", limit=10)
    )
    assert quotes == []  # an empty range
    quotes = list(rest.list_quotes("AAPL", timestamp=day, order="asc", limit=1000))
    assert len(quotes) > 2000 and all(q.bid_price < q.ask_price for q in quotes)
    assert [q.sip_timestamp for q in quotes] == sorted(q.sip_timestamp for q in quotes)


def test_trades_flat_file_holds_the_rest_trades(http_sim: SimServer, rest: RESTClient) -> None:
    day = last_days(1)[0]
    file = flat_file(http_sim, "trades_v1", day)
    assert (
        list(file.columns)
        == "ticker,conditions,correction,exchange,id,participant_timestamp,price,sequence_number,sip_timestamp,size,tape,trf_id,trf_timestamp".split(
            ","
        )
    )
    tsla = file[file.ticker == "TSLA"]
    rest_trades = list(
        rest.list_trades("TSLA", timestamp=day.isoformat(), order="asc", limit=50_000)
    )
    assert list(tsla.sip_timestamp) == [t.sip_timestamp for t in rest_trades]
    assert list(tsla.price) == [t.price for t in rest_trades]


def test_last_trade_and_nbbo_come_from_the_live_feed(rest: RESTClient) -> None:
    trade = rest.get_last_trade("AAPL")
    quote = rest.get_last_quote("AAPL")
    assert trade.ticker == "AAPL" and trade.price > 0 and trade.sip_timestamp > 1.6e18
    assert quote.bid_price < quote.ask_price


def test_grouped_daily_has_every_symbol_and_weekends_are_empty(
    rest: RESTClient, http_sim: SimServer
) -> None:
    day = last_days(1)[0]
    grouped = rest.get_grouped_daily_aggs(day.isoformat())
    assert {g.ticker for g in grouped} == set(http_sim.symbols)
    saturday = day + market.dt.timedelta(days=(5 - day.weekday()) % 7 or 7)
    assert rest.get_grouped_daily_aggs(saturday.isoformat()) == []


def test_bearer_and_query_keys_and_massive_error_bodies(http: httpx.Client) -> None:
    path = "/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-10"
    assert http.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert http.get(path, params={"apiKey": KEY}).status_code == 200
    missing = http.get(path)
    assert (
        missing.status_code == 401
        and missing.json()["error"] == "API Key was not provided"
        and missing.json()["status"] == "ERROR"
    )
    wrong = http.get(path, params={"apiKey": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "Unknown API Key"
    assert "nope" not in wrong.text
    r = http.get("/v2/aggs/ticker/AAPL/range/1/day/2024-01-10/2024-01-02", params={"apiKey": KEY})
    assert (
        r.status_code == 400
        and r.json()["error"] == "The parameter 'to' cannot be a time that occurs before 'from'"
    )
    for bad in [
        "/v2/aggs/ticker/AAPL/range/x/day/2024-01-02/2024-01-10",
        "/v2/aggs/ticker/AAPL/range/1/fortnight/2024-01-02/2024-01-10",
        "/v2/aggs/ticker/AAPL/range/1/day/yesterday/2024-01-10",
    ]:
        assert http.get(bad, params={"apiKey": KEY}).status_code == 400
    assert http.get(path, params={"apiKey": KEY, "limit": "50001"}).status_code == 400
    assert (
        http.get(
            "/v3/trades/AAPL",
            params={"apiKey": KEY, "timestamp": "2024-01-02", "timestamp.gte": "2024-01-01"},
        ).status_code
        == 400
    )
    assert http.get("/v3/trades/AAPL", params={"apiKey": KEY, "cursor": "!!!"}).status_code == 400
    nf = http.get("/v9/nothing", params={"apiKey": KEY})
    assert nf.status_code == 404 and nf.json()["status"] == "NOT_FOUND"
    assert http.get("/v2/last/trade/ZZZZ", params={"apiKey": KEY}).status_code == 404


def test_free_key_is_limited_to_five_calls_a_minute_and_not_entitled_to_trades(
    http: httpx.Client,
) -> None:
    path = "/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-10"
    codes = [http.get(path, params={"apiKey": "free-a"}).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    body = http.get(path, params={"apiKey": "free-a"}).json()
    assert body["status"] == "ERROR" and "exceeded the maximum requests per minute" in body["error"]
    assert http.get(path, params={"apiKey": KEY}).status_code == 200  # other keys are not limited
    denied = http.get("/v3/trades/AAPL", params={"apiKey": "free-b"})
    assert denied.status_code == 403 and denied.json()["status"] == "NOT_AUTHORIZED"


def test_official_client_surfaces_errors_as_bad_response(http_sim: SimServer) -> None:
    client = RESTClient(api_key="wrong", base=http_sim.rest_url, retries=0)
    with pytest.raises(BadResponse, match="Unknown API Key"):
        client.get_aggs("AAPL", 1, "day", "2024-01-02", "2024-01-10")
