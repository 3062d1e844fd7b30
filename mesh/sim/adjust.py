"""Split adjustment of aggregate bars, as Massive applies it when `adjusted=true` (its default).

Massive's history (trades, quotes and flat files) is as traded; its aggregates, grouped daily,
previous close and open-close are split-adjusted unless asked `adjusted=false`. Only splits
adjust them (the `adjusted` parameter is documented as "whether or not the results are adjusted
for splits"): cash dividends, special ones included, change no bar.

A bar that starts before a split's execution date, for a split already executed on the sim's
`as_of` day, has its open/high/low/close and VWAP divided by the split's ratio (`split_to /
split_from`) and its volume multiplied by it; several splits compound. A 4-for-1 split quarters
the earlier prices and quadruples the earlier volumes; a 1-for-5 reverse split multiplies the
earlier prices by 5 and divides the earlier volumes by 5. Transaction counts never change.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from mesh.sim import corporate, market
from mesh.sim.history import Bars

PRICE_DECIMALS = 4  # adjusted prices keep 4 decimals (whole cents / ratio rarely ends in cents)


def split_factors(symbol: str, t_ms: np.ndarray, as_of: dt.date) -> np.ndarray:
    """For each bar start `t_ms`, the product of the ratios of the splits executed after it by `as_of`."""
    factor = np.ones(len(t_ms))
    for split in corporate.splits_of(symbol):
        if split.execution_date > as_of:
            continue
        before = t_ms < market.midnight_ns(split.execution_date) // 1_000_000
        factor[before] *= split.ratio
    return factor


def adjusted(bars: Bars, symbol: str, as_of: dt.date) -> Bars:
    """`bars` split-adjusted as Massive serves them with `adjusted=true` on `as_of`."""
    if len(bars) == 0 or not corporate.splits_of(symbol):
        return bars
    factor = split_factors(symbol, bars.t, as_of)
    if np.all(factor == 1.0):
        return bars

    def price(values: np.ndarray) -> np.ndarray:
        return np.round(values / factor, PRICE_DECIMALS)

    volume = bars.v * factor
    return Bars(
        t=bars.t,
        o=price(bars.o),
        h=price(bars.h),
        low=price(bars.low),
        c=price(bars.c),
        v=np.round(volume).astype(bars.v.dtype) if bars.v.dtype.kind in "iu" else volume,
        vw=price(bars.vw),
        n=bars.n,
    )


def adjusted_open_close(
    body: dict[str, Any], symbol: str, day: dt.date, as_of: dt.date
) -> dict[str, Any]:
    """A `/v1/open-close` body split-adjusted like the day's bar."""
    t_ms = np.array([market.midnight_ns(day) // 1_000_000])
    factor = float(split_factors(symbol, t_ms, as_of)[0])
    if factor == 1.0:
        return body
    out = dict(body)
    for key in ("open", "high", "low", "close", "preMarket", "afterHours"):
        if key in out:
            out[key] = round(out[key] / factor, PRICE_DECIMALS)
    out["volume"] = round(out["volume"] * factor)
    return out
