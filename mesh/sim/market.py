"""The simulated market's fixed facts: the universe, the NYSE calendar and each symbol's daily path.

Everything the simulator serves (live feed, REST history, flat files) starts here, so all of it
agrees on which days are trading days, where each symbol trades and what it closed at. Daily
closes come from a seeded, mean-reverting random walk in log price over a fixed calendar range,
so a given (seed, symbol, day) always has the same open and close whatever the date today is.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mesh.calendar import (  # noqa: F401  (re-exported: the sim's modules use market.<name>)
    ET,
    et_date_of_ns,
    is_early_close,
    is_trading_day,
    midnight_ns,
    nyse_holidays,
    today_et,
    trading_days,
)

DEFAULT_SEED = 7

# The walk covers this fixed range so that a day's values never depend on today's date.
PATH_START = dt.date(2014, 1, 1)
PATH_END = dt.date(2040, 12, 31)

# How far back history reaches (from today, today excluded).
DAY_HISTORY_DAYS = 2 * 366 + 31  # a little over two years of day bars
INTRADAY_HISTORY_TRADING_DAYS = 30  # minute bars, trades and quotes


@dataclass(frozen=True)
class Listing:
    """One symbol: reference price, listing exchange (tape) and how actively it trades."""

    symbol: str
    price: float  # the level the daily walk reverts to
    tape: int  # 1 = NYSE (A), 2 = NYSE Arca/American (B), 3 = Nasdaq (C)
    activity: float  # relative trade intensity; 1.0 = a typical large cap
    daily_vol: float  # standard deviation of daily log returns


# The largest US stocks and ETFs, with round reference prices.
UNIVERSE: dict[str, Listing] = {
    x.symbol: x
    for x in [
        Listing("AAPL", 225.0, 3, 2.0, 0.016),
        Listing("MSFT", 430.0, 3, 1.6, 0.014),
        Listing("NVDA", 135.0, 3, 3.0, 0.030),
        Listing("AMZN", 200.0, 3, 1.8, 0.019),
        Listing("GOOGL", 170.0, 3, 1.5, 0.018),
        Listing("GOOG", 172.0, 3, 1.0, 0.018),
        Listing("META", 580.0, 3, 1.4, 0.022),
        Listing("TSLA", 260.0, 3, 2.6, 0.035),
        Listing("AVGO", 180.0, 3, 1.2, 0.028),
        Listing("BRK.B", 460.0, 1, 0.6, 0.010),
        Listing("JPM", 230.0, 1, 0.9, 0.014),
        Listing("V", 290.0, 1, 0.7, 0.012),
        Listing("MA", 500.0, 1, 0.5, 0.012),
        Listing("UNH", 540.0, 1, 0.7, 0.017),
        Listing("XOM", 115.0, 1, 0.8, 0.015),
        Listing("LLY", 850.0, 1, 0.7, 0.020),
        Listing("JNJ", 155.0, 1, 0.6, 0.010),
        Listing("WMT", 85.0, 1, 0.8, 0.012),
        Listing("PG", 165.0, 1, 0.5, 0.010),
        Listing("HD", 390.0, 1, 0.5, 0.014),
        Listing("COST", 900.0, 3, 0.5, 0.013),
        Listing("NFLX", 750.0, 3, 0.8, 0.024),
        Listing("AMD", 150.0, 3, 1.8, 0.030),
        Listing("INTC", 22.0, 3, 1.4, 0.028),
        Listing("ORCL", 170.0, 1, 0.7, 0.020),
        Listing("CRM", 300.0, 1, 0.6, 0.020),
        Listing("ADBE", 500.0, 3, 0.5, 0.020),
        Listing("KO", 68.0, 1, 0.6, 0.009),
        Listing("PEP", 160.0, 3, 0.5, 0.010),
        Listing("BAC", 42.0, 1, 1.2, 0.017),
        Listing("DIS", 100.0, 1, 0.7, 0.016),
        Listing("SPY", 580.0, 2, 3.0, 0.010),
        Listing("QQQ", 500.0, 3, 2.4, 0.013),
        Listing("IWM", 220.0, 2, 1.2, 0.014),
        Listing("DIA", 420.0, 2, 0.4, 0.010),
        Listing("GLD", 240.0, 2, 0.6, 0.009),
    ]
}
DEFAULT_SYMBOLS = tuple(UNIVERSE)


def listing(symbol: str) -> Listing:
    """The listing of any symbol: known ones from the table, others made up from the name."""
    known = UNIVERSE.get(symbol)
    if known is not None:
        return known
    h = zlib.crc32(symbol.encode())
    return Listing(
        symbol, 20.0 + h % 480, 1 + h % 3, 0.5 + (h >> 8) % 10 / 10, 0.012 + (h >> 16) % 20 / 1000
    )


def symbol_key(symbol: str) -> int:
    """A stable integer per symbol, to seed its random streams."""
    return zlib.crc32(symbol.encode())


@dataclass(frozen=True)
class HistoryWindow:
    """Which days have data: day bars over ~2 years, intraday data over the last 30 trading days."""

    day_bars: tuple[dt.date, ...]
    intraday: tuple[dt.date, ...]

    @classmethod
    def ending_before(cls, today: dt.date) -> HistoryWindow:
        yesterday = today - dt.timedelta(days=1)
        days = trading_days(today - dt.timedelta(days=DAY_HISTORY_DAYS), yesterday)
        return cls(tuple(days), tuple(days[-INTRADAY_HISTORY_TRADING_DAYS:]))


# --- daily path ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DailyPath:
    """Open and close of every trading day in [PATH_START, PATH_END] for one symbol."""

    index: dict[dt.date, int]
    open: np.ndarray
    close: np.ndarray


@lru_cache(maxsize=512)
def daily_path(seed: int, symbol: str) -> DailyPath:
    """The seeded daily walk: log price reverts slowly to the listing's reference price."""
    info = listing(symbol)
    days = trading_days(PATH_START, PATH_END)
    rng = np.random.default_rng([seed, symbol_key(symbol), 1])
    shocks = rng.standard_normal(len(days)) * info.daily_vol
    gaps = rng.standard_normal(len(days)) * info.daily_vol * 0.3
    mean = np.log(info.price)
    theta = 0.01
    logp = np.empty(len(days))
    x = mean + rng.standard_normal() * 0.1
    for i, shock in enumerate(shocks.tolist()):
        x = x + theta * (mean - x) + shock
        logp[i] = x
    close = np.round(np.exp(logp), 2)
    prev = np.concatenate([[close[0]], close[:-1]])
    open_ = np.round(prev * np.exp(gaps), 2)
    return DailyPath({d: i for i, d in enumerate(days)}, open_, close)


def previous_close(seed: int, symbol: str, before: dt.date) -> float:
    """The close of the last trading day before `before` (the live feed starts from it)."""
    path = daily_path(seed, symbol)
    day = before - dt.timedelta(days=1)
    while day not in path.index:
        day -= dt.timedelta(days=1)
        if day < PATH_START:
            return listing(symbol).price
    return float(path.close[path.index[day]])
