"""Stock snapshots as Massive serves them, built from the sim's history up to one instant.

`/v2/snapshot/locale/us/markets/stocks/tickers/{T}`, `.../tickers?tickers=A,B` and
`.../{gainers|losers}` answer with a ticker's `day` (today's bar so far), `min` (the latest closed
minute bar), `prevDay`, `lastTrade`, `lastQuote`, `todaysChange`/`todaysChangePerc` and
`updated`. Every value is read from the same trades and bars REST serves at that instant, so a
snapshot agrees with `/v3/trades`, `/v3/quotes` and minute aggregates then.

Massive's day follows its knowledge base: at 03:30 ET the snapshot is cleared (every value 0,
`prevDay` the session that just closed); from 04:00 ET `lastTrade`, `lastQuote`, `min` and
`todaysChange` (last trade minus `prevDay.c`) move with pre-market trades while `day` stays all
zeros; `day` fills from the first regular-session trade after 09:30, its prices from the regular
session only and its volume from the whole day so far. `prevDay` is split-adjusted as the default
aggregates are, so a split executed today is no change of the day.

`/v3/snapshot` (Massive's universal snapshot, cross-asset; the sim has stocks only) answers from
the same snapshot: its `session` is the `day` bar with `prevDay`'s close, its `last_trade` and
`last_quote` the same trade and quote, plus the change over each part of the day (pre-market,
regular, after-hours), a page at a time in ticker order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mesh.sim import adjust, history, market, marketstatus, queries, reference
from mesh.sim.reference import _choice, _order, _page, _text_ranges
from mesh.sim.rest import ApiError, _limit, _with_cursor

if TYPE_CHECKING:
    from werkzeug.wrappers import Request

    from mesh.sim.rest import RestApp

CLEARED_AT = dt.time(3, 30)  # ET: the snapshot's values go to 0
GAINERS_LOSERS_TOP = 20
GAINERS_LOSERS_MIN_VOLUME = 10_000
UNIVERSAL_LIMIT_DEFAULT, UNIVERSAL_LIMIT_MAX = 10, 250
UNIVERSAL_TYPES = ("stocks", "options", "fx", "crypto", "indices")  # Massive's; the sim has stocks
_MARKET_STATUS = {  # the universal snapshot's names for the stock market's phases
    marketstatus.Phase.PRE_MARKET: "early_trading",
    marketstatus.Phase.OPEN: "open",
    marketstatus.Phase.AFTER_HOURS: "late_trading",
    marketstatus.Phase.CLOSED: "closed",
}
_REALTIME = "REAL-TIME"
_ZERO_BAR = {"o": 0, "h": 0, "l": 0, "c": 0, "v": 0, "vw": 0}


@dataclass(frozen=True)
class SnapshotSource:
    """What a snapshot reads: the history's seed and scale, the days it holds, and the instant."""

    seed: int
    scale: float
    day_bars: tuple[dt.date, ...]  # completed days (prevDay comes from these)
    intraday: tuple[dt.date, ...]  # days with trades and quotes, the played one last
    now_ns: int


def _et_ns(day: dt.date, at: dt.time) -> int:
    return market.midnight_ns(day) + (at.hour * 3600 + at.minute * 60) * history.NS_PER_SECOND


def _bar(bars: history.Bars, i: int) -> dict[str, Any]:
    return {
        "o": float(bars.o[i]),
        "h": float(bars.h[i]),
        "l": float(bars.low[i]),
        "c": float(bars.c[i]),
        "v": int(bars.v[i]),
        "vw": float(bars.vw[i]),
    }


def _shown(src: SnapshotSource) -> SnapshotSource | None:
    """The instant whose day a snapshot shows: `src`'s own, or before 03:30 ET (or on a day without
    a session) the end of the last session, as it ended; None when there is no such session."""
    today = market.et_date_of_ns(src.now_ns)
    if src.now_ns >= _et_ns(today, CLEARED_AT) and today in src.intraday:
        return src
    earlier = [d for d in src.intraday if d < today]
    if not earlier:
        return None
    end = history.session_bounds_ns(earlier[-1])[3] - 1
    return SnapshotSource(src.seed, src.scale, src.day_bars, tuple(earlier), end)


def ticker_snapshot(src: SnapshotSource, symbol: str) -> dict[str, Any]:
    """One ticker's snapshot at `src.now_ns`, in Massive's shape."""
    shown = _shown(src)
    if shown is None:
        return _cleared(src, symbol, market.et_date_of_ns(src.now_ns))
    src = shown
    today = market.et_date_of_ns(src.now_ns)
    begin, open_ns, _, _ = history.session_bounds_ns(today)
    if src.now_ns < begin:  # 03:30 to 04:00: cleared
        return _cleared(src, symbol, today)
    body = _cleared(src, symbol, today)
    trades = history.day_trades(src.seed, symbol, today, src.scale)
    quotes = history.day_quotes(src.seed, symbol, today, src.scale)
    j = int(np.searchsorted(trades.sip_ns, src.now_ns, "right"))
    k = int(np.searchsorted(quotes.sip_ns, src.now_ns, "right"))
    updated = 0
    if j:
        i = j - 1
        last_trade: dict[str, Any] = {
            "i": str(int(trades.trade_id[i])),
            "p": float(trades.price[i]),
            "s": int(trades.size[i]),
            "t": int(trades.sip_ns[i]),
            "x": int(trades.exchange[i]),
        }
        conditions = queries.conditions_of(int(trades.flags[i]))
        if conditions:
            last_trade["c"] = conditions
        body["lastTrade"] = last_trade
        updated = last_trade["t"]
        prev_close = body["prevDay"]["c"]
        if prev_close:
            change = last_trade["p"] - prev_close
            body["todaysChange"] = round(change, 4)
            body["todaysChangePerc"] = round(change / prev_close * 100, 4)
    if k:
        i = k - 1
        body["lastQuote"] = {
            "P": float(quotes.ask_price[i]),
            "S": int(quotes.ask_size[i]) // 100,
            "p": float(quotes.bid_price[i]),
            "s": int(quotes.bid_size[i]) // 100,
            "t": int(quotes.sip_ns[i]),
        }
        updated = max(updated, body["lastQuote"]["t"])
    body["updated"] = updated
    minutes = history.minute_bars(src.seed, symbol, today, src.scale)
    closed = int(np.searchsorted(minutes.t + 60_000, src.now_ns // history.NS_PER_MS, "right"))
    if closed:
        body["min"] = {
            "av": int(minutes.v[:closed].sum()),
            "t": int(minutes.t[closed - 1]),
            "n": int(minutes.n[closed - 1]),
            **_bar(minutes, closed - 1),
        }
    if src.now_ns >= open_ns and j:
        so_far = slice(0, j)
        day = history.bars_from_trades(
            trades.sip_ns[so_far],
            trades.price[so_far],
            trades.size[so_far],
            2 * 86_400 * history.NS_PER_SECOND,
            market.midnight_ns(today),
            price_ok=history.can_set_price(trades.flags[so_far], form_t_allowed=False),
            volume_ok=history.counts_volume(trades.flags[so_far]),
        )
        if len(day):
            body["day"] = _bar(day, 0)
    return body


def _cleared(src: SnapshotSource, symbol: str, today: dt.date) -> dict[str, Any]:
    """The snapshot as it is from 03:30 ET: every value 0, `prevDay` the last completed session."""
    before = [d for d in src.day_bars if d < today]
    prev = (
        adjust.adjusted(queries.day_bar(src.seed, symbol, before[-1], src.scale), symbol, today)
        if before
        else history.EMPTY_BARS
    )
    return {
        "day": dict(_ZERO_BAR),
        "lastQuote": {"P": 0, "S": 0, "p": 0, "s": 0, "t": 0},
        "lastTrade": {"i": "", "p": 0, "s": 0, "t": 0, "x": 0},
        "min": {"av": 0, "t": 0, "n": 0, **_ZERO_BAR},
        "prevDay": _bar(prev, 0) if len(prev) else dict(_ZERO_BAR),
        "ticker": symbol,
        "todaysChange": 0,
        "todaysChangePerc": 0,
        "updated": 0,
    }


def market_snapshot(src: SnapshotSource, symbols: list[str]) -> list[dict[str, Any]]:
    """The snapshots of `symbols`, in the order given."""
    return [ticker_snapshot(src, s) for s in symbols]


def movers(src: SnapshotSource, symbols: list[str], gainers: bool) -> list[dict[str, Any]]:
    """Massive's top 20 gainers or losers by `todaysChangePerc`, among tickers with 10,000+ shares today."""
    rows = [
        row
        for row in market_snapshot(src, symbols)
        if row["min"]["av"] >= GAINERS_LOSERS_MIN_VOLUME
        and (row["todaysChangePerc"] > 0 if gainers else row["todaysChangePerc"] < 0)
    ]
    rows.sort(key=lambda r: r["todaysChangePerc"], reverse=gainers)
    return rows[:GAINERS_LOSERS_TOP]


def _last_prices(src: SnapshotSource, symbol: str) -> tuple[float, float, float]:
    """The last trade price of the shown day's pre-market, regular session and after-hours so
    far (0 for a part without a trade yet)."""
    shown = _shown(src)
    if shown is None:
        return 0.0, 0.0, 0.0
    today = market.et_date_of_ns(shown.now_ns)
    trades = history.day_trades(shown.seed, symbol, today, shown.scale)
    upto = int(np.searchsorted(trades.sip_ns, shown.now_ns, "right"))
    begin, open_ns, close_ns, _ = history.session_bounds_ns(today)
    cuts = np.searchsorted(trades.sip_ns[:upto], [begin, open_ns, close_ns], "left").tolist()
    early, regular, late = zip(cuts, [*cuts[1:], upto], strict=True)
    return (
        float(trades.price[early[1] - 1]) if early[1] > early[0] else 0.0,
        float(trades.price[regular[1] - 1]) if regular[1] > regular[0] else 0.0,
        float(trades.price[late[1] - 1]) if late[1] > late[0] else 0.0,
    )


def _change(price: float, base: float) -> tuple[float, float]:
    if not (price and base):
        return 0, 0
    return round(price - base, 4), round((price - base) / base * 100, 4)


def universal_snapshot(
    src: SnapshotSource, symbol: str, phase: marketstatus.Phase
) -> dict[str, Any]:
    """One stock's `/v3/snapshot` result: the v2 snapshot at the same instant, in the universal shape."""
    v2 = ticker_snapshot(src, symbol)
    day, prev_close, trade, quote = v2["day"], v2["prevDay"]["c"], v2["lastTrade"], v2["lastQuote"]
    early, regular, late = _last_prices(src, symbol)
    session: dict[str, Any] = {
        "price": trade["p"],
        "change": v2["todaysChange"],
        "change_percent": v2["todaysChangePerc"],
        "open": day["o"],
        "high": day["h"],
        "low": day["l"],
        "close": day["c"],
        "volume": day["v"],
        "vwap": day["vw"],
        "previous_close": prev_close,
    }
    # pre-market and regular trading from the previous close; after-hours from today's close
    for part, price, base in (("early", early, prev_close), ("regular", regular, prev_close), ("late", late, day["c"])):  # fmt: skip
        change, percent = _change(price, base)
        session[f"{part}_trading_change"] = change
        session[f"{part}_trading_change_percent"] = percent
    session["last_updated"] = v2["updated"]
    body: dict[str, Any] = {
        "ticker": symbol,
        "type": "stocks",
        "market_status": _MARKET_STATUS[phase],
        "name": market.profile(symbol).name,
        "session": session,
    }
    if trade["t"]:
        body["last_trade"] = {
            "id": trade["i"],
            "price": trade["p"],
            "size": trade["s"],
            "exchange": trade["x"],
            **({"conditions": trade["c"]} if "c" in trade else {}),
            "sip_timestamp": trade["t"],
            "last_updated": trade["t"],
            "timeframe": _REALTIME,
        }
    if quote["t"]:
        body["last_quote"] = {
            "ask": quote["P"],
            "ask_size": quote["S"],
            "bid": quote["p"],
            "bid_size": quote["s"],
            "midpoint": round((quote["P"] + quote["p"]) / 2, 4),
            "last_updated": quote["t"],
            "timeframe": _REALTIME,
        }
    minute = v2["min"]
    if minute["t"]:
        body["last_minute"] = {
            "open": minute["o"],
            "high": minute["h"],
            "low": minute["l"],
            "close": minute["c"],
            "volume": minute["v"],
            "vwap": minute["vw"],
            "transactions": minute["n"],
            "last_updated": (minute["t"] + 60_000) * history.NS_PER_MS,
        }
    return body


def universal(app: RestApp, request: Request, params: dict[str, str]) -> dict[str, Any]:
    """`/v3/snapshot`: a page of the asked tickers' universal snapshots, an unknown one as a
    NOT_FOUND item in its place."""
    params = _with_cursor(params)
    limit = _limit(params.get("limit"), UNIVERSAL_LIMIT_DEFAULT, UNIVERSAL_LIMIT_MAX)
    kind = _choice(params, "type", UNIVERSAL_TYPES, "")
    order = _order(params, "asc")
    _choice(params, "sort", ("ticker",), "ticker")
    wanted = [t for t in params.get("ticker.any_of", "").split(",") if t]
    if len(wanted) > UNIVERSAL_LIMIT_MAX:
        raise ApiError(400, "ERROR", f"ticker.any_of takes at most {UNIVERSAL_LIMIT_MAX} tickers")
    if kind not in ("", "stocks"):
        names: list[str] = []  # the sim lists no other asset class
    else:
        names = list(dict.fromkeys(wanted)) if wanted else list(app.symbols)
    tests = _text_ranges(params, "ticker")
    rows = [{"ticker": t} for t in names if all(test({"ticker": t}) for test in tests)]
    rows.sort(key=lambda r: r["ticker"], reverse=order == "desc")
    body = _page(request, "/v3/snapshot", rows, params, limit)
    body.pop("count")
    src = now_of(app)
    phase = marketstatus.phase(reference.now(app))  # as /v1/marketstatus/now says
    body["results"] = [
        universal_snapshot(src, row["ticker"], phase)
        if row["ticker"] in app.symbols
        else {"ticker": row["ticker"], "error": "NOT_FOUND", "message": "Ticker not found."}
        for row in body["results"]
    ]
    return body


def now_of(app: RestApp) -> SnapshotSource:
    """The app's history at its played instant (without a clock: the last day, as it ended)."""
    window = app.window()
    if app.clock is not None:
        now = app.clock.now_ns()
    elif window.intraday:
        now = history.session_bounds_ns(window.intraday[-1])[3] - 1
    else:
        now = 0
    return SnapshotSource(app.seed, app.scale, window.day_bars, window.intraday, now)


def answer(
    app: RestApp, request: Request, params: dict[str, str], name: str, **args: str
) -> dict[str, Any]:
    """The body of one snapshot endpoint (`name`: ticker, tickers, direction or universal)."""
    if name == "universal":
        return universal(app, request, params)
    src = now_of(app)
    if name == "ticker":
        ticker = args["ticker"]
        if ticker not in app.symbols:
            raise ApiError(404, "NOT_FOUND", "Ticker not found.")
        return {"ticker": ticker_snapshot(src, ticker)}
    if name == "direction":
        direction = args["direction"]
        if direction not in ("gainers", "losers"):
            raise ApiError(400, "ERROR", "direction must be 'gainers' or 'losers'")
        rows = movers(src, sorted(app.symbols), direction == "gainers")
        return {"tickers": rows}
    wanted = [t for t in params.get("tickers", "").split(",") if t]
    symbols = [t for t in wanted if t in app.symbols] if wanted else sorted(app.symbols)
    rows = market_snapshot(src, symbols)
    return {"count": len(rows), "tickers": rows}
