"""The NYSE calendar: which dates have a session, early closes, and New York time in UTC.

One calendar for the whole mesh: the simulator makes history only for trading days, and the
fetcher counts and plans them (a weekend-only request is refused before anything is spent), so
both must agree with each other and with Massive. The sessions are exchange-calendars' XNYS
(holidays, early closes and one-off closures such as 2001-09-11..14 or 2012-10-29/30), loaded
once per process over a fixed span and kept as a set and a sorted tuple, so a per-day question
is a set lookup and a range is a slice.
"""

from __future__ import annotations

import bisect
import datetime as dt
import warnings
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

ET = ZoneInfo("America/New_York")
NS = 1_000_000_000

# The span the calendar answers for: XNYS's modelled history (its rules go back to 1885) to the
# end of the century. Dates more than about a year ahead follow today's rules: a future one-off
# closure is not known yet. Outside the span every question raises CalendarRangeError.
FIRST_DAY = dt.date(1885, 1, 1)
LAST_DAY = dt.date(2099, 12, 31)


class CalendarRangeError(ValueError):
    """A date outside the span the NYSE calendar answers for."""

    def __init__(self, day: dt.date) -> None:
        super().__init__(f"{day} is outside the NYSE calendar's range ({FIRST_DAY} to {LAST_DAY})")
        self.day = day


@dataclass(frozen=True)
class Sessions:
    """Every XNYS session in [FIRST_DAY, LAST_DAY], and those that close early."""

    days: tuple[dt.date, ...]  # ascending
    trading: frozenset[dt.date]
    early_closes: frozenset[dt.date]  # sessions closing before the regular 16:00


@lru_cache(maxsize=1)
def sessions() -> Sessions:
    """XNYS over the calendar's span, loaded on first use (about 0.4 s) and kept."""
    import exchange_calendars as xcals  # imported here: it costs a pandas import and a build

    with warnings.catch_warnings():
        # exchange-calendars reads a tz-aware Series' .values, which pandas 3 deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        xnys = xcals.get_calendar("XNYS", start=FIRST_DAY.isoformat(), end=LAST_DAY.isoformat())
    days = tuple(_dates(xnys.sessions.values))
    early = frozenset(_dates(xnys.early_closes.values))
    return Sessions(days, frozenset(days), early)


def _dates(values: np.ndarray) -> list[dt.date]:
    """datetime64 values -> dates, in one numpy conversion rather than a Timestamp each."""
    dates: list[dt.date] = values.astype("datetime64[D]").tolist()
    return dates


def _check(day: dt.date) -> None:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise CalendarRangeError(day)


def is_trading_day(day: dt.date) -> bool:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise CalendarRangeError(day)
    return day in sessions().trading


def is_early_close(day: dt.date) -> bool:
    """A session that closes early (13:00 in recent years: July 3, the day after Thanksgiving, Christmas Eve)."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise CalendarRangeError(day)
    return day in sessions().early_closes


def trading_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Trading days in [start, end], ascending."""
    if end < start:
        return []
    _check(start)
    _check(end)
    days = sessions().days
    return list(days[bisect.bisect_left(days, start) : bisect.bisect_right(days, end)])


@lru_cache(maxsize=256)
def nyse_holidays(year: int) -> frozenset[dt.date]:
    """Weekdays of `year` with no session: holidays and one-off closures."""
    first, last = dt.date(year, 1, 1), dt.date(year, 12, 31)
    _check(first)
    _check(last)
    trading = sessions().trading
    return frozenset(
        day
        for day in (first + dt.timedelta(days=i) for i in range((last - first).days + 1))
        if day.weekday() < 5 and day not in trading
    )


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
