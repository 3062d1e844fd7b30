"""Calendar and deterministic history: the facts every sim endpoint is built on."""

from __future__ import annotations

import datetime as dt

import numpy as np

from mesh.sim import history, market

D = dt.date


def test_nyse_holidays_follow_the_exchange_rules() -> None:
    assert market.nyse_holidays(2024) == {
        D(2024, 1, 1), D(2024, 1, 15), D(2024, 2, 19), D(2024, 3, 29), D(2024, 5, 27), D(2024, 6, 19),
        D(2024, 7, 4), D(2024, 9, 2), D(2024, 11, 28), D(2024, 12, 25),
    }  # fmt: skip
    h25 = market.nyse_holidays(2025)
    assert D(2025, 1, 9) in h25 and D(2025, 4, 18) in h25 and D(2025, 6, 19) in h25
    assert D(2026, 7, 3) in market.nyse_holidays(2026)  # July 4 on a Saturday is observed Friday
    assert D(2021, 12, 31) not in market.nyse_holidays(2021)  # but a Saturday New Year is not
    assert market.is_early_close(D(2024, 11, 29)) and market.is_early_close(D(2024, 12, 24))
    assert not market.is_trading_day(D(2024, 6, 15))  # a Saturday


def test_history_window_holds_every_trading_day_from_2003() -> None:
    w = market.HistoryWindow.ending_before(D(2025, 3, 3))
    assert w.day_bars[-1] == D(2025, 2, 28) and w.day_bars[0] == D(2003, 9, 10)
    assert w.intraday == w.day_bars
    assert D(2025, 2, 17) not in w.intraday  # Presidents' Day


def test_a_day_is_the_same_whenever_and_in_whatever_order_it_is_made() -> None:
    day = D(2025, 2, 27)
    first = history.day_trades(11, "AAPL", day)
    history.clear_caches()
    history.day_trades(11, "MSFT", day)
    again = history.day_trades(11, "AAPL", day)
    assert np.array_equal(first.price, again.price) and np.array_equal(first.sip_ns, again.sip_ns)
    other_seed = history.day_trades(12, "AAPL", day)
    assert not np.array_equal(first.price[:50], other_seed.price[:50])
    assert len(history.day_trades(11, "AAPL", D(2025, 3, 1))) == 0  # Saturday


def test_bars_are_built_from_the_trades() -> None:
    day = D(2025, 2, 27)
    trades = history.day_trades(3, "NVDA", day)
    minutes = history.minute_bars(3, "NVDA", day)
    bar = history.day_bar(3, "NVDA", day)
    start, open_, close, end = history.session_bounds_ns(day)
    assert minutes.n.sum() <= len(trades) == bar.n[0]  # a minute of odd lots only has no bar
    assert minutes.v.sum() <= trades.size.sum() == bar.v[0]
    regular = (minutes.t >= open_ // 1_000_000) & (minutes.t < close // 1_000_000)
    assert (bar.h[0], bar.low[0]) == (minutes.h[regular].max(), minutes.low[regular].min())
    assert (bar.o[0], bar.c[0]) == (minutes.o[regular][0], minutes.c[regular][-1])
    path = market.daily_path(3, "NVDA")
    assert bar.o[0] == path.open[path.index[day]]  # the session opens and closes where the
    assert bar.c[0] == path.close[path.index[day]]  # daily walk says
    assert start <= trades.sip_ns[0] and trades.sip_ns[-1] < end
    quotes = history.day_quotes(3, "NVDA", day)
    assert np.all(quotes.bid_price < quotes.ask_price) and np.all(np.diff(quotes.sip_ns) > 0)
