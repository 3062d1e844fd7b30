"""Split adjustment of as-traded minute bars, the way Massive adjusts its aggregates.

Massive's REST aggregates are split-adjusted by default (`adjusted=true`), but its flat files
(`minute_aggs_v1`) are as traded. A flat-file fetch that asks for adjusted bars reads each
symbol's splits once (`/v3/reference/splits`, one REST call per symbol, counted in the quota like
any other) and adjusts the minute bars here, before they are resampled, so that a flat-file
fetch and a REST fetch of the same span give the same bars.

The rule is Massive's (and the sim's, mesh/sim/adjust.py): a bar that starts before a split's
execution date (00:00 New York time), for a split executed by the fetch's `as_of` day, has its
open, high, low and close divided by the split's ratio (`split_to / split_from`) and its volume
multiplied by it; several splits compound, oldest first. Adjusted prices are rounded to 4
decimals and a whole-share volume stays whole (rounded half to even), as Massive serves them.
Transaction counts never change. Only splits adjust bars: dividends change nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mesh import calendar
from mesh.fetcher.bars import MINUTE_SCHEMA

PRICE_DECIMALS = 4
PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass(frozen=True)
class Split:
    """A stock split of `symbol`: `split_from` shares became `split_to` on `execution_date`."""

    symbol: str
    execution_date: dt.date
    split_from: float
    split_to: float

    @property
    def ratio(self) -> float:
        """New shares per old share: 10.0 for a 10-for-1, 0.2 for a 1-for-5 reverse split."""
        return self.split_to / self.split_from

    @property
    def starts_ns(self) -> int:
        """00:00 New York time on the execution date, Unix ns: bars before it are adjusted."""
        return calendar.midnight_ns(self.execution_date)


def executed(splits: Iterable[Split], as_of: dt.date) -> list[Split]:
    """The splits executed on or before `as_of`, oldest first (announced future ones adjust nothing)."""
    return sorted((s for s in splits if s.execution_date <= as_of), key=lambda s: s.execution_date)


def factors(ts_ns: np.ndarray, splits: Sequence[Split]) -> np.ndarray:
    """For each bar start, the product of the ratios of `splits` executed after it."""
    factor = np.ones(len(ts_ns))
    for split in splits:
        factor[ts_ns < split.starts_ns] *= split.ratio
    return factor


def adjust_minutes(
    minutes: pa.Table, splits: Mapping[str, Sequence[Split]], as_of: dt.date
) -> pa.Table:
    """As-traded minute bars (MINUTE_SCHEMA) split-adjusted as of `as_of`.

    `splits` maps a symbol to its splits (any order; future ones are ignored); a symbol without
    an executed split after its bars comes out unchanged, to the bit.
    """
    if minutes.num_rows == 0:
        return minutes
    minutes = minutes.cast(MINUTE_SCHEMA)
    symbols = minutes["symbol"].to_numpy(zero_copy_only=False)
    ts = minutes["ts"].to_numpy()
    factor = np.ones(minutes.num_rows)
    for symbol, theirs in splits.items():
        done = executed(theirs, as_of)
        if not done:
            continue
        rows = symbols == symbol
        if rows.any():
            factor[rows] = factors(ts[rows], done)
    if np.all(factor == 1.0):
        return minutes
    changed = factor != 1.0
    columns = {}
    for name in PRICE_COLUMNS:
        values = minutes[name].to_numpy()
        columns[name] = np.where(changed, np.round(values / factor, PRICE_DECIMALS), values)
    volume = minutes["volume"].to_numpy()
    scaled = volume * factor
    whole = volume == np.floor(volume)
    columns["volume"] = np.where(changed, np.where(whole, np.round(scaled), scaled), volume)
    for name, values in columns.items():
        minutes = minutes.set_column(
            minutes.schema.get_field_index(name), name, pa.array(values, pa.float64())
        )
    return minutes


__all__ = ["Split", "adjust_minutes", "executed", "factors"]
