"""Minute aggregates in, bars of the requested interval out: the one place bars are built.

Both methods deliver minute bars (REST asks for 1-minute aggregates, flat files hold them) and
both go through `resample`, so a REST fetch and a flat-file fetch of the same request return the
same rows, types and values to the last bit. Minute flat files carry no VWAP, so `vwap` is
derived the same way for both: the volume-weighted mean of each minute's typical price
(high + low + close) / 3, an estimate of the true VWAP (docs/fetcher.md says so).

Windows: intraday bars start on multiples of their width since the epoch (whole minutes and hours
are the same in New York and UTC); 1d bars are New York trading days stamped at 00:00 New York
time, as Massive stamps its day bars. Bars come out in the one bar schema (mesh/bar_schema.py):
`ts_start`, `ts_end` (the next window's start; for 1d the next 00:00 New York) and a null
`ts_recv` (history was not received live). A 1d bar's open, high, low and close come from the
regular session's minutes and its volume from the whole day, as Massive's day bars
(massive-api.md §6).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mesh import bar_schema, calendar, intervals

# what both sources are normalised to before resampling (ts = window start, Unix ns)
MINUTE_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("ts", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("transactions", pa.int64()),
    ]
)


def _epoch_day(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def resample(minutes: pa.Table, interval: str, start: dt.date, end: dt.date) -> pa.Table:
    """Bars of `interval` from minute bars, for New York trading dates in [start, end].

    Rows come out sorted by symbol, then time. Duplicate minutes (same symbol and start) are
    kept once, so overlapping pages or files cannot double-count.
    """
    width = intervals.parse(interval)
    if minutes.num_rows == 0:
        return bar_schema.empty()
    minutes = minutes.cast(MINUTE_SCHEMA)
    encoded = pc.dictionary_encode(minutes["symbol"]).combine_chunks()
    names = encoded.dictionary.to_pylist()
    rank = np.argsort(
        np.argsort(np.array(names, dtype=object))
    )  # dictionary index -> alphabetical rank
    sym = rank[encoded.indices.to_numpy()]
    ts = minutes["ts"].to_numpy()
    # keep only the requested New York dates
    day = calendar.et_dates(ts)
    inside = (day >= _epoch_day(start)) & (day <= _epoch_day(end))
    order = np.lexsort((ts, sym))
    order = order[inside[order]]
    sym, ts, day = sym[order], ts[order], day[order]
    cols = {
        name: minutes[name].to_numpy()[order]
        for name in ("open", "high", "low", "close", "volume", "transactions")
    }
    if len(ts) == 0:
        return bar_schema.empty()
    fresh = np.ones(len(ts), dtype=bool)
    fresh[1:] = (sym[1:] != sym[:-1]) | (ts[1:] != ts[:-1])
    if not fresh.all():
        sym, ts, day = sym[fresh], ts[fresh], day[fresh]
        cols = {k: v[fresh] for k, v in cols.items()}

    if width.is_daily:
        dates, where = np.unique(day, return_inverse=True)
        midnights = np.array(
            [calendar.midnight_ns(dt.date(1970, 1, 1) + dt.timedelta(days=int(d))) for d in dates],
            dtype=np.int64,
        )
        window = midnights[where]
    else:
        window = ts - ts % width.ns
    first = np.flatnonzero(
        np.concatenate(([True], (sym[1:] != sym[:-1]) | (window[1:] != window[:-1])))
    )
    last = np.append(first[1:], len(ts)) - 1

    volume = cols["volume"]
    typical = (cols["high"] + cols["low"] + cols["close"]) / 3.0
    vol_sum = np.add.reduceat(volume, first)
    notional = np.add.reduceat(typical * volume, first)
    counts = np.diff(np.append(first, len(ts)))
    plain = np.add.reduceat(typical, first) / counts
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(vol_sum > 0, notional / np.where(vol_sum > 0, vol_sum, 1.0), plain)

    open_, high = cols["open"][first], np.maximum.reduceat(cols["high"], first)
    low, close = np.minimum.reduceat(cols["low"], first), cols["close"][last]
    if width.is_daily:  # prices from the regular session only, as Massive's day bars
        regular = _in_regular_session(ts, dates, where)
        group = np.repeat(np.arange(len(first)), np.diff(np.append(first, len(ts))))
        open_, high, low, close = _regular_prices(cols, regular, group, (open_, high, low, close))

    symbols_sorted = np.array(sorted(names), dtype=object)
    return bar_schema.from_columns(
        pa.array(symbols_sorted[sym[first]], pa.string()),
        window[first],
        width,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=vol_sum,
        vwap=vwap,
        transactions=np.add.reduceat(cols["transactions"], first),
    )


def _in_regular_session(ts: np.ndarray, dates: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Which minutes start inside their day's regular session (09:30 to 16:00, 13:00 early close)."""
    opens, closes = [], []
    for d in dates.tolist():
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(d))
        midnight = calendar.midnight_ns(day)
        opens.append(midnight + (9 * 60 + 30) * 60 * 10**9)
        closes.append(midnight + (13 if calendar.is_early_close(day) else 16) * 3600 * 10**9)
    return (ts >= np.array(opens, np.int64)[where]) & (ts < np.array(closes, np.int64)[where])


def _regular_prices(
    cols: dict[str, np.ndarray],
    regular: np.ndarray,
    group: np.ndarray,
    whole_day: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each day's open/high/low/close from its regular-session minutes.

    Massive's day bar takes no price from a pre-market or after-hours trade (massive-api.md §6)
    but counts their volume, so only the prices are narrowed here. A day whose minutes are all
    outside the regular session keeps the prices of the minutes it has.
    """
    open_, high, low, close = (a.copy() for a in whole_day)
    idx = np.flatnonzero(regular)
    if len(idx) == 0:
        return open_, high, low, close
    g = group[idx]
    starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
    ends = np.append(starts[1:], len(idx)) - 1
    days = g[starts]
    open_[days] = cols["open"][idx[starts]]
    high[days] = np.maximum.reduceat(cols["high"][idx], starts)
    low[days] = np.minimum.reduceat(cols["low"][idx], starts)
    close[days] = cols["close"][idx[ends]]
    return open_, high, low, close
