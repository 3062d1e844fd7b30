"""The REST API: Massive's aggregates, v3 trades/quotes and last trade/NBBO, with its errors.

A WSGI app (werkzeug routing, msgspec JSON) served by werkzeug's threaded server. Keys come as
`apiKey=` or `Authorization: Bearer`; a missing or unknown key gets 401, a "free" key is limited
to 5 requests a minute (429) and is not entitled to trades, quotes or last trade/NBBO (403), a
bad parameter gets 400 and an unknown path or missing data 404, each with Massive's body. The
server never logs request lines, because query strings may carry a key.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from mesh.sim import adjust, history, market, queries
from mesh.sim.clock import SimClock, last_served, served_until_ms
from mesh.sim.wsgi import BackgroundServer

log = logging.getLogger(__name__)

FREE_CALLS_PER_MINUTE = 5
AGGS_LIMIT_DEFAULT, AGGS_LIMIT_MAX = 5000, 50_000
TICKS_LIMIT_DEFAULT, TICKS_LIMIT_MAX = 1000, 50_000
NOT_ENTITLED = (
    "You are not entitled to this data. Please upgrade your plan at https://massive.com/pricing"
)
# Massive's answer for dates its plan does not cover: the future (massive-api.md §6.6) and, here,
# the days before the sim's history begins (COVERAGE_START), as a plan's history depth is answered.
OUTSIDE_TIMEFRAME = "Your plan doesn't include this data timeframe. Please upgrade your plan at https://massive.com/pricing"
RATE_LIMITED = "You've exceeded the maximum requests per minute, please wait or upgrade your subscription to continue. https://massive.com/pricing"

_ROUTES = Map(
    [
        Rule(
            "/v2/aggs/ticker/<ticker>/range/<multiplier>/<timespan>/<from_>/<to>", endpoint="aggs"
        ),
        Rule("/v2/aggs/ticker/<ticker>/prev", endpoint="prev"),
        Rule("/v2/aggs/grouped/locale/us/market/stocks/<date>", endpoint="grouped"),
        Rule("/v1/open-close/<ticker>/<date>", endpoint="open_close"),
        Rule("/v3/trades/<ticker>", endpoint="trades"),
        Rule("/v3/quotes/<ticker>", endpoint="quotes"),
        Rule("/v2/last/trade/<ticker>", endpoint="last_trade"),
        Rule("/v2/last/nbbo/<ticker>", endpoint="last_nbbo"),
        *(
            Rule(path, endpoint="reference", defaults={"name": name})
            for path, name in [
                ("/v3/reference/tickers", "tickers"),
                ("/v3/reference/tickers/types", "ticker_types"),
                ("/v3/reference/tickers/<ticker>", "ticker_details"),
                ("/v3/reference/conditions", "conditions"),
                ("/v3/reference/exchanges", "exchanges"),
                ("/v3/reference/splits", "splits"),
                ("/v3/reference/dividends", "dividends"),
            ]
        ),
        Rule(
            "/v2/snapshot/locale/us/markets/stocks/tickers",
            endpoint="snapshot",
            defaults={"name": "tickers"},
        ),
        Rule(
            "/v2/snapshot/locale/us/markets/stocks/tickers/<ticker>",
            endpoint="snapshot",
            defaults={"name": "ticker"},
        ),
        Rule(
            "/v2/snapshot/locale/us/markets/stocks/<direction>",
            endpoint="snapshot",
            defaults={"name": "direction"},
        ),
        Rule("/v3/snapshot", endpoint="snapshot", defaults={"name": "universal"}),
        Rule("/v1/marketstatus/now", endpoint="market_status", defaults={"name": "now"}),
        Rule("/v1/marketstatus/upcoming", endpoint="market_status", defaults={"name": "upcoming"}),
        Rule("/_sim/disconnect", endpoint="disconnect", methods=["GET", "POST"]),
    ],
    strict_slashes=False,
)
_PREMIUM = {"trades", "quotes", "last_trade", "last_nbbo", "snapshot"}  # not on the free plan
_UNWRAPPED = {"market_status"}  # Massive sends these bodies bare: no status, no request_id
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


class ApiError(Exception):
    """An error answered with Massive's body: `status` and `error` or `message`."""

    def __init__(self, http: int, status: str, text: str) -> None:
        super().__init__(text)
        self.http, self.status, self.text = http, status, text


class RestApp:
    """The WSGI application. `live_last(symbol)` gives the live feed's last (trade, quote) dicts."""

    def __init__(
        self,
        seed: int,
        symbols: list[str],
        keys: set[str],
        free_keys: set[str],
        live_last: Callable[[str], tuple[dict[str, Any] | None, dict[str, Any] | None]]
        | None = None,
        disconnect: Callable[[str | None], int] | None = None,
        clock: SimClock | None = None,
        scale: float = history.DEFAULT_SCALE,
    ) -> None:
        self.seed = seed
        self.scale = scale  # history's trades and quotes per day, times a real day's
        self.clock = clock  # a playing sim: serve its session only up to the played present
        self.symbols = set(symbols)
        self.keys = set(keys) | set(free_keys)
        self.free_keys = set(free_keys)
        self.live_last = live_last
        self.disconnect = disconnect
        self.requests = 0
        self.errors = 0
        self.rate_limited = 0
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._window: tuple[dt.date, market.HistoryWindow] | None = None

    def window(self) -> market.HistoryWindow:
        if self.clock is not None:
            return self.clock.window()
        today = market.today_et()
        if self._window is None or self._window[0] != today:
            self._window = (today, market.HistoryWindow.ending_before(today))
        return self._window[1]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        request_id = uuid.uuid4().hex
        with self._lock:
            self.requests += 1
        try:
            body = self.dispatch(request, request_id)
            response = Response(msgspec.json.encode(body), 200, content_type="application/json")
        except ApiError as exc:
            with self._lock:
                self.errors += 1
            key = "error" if exc.status == "ERROR" else "message"
            response = Response(
                msgspec.json.encode(
                    {"status": exc.status, "request_id": request_id, key: exc.text}
                ),
                exc.http,
                content_type="application/json",
            )
        except Exception:  # a bug must not take the server down; the client gets a 500
            log.exception("REST handler failed for %s", request.path)
            with self._lock:
                self.errors += 1
            response = Response(
                msgspec.json.encode(
                    {"status": "ERROR", "request_id": request_id, "error": "internal error"}
                ),
                500,
                content_type="application/json",
            )
        response.headers["X-Request-Id"] = request_id
        return response(environ, start_response)

    def dispatch(self, request: Request, request_id: str) -> Any:
        try:
            endpoint, args = _ROUTES.bind_to_environ(request.environ).match()
        except MethodNotAllowed:
            raise ApiError(405, "ERROR", "Method not allowed.") from None
        except (NotFound, HTTPException):
            raise ApiError(404, "NOT_FOUND", "The requested path was not found.") from None
        key = self._authenticate(request)
        if key in self.free_keys:
            self._throttle(key)
            if endpoint in _PREMIUM:
                raise ApiError(403, "NOT_AUTHORIZED", NOT_ENTITLED)
        params = dict(request.args)
        params.pop("apiKey", None)
        body = getattr(self, f"_{endpoint}")(request, params, **args)
        if endpoint in _UNWRAPPED:
            return body
        body.setdefault("status", "OK")
        body["request_id"] = request_id
        return body

    def _authenticate(self, request: Request) -> str:
        key = request.args.get("apiKey")
        auth = request.headers.get("Authorization", "")
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if not key:
            raise ApiError(401, "ERROR", "API Key was not provided")
        if key not in self.keys:
            raise ApiError(401, "ERROR", "Unknown API Key")
        return key

    def _throttle(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and now - calls[0] >= 60:
                calls.popleft()
            if len(calls) >= FREE_CALLS_PER_MINUTE:
                self.rate_limited += 1
                raise ApiError(429, "ERROR", RATE_LIMITED)
            calls.append(now)

    # --- aggregates ------------------------------------------------------------------------------

    def _aggs(
        self,
        request: Request,
        params: dict[str, str],
        ticker: str,
        multiplier: str,
        timespan: str,
        from_: str,
        to: str,
    ) -> dict[str, Any]:
        params = _with_cursor(params)
        if not multiplier.isdigit() or int(multiplier) < 1:
            raise ApiError(
                400, "ERROR", f"multiplier must be a positive whole number, got {multiplier[:20]!r}"
            )
        if timespan not in queries.TIMESPANS:
            raise ApiError(400, "ERROR", f"timespan must be one of {', '.join(queries.TIMESPANS)}")
        start_ms = _ms_bound(from_, "from", end=False)
        end_ms = _ms_bound(to, "to", end=True)
        if end_ms < start_ms:
            raise ApiError(
                400, "ERROR", "The parameter 'to' cannot be a time that occurs before 'from'"
            )
        sort = params.get("sort", "asc")
        if sort not in ("asc", "desc"):
            raise ApiError(400, "ERROR", "sort must be 'asc' or 'desc'")
        adjusted = _bool(params.get("adjusted", "true"), "adjusted")
        limit = _limit(params.get("limit"), AGGS_LIMIT_DEFAULT, AGGS_LIMIT_MAX)
        body: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": 0,
            "resultsCount": 0,
            "adjusted": adjusted,
        }
        self._check_timeframe(
            market.et_date_of_ns(start_ms * 1_000_000), market.et_date_of_ns(end_ms * 1_000_000)
        )
        if ticker not in self.symbols:
            return body
        if self.clock is not None:
            end_ms = min(end_ms, served_until_ms(self.clock, int(multiplier), timespan))
        page = queries.aggregate(
            self.seed,
            ticker,
            int(multiplier),
            timespan,
            start_ms,
            end_ms,
            sort == "asc",
            limit,
            self.window(),
            self.scale,
            self._split_adjusted_on(adjusted),
        )
        results = queries.bar_dicts(page.bars)
        body.update(queryCount=page.base_count, resultsCount=len(results), count=len(results))
        if results:
            body["results"] = results
        if page.next_from_ms is not None or page.next_to_ms is not None:
            cursor = _encode_cursor(
                {"adjusted": str(adjusted).lower(), "limit": limit, "sort": sort}
            )
            new_from = str(page.next_from_ms) if page.next_from_ms is not None else from_
            new_to = str(page.next_to_ms) if page.next_to_ms is not None else to
            body["next_url"] = (
                f"{request.host_url.rstrip('/')}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{new_from}/{new_to}?cursor={cursor}"
            )
        return body

    def _grouped(self, request: Request, params: dict[str, str], date: str) -> dict[str, Any]:
        day = _date(date, "date")
        adjusted = _bool(params.get("adjusted", "true"), "adjusted")
        self._check_timeframe(day, day)
        body: dict[str, Any] = {"queryCount": 0, "resultsCount": 0, "adjusted": adjusted}
        if day not in self.window().day_bar_set:
            return body
        close_ms = (market.midnight_ns(day) + 16 * history.NS_PER_HOUR) // 1_000_000
        results = []
        for symbol in sorted(self.symbols):
            bar = queries.day_bar(self.seed, symbol, day, self.scale)
            if adjusted:
                bar = adjust.adjusted(bar, symbol, self._today())
            results += queries.bar_dicts(bar, "T", symbol, [close_ms])
        body.update(queryCount=len(results), resultsCount=len(results), results=results)
        return body

    def _prev(self, request: Request, params: dict[str, str], ticker: str) -> dict[str, Any]:
        adjusted = _bool(params.get("adjusted", "true"), "adjusted")
        body: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": 0,
            "resultsCount": 0,
            "adjusted": adjusted,
        }
        days = self.window().day_bars
        if ticker not in self.symbols or not days:
            return body
        day = days[-1]
        close_ms = (market.midnight_ns(day) + 16 * history.NS_PER_HOUR) // 1_000_000
        bar = queries.day_bar(self.seed, ticker, day, self.scale)
        if adjusted:
            bar = adjust.adjusted(bar, ticker, self._today())
        results = queries.bar_dicts(bar, "T", ticker, [close_ms])
        body.update(queryCount=1, resultsCount=1, results=results)
        return body

    def _open_close(
        self, request: Request, params: dict[str, str], ticker: str, date: str
    ) -> dict[str, Any]:
        day = _date(date, "date")
        self._check_timeframe(day, day)
        if ticker not in self.symbols or day not in self.window().day_bar_set:
            raise ApiError(404, "NOT_FOUND", "Data not found.")
        body = queries.open_close(self.seed, ticker, day, self.scale)
        if _bool(params.get("adjusted", "true"), "adjusted"):
            body = adjust.adjusted_open_close(body, ticker, day, self._today())
        return body

    def _check_timeframe(self, first: dt.date, last: dt.date) -> None:
        """A request wholly after the sim's present day or before its history: Massive's 403."""
        if first > self._today() or last < market.COVERAGE_START:
            raise ApiError(403, "NOT_AUTHORIZED", OUTSIDE_TIMEFRAME)

    def _today(self) -> dt.date:
        """The sim's present day: the played session's, else today in New York."""
        return self.clock.today() if self.clock is not None else market.today_et()

    def _split_adjusted_on(self, adjusted: bool) -> dt.date | None:
        """The day whose executed splits adjust bars (None: `adjusted=false`, bars as traded)."""
        return self._today() if adjusted else None

    # --- trades and quotes -----------------------------------------------------------------------

    def _trades(self, request: Request, params: dict[str, str], ticker: str) -> dict[str, Any]:
        return self._ticks(request, params, ticker, "trades")

    def _quotes(self, request: Request, params: dict[str, str], ticker: str) -> dict[str, Any]:
        return self._ticks(request, params, ticker, "quotes")

    def _ticks(
        self, request: Request, params: dict[str, str], ticker: str, kind: str
    ) -> dict[str, Any]:
        params = _with_cursor(params)
        sort = params.get("sort", "timestamp")
        order = params.get("order")
        if sort in ("asc", "desc"):  # the official client's `sort=` enum; treat it as the order
            order = order or sort
        elif sort not in ("timestamp", "sip_timestamp"):
            raise ApiError(400, "ERROR", "sort must be 'timestamp'")
        order = order or "desc"
        if order not in ("asc", "desc"):
            raise ApiError(400, "ERROR", "order must be 'asc' or 'desc'")
        limit = _limit(params.get("limit"), TICKS_LIMIT_DEFAULT, TICKS_LIMIT_MAX)
        lo, hi = _ns_bounds(params)
        self._check_timeframe(
            market.et_date_of_ns(max(lo, 0)), market.et_date_of_ns(min(hi, 2**62))
        )
        if ticker not in self.symbols:
            return {"results": []}
        if self.clock is not None:
            hi = min(hi, self.clock.now_ns())
        rows, more = queries.tick_rows(
            self.seed, ticker, kind, lo, hi, order == "asc", limit, self.window(), self.scale
        )
        body: dict[str, Any] = {"results": rows}
        if more:
            last = rows[-1]["sip_timestamp"]
            bounds = (
                {"timestamp.gte": last + 1, "timestamp.lte": hi}
                if order == "asc"
                else {"timestamp.gte": lo, "timestamp.lte": last - 1}
            )
            cursor = _encode_cursor({"limit": limit, "order": order, "sort": "timestamp", **bounds})
            body["next_url"] = f"{request.host_url.rstrip('/')}/v3/{kind}/{ticker}?cursor={cursor}"
        return body

    def _last_trade(self, request: Request, params: dict[str, str], ticker: str) -> dict[str, Any]:
        trade = self.live_last(ticker)[0] if self.live_last and ticker in self.symbols else None
        if trade is not None:
            t = trade["t"] * 1_000_000
            res = {
                "T": ticker,
                "c": trade["c"],
                "i": trade["i"],
                "p": trade["p"],
                "q": trade["q"],
                "s": trade["s"],
                "t": t,
                "x": trade["x"],
                "y": t - 250_000,
                "z": market.listing(ticker).tape,
            }
            if not res["c"]:
                del res["c"]
            return {"results": res}
        tr, j = self._last_day_data(ticker, history.day_trades)
        res = {
            "T": ticker,
            "i": str(int(tr.trade_id[j])),
            "p": float(tr.price[j]),
            "q": int(tr.sequence[j]),
            "s": int(tr.size[j]),
            "t": int(tr.sip_ns[j]),
            "x": int(tr.exchange[j]),
            "y": int(tr.participant_ns[j]),
            "z": tr.tape,
        }
        conditions = queries.conditions_of(int(tr.flags[j]))
        if conditions:
            res["c"] = conditions
        return {"results": res}

    def _last_nbbo(self, request: Request, params: dict[str, str], ticker: str) -> dict[str, Any]:
        quote = self.live_last(ticker)[1] if self.live_last and ticker in self.symbols else None
        if quote is not None:
            t = quote["t"] * 1_000_000
            res = {
                "T": ticker,
                "P": quote["ap"],
                "S": quote["as"],
                "X": quote["ax"],
                "p": quote["bp"],
                "s": quote["bs"],
                "x": quote["bx"],
                "q": quote["q"],
                "t": t,
                "y": t - 250_000,
                "z": market.listing(ticker).tape,
            }
            return {"results": res}
        q, j = self._last_day_data(ticker, history.day_quotes)
        res = {
            "T": ticker,
            "P": float(q.ask_price[j]),
            "S": int(q.ask_size[j]) // 100,
            "X": int(q.ask_exchange[j]),
            "p": float(q.bid_price[j]),
            "s": int(q.bid_size[j]) // 100,
            "x": int(q.bid_exchange[j]),
            "q": int(q.sequence[j]),
            "t": int(q.sip_ns[j]),
            "y": int(q.participant_ns[j]),
            "z": q.tape,
        }
        return {"results": res}

    def _last_day_data(self, ticker: str, load: Callable[..., Any]) -> tuple[Any, int]:
        """The last day's trades or quotes and the index of the last one served so far."""
        days = self.window().intraday
        if ticker not in self.symbols or not days:
            raise ApiError(404, "NOT_FOUND", "Data not found.")
        now = self.clock.now_ns() if self.clock is not None else None
        found = last_served(self.seed, ticker, days, partial(load, scale=self.scale), now)
        if found is None:
            raise ApiError(404, "NOT_FOUND", "Data not found.")
        return found

    # --- reference and market status (mesh.sim.reference) ---------------------------------------

    def _reference(
        self, request: Request, params: dict[str, str], name: str, **args: str
    ) -> dict[str, Any]:
        from mesh.sim import reference  # imported on use: it builds on this module's helpers

        return reference.answer(self, request, params, name, **args)

    def _market_status(self, request: Request, params: dict[str, str], name: str) -> Any:
        from mesh.sim import reference

        return reference.market_status(self, request, params, name)

    def _snapshot(
        self, request: Request, params: dict[str, str], name: str, **args: str
    ) -> dict[str, Any]:
        from mesh.sim import snapshots  # imported on use: it builds on this module's errors

        return snapshots.answer(self, request, params, name, **args)

    # --- admin -----------------------------------------------------------------------------------

    def _disconnect(self, request: Request, params: dict[str, str]) -> dict[str, Any]:
        """Not a Massive endpoint: lets a test force the WebSocket feed to drop its clients."""
        if self.disconnect is None:
            raise ApiError(404, "NOT_FOUND", "No WebSocket feed is running.")
        return {"disconnected": self.disconnect(params.get("key") or None)}


# --- parameter parsing ---------------------------------------------------------------------------


def _with_cursor(params: dict[str, str]) -> dict[str, str]:
    cursor = params.get("cursor")
    if cursor is None:
        return params
    try:
        decoded = base64.b64decode(
            cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True
        ).decode()
        values = dict(parse_qsl(decoded, strict_parsing=True))
        if not values:
            raise ValueError("empty cursor")
        return values
    except ValueError:
        raise ApiError(400, "ERROR", "Invalid cursor.") from None


def _encode_cursor(values: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(urlencode(values).encode()).decode().rstrip("=")


def _limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ApiError(400, "ERROR", f"limit must be a whole number between 1 and {maximum}")
    return int(raw)


def _bool(raw: str, name: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise ApiError(400, "ERROR", f"{name} must be true or false")
    return raw.lower() == "true"


def _date(raw: str, name: str) -> dt.date:
    try:
        if _DATE.match(raw):
            return dt.date.fromisoformat(raw)
    except ValueError:
        pass
    raise ApiError(400, "ERROR", f"{name} must be a date formatted as YYYY-MM-DD")


def _ms_bound(raw: str, name: str, end: bool) -> int:
    """An aggregates `from`/`to`: a date (its ET day's first or last ms) or Unix ms."""
    if raw.isdigit():
        return int(raw)
    try:
        day = _date(raw, name)
    except ApiError:
        raise ApiError(
            400, "ERROR", f"'{name}' must be a date (YYYY-MM-DD) or a Unix millisecond timestamp"
        ) from None
    if end:
        return market.midnight_ns(day + dt.timedelta(days=1)) // 1_000_000 - 1
    return market.midnight_ns(day) // 1_000_000


def _ns_value(raw: str, name: str) -> tuple[int, int]:
    """A v3 timestamp as the [first, last] nanosecond it stands for."""
    if raw.isdigit():
        return int(raw), int(raw)
    if _DATE.match(raw):
        day = _date(raw, name)
        return market.midnight_ns(day), market.midnight_ns(day + dt.timedelta(days=1)) - 1
    m = _RFC3339.match(raw)
    if m:
        try:
            base = dt.datetime.fromisoformat(
                f"{m.group(1)}T{m.group(2)}:{m.group(3)}:{m.group(4)}{'+00:00' if m.group(6) == 'Z' else m.group(6)}"
            )
        except ValueError:
            pass
        else:
            ns = int(base.timestamp()) * 1_000_000_000 + int((m.group(5) or "0").ljust(9, "0"))
            return ns, ns
    raise ApiError(
        400, "ERROR", f"'{name}' must be a date (YYYY-MM-DD), an RFC3339 time or Unix nanoseconds"
    )


def _ns_bounds(params: dict[str, str]) -> tuple[int, int]:
    lo, hi = 0, 2**62
    ranged = [
        k for k in ("timestamp.gte", "timestamp.gt", "timestamp.lte", "timestamp.lt") if k in params
    ]
    if "timestamp" in params:
        if ranged:
            raise ApiError(
                400,
                "ERROR",
                "query parameters cannot have the combination of equal and any other param gt, gte, lt, lte",
            )
        return _ns_value(params["timestamp"], "timestamp")
    for k in ranged:
        first, last = _ns_value(params[k], k)
        if k == "timestamp.gte":
            lo = max(lo, first)
        elif k == "timestamp.gt":
            lo = max(lo, last + 1)
        elif k == "timestamp.lte":
            hi = min(hi, last)
        else:
            hi = min(hi, first - 1)
    return lo, hi


# --- server --------------------------------------------------------------------------------------


class RestServer(BackgroundServer):
    """The REST app on a werkzeug threaded server in a background thread."""

    def __init__(self, app: RestApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        super().__init__(app, host, port, "sim-rest")
