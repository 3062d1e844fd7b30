"""Every command reads an interval the same way: the spellings users type, and the ones refused."""

from __future__ import annotations

import pytest

from mesh import intervals, topics
from mesh.intervals import IntervalError


@pytest.mark.parametrize(
    ("typed", "canonical", "seconds"),
    [
        ("1s", "1s", 1),
        ("30s", "30s", 30),
        ("1m", "1m", 60),
        ("1min", "1m", 60),
        ("5 min", "5m", 300),
        ("minute", "1m", 60),
        ("15Min", "15m", 900),
        ("60m", "1h", 3600),
        ("1hour", "1h", 3600),
        ("hour", "1h", 3600),
        ("1d", "1d", 86_400),
        ("day", "1d", 86_400),
        ("120s", "2m", 120),
        ("90s", "90s", 90),
    ],
)
def test_user_spellings_mean_one_interval_printed_one_way(
    typed: str, canonical: str, seconds: int
) -> None:
    interval = intervals.parse(typed)
    assert interval.name == canonical
    assert interval.seconds == seconds
    assert intervals.parse(interval.name) == interval


@pytest.mark.parametrize(
    "typed", ["", "x", "0m", "-1m", "1y", "1.5m", "m5", "99999999999d", "1 m s"]
)
def test_nonsense_is_one_clear_error(typed: str) -> None:
    with pytest.raises(IntervalError, match="expected a number and a unit"):
        intervals.parse(typed)


def test_a_command_offering_some_intervals_names_them_when_refusing() -> None:
    with pytest.raises(
        IntervalError, match="expected one of 1m, 2m, 3m, 5m, 10m, 15m, 20m, 30m, 1h, 1d"
    ):
        intervals.parse("1s", allowed=intervals.FETCHABLE)
    assert intervals.parse("1 hour", allowed=intervals.FETCHABLE) == intervals.HOUR


def test_bar_topics_accept_any_spelling_of_the_recorded_intervals() -> None:
    assert topics.bars("1min") == topics.bars("1m") == "md.bar1m.stocks"
    assert topics.bars(intervals.SECOND) == "md.bar1s.stocks"
    with pytest.raises(topics.TopicError, match="expected one of 1s, 1m"):
        topics.bars("5m")
