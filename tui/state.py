"""What the dashboard knows, kept apart from how it is drawn: latest quotes and trades per
symbol, their names and previous closes and the market's state (the fetcher's `reference`), and
every service's last heartbeat.

The feed writes here at bus speed with C-level dict updates (no per-quote Python); the views read
at most ten times a second. Conflation is therefore free: whatever arrived between two redraws,
only the latest value per symbol is kept.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from mesh import health
from mesh.schema import Event, Fill, Heartbeat, JobUpdate, Pnl, QuoteBatch, Stats, TradeBatch

SPARK_POINTS = 120  # one point a second: the last two minutes
MAX_PRICE = 1e9  # a price at or above this (or NaN, inf, negative) is not shown: its row is dropped and counted
MAX_SIZE = 1e15  # likewise for sizes
MAX_SERVICES = 64  # heartbeats from more distinct names than this are counted, not kept
MAX_JOBS = 500  # the most recent jobs kept
MAX_REFERENCE_SYMBOLS = 5000  # names and previous closes kept from one answer


class Unusable(ValueError):
    """A decoded message the dashboard cannot show; `kind` says why, for the counts it keeps."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class BoardRow:
    """One line of the quotes board, derived at redraw time."""

    symbol: str
    name: str  # the company's name from the reference data, "" until known
    bid: float | None
    ask: float | None
    bid_size: int | None
    ask_size: int | None
    last: float | None
    change: float | None  # last trade minus the previous close (None until both are known)
    change_pct: float | None  # the change in percent of the previous close
    spread: float | None
    volume: int
    updated_ns: int  # event time of the latest quote or trade
    direction: int  # +1 up, -1 down, 0 unchanged since the previous redraw


SORT_KEYS = (
    "symbol",
    "change",
    "volume",
    "spread",
    "updated",
)  # the board's sort orders, in the order F2 cycles them


QUOTE_FIELDS = (
    "symbol",
    "bid_price",
    "ask_price",
    "bid_size",
    "ask_size",
    "ts_event",
)  # kept per symbol, in this order
TRADE_FIELDS = ("symbol", "price", "ts_event")


def _latest(columns: dict[str, Any], fields: tuple[str, ...]) -> tuple[list[str], list[list[Any]]]:
    """Each symbol's last row: (symbols, value lists for fields[1:]), conflated in C and numpy."""
    symbols = columns["symbol"]
    last_row = dict(
        zip(symbols, range(len(symbols)), strict=True)
    )  # later rows overwrite earlier ones
    if len(last_row) < len(symbols):
        rows = np.fromiter(last_row.values(), dtype=np.intp, count=len(last_row))
        return list(last_row), [columns[f][rows].tolist() for f in fields[1:]]
    return list(symbols), [columns[f].tolist() for f in fields[1:]]


def usable_rows(
    columns: dict[str, Any],
    fields: tuple[str, ...],
    prices: tuple[str, ...],
    sizes: tuple[str, ...],
) -> tuple[dict[str, Any], int]:
    """The columns the board needs, as numpy arrays (symbols a list of str), without the rows whose
    prices or sizes cannot be real (NaN, inf, negative, absurdly large); and how many rows that dropped.

    Raises `Unusable` for a batch that cannot be read at all: a column missing, columns of unequal
    length, numbers out of range.
    """
    try:
        picked = {name: columns[name] for name in fields}
    except KeyError as exc:
        raise Unusable("columns", f"no {exc.args[0]!r} column") from None
    lengths = {len(column) for column in picked.values()}
    if len(lengths) > 1:
        raise Unusable(
            "columns",
            f"columns of unequal length ({', '.join(f'{k} {len(v)}' for k, v in picked.items())})",
        )
    symbols = picked["symbol"] = list(picked["symbol"])  # text: the decoder checked each one
    try:
        for name in fields[1:]:
            picked[name] = np.asarray(
                picked[name], dtype=np.float64 if name in prices else np.int64
            )
    except (OverflowError, ValueError, TypeError) as exc:
        raise Unusable("values", f"a column that is not numbers in range: {exc}") from None
    if any(picked[name].ndim != 1 for name in fields[1:]):
        raise Unusable("columns", "a column that is not flat")
    count = lengths.pop() if lengths else 0
    ok = np.ones(count, dtype=bool)
    for name in prices:
        column = picked[name]
        ok &= (column >= 0) & (column < MAX_PRICE)  # NaN compares false: dropped too
    for name in sizes:
        column = picked[name]
        ok &= (column >= 0) & (column < MAX_SIZE)
    dropped = count - int(np.count_nonzero(ok))
    if dropped:
        keep = np.flatnonzero(ok)
        picked = {
            name: [symbols[i] for i in keep.tolist()] if name == "symbol" else picked[name][keep]
            for name in picked
        }
    return picked, dropped


class MarketView(msgspec.Struct, frozen=True):
    """The market's state in the fetcher's `reference` answer (docs/protocol.md)."""

    state: str  # pre-market, open, early-close, after-hours, closed
    server_time: str = ""  # the REST server's clock (the sim's played clock), ISO 8601
    read_at: str = ""


class SymbolReference(msgspec.Struct, frozen=True):
    name: str | None = None
    previous_close: float | None = None
    previous_day: str | None = None


class ReferenceAnswer(msgspec.Struct, frozen=True):
    """The fetcher's answer to `reference`, checked field by field on the way in."""

    market: MarketView | None = None
    symbols: dict[str, SymbolReference] = {}
    pending: list[str] = []
    refused: str = ""  # the quota refused a call: why, in one line
    retry_after_s: float | None = None
    error: str = ""
    rest_calls: int = 0


REFERENCE_REFRESH_S = 60.0  # ask again this often (the fetcher answers from its cache)
REFERENCE_RETRY_S = 30.0  # after an error or a dead fetcher


@dataclass
class ReferenceState:
    """Company names, previous closes and the market's state, from the fetcher's `reference`."""

    names: dict[str, str] = field(default_factory=dict)
    previous_close: dict[str, float] = field(default_factory=dict)
    previous_day: str = ""
    market: MarketView | None = None
    refused: str = ""
    error: str = ""
    pending: set[str] = field(default_factory=set)
    asked: set[str] = field(default_factory=set)  # the symbols of the last question
    asked_at: float = float("-inf")  # monotonic
    next_at: float = 0.0  # no question before this (monotonic): a refused quota's wait

    def due(self, symbols: set[str], now: float) -> bool:
        """Whether to ask the fetcher now about `symbols` (the board's)."""
        if not symbols or now < self.next_at:
            return False
        return bool(symbols - self.asked or self.pending) or (
            now - self.asked_at >= REFERENCE_REFRESH_S
        )

    def asking(self, symbols: set[str], now: float) -> None:
        self.asked, self.asked_at, self.next_at = set(symbols), now, now + 2.0

    def failed(self, error: str, now: float) -> None:
        self.error, self.next_at = error, now + REFERENCE_RETRY_S

    def apply(self, result: object, now: float) -> None:
        """A reply's result; one that is not a `ReferenceAnswer` is an error, changing nothing else."""
        try:
            answer = msgspec.convert(result, ReferenceAnswer)
        except msgspec.ValidationError as exc:
            self.failed(f"an answer that is not reference data: {exc}", now)
            return
        for symbol, ref in list(answer.symbols.items())[:MAX_REFERENCE_SYMBOLS]:
            if ref.name:
                self.names[symbol] = ref.name
            close = ref.previous_close
            if close is not None and 0 < close < MAX_PRICE:  # NaN fails too
                self.previous_close[symbol] = close
            if ref.previous_day:
                self.previous_day = ref.previous_day
        if answer.market is not None:
            self.market = answer.market
        self.pending = set(answer.pending)
        self.refused, self.error = answer.refused, answer.error
        wait = answer.retry_after_s
        if answer.refused:
            self.next_at = now + (wait if wait is not None and 0 < wait < 86_400 else 60.0)
        elif answer.error:
            self.next_at = now + REFERENCE_RETRY_S


class MarketState:
    """Latest values per symbol, written by the feed, read by the board."""

    def __init__(self) -> None:
        self.quotes: dict[
            str, tuple[float, float, int, int, int]
        ] = {}  # bid, ask, bid size, ask size, ts
        self.last: dict[str, tuple[float, int]] = {}  # price, ts
        self.reference = ReferenceState()
        self.volume: dict[str, int] = {}
        self.history: dict[str, deque[float]] = {}
        self._previous_mid: dict[str, float] = {}
        self._direction: dict[str, tuple[int, float]] = {}  # direction, until (monotonic)
        self.hidden: set[str] = set()  # symbols removed from the board by the user
        self.events = 0
        self.dropped_rows = 0  # rows with impossible prices or sizes, not shown
        self.version = 0  # bumps on every write, so a view can skip redraws when nothing changed

    def apply_quotes(self, batch: QuoteBatch) -> None:
        self.apply_quote_columns({name: getattr(batch, name) for name in QUOTE_FIELDS})

    def apply_trades(self, batch: TradeBatch) -> None:
        self.apply_trade_columns({name: getattr(batch, name) for name in (*TRADE_FIELDS, "size")})

    def apply_quote_columns(self, columns: dict[str, Any]) -> None:
        """Quote columns (lists, or numpy arrays from the feed): only each symbol's last row is kept.

        Raises `Unusable` (and changes nothing) for a batch that cannot be read; rows with
        impossible prices or sizes are dropped and counted in `dropped_rows`.
        """
        columns, dropped = usable_rows(
            columns, QUOTE_FIELDS, ("bid_price", "ask_price"), ("bid_size", "ask_size")
        )
        self.dropped_rows += dropped
        symbols, values = _latest(columns, QUOTE_FIELDS)
        self.quotes.update(zip(symbols, zip(*values, strict=True), strict=True))
        self.events += len(columns["symbol"])
        self.version += 1

    def apply_trade_columns(self, columns: dict[str, Any]) -> None:
        """Trade columns, as `apply_quote_columns`; sizes add up into each symbol's volume."""
        columns, dropped = usable_rows(columns, (*TRADE_FIELDS, "size"), ("price",), ("size",))
        self.dropped_rows += dropped
        volume = self.volume
        for symbol, size in zip(columns["symbol"], columns["size"].tolist(), strict=True):
            volume[symbol] = volume.get(symbol, 0) + size
        symbols, values = _latest(columns, TRADE_FIELDS)
        self.last.update(zip(symbols, zip(*values, strict=True), strict=True))
        self.events += len(columns["symbol"])
        self.version += 1

    def symbols(self) -> list[str]:
        return sorted((self.quotes.keys() | self.last.keys()) - self.hidden)

    def ordered(
        self, sort_key: str = "symbol", reverse: bool = False, needle: str = ""
    ) -> list[str]:
        """The board's symbols in display order, without building a row for each (only the visible ones are)."""
        symbols = self.symbols()
        if needle:
            symbols = [s for s in symbols if needle in s]
        if sort_key == "symbol":
            return symbols[::-1] if reverse else symbols
        return sorted(
            symbols, key=self._sort_value(sort_key), reverse=reverse
        )  # stable: ties stay in symbol order

    def _sort_value(self, sort_key: str) -> Callable[[str], Any]:
        quotes, last, volume = self.quotes, self.last, self.volume
        if sort_key == "volume":
            return lambda s: volume.get(s, 0)
        if sort_key == "spread":
            return lambda s: quotes[s][1] - quotes[s][0] if s in quotes else float("-inf")
        if sort_key == "updated":
            return lambda s: max(quotes[s][4] if s in quotes else 0, last[s][1] if s in last else 0)
        if sort_key == "change":
            previous = self.reference.previous_close
            return lambda s: (
                last[s][0] / previous[s] - 1 if s in last and s in previous else float("-inf")
            )
        raise ValueError(f"unknown sort key {sort_key!r}; one of {', '.join(SORT_KEYS)}")

    def mid(self, symbol: str) -> float | None:
        quote = self.quotes.get(symbol)
        return (quote[0] + quote[1]) / 2 if quote else None

    def row(self, symbol: str, now: float | None = None) -> BoardRow:
        quote = self.quotes.get(symbol)
        trade = self.last.get(symbol)
        last = trade[0] if trade else None
        previous_close = self.reference.previous_close.get(symbol)
        change = last - previous_close if last is not None and previous_close else None
        mid = self.mid(symbol)
        now = time.monotonic() if now is None else now
        direction, until = self._direction.get(symbol, (0, 0.0))
        previous = self._previous_mid.get(symbol)
        if mid is not None and previous is not None and mid != previous:
            direction, until = (1 if mid > previous else -1), now + 0.6
            self._direction[symbol] = (direction, until)
        if mid is not None:
            self._previous_mid[symbol] = mid
        return BoardRow(
            symbol=symbol,
            name=self.reference.names.get(symbol, ""),
            bid=quote[0] if quote else None,
            ask=quote[1] if quote else None,
            bid_size=quote[2] if quote else None,
            ask_size=quote[3] if quote else None,
            last=last,
            change=change,
            change_pct=100 * change / previous_close
            if change is not None and previous_close
            else None,
            spread=(quote[1] - quote[0]) if quote else None,
            volume=self.volume.get(symbol, 0),
            updated_ns=max(quote[4] if quote else 0, trade[1] if trade else 0),
            direction=direction if now < until else 0,
        )

    def sample_history(self) -> None:
        """Once a second: append each symbol's mid (or last) to its sparkline history."""
        for symbol in self.quotes.keys() | self.last.keys():
            value = self.mid(symbol) or (self.last[symbol][0] if symbol in self.last else None)
            if value is not None:
                self.history.setdefault(symbol, deque(maxlen=SPARK_POINTS)).append(value)


@dataclass
class ServiceStatus:
    name: str
    heartbeat: Heartbeat
    last_seen_ns: int
    stats: dict[str, Any] = field(default_factory=dict)

    def up(self, now_ns: int) -> bool:
        return health.is_up(self.last_seen_ns, self.heartbeat.interval, now_ns)

    @property
    def counters(self) -> dict[str, Any]:
        return self.heartbeat.counters


class MeshState:
    """Every service's latest heartbeat and stats, recent events, running jobs and the fetch quota."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self.clock = clock
        self.services: dict[str, ServiceStatus] = {}
        self.events: deque[Event] = deque(maxlen=200)
        self.jobs: dict[str, JobUpdate] = {}
        self.quota: dict[str, Any] = {}  # the fetcher's quota ledger snapshot (sys.quota)
        self.quota_seen_ns = 0
        self.bus_messages = 0
        self.listeners: list[Callable[[Event], None]] = []

    def apply_heartbeat(self, beat: Heartbeat) -> None:
        current = self.services.get(beat.service)
        if current is None and len(self.services) >= MAX_SERVICES:
            raise Unusable("services", f"a heartbeat from a {MAX_SERVICES + 1}th service name")
        stats = current.stats if current else {}
        self.services[beat.service] = ServiceStatus(beat.service, beat, self.clock(), stats)

    def apply_stats(self, stats: Stats) -> None:
        if stats.service in self.services:
            self.services[stats.service].stats = stats.stats

    def apply_quota(self, stats: Stats) -> None:
        """`sys.quota`: kept apart from the service stats it shares a type (and a service name) with."""
        self.quota = stats.stats
        self.quota_seen_ns = self.clock()

    def apply_event(self, event: Event) -> None:
        self.events.append(event)
        for listener in self.listeners:
            listener(event)

    def apply_job(self, job: JobUpdate) -> None:
        self.jobs.pop(job.job_id, None)  # re-inserted last: the oldest job is first in line to go
        self.jobs[job.job_id] = job
        while len(self.jobs) > MAX_JOBS:
            del self.jobs[next(iter(self.jobs))]

    def is_up(self, name: str) -> bool:
        status = self.services.get(name)
        return status is not None and status.up(self.clock())

    @property
    def bus_up(self) -> bool:
        return self.is_up("bus")

    def counters(self, name: str) -> dict[str, Any]:
        status = self.services.get(name)
        return status.counters if status else {}

    def ordered(
        self,
        preferred: Iterable[str] = (
            "bus",
            "sim",
            "ingest",
            "recorder",
            "kdb",
            "fetcher",
            "backtester",
        ),
    ) -> list[ServiceStatus]:
        order = {name: i for i, name in enumerate(preferred)}
        return sorted(self.services.values(), key=lambda s: (order.get(s.name, 99), s.name))


# --- paper trading ------------------------------------------------------------------------------

MAX_PAPER_SESSIONS = 64  # sessions kept from one `sys.stats.strategy`; more are counted, not kept
MAX_FILLS = 200  # the latest fills kept, over all sessions
MAX_CURVE_POINTS = 2000  # bar closes kept per session's equity curve (the oldest go first)
MAX_CURVE_SESSIONS = 64  # sessions with a curve; the one heard of least recently goes first


class PaperSession(msgspec.Struct, frozen=True):
    """One session of the strategy service's `sys.stats.strategy` (docs/tui.md lists the keys);
    checked field by field on the way in, a missing field taking its default."""

    name: str
    strategy: str = ""
    params: dict[str, Any] = {}
    symbols: list[str] = []
    interval: str = ""
    # the count of fills; a session known only from its journal after a restart has its fill
    # mode here ("quotes") and none of the numbers below
    fills: int | str = 0
    state: str = ""
    error: str = ""
    started_ns: int = 0
    stopped_ns: int = 0
    recording: str = ""
    cash: float | None = None
    equity: float | None = None
    initial_cash: float | None = None
    positions: dict[str, float] = {}
    orders: int = 0
    bars: int = 0
    lag_ms: float | None = None
    lost: str = ""

    @property
    def pnl(self) -> float | None:
        if self.equity is None or self.initial_cash is None:
            return None
        return self.equity - self.initial_cash

    @property
    def running(self) -> bool:
        return self.state in ("running", "lagging")


class PaperState:
    """Paper trading as the dashboard knows it: the strategy service's sessions (its stats), the
    latest fills (`strat.fill.*`) and each session's equity curve (`strat.pnl.*`).

    Conflated as the market is: a session is its latest stats; a curve keeps one value per symbol
    per bar close, the latest heard; fills are few (one per order at most) and kept in order.
    """

    def __init__(self) -> None:
        self.sessions: dict[str, PaperSession] = {}
        self.stats_seen = False  # whether any `sys.stats.strategy` came
        self.fills: deque[Fill] = deque(maxlen=MAX_FILLS)
        self.curves: dict[
            str, dict[int, dict[str, float]]
        ] = {}  # session -> ts -> symbol -> equity
        self.version = 0

    def apply_stats(self, stats: Stats) -> None:
        """The service's sessions, replacing what it said before; a session that cannot be read is
        left out and the message counted (`Unusable`), the others shown."""
        raw = stats.stats.get("sessions")
        if not isinstance(raw, list):
            raise Unusable("paper", "strategy stats without a list of sessions")
        sessions: dict[str, PaperSession] = {}
        bad = 0
        for item in raw[:MAX_PAPER_SESSIONS]:
            try:
                session = msgspec.convert(item, PaperSession, strict=False)
            except msgspec.ValidationError:
                bad += 1
                continue
            sessions[session.name] = session
        self.sessions = sessions
        self.stats_seen = True
        self.version += 1
        if bad or len(raw) > MAX_PAPER_SESSIONS:
            raise Unusable(
                "paper",
                f"{bad} session(s) that could not be read, {max(len(raw) - MAX_PAPER_SESSIONS, 0)} beyond the first {MAX_PAPER_SESSIONS}",
            )

    def apply_fill(self, fill: Fill) -> None:
        self.fills.append(fill)
        self.version += 1

    def apply_pnl(self, pnl: Pnl) -> None:
        curve = self.curves.pop(pnl.name, None)
        if curve is None:
            curve = {}
            while len(self.curves) >= MAX_CURVE_SESSIONS:
                del self.curves[next(iter(self.curves))]
        self.curves[pnl.name] = curve  # re-inserted last: the least recently heard goes first
        curve.setdefault(pnl.ts, {})[pnl.symbol] = pnl.equity
        if len(curve) > MAX_CURVE_POINTS:
            for ts in sorted(curve)[: len(curve) - MAX_CURVE_POINTS]:
                del curve[ts]
        self.version += 1

    def equity_curve(self, name: str) -> tuple[list[int], list[float]]:
        """The session's equity at each bar close, summed over its symbols: a symbol not heard of at
        a close counts with its latest equity before it, or before its first with its share of the
        session's starting cash (when the service has said which symbols and how much)."""
        curve = self.curves.get(name) or {}
        latest: dict[str, float] = {}
        session = self.sessions.get(name)
        if session is not None and session.symbols and session.initial_cash is not None:
            share = session.initial_cash / len(session.symbols)
            if math.isfinite(share):
                latest = dict.fromkeys(session.symbols, share)
        times: list[int] = []
        equity: list[float] = []
        for ts in sorted(curve):
            latest.update(curve[ts])
            try:
                total = math.fsum(latest.values())
            except OverflowError:  # values near the float limit from a publisher that is not ours
                continue
            times.append(ts)
            equity.append(total)
        return times, equity

    def latest_fills(self, name: str | None = None) -> list[Fill]:
        """The latest fills, newest first (of one session when `name` is given)."""
        return [f for f in reversed(self.fills) if name is None or f.name == name]
