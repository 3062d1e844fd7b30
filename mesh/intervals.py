"""Bar intervals: the one place that knows what `1s`, `5m`, `1h` or `1d` mean.

The recorder builds `1s` and `1m` bars, the fetcher serves `1m` to `1d`, the backtester resamples
to any whole number of seconds, `massive kdb load` and the dashboard show them, and bus topics are
named after them. Each takes its interval from here, so a spelling a user types (`1min`,
`5 min`, `hour`, `day`, `60m`) means the same thing to every command, and every command prints it
back the same way (`1m`, `5m`, `1h`, `1d`).

An interval is a width in nanoseconds with a canonical name: the largest whole unit that divides it
(`90s` is `90s`, `120s` is `2m`, `60m` is `1h`). `1d` bars are New York trading days, stamped at
midnight New York time as Massive stamps them, not 24-hour windows since the epoch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NS_PER_SECOND = 1_000_000_000

_UNIT_NS = {
    "d": 86_400 * NS_PER_SECOND,
    "h": 3_600 * NS_PER_SECOND,
    "m": 60 * NS_PER_SECOND,
    "s": NS_PER_SECOND,
}
_UNIT_SPELLINGS = {
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
}
_TEXT = re.compile(r"(\d*)\s*([a-z]+)")
_LARGEST = 366 * _UNIT_NS["d"]


class IntervalError(ValueError):
    """Text that is not an interval, or an interval a command does not offer."""


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """A bar width: `ns` nanoseconds, printed as `name` (`1s`, `5m`, `1h`, `1d`)."""

    ns: int

    @property
    def name(self) -> str:
        return format_ns(self.ns)

    @property
    def seconds(self) -> int:
        return self.ns // NS_PER_SECOND

    @property
    def is_daily(self) -> bool:
        return self.ns == _UNIT_NS["d"]

    def __str__(self) -> str:
        return self.name


SECOND = Interval(_UNIT_NS["s"])
MINUTE = Interval(_UNIT_NS["m"])
HOUR = Interval(_UNIT_NS["h"])
DAY = Interval(_UNIT_NS["d"])

# What each part of the mesh offers.
RECORDED = (SECOND, MINUTE)  # bars the recorder builds and the bus carries (md.bar1s, md.bar1m)
FETCHABLE = tuple(Interval(n * _UNIT_NS["m"]) for n in (1, 2, 3, 5, 10, 15, 20, 30)) + (
    HOUR,
    DAY,
)  # what `massive fetch` builds from Massive's minute and day aggregates
COMMON = (SECOND, MINUTE, Interval(5 * _UNIT_NS["m"]), Interval(15 * _UNIT_NS["m"]), HOUR, DAY)


def format_ns(ns: int) -> str:
    """Nanoseconds -> `1s`, `2m`, `1h`, `1d` (the largest whole unit), or `<n>ns`."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_NS[unit]
        if ns >= size and ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def parse(text: str | Interval, *, allowed: tuple[Interval, ...] | None = None) -> Interval:
    """A spelling a user types -> an `Interval`; `allowed` limits it to what a command offers.

    Accepted: a whole number (1 when left out) and a unit: `s`/`sec`/`second(s)`,
    `m`/`min`/`minute(s)`, `h`/`hr`/`hour(s)`, `d`/`day(s)`, any case, spaces allowed
    (`1s`, `30s`, `1min`, `5 min`, `minute`, `60m`, `1hour`, `day`). Raises `IntervalError`.
    """
    if isinstance(text, Interval):
        interval = text
    else:
        interval = _parse_text(text)
    if allowed is not None and interval not in allowed:
        raise IntervalError(
            f"interval {interval.name} is not offered here; expected one of "
            + ", ".join(i.name for i in allowed)
        )
    return interval


def _parse_text(text: object) -> Interval:
    raw = str(text).strip().lower()
    match = _TEXT.fullmatch(raw)
    unit = _UNIT_SPELLINGS.get(match.group(2)) if match else None
    count = int(match.group(1) or "1") if match and len(match.group(1)) <= 9 else 0
    if match is None or unit is None or count <= 0 or count * _UNIT_NS[unit] > _LARGEST:
        raise IntervalError(
            f"bad interval {str(text)[:40]!r}: expected a number and a unit, "
            "such as 1s, 30s, 1m, 5m, 1h or 1d"
        )
    return Interval(count * _UNIT_NS[unit])


def parse_name(text: str | Interval, *, allowed: tuple[Interval, ...] | None = None) -> str:
    """`parse(text).name`: the canonical spelling, for code that keys on names."""
    return parse(text, allowed=allowed).name


def from_ns(ns: int) -> Interval:
    if ns <= 0:
        raise IntervalError(f"an interval must be positive, got {ns} ns")
    return Interval(int(ns))
