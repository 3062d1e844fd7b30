"""The one place topic strings are built and parsed.

Topics run from general to specific (`md.quote.stocks`, `sys.heartbeat.ingest`) because ZeroMQ
subscriptions match on prefixes: `md.` is all market data, `md.quote.` all quotes, `sys.` all
service traffic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mesh import intervals

MARKET = "stocks"

MARKET_DATA = "md."
SYSTEM = "sys."
JOBS = "job."
BACKTEST_RESULTS = "bt.result."
PAPER = "strat."

# paper-trading kinds: `strat.<kind>.<session>`
ORDER = "order"
FILL = "fill"
PNL = "pnl"
PAPER_KINDS = (ORDER, FILL, PNL)

# market-data kinds, in the order documented in docs/protocol.md
QUOTE = "quote"
TRADE = "trade"
BAR_1S = "bar1s"
BAR_1M = "bar1m"
GAP = "gap"
MARKET_DATA_KINDS = (QUOTE, TRADE, BAR_1S, BAR_1M, GAP)
BAR_KIND_BY_INTERVAL = {intervals.SECOND.name: BAR_1S, intervals.MINUTE.name: BAR_1M}

_PART = re.compile(r"[A-Za-z0-9_\-]+")


class TopicError(ValueError):
    """A topic that does not follow docs/protocol.md."""


def market_data(kind: str, market: str = MARKET) -> str:
    """`md.<kind>.<market>`, e.g. `md.quote.stocks`."""
    if kind not in MARKET_DATA_KINDS:
        raise TopicError(
            f"unknown market-data kind {kind!r}; expected one of {', '.join(MARKET_DATA_KINDS)}"
        )
    return f"md.{kind}.{_part(market)}"


def quotes(market: str = MARKET) -> str:
    return market_data(QUOTE, market)


def trades(market: str = MARKET) -> str:
    return market_data(TRADE, market)


def bars(interval: str | intervals.Interval, market: str = MARKET) -> str:
    """`md.bar1s.<market>` or `md.bar1m.<market>`; any spelling of 1 s or 1 min (`1min`, `minute`)."""
    try:
        name = intervals.parse_name(interval, allowed=intervals.RECORDED)
    except intervals.IntervalError as exc:
        raise TopicError(f"no bar topic for interval {str(interval)[:40]!r}: {exc}") from None
    return market_data(BAR_KIND_BY_INTERVAL[name], market)


def gaps(market: str = MARKET) -> str:
    return market_data(GAP, market)


def heartbeat(service: str) -> str:
    return f"sys.heartbeat.{_part(service)}"


def stats(service: str) -> str:
    return f"sys.stats.{_part(service)}"


def event(service: str) -> str:
    return f"sys.event.{_part(service)}"


QUOTA = "sys.quota"


def job(job_id: str) -> str:
    return f"job.{_part(job_id)}"


def backtest_result(run_id: str) -> str:
    return f"bt.result.{_part(run_id)}"


def paper(kind: str, name: str) -> str:
    """`strat.<kind>.<name>`: a paper session's orders, fills or P&L (`strat.` is all of them)."""
    if kind not in PAPER_KINDS:
        raise TopicError(f"unknown paper kind {kind!r}; expected one of {', '.join(PAPER_KINDS)}")
    return f"strat.{kind}.{_part(name)}"


@dataclass(frozen=True)
class Topic:
    """A parsed topic: `family` (md, sys, job, bt, strat), then its parts."""

    family: str
    parts: tuple[str, ...]

    @property
    def kind(self) -> str:
        return self.parts[0] if self.parts else ""

    @property
    def subject(self) -> str:
        """The market for `md.*`, the service for `sys.*`, the id for `job.*` and `bt.result.*`,
        the paper session for `strat.*`."""
        return self.parts[-1] if self.parts else ""


def parse(topic: str | bytes) -> Topic:
    """Split and check a topic; raises `TopicError` for anything docs/protocol.md does not define."""
    text = topic.decode("ascii", errors="strict") if isinstance(topic, bytes) else topic
    parts = text.split(".")
    if not all(_PART.fullmatch(part) for part in parts):
        raise TopicError(f"malformed topic {text!r}")
    family, rest = parts[0], tuple(parts[1:])
    if family == "md" and len(rest) == 2 and rest[0] in MARKET_DATA_KINDS:
        return Topic(family, rest)
    if family == "sys" and (
        rest == ("quota",) or (len(rest) == 2 and rest[0] in ("heartbeat", "stats", "event"))
    ):
        return Topic(family, rest)
    if family == "job" and len(rest) == 1:
        return Topic(family, rest)
    if family == "bt" and len(rest) == 2 and rest[0] == "result":
        return Topic(family, rest)
    if family == "strat" and len(rest) == 2 and rest[0] in PAPER_KINDS:
        return Topic(family, rest)
    raise TopicError(f"unknown topic {text!r}")


def _part(value: str) -> str:
    if not isinstance(value, str):  # an id from a request may be anything msgpack carries
        raise TopicError(f"{value!r:.40} cannot be part of a topic: it is not text")
    if not _PART.fullmatch(value):
        raise TopicError(f"{value!r} cannot be part of a topic (letters, digits, '_' and '-' only)")
    return value
