"""The mesh's NYSE calendar is exchange-calendars' XNYS, day for day."""

from __future__ import annotations

import datetime as dt
import warnings

import exchange_calendars as xcals
import pytest

from mesh import calendar

D = dt.date
FIRST, LAST = D(2000, 1, 1), D(2030, 12, 31)

# Closures no yearly rule predicts: 9/11, Reagan's and Ford's funerals, hurricane Sandy,
# the national days of mourning for G. H. W. Bush and Carter.
ONE_OFF_CLOSURES = [
    D(2001, 9, 11), D(2001, 9, 12), D(2001, 9, 13), D(2001, 9, 14), D(2004, 6, 11),
    D(2007, 1, 2), D(2012, 10, 29), D(2012, 10, 30), D(2018, 12, 5), D(2025, 1, 9),
]  # fmt: skip


@pytest.fixture(scope="module")
def xnys() -> xcals.ExchangeCalendar:
    with warnings.catch_warnings():  # exchange-calendars' own use of a pandas deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return xcals.get_calendar("XNYS", start=FIRST.isoformat(), end=LAST.isoformat())


def every_day() -> list[dt.date]:
    return [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]


def test_every_day_from_2000_to_2030_has_a_session_exactly_when_xnys_has_one(
    xnys: xcals.ExchangeCalendar,
) -> None:
    sessions = set(xnys.sessions.values.astype("datetime64[D]").tolist())
    disagree = [d for d in every_day() if calendar.is_trading_day(d) != (d in sessions)]
    assert disagree == []
    assert calendar.trading_days(FIRST, LAST) == sorted(sessions)


def test_every_early_close_from_2000_to_2030_is_xnys_early_close(
    xnys: xcals.ExchangeCalendar,
) -> None:
    early = set(xnys.early_closes.values.astype("datetime64[D]").tolist())
    assert D(2024, 11, 29) in early and D(2024, 12, 24) in early  # XNYS knows the usual ones
    disagree = [d for d in every_day() if calendar.is_early_close(d) != (d in early)]
    assert disagree == []


def test_one_off_closures_are_not_trading_days() -> None:
    assert [d for d in ONE_OFF_CLOSURES if calendar.is_trading_day(d)] == []
    assert all(d in calendar.nyse_holidays(d.year) for d in ONE_OFF_CLOSURES)
    # the days around them trade
    assert calendar.is_trading_day(D(2001, 9, 10)) and calendar.is_trading_day(D(2001, 9, 17))
    assert calendar.is_trading_day(D(2012, 10, 31))


def test_a_range_holds_its_trading_days_in_order_and_an_empty_range_none() -> None:
    week = calendar.trading_days(D(2024, 11, 25), D(2024, 12, 1))
    assert week == [D(2024, 11, 25), D(2024, 11, 26), D(2024, 11, 27), D(2024, 11, 29)]
    assert calendar.trading_days(D(2024, 6, 15), D(2024, 6, 16)) == []  # a weekend
    assert calendar.trading_days(D(2024, 6, 20), D(2024, 6, 19)) == []  # end before start


def test_a_date_outside_the_calendar_is_one_clear_error() -> None:
    too_early = calendar.FIRST_DAY - dt.timedelta(days=1)
    with pytest.raises(calendar.CalendarRangeError, match="outside the NYSE calendar's range"):
        calendar.is_trading_day(too_early)
    with pytest.raises(calendar.CalendarRangeError):
        calendar.trading_days(D(2024, 1, 1), calendar.LAST_DAY + dt.timedelta(days=1))
    assert calendar.is_trading_day(calendar.LAST_DAY) == (calendar.LAST_DAY.weekday() < 5)
