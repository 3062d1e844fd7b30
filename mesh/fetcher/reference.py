"""The reference data the dashboard shows beside live quotes: company names, previous closes and
the market's state, read from Massive's REST API inside the quota and kept for the session day.

REST calls count against the same ledger as fetches (free plan: 5 a minute, 100 a day), so the
book spends as little as it can and never waits for the per-minute window:

- the market's state comes from one `/v1/marketstatus/now` call; after it the book projects the
  state forward on the NYSE calendar (pre-market 04:00, open 09:30, close 16:00 or 13:00 on an
  early close, after hours to 20:00 or 17:00, ET) and reads it again only when that projection
  crosses into another phase, or after `MARKET_MAX_AGE_S`: a handful of calls a day;
- previous closes come from one grouped-daily call (`/v2/aggs/grouped/.../{day}`) for the last
  trading day before the session day the server is in, which holds every symbol's close;
- company names come from Massive's ticker list (`/v3/reference/tickers`, active US stocks in
  ticker order, up to 1,000 a page): one call from the first symbol still unnamed names every
  listed ticker of the next 1,000, and all of them are kept, asked for or not, so a symbol the
  dashboard meets later in that stretch costs nothing; the next call starts at the first symbol
  past it. The symbols of one day thus cost one call per stretch of 1,000 listed tickers they are
  spread over, never more calls than symbols (the sim's whole market is one call). A symbol a
  stretch read lacks (delisted, or not a stock) costs one `/v3/reference/tickers/{T}` details
  call; a 404 there means no name. Each symbol is asked about once per session day.

A call the quota refuses is not retried here: the answer says what was refused and when a call
is possible again, and holds what is known so far; asking again later completes it.
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from mesh import bounds, calendar
from mesh.config import Config
from mesh.fetcher.errors import FetchError, QuotaExceeded, RestError, RestProtocolError
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.request import parse_symbols
from mesh.fetcher.rest import MarketStatus, RestClient

ET = calendar.ET
MARKET_MAX_AGE_S = 6 * 3600.0  # the market status is read again at least this often
MAX_SYMBOLS = 500  # per `reference` request
NAME_UNKNOWN = ""  # a symbol Massive has no reference for (404): asked once a day, not again
LIST_PAGE = 1000  # tickers per `/v3/reference/tickers` page, the most Massive sends
END = "\U0010ffff"  # how far a page reached when the list ended in it: past every ticker


class MarketPhase(enum.StrEnum):
    """The market's state as the dashboard shows it (docs/protocol.md, `reference`)."""

    PRE_MARKET = "pre-market"
    OPEN = "open"
    EARLY_CLOSE = "early-close"  # open, on a day the session closes at 13:00 ET
    AFTER_HOURS = "after-hours"
    CLOSED = "closed"


def scheduled_phase(moment: dt.datetime) -> MarketPhase:
    """The phase the NYSE calendar schedules at `moment` (an aware time)."""
    local = moment.astimezone(ET)
    day, clock = local.date(), local.time()
    if not calendar.FIRST_DAY <= day <= calendar.LAST_DAY or not calendar.is_trading_day(day):
        return MarketPhase.CLOSED
    early = calendar.is_early_close(day)
    close, after_end = (dt.time(13), dt.time(17)) if early else (dt.time(16), dt.time(20))
    if clock < dt.time(4):
        return MarketPhase.CLOSED
    if clock < dt.time(9, 30):
        return MarketPhase.PRE_MARKET
    if clock < close:
        return MarketPhase.EARLY_CLOSE if early else MarketPhase.OPEN
    if clock < after_end:
        return MarketPhase.AFTER_HOURS
    return MarketPhase.CLOSED


def phase_of(status: MarketStatus) -> MarketPhase:
    """Massive's market status as a phase; Massive's word wins over the calendar's schedule."""
    local = status.server_time.astimezone(ET)
    if status.market == "open":
        early = calendar.FIRST_DAY <= local.date() <= calendar.LAST_DAY and (
            calendar.is_early_close(local.date())
        )
        return MarketPhase.EARLY_CLOSE if early else MarketPhase.OPEN
    if status.market == "extended-hours":
        if status.early_hours or (not status.after_hours and local.time() < dt.time(9, 30)):
            return MarketPhase.PRE_MARKET
        return MarketPhase.AFTER_HOURS
    return MarketPhase.CLOSED


class _ListedTicker(msgspec.Struct):
    ticker: str
    name: str = ""


class _TickerListPage(msgspec.Struct):
    results: list[_ListedTicker] | None = None
    next_url: str | None = None
    status: str = ""


_ticker_list_decoder = msgspec.json.Decoder(_TickerListPage)


@dataclass(frozen=True)
class ListedNames:
    """One page of Massive's ticker list from `first`: names by ticker, and how far it reaches."""

    names: dict[str, str]
    reach: str  # every listed ticker from `first` up to this one (included) is in `names`


def one_line(name: str) -> str:
    """A company's name as the board shows it: on one line, cut to a name's length."""
    return " ".join(name.split())[: bounds.MAX_NAME]


def listed_names(client: RestClient, first: str) -> ListedNames:
    """One `/v3/reference/tickers` call: active US stocks from `first` on, in ticker order; every
    one in the page, and how far the page reached (`END` when the list ended in it)."""
    what = f"company names from {first}"
    body = client.get(
        "/v3/reference/tickers",
        {
            "market": "stocks",
            "active": "true",
            "ticker.gte": first,
            "sort": "ticker",
            "order": "asc",
            "limit": LIST_PAGE,
        },
        what=what,
    )
    try:
        page = _ticker_list_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise RestProtocolError(
            f"{what}: the REST response lacks expected fields ({exc})"
        ) from None
    except (msgspec.DecodeError, RecursionError):
        raise RestProtocolError(f"{what}: the REST response is not a ticker list") from None
    if page.status and page.status not in ("OK", "DELAYED"):
        raise RestError(f"{what}: REST status {page.status[:40]!r}")
    rows = page.results or []
    names = {row.ticker: one_line(row.name) for row in rows if first <= row.ticker}
    if not page.next_url:  # the list ended in this page
        return ListedNames(names, END)
    reach = max((row.ticker for row in rows), default="")
    if reach < first:
        raise RestProtocolError(f"{what}: a page that goes on holds no ticker from {first}")
    return ListedNames(names, reach)


def previous_trading_day(day: dt.date) -> dt.date:
    """The last trading day before `day`."""
    days = calendar.trading_days(day - dt.timedelta(days=15), day - dt.timedelta(days=1))
    if not days:
        raise FetchError(f"no trading day in the two weeks before {day.isoformat()}")
    return days[-1]


@dataclass(frozen=True)
class MarketReading:
    """One market status read: the phase Massive gave, and the server's clock at the read."""

    phase: MarketPhase
    server_time: dt.datetime
    read_at: float  # the book's monotonic clock at the read

    def server_now(self, now: float) -> dt.datetime:
        """The server's clock now, supposing it runs at the wall clock's pace since the read."""
        return self.server_time + dt.timedelta(seconds=max(0.0, now - self.read_at))


class ReferenceBook:
    """Names, previous closes and the market state, cached per session day; thread-safe."""

    def __init__(
        self,
        config: Config,
        ledger: QuotaLedger,
        *,
        client: Callable[[], RestClient] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self._client = client or self._rest_client
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._market: MarketReading | None = None
        self._closes_day: dt.date | None = None  # the trading day `_closes` are the closes of
        self._closes: dict[str, float] = {}
        self._names_day: dt.date | None = None
        self._names: dict[str, str] = {}
        self._stretches: list[tuple[str, str]] = []  # (from, to) of ticker-list pages read today

    def _rest_client(self) -> RestClient:
        return RestClient(
            self.config.rest_url,
            self.config.api_key,
            self.ledger,
            retries=1,
            wait_for_minute=False,
        )

    def answer(self, symbols: str | Iterable[str]) -> dict[str, Any]:
        """The `reference` command's answer for `symbols` (docs/protocol.md)."""
        wanted = parse_symbols(symbols)
        if len(wanted) > MAX_SYMBOLS:
            raise FetchError(f"at most {MAX_SYMBOLS} symbols per reference request")
        with self._lock:
            return self._answer(wanted)

    def _answer(self, wanted: tuple[str, ...]) -> dict[str, Any]:
        refused, retry_after, error = "", None, ""
        client: RestClient | None = None
        try:
            client = self._client()
            now = self._monotonic()
            market = self._market
            if market is None or self._stale(market, now):
                market = self._market = self._read_market(client)
            day = market.server_now(now).astimezone(ET).date()
            if self._names_day != day:
                self._names_day, self._names, self._stretches = day, {}, []
            previous = previous_trading_day(day)
            if self._closes_day != previous:
                self._closes = client.day_closes(previous)
                self._closes_day = previous
            self._read_names(client, wanted)
        except QuotaExceeded as exc:
            refused, retry_after = str(exc), exc.retry_after
        except FetchError as exc:
            error = str(exc)
        finally:
            calls = client.calls if client is not None else 0
            if client is not None:
                client.close()
        return self._view(wanted, refused, retry_after, error, calls)

    def _stale(self, market: MarketReading, now: float) -> bool:
        """Time to read the status again: the schedule has moved on to another phase, or it is old."""
        if now - market.read_at > MARKET_MAX_AGE_S:
            return True
        then = scheduled_phase(market.server_time)
        return scheduled_phase(market.server_now(now)) != then

    def _read_market(self, client: RestClient) -> MarketReading:
        status = client.market_status()
        return MarketReading(phase_of(status), status.server_time, self._monotonic())

    def _read_names(self, client: RestClient, wanted: tuple[str, ...]) -> None:
        """Names for the `wanted` symbols not named today: from the ticker list (every name of a
        page kept, and the stretch it covered), else details."""
        unread = sorted(s for s in wanted if s not in self._names and not self._covered(s))
        while unread:
            page = listed_names(client, unread[0])
            self._names.update(page.names)
            self._stretches.append((unread[0], page.reach))
            unread = [s for s in unread if s not in self._names and not self._covered(s)]
        for symbol in wanted:
            if symbol not in self._names:
                self._names[symbol] = self._read_name(client, symbol)

    def _covered(self, symbol: str) -> bool:
        """Whether a ticker-list page read today spanned `symbol` (so the list lacks it)."""
        return any(first <= symbol <= reach for first, reach in self._stretches)

    @staticmethod
    def _read_name(client: RestClient, symbol: str) -> str:
        try:
            return client.company_name(symbol)
        except RestError as exc:
            if exc.status == 404:
                return NAME_UNKNOWN
            raise

    def _view(
        self,
        wanted: tuple[str, ...],
        refused: str,
        retry_after: float | None,
        error: str,
        calls: int,
    ) -> dict[str, Any]:
        market = self._market
        now = self._monotonic()
        server_now = market.server_now(now) if market else None
        if market is None or server_now is None:
            market_view = None
        else:
            projected = scheduled_phase(server_now)
            # Massive's reading stands until the schedule moves on (a refused re-read keeps it)
            phase = market.phase if projected == scheduled_phase(market.server_time) else projected
            market_view = {
                "state": str(phase),
                "server_time": server_now.isoformat(timespec="seconds"),
                "read_at": market.server_time.isoformat(timespec="seconds"),
            }
        closes_day = self._closes_day.isoformat() if self._closes_day else None
        symbols: dict[str, dict[str, Any]] = {}
        pending: list[str] = []
        for symbol in wanted:
            name = self._names.get(symbol)
            close = self._closes.get(symbol) if closes_day else None
            if name is None or closes_day is None:
                pending.append(symbol)
            symbols[symbol] = {
                "name": name or None,
                "previous_close": close,
                "previous_day": closes_day,
            }
        return {
            "market": market_view,
            "symbols": symbols,
            "pending": pending,
            "refused": refused,
            "retry_after_s": retry_after,
            "error": error,
            "rest_calls": calls,
        }
