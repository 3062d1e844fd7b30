"""Massive's reference and market-status endpoints for the sim's one market.

`/v3/reference/tickers` (list, details and types), `/v1/marketstatus/now` and `/upcoming`,
`/v3/reference/conditions`, `/v3/reference/exchanges`, `/v3/reference/splits` and
`/v3/reference/dividends`, in Massive's shapes, filters and cursor pagination. `rest.RestApp`
routes to `answer` (and `market_status`) after it has checked the key, so these endpoints share
its authentication, free-plan limit and error bodies. The facts come from the modules that own
them: `market` (symbols), `conditions`, `exchanges`, `corporate` and `marketstatus`; the time is
the sim's clock when it has one (a sim playing a session answers for the session's present).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request

from mesh.sim import conditions, corporate, exchanges, market, marketstatus
from mesh.sim.rest import ApiError, RestApp, _bool, _date, _encode_cursor, _limit, _with_cursor

TICKER_TYPES = (
    "CS ADRC ADRP ADRR UNIT RIGHT PFD FUND SP WARRANT INDEX ETF ETN OS GDR OTHER NYRS AGEN EQLK "
    "BOND ADRW BASKET LT"
).split()
STOCK_TYPES = {  # Massive's stock ticker types and their descriptions (`/v3/reference/tickers/types`)
    "CS": "Common Stock",
    "PFD": "Preferred Stock",
    "WARRANT": "Warrant",
    "RIGHT": "Rights",
    "BOND": "Corporate Bond",
    "ETF": "Exchange Traded Fund",
    "ETN": "Exchange Traded Note",
    "SP": "Structured Product",
    "ADRC": "American Depository Receipt Common",
    "ADRW": "American Depository Receipt Warrants",
    "ADRR": "American Depository Receipt Rights",
    "FUND": "Fund",
    "BASKET": "Basket",
    "UNIT": "Unit",
    "LT": "Liquidating Trust",
}
MARKETS = ("stocks", "crypto", "fx", "otc", "indices")
ASSET_CLASSES = ("stocks", "options", "crypto", "fx")
TICKER_SORTS = (
    "ticker name market locale primary_exchange type currency_symbol currency_name "
    "base_currency_symbol base_currency_name cik composite_figi share_class_figi "
    "last_updated_utc delisted_utc"
).split()
DIVIDEND_DATES = ("ex_dividend_date", "pay_date", "declaration_date", "record_date")
RANGE_SUFFIXES = ("", ".gt", ".gte", ".lt", ".lte")

Row = dict[str, Any]
Predicate = Callable[[Row], bool]


def now(app: RestApp) -> dt.datetime:
    """The sim's present: its clock's when it plays a session, else the wall clock's."""
    clock = getattr(app, "clock", None)
    ns = clock.now_ns() if clock is not None else time.time_ns()
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)


def market_status(app: RestApp, request: Request, params: dict[str, str], name: str) -> Any:
    """`/v1/marketstatus/now` (an object) or `/upcoming` (a list); Massive sends both bare."""
    if name == "now":
        return marketstatus.status_now(now(app))
    return marketstatus.upcoming(now(app))


def answer(app: RestApp, request: Request, params: dict[str, str], name: str, **args: str) -> Row:
    handler = _HANDLERS[name]
    return handler(app, request, params, **args)


# --- tickers -------------------------------------------------------------------------------------


def ticker_row(symbol: str, day: dt.date) -> Row:
    """A `/v3/reference/tickers` result for one of the sim's symbols."""
    info = market.profile(symbol)
    return {
        "ticker": symbol,
        "name": info.name,
        "market": "stocks",
        "locale": "us",
        "primary_exchange": market.PRIMARY_EXCHANGE[market.listing(symbol).tape],
        "type": info.type,
        "active": True,
        "currency_name": "usd",
        "cik": info.cik,
        "composite_figi": market.figi(symbol),
        "share_class_figi": market.figi(symbol, share_class=True),
        "last_updated_utc": f"{day.isoformat()}T00:00:00Z",
    }


def _tickers(app: RestApp, request: Request, params: dict[str, str]) -> Row:
    params = _with_cursor(params)
    limit = _limit(params.get("limit"), 100, 1000)
    order = _order(params, "asc")
    sort = _choice(params, "sort", TICKER_SORTS, "ticker")
    kind = params.get("type")
    if kind is not None and kind not in TICKER_TYPES:
        raise ApiError(400, "ERROR", f"type must be one of {', '.join(TICKER_TYPES)}")
    wanted_market = _choice(params, "market", MARKETS, "stocks")
    active = _bool(params.get("active", "true"), "active")
    day = _date(params["date"], "date") if "date" in params else now(app).date()
    rows = [ticker_row(symbol, day) for symbol in sorted(app.symbols)]
    tests: list[Predicate] = _text_ranges(params, "ticker")
    if kind is not None:
        tests.append(lambda r: r["type"] == kind)
    if wanted_market != "stocks" or not active or "cusip" in params:
        tests.append(lambda r: False)  # the sim lists active US stocks only and knows no CUSIPs
    if "exchange" in params:
        tests.append(lambda r: r["primary_exchange"] == params["exchange"])
    if "cik" in params:
        tests.append(lambda r: r["cik"].lstrip("0") == params["cik"].lstrip("0"))
    search = params.get("search", "").strip().lower()
    if search:
        tests.append(lambda r: search in r["ticker"].lower() or search in r["name"].lower())
    rows = [r for r in rows if all(test(r) for test in tests)]
    if search:  # Massive orders a search by relevance: the ticker itself, then its prefix
        rows.sort(
            key=lambda r: (
                r["ticker"].lower() != search,
                not r["ticker"].lower().startswith(search),
                r["ticker"],
            )
        )
    else:
        rows.sort(key=lambda r: str(r.get(sort, "")), reverse=order == "desc")
    return _page(request, "/v3/reference/tickers", rows, params, limit)


def _ticker_details(app: RestApp, request: Request, params: dict[str, str], ticker: str) -> Row:
    day = _date(params["date"], "date") if "date" in params else now(app).date()
    if ticker not in app.symbols:
        raise ApiError(404, "NOT_FOUND", "Ticker not found.")
    info = market.profile(ticker)
    root, _, suffix = ticker.partition(".")
    details = ticker_row(ticker, day)
    del details["last_updated_utc"]
    before = min(max(day, market.COVERAGE_START), market.PATH_END)
    close = market.previous_close(app.seed, ticker, before)
    # the close is as traded; the shares outstanding are on today's basis, so is the price
    close /= corporate.as_traded_multiplier(ticker, before - dt.timedelta(days=1))
    details.update(
        market_cap=round(info.shares_outstanding * close, 2),
        list_date=info.list_date,
        share_class_shares_outstanding=info.shares_outstanding,
        weighted_shares_outstanding=info.shares_outstanding,
        round_lot=100,
        ticker_root=root,
    )
    if suffix:
        details["ticker_suffix"] = suffix
    if info.sic_code:
        details.update(sic_code=info.sic_code, sic_description=info.sic_description)
    if info.homepage_url:
        details["homepage_url"] = info.homepage_url
    return {"results": details}


def _ticker_types(app: RestApp, request: Request, params: dict[str, str]) -> Row:
    asset_class = _choice(params, "asset_class", (*ASSET_CLASSES, "indices"), "stocks")
    locale = _choice(params, "locale", ("us", "global"), "us")
    rows = [
        {"code": code, "description": text, "asset_class": "stocks", "locale": "us"}
        for code, text in STOCK_TYPES.items()
        if (asset_class, locale) == ("stocks", "us")
    ]
    return {"results": rows, "count": len(rows)}


# --- conditions and exchanges --------------------------------------------------------------------


def _conditions(app: RestApp, request: Request, params: dict[str, str]) -> Row:
    params = _with_cursor(params)
    limit = _limit(params.get("limit"), 10, 1000)
    order = _order(params, "asc")
    sort = _choice(
        params, "sort", ("asset_class", "id", "type", "name", "data_types", "legacy"), "asset_class"
    )
    asset_class = _choice(params, "asset_class", ASSET_CLASSES, "stocks")
    data_type = _choice(params, "data_type", ("trade", "bbo", "nbbo"), "trade")
    sip = _choice(params, "sip", ("CTA", "UTP", "OPRA"), "")
    wanted_id = _int(params["id"], "id") if "id" in params else None
    rows = [
        c.as_massive()
        for c in conditions.TABLE.values()
        if asset_class == "stocks"
        and data_type == "trade"
        and (wanted_id is None or c.id == wanted_id)
        and (not sip or sip in dict(c.sip_mapping))
    ]
    key = "id" if sort in ("asset_class", "data_types") else sort
    rows.sort(
        key=lambda r: (str(r.get(key, "")) if key != "id" else r["id"], r["id"]),
        reverse=order == "desc",
    )
    return _page(request, "/v3/reference/conditions", rows, params, limit)


def _exchanges(app: RestApp, request: Request, params: dict[str, str]) -> Row:
    asset_class = _choice(params, "asset_class", ASSET_CLASSES, "stocks")
    locale = _choice(params, "locale", ("us", "global"), "us")
    rows = (
        [x.as_massive() for x in exchanges.STOCK_EXCHANGES]
        if (asset_class, locale) == ("stocks", "us")
        else []
    )
    return {"results": rows, "count": len(rows)}


# --- corporate actions ---------------------------------------------------------------------------


def _splits(app: RestApp, request: Request, params: dict[str, str]) -> Row:
    params = _with_cursor(params)
    limit = _limit(params.get("limit"), 10, 1000)
    order = _order(params, "desc")
    sort = _choice(params, "sort", ("execution_date", "ticker"), "execution_date")
    tests = _text_ranges(params, "ticker") + _date_ranges(params, "execution_date")
    if "reverse_split" in params:
        reverse = _bool(params["reverse_split"], "reverse_split")
        tests.append(lambda r: (r["split_from"] > r["split_to"]) == reverse)
    rows = [s.as_massive() for s in corporate.SPLITS if s.ticker in app.symbols]
    return _listing(request, "/v3/reference/splits", rows, params, tests, sort, order, limit)


def _dividends(app: RestApp, request: Request, params: dict[str, str]) -> Row:
    params = _with_cursor(params)
    limit = _limit(params.get("limit"), 10, 1000)
    order = _order(params, "desc")
    sort = _choice(params, "sort", (*DIVIDEND_DATES, "cash_amount", "ticker"), "ex_dividend_date")
    tests = _text_ranges(params, "ticker")
    for field in DIVIDEND_DATES:
        tests += _date_ranges(params, field)
    tests += _number_ranges(params, "cash_amount")
    if "frequency" in params:
        frequency = _int(params["frequency"], "frequency")
        if frequency not in {int(f) for f in corporate.Frequency}:
            raise ApiError(400, "ERROR", "frequency must be one of 0, 1, 2, 4, 12")
        tests.append(lambda r: r["frequency"] == frequency)
    if "dividend_type" in params:
        kind = _choice(params, "dividend_type", ("CD", "SC", "LT", "ST"), "CD")
        tests.append(lambda r: r["dividend_type"] == kind)
    rows = [d.as_massive() for d in corporate.dividends() if d.ticker in app.symbols]
    return _listing(request, "/v3/reference/dividends", rows, params, tests, sort, order, limit)


_HANDLERS: dict[str, Callable[..., Row]] = {
    "tickers": _tickers,
    "ticker_details": _ticker_details,
    "ticker_types": _ticker_types,
    "conditions": _conditions,
    "exchanges": _exchanges,
    "splits": _splits,
    "dividends": _dividends,
}


# --- filters, order and pages --------------------------------------------------------------------


def _order(params: dict[str, str], default: str) -> str:
    return _choice(params, "order", ("asc", "desc"), default)


def _choice(
    params: dict[str, str], name: str, allowed: tuple[str, ...] | list[str], default: str
) -> str:
    value = params.get(name, default)
    if value not in allowed and value != default:
        raise ApiError(400, "ERROR", f"{name} must be one of {', '.join(allowed)}")
    return value


def _int(raw: str, name: str) -> int:
    if not raw.lstrip("-").isdigit():
        raise ApiError(400, "ERROR", f"{name} must be a whole number")
    return int(raw)


def _ranges(params: dict[str, str], field: str, parse: Callable[[str], Any]) -> list[Predicate]:
    """`field`, `field.gt`, `.gte`, `.lt`, `.lte` as tests on a row (values parsed by `parse`)."""
    tests: list[Predicate] = []
    for suffix in RANGE_SUFFIXES:
        raw = params.get(field + suffix)
        if raw is None:
            continue
        bound = parse(raw)

        def test(row: Row, bound: Any = bound, suffix: str = suffix) -> bool:
            value = parse(str(row[field]))
            return {
                "": value == bound,
                ".gt": value > bound,
                ".gte": value >= bound,
                ".lt": value < bound,
                ".lte": value <= bound,
            }[suffix]

        tests.append(test)
    return tests


def _text_ranges(params: dict[str, str], field: str) -> list[Predicate]:
    return _ranges(params, field, str)


def _date_ranges(params: dict[str, str], field: str) -> list[Predicate]:
    return _ranges(params, field, lambda raw: _date(raw, field))


def _number_ranges(params: dict[str, str], field: str) -> list[Predicate]:
    def number(raw: str) -> float:
        try:
            return float(raw)
        except ValueError:
            raise ApiError(400, "ERROR", f"{field} must be a number") from None

    return _ranges(params, field, number)


def _listing(
    request: Request,
    path: str,
    rows: list[Row],
    params: dict[str, str],
    tests: list[Predicate],
    sort: str,
    order: str,
    limit: int,
) -> Row:
    rows = [r for r in rows if all(test(r) for test in tests)]
    rows.sort(key=lambda r: (r[sort], r["ticker"], r["id"]), reverse=order == "desc")
    return _page(request, path, rows, params, limit)


def _page(request: Request, path: str, rows: list[Row], params: dict[str, str], limit: int) -> Row:
    """One page of `rows` from the cursor's `page_marker`; `next_url` carries every filter on."""
    start = _int(params.get("page_marker", "0"), "page_marker")
    if start < 0:
        raise ApiError(400, "ERROR", "Invalid cursor.")
    results = rows[start : start + limit]
    body: Row = {"results": results, "count": len(results)}
    if start + limit < len(rows):
        query = {k: v for k, v in params.items() if k not in ("cursor", "apiKey", "page_marker")}
        cursor = _encode_cursor({**query, "limit": limit, "page_marker": start + limit})
        body["next_url"] = f"{request.host_url.rstrip('/')}{path}?cursor={cursor}"
    return body
