"""A fetch request, checked before anything is spent.

Every entry point (the Python API, `massive fetch`, the control command) builds its request here,
so a bad symbol, reversed or future dates, a weekend-only range or an unknown interval is refused
with the same clear message everywhere, before a single REST call or S3 byte is used.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mesh import calendar, intervals
from mesh.fetcher.errors import BadRequest

# what `massive fetch` offers: name -> bar width in seconds (mesh/intervals.py owns both)
INTERVALS: dict[str, int] = {i.name: i.seconds for i in intervals.FETCHABLE}
METHODS = ("auto", "rest", "flat_file")
_METHOD_ALIASES = {
    "flat_files": "flat_file",
    "flat-file": "flat_file",
    "flatfile": "flat_file",
    "flatfiles": "flat_file",
    "s3": "flat_file",
    "api": "rest",
}
_SYMBOL = re.compile(r"[A-Z][A-Z0-9]{0,9}(?:[.\-][A-Z0-9]{1,4})?")


@dataclass(frozen=True)
class FetchRequest:
    """Symbols, an inclusive date range (New York trading dates), a bar interval and a method.

    `adjusted` (the default, as Massive's aggregates) asks for split-adjusted bars: prices before a
    split are divided by its ratio and volumes multiplied by it, as of `as_of` (the day the fetch
    runs, New York time). False asks for bars as traded.
    """

    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date
    interval: str
    method: str
    trading_days: tuple[dt.date, ...] = field(default=(), compare=False)
    adjusted: bool = True
    as_of: dt.date | None = field(default=None, compare=False)

    @property
    def days(self) -> int:
        """Calendar days in the range, both ends included (what the auto rule counts)."""
        return (self.end - self.start).days + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbols": list(self.symbols),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "interval": self.interval,
            "method": self.method,
            "adjusted": self.adjusted,
        }


def parse_symbols(symbols: str | Iterable[str]) -> tuple[str, ...]:
    """`"AAPL,msft"` or `["AAPL", "MSFT"]` -> ("AAPL", "MSFT"), checked, duplicates dropped."""
    if isinstance(symbols, dict | bytes) or not isinstance(symbols, str | Iterable):
        raise BadRequest(f"symbols {symbols!r:.40}: expected text such as AAPL,MSFT or a list")
    items = symbols.replace(" ", ",").split(",") if isinstance(symbols, str) else list(symbols)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise BadRequest(f"symbol {item!r} is not text")
        sym = item.strip().upper()
        if not sym:
            continue
        if not _SYMBOL.fullmatch(sym):
            raise BadRequest(
                f"unknown symbol {item.strip()!r}: a US stock ticker is 1-10 letters or digits starting with a letter, optionally with a class suffix such as BRK.B"
            )
        if sym not in out:
            out.append(sym)
    if not out:
        raise BadRequest("no symbols given")
    return tuple(out)


def parse_date(value: Any, what: str) -> dt.date:
    """A `YYYY-MM-DD` string, date, datetime or pandas Timestamp -> date."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if hasattr(value, "date") and callable(value.date):  # pandas.Timestamp, numpy-ish
        return value.date()  # type: ignore[no-any-return]
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise BadRequest(f"{what} date {value!r} is not a date; expected YYYY-MM-DD")


def parse_interval(interval: str) -> str:
    """Any spelling of a fetchable interval (`5min`, `hour`, `1d`) -> its name (`5m`, `1h`, `1d`)."""
    try:
        return intervals.parse_name(interval, allowed=intervals.FETCHABLE)
    except intervals.IntervalError:
        raise BadRequest(
            f"unknown interval {str(interval)[:40]!r}; expected one of {', '.join(INTERVALS)}"
        ) from None


def parse_method(method: str) -> str:
    name = str(method).strip().lower()
    name = _METHOD_ALIASES.get(name, name)
    if name not in METHODS:
        raise BadRequest(f"unknown method {method!r}; expected auto, rest or flat_file")
    return name


def parse_adjusted(value: Any) -> bool:
    """`adjusted` from any caller: a bool, or `true`/`false` as text (a control request's JSON)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise BadRequest(
        f"adjusted {value!r:.40}: expected true (split-adjusted bars) or false (as traded)"
    )


def make_request(
    symbols: str | Iterable[str],
    start: Any,
    end: Any,
    interval: str = "1d",
    method: str = "auto",
    *,
    adjusted: Any = True,
    today: dt.date | None = None,
) -> FetchRequest:
    """Check everything about a request that can be checked without the network."""
    syms = parse_symbols(symbols)
    adjusted = parse_adjusted(adjusted)
    first, last = parse_date(start, "start"), parse_date(end, "end")
    interval = parse_interval(interval)
    method = parse_method(method)
    if last < first:
        raise BadRequest(f"end {last} is before start {first}")
    today = today or calendar.today_et()
    if first > today or last > today:
        future = first if first > today else last
        raise BadRequest(
            f"{'start' if future is first else 'end'} {future} is in the future (today is {today} in New York); history ends today"
        )
    try:
        days = calendar.trading_days(first, last)
    except calendar.CalendarRangeError as exc:
        raise BadRequest(str(exc)) from None
    if not days:
        raise BadRequest(
            f"{first} to {last} holds no trading day (weekends and NYSE holidays have no data)"
        )
    return FetchRequest(syms, first, last, interval, method, tuple(days), adjusted, today)
