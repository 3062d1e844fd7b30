"""The sim's history as a tape: quotes first, trades inside them, Massive's bar rules, a U-shaped day."""

from __future__ import annotations

import datetime as dt

import httpx
import numpy as np
import pytest
from massive import RESTClient

from mesh.sim import history, market
from mesh.sim.server import SimServer
from tests.sim.test_rest import flat_file
from tests.simulator import ThreadedSim

D = dt.date
DAY = D(2025, 2, 27)
EARLY_CLOSE = D(2024, 11, 29)
KEY = "sim-demo-key"


def in_force(trades: history.Trades, quotes: history.Quotes) -> tuple[np.ndarray, np.ndarray]:
    """The bid and ask of the quote in force at each trade's SIP time."""
    k = np.searchsorted(quotes.sip_ns, trades.sip_ns, side="right") - 1
    assert np.all(k >= 0)  # a quote is always in force before the first trade
    return quotes.bid_price[k], quotes.ask_price[k]


def regular(trades: history.Trades, day: dt.date) -> np.ndarray:
    _, open_, close, _ = history.session_bounds_ns(day)
    return (trades.sip_ns >= open_) & (trades.sip_ns < close)


@pytest.mark.parametrize("symbol", ["AAPL", "BRK.B", "SPY", "LLY", "ZZZQ"])
def test_trades_print_at_or_inside_the_nbbo_in_force_except_odd_lots_and_form_t(
    symbol: str,
) -> None:
    for day in (DAY, EARLY_CLOSE):
        trades = history.day_trades(7, symbol, day)
        bid, ask = in_force(trades, history.day_quotes(7, symbol, day))
        inside = (trades.price >= bid) & (trades.price <= ask)
        odd = (trades.flags & history.COND_ODD_LOT) != 0
        form_t = (trades.flags & history.COND_FORM_T) != 0
        reg = regular(trades, day)
        assert np.array_equal(form_t, ~reg)  # every extended-hours trade carries Form T
        protected = reg & ~odd
        assert inside[protected].mean() >= 0.99
        assert np.all(inside | odd | form_t)  # the exceptions are the documented ones
        assert inside.mean() > 0.95
        at_bid, at_ask = trades.price == bid, trades.price == ask
        assert 0.3 < at_bid.mean() < 0.55 and 0.3 < at_ask.mean() < 0.55


def test_a_form_t_trade_at_1959_moves_its_minute_bar_but_not_the_days_close() -> None:
    trades = history.day_trades(7, "AAPL", DAY, scale=1.0)
    midnight = market.midnight_ns(DAY)
    at_1959 = (trades.sip_ns >= midnight + (19 * 60 + 59) * history.NS_PER_MIN) & (
        (trades.flags & history.COND_ODD_LOT) == 0
    )
    assert at_1959.any() and np.all((trades.flags[at_1959] & history.COND_FORM_T) != 0)
    last = int(np.flatnonzero(at_1959)[-1])
    bar = history.day_bar(7, "AAPL", DAY, scale=1.0)
    path = market.daily_path(7, "AAPL")
    assert bar.c[0] == path.close[path.index[DAY]] != trades.price[last]
    minutes = history.minute_bars(7, "AAPL", DAY, scale=1.0)
    assert minutes.c[-1] == trades.price[last]  # after-hours minute bars take Form T prices
    assert bar.v[0] == trades.size.sum()  # the day's volume includes the extended sessions
    reg = regular(trades, DAY) & ((trades.flags & history.COND_ODD_LOT) == 0)
    assert bar.h[0] == trades.price[reg].max() and bar.low[0] == trades.price[reg].min()
    assert bar.o[0] == trades.price[reg][0] == path.open[path.index[DAY]]


def test_odd_lots_count_in_volume_but_never_set_a_price() -> None:
    trades = history.day_trades(7, "TSLA", DAY)
    minutes = history.minute_bars(7, "TSLA", DAY)
    odd = (trades.flags & history.COND_ODD_LOT) != 0
    assert 0.2 < odd.mean() < 0.5
    minute_of = (trades.sip_ns // history.NS_PER_MIN) * 60_000
    for t, o, h, low, c in zip(
        minutes.t, minutes.o, minutes.h, minutes.low, minutes.c, strict=True
    ):
        prices = trades.price[(minute_of == t) & ~odd]
        assert (o, h, low, c) == (prices[0], prices.max(), prices.min(), prices[-1])


@pytest.mark.parametrize("day", [DAY, EARLY_CLOSE])
def test_every_regular_minute_of_every_default_symbol_has_a_bar(day: dt.date) -> None:
    _, open_, close, _ = history.session_bounds_ns(day)
    wanted = np.arange(open_ // 1_000_000, close // 1_000_000, 60_000)
    assert len(wanted) == (210 if day == EARLY_CLOSE else 390)
    for symbol in market.DEFAULT_SYMBOLS:
        minutes = history.minute_bars(7, symbol, day)
        assert np.isin(wanted, minutes.t).all(), symbol


def test_the_day_is_busier_at_the_open_and_the_close_than_at_midday() -> None:
    _, open_, close, _ = history.session_bounds_ns(DAY)
    half_hour = 30 * history.NS_PER_MIN
    for symbol in ("AAPL", "JPM", "GLD"):
        t = history.day_trades(7, symbol, DAY).sip_ns

        def count(lo: int, t: np.ndarray = t) -> int:
            return int(((t >= lo) & (t < lo + half_hour)).sum())

        midday = count(open_ + 3 * half_hour + half_hour // 2)  # 12:15-12:45
        assert count(open_) > 2 * midday and count(close - half_hour) > 2 * midday, symbol
        assert len(t) > 50 * 13  # a busy tape even at the default scale


def test_full_scale_is_a_real_days_volume_and_scale_thins_it() -> None:
    full = history.day_trades(7, "AAPL", DAY, scale=1.0)
    assert 20_000 < len(full) < 200_000 and 10_000_000 < full.size.sum() < 100_000_000
    default = history.day_trades(7, "AAPL", DAY)
    ratio = len(default) / len(full)
    assert 0.5 * history.DEFAULT_SCALE < ratio < 2 * history.DEFAULT_SCALE
    quotes = history.day_quotes(7, "AAPL", DAY, scale=1.0)
    assert len(quotes) > 2 * len(full)


def test_a_day_is_identical_built_twice_or_after_other_days() -> None:
    days = list(market.trading_days(D(2025, 2, 20), D(2025, 2, 27)))
    first = {d: history.day_trades(5, "NVDA", d) for d in days}
    quotes = history.day_quotes(5, "NVDA", days[-1])
    history.clear_caches()
    for d in reversed(days):  # the other way round, with another symbol in between
        history.day_trades(5, "MSFT", d)
        again = history.day_trades(5, "NVDA", d)
        for field in ("sip_ns", "price", "size", "flags", "trade_id", "sequence", "exchange"):
            assert np.array_equal(getattr(first[d], field), getattr(again, field)), (d, field)
    again_quotes = history.day_quotes(5, "NVDA", days[-1])
    assert np.array_equal(quotes.bid_price, again_quotes.bid_price)
    assert np.array_equal(quotes.sip_ns, again_quotes.sip_ns)
    assert not np.array_equal(
        first[days[0]].price[:50], history.day_trades(6, "NVDA", days[0]).price[:50]
    )


def test_open_close_is_the_regular_session_with_the_extended_sessions_beside_it(
    http_sim: SimServer,
) -> None:
    rest = RESTClient(api_key=KEY, base=http_sim.rest_url, retries=0)
    days = market.HistoryWindow.ending_before(market.today_et()).intraday[-5:]
    closes_differ = 0
    for day in days:
        summary = rest.get_daily_open_close_agg("AAPL", day.isoformat())
        bar = history.day_bar(http_sim.seed, "AAPL", day)
        assert (summary.open, summary.high, summary.low, summary.close, summary.volume) == (
            bar.o[0], bar.h[0], bar.low[0], bar.c[0], bar.v[0],
        )  # fmt: skip
        trades = history.day_trades(http_sim.seed, "AAPL", day)
        _, open_, close, _ = history.session_bounds_ns(day)
        lot = (trades.flags & history.COND_ODD_LOT) == 0
        assert summary.pre_market == trades.price[lot & (trades.sip_ns < open_)][0]
        assert summary.after_hours == trades.price[lot & (trades.sip_ns >= close)][-1]
        closes_differ += summary.close != summary.after_hours
        grouped = {g.ticker: g for g in rest.get_grouped_daily_aggs(day.isoformat())}
        g = grouped["AAPL"]
        assert (g.open, g.high, g.low, g.close, g.volume) == (
            summary.open, summary.high, summary.low, summary.close, summary.volume,
        )  # fmt: skip
    assert closes_differ >= 4
    with httpx.Client(base_url=http_sim.rest_url, timeout=30) as http:
        body = http.get(f"/v1/open-close/AAPL/{days[-1]}", params={"apiKey": KEY}).json()
    assert body["status"] == "OK" and body["from"] == days[-1].isoformat()
    assert set(body) >= {"open", "high", "low", "close", "volume", "preMarket", "afterHours"}


def test_a_scaled_sim_serves_the_same_scaled_day_through_rest_and_flat_files() -> None:
    with ThreadedSim(rate=50, scale=0.01) as sim:
        rest = RESTClient(api_key=KEY, base=sim.rest_url, retries=0)
        day = market.HistoryWindow.ending_before(market.today_et()).intraday[-1]
        trades = list(rest.list_trades("GLD", timestamp=day.isoformat(), order="asc", limit=50_000))
        scaled = history.day_trades(sim.seed, "GLD", day, 0.01)
        assert [t.sip_timestamp for t in trades] == scaled.sip_ns.tolist()
        assert len(scaled) < len(history.day_trades(sim.seed, "GLD", day))
        (bar,) = rest.get_aggs("GLD", 1, "day", day.isoformat(), day.isoformat())
        assert bar.volume == scaled.size.sum()
        file = flat_file(sim, "trades_v1", day)
        assert list(file[file.ticker == "GLD"].sip_timestamp) == scaled.sip_ns.tolist()
