"""The Massive REST client: aggregates, v3 trades/quotes and reference data over httpx, inside the quota.

Every request, first try or retry, is recorded in the quota ledger before it is sent; a request
the ledger refuses is never sent. The key travels only in the `Authorization: Bearer` header.
`next_url` is followed by re-requesting its path and query against our own base URL (it carries
no key). 429 and 5xx are retried with exponential backoff, honouring `Retry-After`; 401 and 403
never are. A body that is not JSON, lacks the promised fields, is nested too deeply to read, or
holds values outside mesh.bounds (a non-finite or non-positive price, a negative size, a time
outside 1980..2100, an integer outside int64) is a `RestProtocolError` naming the first bad value:
nothing from such a reply is kept, and the reason is one line.

Provider field names (`o`, `h`, `l`, `c`, `v`, `vw`, `n`, `t`, `results`, `next_url`, ...) stay in
this module: it hands out Arrow tables in the fetcher's own column names.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from mesh import bounds
from mesh.fetcher.bars import MINUTE_SCHEMA
from mesh.fetcher.errors import Cancelled, RestAuthError, RestError, RestProtocolError, scrub
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.splits import Split

log = logging.getLogger(__name__)

AGGS_LIMIT = 50_000  # the maximum; counts base (minute) bars, not output bars
TICKS_LIMIT = 50_000
MAX_PAGES = 10_000  # a runaway next_url chain stops here
USER_AGENT = "massive-mesh fetcher"


@dataclass(frozen=True)
class MarketStatus:
    """`/v1/marketstatus/now` as read: Massive's `market` ("open", "closed", "extended-hours"),
    whether extended hours are the early (pre-market) or after hours, and the server's clock."""

    market: str
    early_hours: bool
    after_hours: bool
    server_time: dt.datetime


# --- wire structs (provider field names live here only) ----------------------------------------


class _Agg(msgspec.Struct):
    o: float
    h: float
    low: float = msgspec.field(name="l")
    c: float
    v: float
    t: int  # ms, window start
    n: int = 0
    vw: float | None = None


class _AggsPage(msgspec.Struct):
    status: str = ""
    results: list[_Agg] | None = None
    next_url: str | None = None


class _Trade(msgspec.Struct):
    sip_timestamp: int
    price: float
    size: float
    exchange: int = 0
    id: str = ""
    conditions: list[int] | None = None
    tape: int = 0
    sequence_number: int = 0


class _Quote(msgspec.Struct):
    sip_timestamp: int
    bid_price: float = 0.0
    bid_size: float = 0
    ask_price: float = 0.0
    ask_size: float = 0
    bid_exchange: int = 0
    ask_exchange: int = 0
    conditions: list[int] | None = None
    tape: int = 0
    sequence_number: int = 0


class _TradesPage(msgspec.Struct):
    status: str = ""
    results: list[_Trade] | None = None
    next_url: str | None = None


class _QuotesPage(msgspec.Struct):
    status: str = ""
    results: list[_Quote] | None = None
    next_url: str | None = None


class _TickerDetails(msgspec.Struct):
    ticker: str
    name: str = ""


class _TickerDetailsBody(msgspec.Struct):
    results: _TickerDetails
    status: str = ""


class _MarketStatusBody(msgspec.Struct):
    market: str
    serverTime: str
    earlyHours: bool = False
    afterHours: bool = False


class _DayClose(msgspec.Struct):
    T: str
    c: float


class _GroupedBody(msgspec.Struct):
    status: str = ""
    results: list[_DayClose] | None = None


class _Split(msgspec.Struct):
    ticker: str
    execution_date: str
    split_from: float
    split_to: float


class _SplitsPage(msgspec.Struct):
    status: str = ""
    results: list[_Split] | None = None
    next_url: str | None = None


class _ErrorBody(msgspec.Struct):
    status: str = ""
    error: str = ""
    message: str = ""


_error_decoder = msgspec.json.Decoder(_ErrorBody)


# --- values within mesh.bounds -----------------------------------------------------------------

_MS_MIN, _MS_MAX = bounds.TS_MIN // 1_000_000, bounds.TS_MAX // 1_000_000
_INT64 = (-bounds.INT64_MAX - 1, bounds.INT64_MAX)


def _price(value: float, zero_ok: bool = False) -> bool:
    return (0 <= value if zero_ok else 0 < value) and value < bounds.MAX_PRICE  # NaN fails both


def _amount(value: float) -> bool:
    return 0 <= value < 2.0**63  # NaN and inf fail


def _code(value: int) -> bool:
    return 0 <= value <= bounds.INT64_MAX


def _bad_value(row: Any) -> str | None:
    """The first field of a decoded row outside mesh.bounds, as `name=value`, or None."""
    if isinstance(row, _Agg):
        checks = [
            ("t", _MS_MIN <= row.t < _MS_MAX),
            ("o", _price(row.o)),
            ("h", _price(row.h)),
            ("l", _price(row.low)),
            ("c", _price(row.c)),
            ("v", _amount(row.v)),
            ("n", _code(row.n)),
            ("vw", row.vw is None or _price(row.vw, zero_ok=True)),
        ]
    elif isinstance(row, _Split):
        checks = [
            ("ticker", 0 < len(row.ticker) <= bounds.MAX_NAME),
            ("execution_date", _iso_date(row.execution_date) is not None),
            ("split_from", 0 < row.split_from < 1e9),  # NaN fails
            ("split_to", 0 < row.split_to < 1e9),
        ]
    elif isinstance(row, _Trade):
        checks = [
            ("sip_timestamp", bounds.TS_MIN <= row.sip_timestamp < bounds.TS_MAX),
            ("price", _price(row.price)),
            ("size", _amount(row.size)),
            ("exchange", _code(row.exchange)),
            ("tape", _code(row.tape)),
            ("sequence_number", _code(row.sequence_number)),
            ("id", len(row.id) <= bounds.MAX_NAME),
            ("conditions", all(_INT64[0] <= c <= _INT64[1] for c in row.conditions or ())),
        ]
    else:
        checks = [
            ("sip_timestamp", bounds.TS_MIN <= row.sip_timestamp < bounds.TS_MAX),
            ("bid_price", _price(row.bid_price, zero_ok=True)),
            ("ask_price", _price(row.ask_price, zero_ok=True)),
            ("bid_size", _amount(row.bid_size)),
            ("ask_size", _amount(row.ask_size)),
            ("bid_exchange", _code(row.bid_exchange)),
            ("ask_exchange", _code(row.ask_exchange)),
            ("tape", _code(row.tape)),
            ("sequence_number", _code(row.sequence_number)),
            ("conditions", all(_INT64[0] <= c <= _INT64[1] for c in row.conditions or ())),
        ]
    for name, ok in checks:
        if not ok:
            value = getattr(row, "low" if name == "l" else name, None)
            return f"{name}={str(value)[:40]}"
    return None


def _iso_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def _check_page(page: Any, what: str) -> None:
    for index, row in enumerate(page.results or ()):
        bad = _bad_value(row)
        if bad is not None:
            raise RestProtocolError(
                f"{what}: the REST response holds an impossible value in result {index} ({bad}); nothing from it is kept"
            )


class RestClient:
    """One account's REST access: `minute_bars`, `trades`, `quotes`; counts calls in `calls`."""

    def __init__(
        self,
        base_url: str,
        api_key: Any,
        ledger: QuotaLedger,
        *,
        timeout: float = 15.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_retry_after: float = 65.0,
        cancel: threading.Event | None = None,
        on_wait: Callable[[str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        wait_for_minute: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key.reveal() if hasattr(api_key, "reveal") else str(api_key or "")
        self.ledger = ledger
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.cancel = cancel
        self.on_wait = on_wait
        self.wait_for_minute = wait_for_minute  # False: the per-minute limit refuses at once
        self.calls = 0  # requests sent by this client (each also in the ledger)
        self.throttled = 0
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        if self.cancel is not None:
            if self.cancel.wait(seconds):
                raise Cancelled("cancelled")
        else:
            time.sleep(seconds)

    def _clean(self, text: str) -> str:
        return scrub(text, self._key)

    def _report_limit_wait(self, seconds: float) -> None:
        if self.on_wait is not None:
            self.on_wait(f"waiting {seconds:.0f} s for the per-minute REST limit")

    def get(self, path: str, params: dict[str, Any] | None = None, *, what: str = "") -> bytes:
        """One logical GET: counted, retried on 429/5xx/network errors, raised on anything else."""
        what = what or path
        attempt = 0
        while True:
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled("cancelled")
            self.ledger.acquire_rest(
                path.split("?")[0],
                wait=self.wait_for_minute,
                cancel=self.cancel,
                on_wait=self._report_limit_wait if self.on_wait else None,
            )
            self.calls += 1
            try:
                response = self._http.get(path, params=params)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise RestError(
                        self._clean(
                            f"{what}: cannot reach the REST API at {self.base_url} ({type(exc).__name__}: {exc})"
                        )
                    ) from None
                delay = self.backoff * 2**attempt
            else:
                status = response.status_code
                if status == 200:
                    return response.content
                reason = self._reason(response)
                if status in (401, 403):
                    hint = (
                        "check MASSIVE_API_KEY"
                        if status == 401
                        else "your plan does not include this data"
                    )
                    raise RestAuthError(
                        self._clean(f"{what}: REST refused with {status} ({reason}); {hint}"),
                        status=status,
                    )
                if status == 429 or status >= 500:
                    if status == 429:
                        self.throttled += 1
                        self.ledger.note("throttled", path.split("?")[0])
                    if attempt >= self.retries:
                        raise RestError(
                            self._clean(
                                f"{what}: REST answered {status} ({reason}) {attempt + 1} times; giving up"
                            ),
                            status=status,
                        )
                    delay = self._retry_after(response) or self.backoff * 2**attempt
                else:
                    raise RestError(
                        self._clean(f"{what}: REST answered {status} ({reason})"), status=status
                    )
            attempt += 1
            delay = min(delay, self.max_retry_after)
            log.info(
                "%s: retrying in %.1f s (attempt %d of %d)",
                what,
                delay,
                attempt + 1,
                self.retries + 1,
            )
            if self.on_wait is not None:
                self.on_wait(f"server busy, retrying in {delay:.0f} s")
            self._sleep(delay)

    @staticmethod
    def _reason(response: httpx.Response) -> str:
        try:
            body = _error_decoder.decode(response.content)
            text = body.error or body.message or body.status
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            text = ""
        return (text or response.reason_phrase or "no message")[:300]

    @staticmethod
    def _retry_after(response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())

    def _pages(
        self, path: str, params: dict[str, Any], decoder: msgspec.json.Decoder, what: str
    ) -> Iterator[Any]:
        """Decoded pages, following `next_url` until it is absent."""
        seen: set[str] = set()
        target: tuple[str, dict[str, Any] | None] = (path, params)
        for _ in range(MAX_PAGES):
            body = self.get(target[0], target[1], what=what)
            page = _decode(body, decoder.decode, what)
            _check_page(page, what)
            if page.status and page.status not in ("OK", "DELAYED"):
                raise RestError(f"{what}: REST status {page.status!r}")
            yield page
            if not page.next_url:
                return
            nxt = self._relative(page.next_url)
            if nxt in seen:
                raise RestProtocolError(f"{what}: next_url repeats itself; stopping")
            seen.add(nxt)
            target = (nxt, None)
        raise RestProtocolError(f"{what}: more than {MAX_PAGES} pages; stopping")

    @staticmethod
    def _relative(next_url: str) -> str:
        """Path and query of `next_url` (without any apiKey), to request against our own base."""
        parts = urlsplit(next_url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "apiKey"]
        return parts.path + ("?" + urlencode(query) if query else "")

    def _one(self, path: str, params: dict[str, Any] | None, kind: type[Any], what: str) -> Any:
        """One GET decoded as `kind`; a body of another shape is a RestProtocolError."""
        body = self.get(path, params, what=what)
        return _decode(body, lambda raw: msgspec.json.decode(raw, type=kind), what)

    # --- endpoints -----------------------------------------------------------------------------

    def company_name(self, symbol: str) -> str:
        """`/v3/reference/tickers/{symbol}`: the company's (or fund's) name, cut to a line."""
        body = self._one(
            f"/v3/reference/tickers/{quote(symbol, safe='')}",
            None,
            _TickerDetailsBody,
            f"{symbol} reference",
        )
        return " ".join(body.results.name.split())[: bounds.MAX_NAME]

    def market_status(self) -> MarketStatus:
        """`/v1/marketstatus/now`: the market's state at the server's clock."""
        body = self._one("/v1/marketstatus/now", None, _MarketStatusBody, "market status")
        try:
            server_time = dt.datetime.fromisoformat(body.serverTime)
        except ValueError:
            server_time = None
        if server_time is None or server_time.tzinfo is None:
            raise RestProtocolError(
                f"market status: serverTime {body.serverTime[:40]!r} is not a time with its zone"
            )
        return MarketStatus(
            market=body.market[:40],
            early_hours=body.earlyHours,
            after_hours=body.afterHours,
            server_time=server_time,
        )

    def day_closes(self, day: dt.date) -> dict[str, float]:
        """`/v2/aggs/grouped/.../{day}`: every stock's close on `day` (one call for all symbols)."""
        what = f"closes of {day.isoformat()}"
        body = self._one(
            f"/v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}",
            {"adjusted": "true"},
            _GroupedBody,
            what,
        )
        if body.status and body.status not in ("OK", "DELAYED"):
            raise RestError(f"{what}: REST status {body.status!r}")
        return {
            row.T: row.c
            for row in body.results or ()
            if _price(row.c) and len(row.T) <= bounds.MAX_NAME
        }

    def splits(self, symbol: str) -> list[Split]:
        """`/v3/reference/splits?ticker=`: every split of `symbol` Massive knows, oldest first.

        Usually one call (up to 1,000 splits a page); announced future splits are included.
        """
        out: list[Split] = []
        params = {"ticker": symbol, "limit": 1000, "sort": "execution_date", "order": "asc"}
        for page in self._pages(
            "/v3/reference/splits", params, msgspec.json.Decoder(_SplitsPage), f"{symbol} splits"
        ):
            for row in page.results or ():
                if row.ticker != symbol:
                    continue
                day = _iso_date(row.execution_date)
                assert day is not None  # checked with the page
                out.append(Split(symbol, day, row.split_from, row.split_to))
        return sorted(out, key=lambda s: s.execution_date)

    def minute_bars(
        self,
        symbol: str,
        start: dt.date,
        end: dt.date,
        *,
        adjusted: bool = True,
        on_page: Callable[[int], None] | None = None,
    ) -> pa.Table:
        """1-minute aggregates of `symbol` for New York dates [start, end] (MINUTE_SCHEMA).

        `adjusted` (Massive's default) asks for split-adjusted bars; False for bars as traded.
        """
        path = f"/v2/aggs/ticker/{quote(symbol, safe='')}/range/1/minute/{start.isoformat()}/{end.isoformat()}"
        params = {"adjusted": "true" if adjusted else "false", "sort": "asc", "limit": AGGS_LIMIT}
        t: list[int] = []
        o: list[float] = []
        h: list[float] = []
        lo: list[float] = []
        c: list[float] = []
        v: list[float] = []
        n: list[int] = []
        for page in self._pages(
            path, params, msgspec.json.Decoder(_AggsPage), f"{symbol} minute bars"
        ):
            for bar in page.results or ():
                t.append(bar.t)
                o.append(bar.o)
                h.append(bar.h)
                lo.append(bar.low)
                c.append(bar.c)
                v.append(bar.v)
                n.append(bar.n)
            if on_page is not None:
                on_page(len(t))
        ts = pa.array(t, pa.int64())
        return pa.table(
            {
                "symbol": pa.array([symbol] * len(t), pa.string()),
                "ts": pc.multiply(ts, pa.scalar(1_000_000, pa.int64())),
                "open": pa.array(o, pa.float64()),
                "high": pa.array(h, pa.float64()),
                "low": pa.array(lo, pa.float64()),
                "close": pa.array(c, pa.float64()),
                "volume": pa.array(v, pa.float64()),
                "transactions": pa.array(n, pa.int64()),
            },
            schema=MINUTE_SCHEMA,
        )

    def _ticks(
        self,
        kind: str,
        symbol: str,
        ts_from: int,
        ts_to: int,
        decoder: msgspec.json.Decoder,
        on_page: Callable[[int], None] | None,
    ) -> list[Any]:
        params = {
            "timestamp.gte": ts_from,
            "timestamp.lte": ts_to,
            "order": "asc",
            "sort": "timestamp",
            "limit": TICKS_LIMIT,
        }
        rows: list[Any] = []
        for page in self._pages(
            f"/v3/{kind}/{quote(symbol, safe='')}", params, decoder, f"{symbol} {kind}"
        ):
            rows.extend(page.results or ())
            if on_page is not None:
                on_page(len(rows))
        return rows

    def trades(
        self,
        symbol: str,
        ts_from: int,
        ts_to: int,
        *,
        recv_ns: int | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> dict[str, list[Any]]:
        """Trades of `symbol` with SIP time in [ts_from, ts_to] ns, as columns named like `mesh.schema.Trade`."""
        rows = self._ticks(
            "trades", symbol, ts_from, ts_to, msgspec.json.Decoder(_TradesPage), on_page
        )
        recv = recv_ns or time.time_ns()
        return {
            "symbol": [symbol] * len(rows),
            "price": [r.price for r in rows],
            "size": [round(r.size) for r in rows],
            "exchange": [r.exchange for r in rows],
            "trade_id": [r.id for r in rows],
            "conditions": [r.conditions or [] for r in rows],
            "tape": [r.tape for r in rows],
            "sequence": [r.sequence_number for r in rows],
            "ts_event": [r.sip_timestamp for r in rows],
            "ts_recv": [recv] * len(rows),
        }

    def quotes(
        self,
        symbol: str,
        ts_from: int,
        ts_to: int,
        *,
        recv_ns: int | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> dict[str, list[Any]]:
        """NBBO quotes of `symbol` with SIP time in [ts_from, ts_to] ns, as columns named like `mesh.schema.Quote`."""
        rows = self._ticks(
            "quotes", symbol, ts_from, ts_to, msgspec.json.Decoder(_QuotesPage), on_page
        )
        recv = recv_ns or time.time_ns()
        return {
            "symbol": [symbol] * len(rows),
            "bid_price": [r.bid_price for r in rows],
            "bid_size": [round(r.bid_size) for r in rows],
            "ask_price": [r.ask_price for r in rows],
            "ask_size": [round(r.ask_size) for r in rows],
            "bid_exchange": [r.bid_exchange for r in rows],
            "ask_exchange": [r.ask_exchange for r in rows],
            "condition": [(r.conditions or [0])[0] for r in rows],
            "tape": [r.tape for r in rows],
            "sequence": [r.sequence_number for r in rows],
            "ts_event": [r.sip_timestamp for r in rows],
            "ts_recv": [recv] * len(rows),
        }


def _decode(body: bytes, decode: Callable[[bytes], Any], what: str) -> Any:
    """`decode(body)`, any failure to read it a RestProtocolError saying what was wrong."""
    try:
        return decode(body)
    except msgspec.ValidationError as exc:
        raise RestProtocolError(
            f"{what}: the REST response lacks expected fields ({exc})"
        ) from None
    except msgspec.DecodeError:
        raise RestProtocolError(
            f"{what}: the REST response is not JSON (starts {body[:40]!r})"
        ) from None
    except RecursionError:
        raise RestProtocolError(f"{what}: the REST response is nested too deeply to read") from None
