"""The sim's "now": which trading session its feed plays, and how far the play has come.

The feed and REST share one clock, so that the market they show is one market: the feed sends a
session's history as its SIP times come due on this clock, and REST serves that session only up
to the clock's present, as Massive's real-time plans serve a session in progress.

Which session: when the market is in session (04:00-20:00 ET on a trading day; 17:00 on an early
close) the clock is the wall clock and the session is today's (`live`). When it is closed, the
clock plays the last trading day from the same time of day (`past-session`), so the demo always
moves; outside session hours that time of day wraps round the session's 16 hours (22:00 plays
06:00). `--at` starts any session at any instant, at any speed.
"""

from __future__ import annotations

import datetime as dt
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mesh.sim import history, market

NS_PER_S = 1_000_000_000


class Playing(enum.Enum):
    """Whether the clock is the wall clock (today's session) or a session played from history."""

    LIVE = "live"
    PAST = "past-session"


class SessionChoice(enum.Enum):
    """How the next session is chosen when one ends."""

    BY_WALL_CLOCK = "wall-clock"  # today's if in session, else the last trading day's
    NEXT_TRADING_DAY = "next-day"  # `--at`: the next trading day from 04:00


@dataclass(frozen=True)
class Session:
    """One played session: `start_ns` of session time is played at `wall_ns`, then `speed`x."""

    day: dt.date
    start_ns: int
    wall_ns: int
    speed: float
    playing: Playing
    choice: SessionChoice

    @property
    def begin_ns(self) -> int:
        return history.session_bounds_ns(self.day)[0]

    @property
    def end_ns(self) -> int:
        return history.session_bounds_ns(self.day)[3]

    def at(self, wall_ns: int) -> int:
        """Session time at `wall_ns`, held at the session's end once it has been played."""
        return min(self.end_ns, self.start_ns + int((wall_ns - self.wall_ns) * self.speed))

    def describe(self) -> str:
        """One phrase for the `connected` status, `massive status` and the dashboard."""
        if self.playing is Playing.LIVE and self.speed == 1.0:
            return f"live session {self.day.isoformat()}"
        start = _et_clock(self.start_ns)
        speed = "" if self.speed == 1.0 else f" at {self.speed:g}x"
        closed = ", market closed" if self.choice is SessionChoice.BY_WALL_CLOCK else ""
        return f"replaying {self.day.isoformat()} from {start} ET{speed}{closed}"


class AtError(ValueError):
    """An `--at` instant that is not in any session; the message is one line."""


def session_now(wall_ns: int, speed: float = 1.0) -> Session:
    """Today's session if the market is in session now, else the last trading day's, same time of day."""
    today = market.today_et(wall_ns)
    if market.is_trading_day(today):
        begin, _, _, end = history.session_bounds_ns(today)
        if begin <= wall_ns < end:
            return Session(
                today, wall_ns, wall_ns, speed, Playing.LIVE, SessionChoice.BY_WALL_CLOCK
            )
    day = today if market.is_trading_day(today) and wall_ns >= _end(today) else _before(today)
    begin, _, _, end = history.session_bounds_ns(day)
    time_of_day = wall_ns - market.midnight_ns(today)
    start = begin + (time_of_day - (begin - market.midnight_ns(day))) % (end - begin)
    return Session(day, start, wall_ns, speed, Playing.PAST, SessionChoice.BY_WALL_CLOCK)


def session_at(instant: dt.datetime, wall_ns: int, speed: float = 1.0) -> Session:
    """The session holding `instant` (ET if it has no zone), played from it; AtError if none does."""
    when = instant if instant.tzinfo is not None else instant.replace(tzinfo=market.ET)
    local = when.astimezone(market.ET)
    day = local.date()
    shown = local.strftime("%Y-%m-%d %H:%M ET")
    if not market.COVERAGE_START <= day <= market.PATH_END:
        raise AtError(
            f"{shown} is outside the sim's history ({market.COVERAGE_START} to {market.PATH_END})"
        )
    if not market.is_trading_day(day):
        raise AtError(f"{day.isoformat()} ({day:%A}) is not a trading day")
    begin, _, _, end = history.session_bounds_ns(day)
    instant_ns = int(when.timestamp()) * NS_PER_S + when.microsecond * 1000
    if not begin <= instant_ns < end:
        raise AtError(
            f"{shown} is outside the session ({_et_clock(begin)}-{_et_clock(end)} ET that day)"
        )
    return Session(day, instant_ns, wall_ns, speed, Playing.PAST, SessionChoice.NEXT_TRADING_DAY)


def next_session(done: Session, wall_ns: int) -> Session:
    """The session to play once `done` has been played to its end."""
    if done.choice is SessionChoice.NEXT_TRADING_DAY:
        day = _after(done.day)
        return replace(done, day=day, start_ns=_begin(day), wall_ns=wall_ns)
    chosen = session_now(wall_ns, done.speed)
    if chosen.day == done.day and chosen.start_ns >= done.end_ns - NS_PER_S:
        chosen = replace(chosen, start_ns=chosen.begin_ns)  # play the day again from 04:00
    return chosen


class SimClock:
    """The session being played, shared by the feed (which advances sessions) and REST."""

    def __init__(self, session: Session, wall: Callable[[], int] = time.time_ns) -> None:
        self.session = session
        self.wall = wall
        self._before: tuple[dt.date, market.HistoryWindow] | None = None

    def now_ns(self) -> int:
        return self.session.at(self.wall())

    def today(self) -> dt.date:
        return self.session.day

    def offset_s(self) -> float:
        """How far the played clock is behind the wall clock, in seconds (0 when live)."""
        return round((self.wall() - self.now_ns()) / NS_PER_S, 3)

    def window(self) -> market.HistoryWindow:
        """The days REST serves: completed days before the session's, and the session so far."""
        past = self.completed()
        return market.HistoryWindow(past.day_bars, past.intraday + (self.session.day,))

    def completed(self) -> market.HistoryWindow:
        """The days flat files hold: completed days only."""
        day, cached = self.session.day, self._before
        if cached is None or cached[0] != day:
            cached = self._before = (day, market.HistoryWindow.ending_before(day))
        return cached[1]

    def closed_before_ms(self, width_ms: int) -> int:
        """The last millisecond before the window of `width_ms` (aligned on midnight ET) now open."""
        now_ms = self.now_ns() // 1_000_000
        midnight = market.midnight_ns(self.session.day) // 1_000_000
        return midnight + (now_ms - midnight) // width_ms * width_ms - 1

    def counters(self) -> dict[str, object]:
        s = self.session
        return {
            "session_day": s.day.isoformat(),
            "playing": s.playing.value,
            "speed": s.speed,
            "session_time": _et_clock(self.now_ns(), seconds=True),
            "clock_offset_s": self.offset_s(),
            "session": s.describe(),
        }


def _et_clock(ns: int, seconds: bool = False) -> str:
    local = dt.datetime.fromtimestamp(ns / NS_PER_S, market.ET)
    return local.strftime("%H:%M:%S" if seconds else "%H:%M")


def _end(day: dt.date) -> int:
    return history.session_bounds_ns(day)[3]


def _begin(day: dt.date) -> int:
    return history.session_bounds_ns(day)[0]


def _before(day: dt.date) -> dt.date:
    day -= dt.timedelta(days=1)
    while not market.is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def _after(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while not market.is_trading_day(day):
        day += dt.timedelta(days=1)
    return day


def served_until_ms(clock: SimClock, multiplier: int, timespan: str) -> int:
    """The last millisecond REST aggregates may cover: intraday bars only of windows now closed."""
    width = {"second": 1000, "minute": 60_000, "hour": 3_600_000}.get(timespan)
    if width is None:  # day bars and longer: the window holds completed days only
        return 2**62
    return clock.closed_before_ms(width * multiplier)


def last_served(
    seed: int,
    symbol: str,
    days: tuple[dt.date, ...],
    load: Callable[[int, str, dt.date], Any],
    now_ns: int | None,
) -> tuple[Any, int] | None:
    """The latest day's trades or quotes with the index of the last one at or before `now_ns`."""
    for day in reversed(days[-2:]):
        data = load(seed, symbol, day)
        j = (
            len(data) - 1
            if now_ns is None
            else int(np.searchsorted(data.sip_ns, now_ns, "right")) - 1
        )
        if j >= 0:
            return data, j
    return None
