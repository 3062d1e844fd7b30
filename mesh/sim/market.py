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
from zoneinfo import ZoneInfo

import numpy as np

ET = ZoneInfo("America/New_York")
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
    return Listing(symbol, 20.0 + h % 480, 1 + h % 3, 0.5 + (h >> 8) % 10 / 10, 0.012 + (h >> 16) % 20 / 1000)


def symbol_key(symbol: str) -> int:
    """A stable integer per symbol, to seed its random streams."""
    return zlib.crc32(symbol.encode())


# --- calendar ------------------------------------------------------------------------------------

# One-off closures (national days of mourning) that no rule predicts.
SPECIAL_CLOSURES = {dt.date(2018, 12, 5), dt.date(2025, 1, 9)}


def _easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> dt.date:
    last = dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: dt.date) -> dt.date:
    """Saturday holidays move to Friday, Sunday ones to Monday."""
    if day.weekday() == 5:
        return day - dt.timedelta(days=1)
    if day.weekday() == 6:
        return day + dt.timedelta(days=1)
    return day


@lru_cache(maxsize=64)
def nyse_holidays(year: int) -> frozenset[dt.date]:
    """Full-day NYSE closures in `year`, by the exchange's rules."""
    days = {
        _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _easter(year) - dt.timedelta(days=2),  # Good Friday
        _last_weekday(year, 5, 0),  # Memorial Day
        _observed(dt.date(year, 7, 4)),  # Independence Day
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
        _observed(dt.date(year, 12, 25)),  # Christmas
    }
    new_year = dt.date(year, 1, 1)
    if new_year.weekday() != 5:  # NYSE does not close the Friday before a Saturday New Year
        days.add(_observed(new_year))
    if year >= 2022:
        days.add(_observed(dt.date(year, 6, 19)))  # Juneteenth
    days |= {d for d in SPECIAL_CLOSURES if d.year == year}
    return frozenset(days)


def is_trading_day(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in nyse_holidays(day.year)


def is_early_close(day: dt.date) -> bool:
    """13:00 closes: July 3, the day after Thanksgiving, Christmas Eve (when they are trading days)."""
    if not is_trading_day(day):
        return False
    if day.month == 7 and day.day == 3 or day.month == 12 and day.day == 24:
        return True
    return day == _nth_weekday(day.year, 11, 3, 4) + dt.timedelta(days=1)


def trading_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Trading days in [start, end], ascending."""
    out = []
    day = start
    while day <= end:
        if is_trading_day(day):
            out.append(day)
        day += dt.timedelta(days=1)
    return out


def today_et(now_ns: int | None = None) -> dt.date:
    now = dt.datetime.now(ET) if now_ns is None else dt.datetime.fromtimestamp(now_ns / 1e9, ET)
    return now.date()


def midnight_ns(day: dt.date) -> int:
    """00:00 America/New_York on `day`, as Unix nanoseconds."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=ET).timestamp()) * 1_000_000_000


def et_date_of_ns(ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, ET).date()


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
