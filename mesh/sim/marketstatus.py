"""Whether the US stock market is open at an instant, and its coming holidays, from the NYSE calendar.

`/v1/marketstatus/now` and `/v1/marketstatus/upcoming` answer from here, for whatever instant the
sim's clock says it is, so that a client checking the market's state sees the sim's own market.
The sessions are the one exchange calendar of the mesh (`mesh.calendar`, exchange-calendars'
XNYS); the hours are Massive's: pre-market 04:00-09:30 ET, regular 09:30-16:00, after-hours
16:00-20:00, and on an early-close day regular until 13:00 and after-hours until 17:00.
Forex trades from Sunday 17:00 to Friday 17:00 ET; crypto never closes.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from mesh.calendar import ET, is_early_close, is_trading_day, nyse_holidays, sessions

UPCOMING_DAYS = 366  # how far ahead /upcoming lists closures and early closes


class MarketState(StrEnum):
    """Massive's `market` (and per-exchange) values."""

    OPEN = "open"
    CLOSED = "closed"
    EXTENDED_HOURS = "extended-hours"


class Phase(StrEnum):
    """Where an instant falls in the stock market's day."""

    CLOSED = "closed"
    PRE_MARKET = "pre-market"
    OPEN = "open"
    AFTER_HOURS = "after-hours"


def phase(now: dt.datetime) -> Phase:
    """The stock market's phase at `now` (any time zone; read in New York time)."""
    local = now.astimezone(ET)
    if not is_trading_day(local.date()):
        return Phase.CLOSED
    minutes = local.hour * 60 + local.minute
    close = 13 * 60 if is_early_close(local.date()) else 16 * 60
    if 4 * 60 <= minutes < 9 * 60 + 30:
        return Phase.PRE_MARKET
    if 9 * 60 + 30 <= minutes < close:
        return Phase.OPEN
    if close <= minutes < close + 4 * 60:
        return Phase.AFTER_HOURS
    return Phase.CLOSED


def fx_open(now: dt.datetime) -> bool:
    """Forex: Sunday 17:00 ET to Friday 17:00 ET, holidays included."""
    local = now.astimezone(ET)
    day, hour = local.weekday(), local.hour  # Monday = 0
    if day == 5:
        return False
    if day == 6:
        return hour >= 17
    if day == 4:
        return hour < 17
    return True


def status_now(now: dt.datetime) -> dict[str, Any]:
    """The `/v1/marketstatus/now` body at `now`."""
    current = phase(now)
    state = {
        Phase.OPEN: MarketState.OPEN,
        Phase.PRE_MARKET: MarketState.EXTENDED_HOURS,
        Phase.AFTER_HOURS: MarketState.EXTENDED_HOURS,
        Phase.CLOSED: MarketState.CLOSED,
    }[current]
    indices = str(MarketState.OPEN if current is Phase.OPEN else MarketState.CLOSED)
    return {
        "market": str(state),
        "earlyHours": current is Phase.PRE_MARKET,
        "afterHours": current is Phase.AFTER_HOURS,
        "serverTime": now.astimezone(ET).isoformat(timespec="seconds"),
        "exchanges": {"nasdaq": str(state), "nyse": str(state), "otc": str(state)},
        "currencies": {"fx": "open" if fx_open(now) else "closed", "crypto": "open"},
        "indicesGroups": {
            "s_and_p": indices,
            "societe_generale": indices,
            "msci": indices,
            "ftse_russell": indices,
            "mstar": indices,
            "mstarc": indices,
            "cccy": "open",
            "cgi": indices,
            "nasdaq": indices,
            "dow_jones": indices,
        },
    }


def holiday_name(day: dt.date, early_close: bool = False) -> str:
    """Massive's name for a closure or an early close (the holiday it belongs to)."""
    month, weekday = day.month, day.weekday()
    if early_close:
        if month == 7:
            return "Independence Day"
        if month == 11:
            return "Thanksgiving"
        if month == 12 and day.day >= 20:
            return "Christmas"
        if month == 12 or (month == 1 and day.day <= 2):
            return "New Years Day"
        return "Early Close"
    if (month == 1 and day.day <= 2) or (month == 12 and day.day == 31):
        return "New Years Day"
    if month == 1 and weekday == 0 and 15 <= day.day <= 21:
        return "Martin Luther King, Jr. Day"
    if month == 2 and weekday == 0 and 15 <= day.day <= 21:
        return "Washington's Birthday"
    if month in (3, 4) and weekday == 4:
        return "Good Friday"
    if month == 5 and weekday == 0 and day.day >= 25:
        return "Memorial Day"
    if month == 6 and 18 <= day.day <= 20:
        return "Juneteenth"
    if month == 7 and 3 <= day.day <= 5:
        return "Independence Day"
    if month == 9 and weekday == 0 and day.day <= 7:
        return "Labor Day"
    if month == 11 and weekday == 3 and 22 <= day.day <= 28:
        return "Thanksgiving"
    if month == 12 and 24 <= day.day <= 26:
        return "Christmas"
    return "Market Closed"


def _utc(day: dt.date, hour: int, minute: int = 0) -> str:
    """A New York wall-clock time as Massive writes it: UTC with milliseconds."""
    local = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ET)
    return local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def upcoming(now: dt.datetime) -> list[dict[str, Any]]:
    """The `/v1/marketstatus/upcoming` body: closures and early closes from today, for a year."""
    first = now.astimezone(ET).date()
    last = first + dt.timedelta(days=UPCOMING_DAYS)
    closed = {
        day
        for year in range(first.year, last.year + 1)
        for day in nyse_holidays(year)
        if first <= day <= last
    }
    early = {day for day in sessions().early_closes if first <= day <= last}
    rows: list[dict[str, Any]] = []
    for day in sorted(closed | early):
        for exchange in ("NYSE", "NASDAQ"):
            row: dict[str, Any] = {
                "exchange": exchange,
                "name": holiday_name(day, early_close=day in early),
                "date": day.isoformat(),
                "status": "early-close" if day in early else "closed",
            }
            if day in early:
                row["open"] = _utc(day, 9, 30)
                row["close"] = _utc(day, 13)
            rows.append(row)
    return rows
