"""History queries behind the REST API: custom-range aggregates and time-bounded trades/quotes.

Pure functions over `history`, kept apart from HTTP so the paging arithmetic (limit counted in
base bars, windows never split across pages, strict timestamp cursors) can be read and tested
on its own. `day_bar` is every server's one source of day bars (REST aggregates, grouped daily,
previous close, open-close and the day_aggs_v1 flat files), so all of them agree on any day.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mesh.sim import adjust, daycache, history, market
from mesh.sim.history import Bars

TIMESPANS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
INTRADAY = {"second": 1000, "minute": 60_000, "hour": 3_600_000}  # window width per unit, ms


@dataclass
class AggPage:
    bars: Bars
    base_count: int  # base bars used (what `limit` counts)
    next_from_ms: int | None = None  # asc: the next page starts here
    next_to_ms: int | None = None  # desc: the next page ends here


def day_bar(seed: int, symbol: str, day: dt.date, scale: float = history.DEFAULT_SCALE) -> Bars:
    """The day's bar, the aggregate of its tape (empty off days); kept years come from disk."""
    return daycache.day_bar(seed, symbol, day, scale)


def _window_start_date(day: dt.date, multiplier: int, timespan: str) -> dt.date:
    """First calendar day of the day/week/month/quarter/year window holding `day`."""
    if timespan == "day":
        return dt.date.fromordinal(day.toordinal() // multiplier * multiplier)
    if timespan == "week":  # weeks start on Sunday; Sunday ordinals are multiples of 7
        week = day.toordinal() // 7
        return dt.date.fromordinal((week - week % multiplier) * 7)
    months = {"month": 1, "quarter": 3, "year": 12}[timespan] * multiplier
    index = day.year * 12 + day.month - 1
    index -= index % months
    return dt.date(index // 12, index % 12 + 1, 1)


def aggregate(
    seed: int,
    symbol: str,
    multiplier: int,
    timespan: str,
    start_ms: int,
    end_ms: int,
    ascending: bool,
    limit: int,
    window: market.HistoryWindow,
    scale: float = history.DEFAULT_SCALE,
    split_adjusted_on: dt.date | None = None,
) -> AggPage:
    """Bars of `multiplier` x `timespan` whose windows overlap [start_ms, end_ms] (snapped to whole windows)."""
    if timespan in INTRADAY:
        width = INTRADAY[timespan] * multiplier
        first_day = market.et_date_of_ns(start_ms * 1_000_000)
        last_day = market.et_date_of_ns(end_ms * 1_000_000)
        parts, keys, starts = [], [], []
        lo_i, hi_i = (
            bisect.bisect_left(window.intraday, first_day),
            bisect.bisect_right(window.intraday, last_day),
        )
        days = window.intraday[lo_i:hi_i]
        taken = 0
        for day in days if ascending else days[::-1]:
            if taken > limit:  # windows never span days: later days cannot reach this page
                break
            base = (
                history.second_bars(seed, symbol, day, scale)
                if timespan == "second"
                else history.minute_bars(seed, symbol, day, scale)
            )
            mid = market.midnight_ns(day) // 1_000_000
            k = (base.t - mid) // width
            s = mid + k * width
            keep = (s + width > start_ms) & (s <= end_ms)
            parts.append(base.take(keep))
            keys.append(day.toordinal() * 10**9 + k[keep])
            starts.append(s[keep])
            taken += int(keep.sum())
        if not ascending:
            parts, keys, starts = parts[::-1], keys[::-1], starts[::-1]
    else:
        first_day = market.et_date_of_ns(start_ms * 1_000_000)
        last_day = market.et_date_of_ns(end_ms * 1_000_000)
        lo = _window_start_date(first_day, multiplier, timespan)
        daycache.prepare(seed, symbol, max(lo, market.COVERAGE_START), last_day, scale)
        parts, keys, starts = [], [], []
        for day in window.day_bars:
            if day < lo or day > last_day:
                continue
            bar = day_bar(seed, symbol, day, scale)
            if len(bar) == 0:
                continue
            w = _window_start_date(day, multiplier, timespan)
            parts.append(bar)
            keys.append(np.array([w.toordinal()]))
            starts.append(np.array([market.midnight_ns(w) // 1_000_000]))
    base = Bars.concat(parts)
    if split_adjusted_on is not None:  # base bars adjust one by one, before any merging
        base = adjust.adjusted(base, symbol, split_adjusted_on)
    if len(base) == 0:
        return AggPage(base, 0)
    key = np.concatenate(keys)
    start = np.concatenate(starts)
    exact = multiplier == 1 and timespan in ("second", "minute", "day")
    bars = base if exact else history.merge_bars(base, key, start)
    per_window = (
        np.ones(len(bars), np.int64)
        if exact
        else np.bincount(np.unique(key, return_inverse=True)[1])
    )
    order = np.arange(len(bars)) if ascending else np.arange(len(bars))[::-1]
    used = np.cumsum(per_window[order])
    count = max(1, int(np.searchsorted(used, limit, side="right")))
    page = AggPage(bars.take(order[:count]), int(used[count - 1]))
    if count < len(order):
        if ascending:
            page.next_from_ms = int(bars.t[order[count]])
        else:
            page.next_to_ms = int(bars.t[order[count - 1]]) - 1
    return page


def tick_rows(
    seed: int,
    symbol: str,
    kind: str,
    lo_ns: int,
    hi_ns: int,
    ascending: bool,
    limit: int,
    window: market.HistoryWindow,
    scale: float = history.DEFAULT_SCALE,
) -> tuple[list[dict], bool]:
    """Up to `limit` trades or quotes with lo_ns <= sip_timestamp <= hi_ns, and whether more exist."""
    first_day = market.et_date_of_ns(max(lo_ns, 0))
    last_day = market.et_date_of_ns(min(hi_ns, 2**62))
    days = [d for d in window.intraday if first_day <= d <= last_day]
    rows: list[dict] = []
    for day in days if ascending else reversed(days):
        data = (
            history.day_trades(seed, symbol, day, scale)
            if kind == "trades"
            else history.day_quotes(seed, symbol, day, scale)
        )
        idx = np.flatnonzero((data.sip_ns >= lo_ns) & (data.sip_ns <= hi_ns))
        if not ascending:
            idx = idx[::-1]
        idx = idx[: limit + 1 - len(rows)]
        rows.extend(
            _trade_rows(data, idx) if isinstance(data, history.Trades) else _quote_rows(data, idx)
        )
        if len(rows) > limit:
            return rows[:limit], True
    return rows, False


def open_close(seed: int, symbol: str, day: dt.date, scale: float = history.DEFAULT_SCALE) -> dict:
    """`/v1/open-close/{T}/{date}`: the regular session's open/high/low/close, the whole day's volume.

    `preMarket` is the open of pre-market trading and `afterHours` the close of after-hours trading
    (each omitted when that session had no trade that can set a price), as Massive defines them.
    """
    summary = history.day_summary(seed, symbol, day, scale)
    bar = summary.bar
    body: dict = {
        "from": day.isoformat(),
        "symbol": symbol,
        "open": float(bar.o[0]),
        "high": float(bar.h[0]),
        "low": float(bar.low[0]),
        "close": float(bar.c[0]),
        "volume": int(bar.v[0]),
    }
    if summary.after_hours is not None:
        body["afterHours"] = summary.after_hours
    if summary.pre_market is not None:
        body["preMarket"] = summary.pre_market
    return body


def conditions_of(flags: int) -> list[int]:
    return [code for bit, code in history.CONDITION_CODES if flags & bit]


def _trade_rows(tr: history.Trades, idx: np.ndarray) -> Iterator[dict]:
    cols = [
        getattr(tr, f)[idx].tolist()
        for f in (
            "flags",
            "exchange",
            "trade_id",
            "participant_ns",
            "price",
            "sequence",
            "sip_ns",
            "size",
            "trf_id",
            "trf_ns",
        )
    ]
    for flags, x, tid, pt, p, seq, t, s, trfi, trft in zip(*cols, strict=True):
        row: dict = {}
        if flags:
            row["conditions"] = conditions_of(flags)
        row.update(
            exchange=x,
            id=str(tid),
            participant_timestamp=pt,
            price=p,
            sequence_number=seq,
            sip_timestamp=t,
            size=s,
            tape=tr.tape,
        )
        if trfi:
            row["trf_id"] = trfi
            row["trf_timestamp"] = trft
        yield row


def _quote_rows(q: history.Quotes, idx: np.ndarray) -> Iterator[dict]:
    cols = [
        getattr(q, f)[idx].tolist()
        for f in (
            "ask_exchange",
            "ask_price",
            "ask_size",
            "bid_exchange",
            "bid_price",
            "bid_size",
            "participant_ns",
            "sequence",
            "sip_ns",
        )
    ]
    for ax, ap, as_, bx, bp, bs, pt, seq, t in zip(*cols, strict=True):
        yield {
            "ask_exchange": ax,
            "ask_price": ap,
            "ask_size": as_,
            "bid_exchange": bx,
            "bid_price": bp,
            "bid_size": bs,
            "participant_timestamp": pt,
            "sequence_number": seq,
            "sip_timestamp": t,
            "tape": q.tape,
        }


def bar_dicts(
    bars: Bars, ticker_key: str | None = None, symbol: str = "", t_override: list[int] | None = None
) -> list[dict]:
    """REST `results` rows: v, vw, o, c, h, l, t, n (plus `T` for grouped/prev)."""
    cols = [
        bars.v.tolist(),
        bars.vw.tolist(),
        bars.o.tolist(),
        bars.c.tolist(),
        bars.h.tolist(),
        bars.low.tolist(),
        t_override or bars.t.tolist(),
        bars.n.tolist(),
    ]
    out = []
    for v, vw, o, c, h, low, t, n in zip(*cols, strict=True):
        row = {ticker_key: symbol} if ticker_key else {}
        row.update(v=v, vw=vw, o=o, c=c, h=h, l=low, t=t, n=n)
        out.append(row)
    return out
