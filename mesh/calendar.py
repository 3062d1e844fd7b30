"""The NYSE calendar: which dates have a session, early closes, and New York time in UTC.

One calendar for the whole mesh: the simulator makes history only for trading days, and the
fetcher counts and plans them (a weekend-only request is refused before anything is spent), so
both must agree with each other and with Massive. Holidays follow the exchange's published rules.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

ET = ZoneInfo("America/New_York")
NS = 1_000_000_000

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


def et_dates(ts_ns: np.ndarray) -> np.ndarray:
    """New York dates of an array of Unix ns, as int days since 1970-01-01 (vectorised)."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    # ET is UTC-5 or UTC-4; find each value's offset by its day's DST state.
    days_guess = (ts // NS - 5 * 3600) // 86_400
    out = np.empty(len(ts), dtype=np.int64)
    for d in np.unique(days_guess):
        date = dt.date(1970, 1, 1) + dt.timedelta(days=int(d))
        offset = dt.datetime(date.year, date.month, date.day, 12, tzinfo=ET).utcoffset()
        assert offset is not None
        mask = days_guess == d
        local = ts[mask] // NS + int(offset.total_seconds())
        out[mask] = local // 86_400
    return out
