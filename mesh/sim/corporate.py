"""The sim's corporate actions: stock splits and cash dividends of its default symbols.

Defined once, here, with Massive's fields: `/v3/reference/splits` and `/v3/reference/dividends`
serve them, and whatever adjusts bars for them reads the same records. The forward splits are the
real ones of these companies (AAPL 4-for-1 in 2020, NVDA 10-for-1 in 2024, ...), which keeps the
sim's reference prices (today's levels, after every split) plausible; the reverse split (INTC,
1-for-5 on 2025-06-16) is the sim's own invention, there so that a reverse split exists among the
default symbols. Dividends are regular quarterly cash dividends of a few payers over 2024-2026
(amounts near the real ones, dates on the sim's calendar) and one special dividend (COST's $15 in
December 2023).

A split of `split_from` -> `split_to` multiplies the share count by `split_to / split_from`:
prices before its execution date divide by that ratio to be comparable with prices after it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from functools import lru_cache
from typing import Any

from mesh.calendar import is_trading_day


class DividendType(StrEnum):
    """Massive's `dividend_type`: CD = regular cash, SC = special cash."""

    REGULAR = "CD"
    SPECIAL = "SC"


class Frequency(IntEnum):
    """Massive's `frequency`: payments a year (0 = one time)."""

    ONE_TIME = 0
    ANNUAL = 1
    SEMI_ANNUAL = 2
    QUARTERLY = 4
    MONTHLY = 12


def _action_id(*parts: object) -> str:
    """A stable id in the shape of Massive's (`E` and 64 hex digits)."""
    return "E" + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


@dataclass(frozen=True)
class Split:
    """A stock split: from `split_from` shares to `split_to` shares, effective on `execution_date`."""

    ticker: str
    execution_date: dt.date
    split_from: int
    split_to: int

    @property
    def reverse(self) -> bool:
        return self.split_from > self.split_to

    @property
    def ratio(self) -> float:
        """New shares per old share (4.0 for a 4-for-1, 0.2 for a 1-for-5 reverse split)."""
        return self.split_to / self.split_from

    @property
    def id(self) -> str:
        return _action_id("split", self.ticker, self.execution_date, self.split_from, self.split_to)

    def as_massive(self) -> dict[str, Any]:
        return {
            "execution_date": self.execution_date.isoformat(),
            "id": self.id,
            "split_from": self.split_from,
            "split_to": self.split_to,
            "ticker": self.ticker,
        }


@dataclass(frozen=True)
class Dividend:
    """A cash dividend, with its declaration, ex-dividend, record and pay dates."""

    ticker: str
    cash_amount: float
    declaration_date: dt.date
    ex_dividend_date: dt.date
    record_date: dt.date
    pay_date: dt.date
    frequency: Frequency
    dividend_type: DividendType = DividendType.REGULAR

    @property
    def id(self) -> str:
        return _action_id("dividend", self.ticker, self.ex_dividend_date, self.cash_amount)

    def as_massive(self) -> dict[str, Any]:
        return {
            "cash_amount": self.cash_amount,
            "currency": "USD",
            "declaration_date": self.declaration_date.isoformat(),
            "dividend_type": str(self.dividend_type),
            "ex_dividend_date": self.ex_dividend_date.isoformat(),
            "frequency": int(self.frequency),
            "id": self.id,
            "pay_date": self.pay_date.isoformat(),
            "record_date": self.record_date.isoformat(),
            "ticker": self.ticker,
        }


D = dt.date

SPLITS: tuple[Split, ...] = (
    Split("AAPL", D(2020, 8, 31), 1, 4),
    Split("TSLA", D(2020, 8, 31), 1, 5),
    Split("NVDA", D(2021, 7, 20), 1, 4),
    Split("AMZN", D(2022, 6, 6), 1, 20),
    Split("GOOGL", D(2022, 7, 18), 1, 20),
    Split("GOOG", D(2022, 7, 18), 1, 20),
    Split("TSLA", D(2022, 8, 25), 1, 3),
    Split("WMT", D(2024, 2, 26), 1, 3),
    Split("NVDA", D(2024, 6, 10), 1, 10),
    Split("AVGO", D(2024, 7, 15), 1, 10),
    Split("INTC", D(2025, 6, 16), 5, 1),  # the sim's own reverse split
)


def _on_or_after(day: dt.date) -> dt.date:
    while not is_trading_day(day):
        day += dt.timedelta(days=1)
    return day


def _quarterly(
    ticker: str, amounts: dict[int, float], months: tuple[int, ...], day: int
) -> list[Dividend]:
    """A payer's regular quarterly dividends: ex-date on the first session from `day` of each month."""
    out = []
    for year, amount in amounts.items():
        for month in months:
            ex = _on_or_after(D(year, month, day))
            out.append(
                Dividend(
                    ticker,
                    amount,
                    declaration_date=ex - dt.timedelta(days=14),
                    ex_dividend_date=ex,
                    record_date=ex,  # T+1 settlement (from May 2024): the record date is the ex-date
                    pay_date=ex + dt.timedelta(days=14),
                    frequency=Frequency.QUARTERLY,
                )
            )
    return out


@lru_cache(maxsize=1)
def dividends() -> tuple[Dividend, ...]:
    """Every dividend (built on first use: the ex-dates are placed on the NYSE calendar)."""
    return tuple(
        _quarterly("AAPL", {2024: 0.25, 2025: 0.26, 2026: 0.27}, (2, 5, 8, 11), 8)
        + _quarterly("MSFT", {2024: 0.75, 2025: 0.83, 2026: 0.91}, (2, 5, 8, 11), 15)
        + _quarterly("KO", {2024: 0.485, 2025: 0.51, 2026: 0.53}, (3, 6, 9, 11), 14)
        + _quarterly("JPM", {2024: 1.15, 2025: 1.40, 2026: 1.50}, (1, 4, 7, 10), 5)
        + _quarterly("SPY", {2024: 1.70, 2025: 1.76, 2026: 1.80}, (3, 6, 9, 12), 20)
        + [
            Dividend(
                "COST",
                15.0,
                declaration_date=D(2023, 12, 13),
                ex_dividend_date=D(2023, 12, 27),
                record_date=D(2023, 12, 28),
                pay_date=D(2024, 1, 12),
                frequency=Frequency.ONE_TIME,
                dividend_type=DividendType.SPECIAL,
            )
        ]
    )


def splits_of(ticker: str) -> list[Split]:
    """A ticker's splits, oldest first."""
    return sorted((s for s in SPLITS if s.ticker == ticker), key=lambda s: s.execution_date)


def dividends_of(ticker: str) -> list[Dividend]:
    """A ticker's dividends, oldest first."""
    return sorted((d for d in dividends() if d.ticker == ticker), key=lambda d: d.ex_dividend_date)


def as_traded_multiplier(ticker: str, day: dt.date) -> float:
    """What turns a price on today's basis (after every split) into the price `day` traded at.

    The product of the ratios of the ticker's splits executed after `day`: 10 for NVDA before its
    2024 10-for-1 split, 0.2 for INTC before its 1-for-5 reverse split, 1 after its last split.
    """
    multiplier = 1.0
    for split in splits_of(ticker):
        if split.execution_date > day:
            multiplier *= split.ratio
    return multiplier
