"""The simulated market's fixed facts: the universe, the NYSE calendar and each symbol's daily path.

Everything the simulator serves (live feed, REST history, flat files) starts here, so all of it
agrees on which days are trading days, where each symbol trades and what it closed at. Daily
closes come from a seeded, mean-reverting random walk in log price over a fixed calendar range,
so a given (seed, symbol, day) always has the same open and close whatever the date today is.
The walk runs on today's basis (after every split); each day's open and close are as traded, the
walk's price times `corporate.as_traded_multiplier`, so a split shows as a jump in the tape.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mesh.calendar import (  # noqa: F401  (re-exported: the sim's modules use market.<name>)
    ET,
    et_date_of_ns,
    is_early_close,
    is_trading_day,
    midnight_ns,
    nyse_holidays,
    today_et,
    trading_days,
)
from mesh.sim import corporate

DEFAULT_SEED = 7

# The walk covers this fixed range so that a day's values never depend on today's date. It was
# first drawn forward from PATH_START; the years before it are drawn backward from there by a
# stream of their own, so extending history back left every later day's open and close as it was.
PATH_START = dt.date(2014, 1, 1)
PATH_END = dt.date(2040, 12, 31)

# Where history begins: Massive's stocks flat files start on 2003-09-10 (massive-api.md §3.4).
# Every trading day from then on has a tape, so day bars, minute bars, trades and quotes all start
# here, and a day bar is always the aggregate of its day's trades.
COVERAGE_START = dt.date(2003, 9, 10)


@dataclass(frozen=True)
class Listing:
    """One symbol: reference price, listing exchange (tape) and how actively it trades."""

    symbol: str
    price: float  # the level the daily walk reverts to
    tape: int  # 1 = NYSE (A), 2 = NYSE Arca/American (B), 3 = Nasdaq (C)
    activity: float  # relative trade intensity; 1.0 = a typical large cap
    daily_vol: float  # standard deviation of daily log returns


# The largest US stocks and ETFs, with round reference prices.
UNIVERSE: dict[str, Listing] = {
    x.symbol: x
    for x in [
        Listing("AAPL", 225.0, 3, 2.0, 0.016),
        Listing("MSFT", 430.0, 3, 1.6, 0.014),
        Listing("NVDA", 135.0, 3, 3.0, 0.030),
        Listing("AMZN", 200.0, 3, 1.8, 0.019),
        Listing("GOOGL", 170.0, 3, 1.5, 0.018),
        Listing("GOOG", 172.0, 3, 1.0, 0.018),
        Listing("META", 580.0, 3, 1.4, 0.022),
        Listing("TSLA", 260.0, 3, 2.6, 0.035),
        Listing("AVGO", 180.0, 3, 1.2, 0.028),
        Listing("BRK.B", 460.0, 1, 0.6, 0.010),
        Listing("JPM", 230.0, 1, 0.9, 0.014),
        Listing("V", 290.0, 1, 0.7, 0.012),
        Listing("MA", 500.0, 1, 0.5, 0.012),
        Listing("UNH", 540.0, 1, 0.7, 0.017),
        Listing("XOM", 115.0, 1, 0.8, 0.015),
        Listing("LLY", 850.0, 1, 0.7, 0.020),
        Listing("JNJ", 155.0, 1, 0.6, 0.010),
        Listing("WMT", 85.0, 1, 0.8, 0.012),
        Listing("PG", 165.0, 1, 0.5, 0.010),
        Listing("HD", 390.0, 1, 0.5, 0.014),
        Listing("COST", 900.0, 3, 0.5, 0.013),
        Listing("NFLX", 750.0, 3, 0.8, 0.024),
        Listing("AMD", 150.0, 3, 1.8, 0.030),
        Listing("INTC", 22.0, 3, 1.4, 0.028),
        Listing("ORCL", 170.0, 1, 0.7, 0.020),
        Listing("CRM", 300.0, 1, 0.6, 0.020),
        Listing("ADBE", 500.0, 3, 0.5, 0.020),
        Listing("KO", 68.0, 1, 0.6, 0.009),
        Listing("PEP", 160.0, 3, 0.5, 0.010),
        Listing("BAC", 42.0, 1, 1.2, 0.017),
        Listing("DIS", 100.0, 1, 0.7, 0.016),
        Listing("SPY", 580.0, 2, 3.0, 0.010),
        Listing("QQQ", 500.0, 3, 2.4, 0.013),
        Listing("IWM", 220.0, 2, 1.2, 0.014),
        Listing("DIA", 420.0, 2, 0.4, 0.010),
        Listing("GLD", 240.0, 2, 0.6, 0.009),
    ]
}
DEFAULT_SYMBOLS = tuple(UNIVERSE)

# Listing venue (ISO 10383 MIC) of each tape, as `/v3/reference/tickers` names it.
PRIMARY_EXCHANGE = {1: "XNYS", 2: "ARCX", 3: "XNAS"}


@dataclass(frozen=True)
class Profile:
    """What `/v3/reference/tickers` says of a symbol: the company or fund behind it.

    Names, types, CIKs and listing dates are the real ones; shares outstanding are round figures
    near the real ones (the sim's market cap is shares x its own previous close)."""

    name: str
    type: str  # Massive's ticker type: CS (common stock) or ETF
    cik: str  # SEC Central Index Key, ten digits
    list_date: str  # YYYY-MM-DD
    shares_outstanding: int
    sic_code: str = ""  # SEC industry code (companies only)
    sic_description: str = ""
    homepage_url: str = ""


_COMPUTERS, _SEMIS = ("3571", "ELECTRONIC COMPUTERS"), ("3674", "SEMICONDUCTORS & RELATED DEVICES")
_SOFTWARE = ("7372", "SERVICES-PREPACKAGED SOFTWARE")
_RETAIL = ("5331", "RETAIL-VARIETY STORES")
_BANKS = ("6021", "NATIONAL COMMERCIAL BANKS")
_SERVICES = ("7370", "SERVICES-COMPUTER PROGRAMMING, DATA PROCESSING, ETC.")
_DRUGS = ("2834", "PHARMACEUTICAL PREPARATIONS")
_ETF = ("", "")

PROFILES: dict[str, Profile] = {
    symbol: Profile(name, kind, cik, listed, shares, *sic, url)
    for symbol, name, kind, cik, listed, shares, sic, url in [
        ("AAPL", "Apple Inc.", "CS", "0000320193", "1980-12-12", 14_840_000_000, _COMPUTERS, "https://www.apple.com"),
        ("MSFT", "Microsoft Corp", "CS", "0000789019", "1986-03-13", 7_430_000_000, _SOFTWARE, "https://www.microsoft.com"),
        ("NVDA", "Nvidia Corp", "CS", "0001045810", "1999-01-22", 24_300_000_000, _SEMIS, "https://www.nvidia.com"),
        ("AMZN", "Amazon.Com Inc", "CS", "0001018724", "1997-05-15", 10_600_000_000, ("5961", "RETAIL-CATALOG & MAIL-ORDER HOUSES"), "https://www.amazon.com"),
        ("GOOGL", "Alphabet Inc. Class A", "CS", "0001652044", "2004-08-19", 5_830_000_000, _SERVICES, "https://abc.xyz"),
        ("GOOG", "Alphabet Inc. Class C", "CS", "0001652044", "2014-04-03", 5_430_000_000, _SERVICES, "https://abc.xyz"),
        ("META", "Meta Platforms, Inc. Class A Common Stock", "CS", "0001326801", "2012-05-18", 2_180_000_000, _SERVICES, "https://investor.atmeta.com"),
        ("TSLA", "Tesla, Inc. Common Stock", "CS", "0001318605", "2010-06-29", 3_220_000_000, ("3711", "MOTOR VEHICLES & PASSENGER CAR BODIES"), "https://www.tesla.com"),
        ("AVGO", "Broadcom Inc. Common Stock", "CS", "0001730168", "2009-08-06", 4_700_000_000, _SEMIS, "https://www.broadcom.com"),
        ("BRK.B", "Berkshire Hathaway Inc. Class B", "CS", "0001067983", "1996-05-09", 1_320_000_000, ("6331", "FIRE, MARINE & CASUALTY INSURANCE"), "https://www.berkshirehathaway.com"),
        ("JPM", "JPMorgan Chase & Co.", "CS", "0000019617", "1969-03-05", 2_800_000_000, _BANKS, "https://www.jpmorganchase.com"),
        ("V", "Visa Inc.", "CS", "0001403161", "2008-03-19", 1_690_000_000, _SERVICES, "https://www.visa.com"),
        ("MA", "Mastercard Incorporated", "CS", "0001141391", "2006-05-25", 910_000_000, _SERVICES, "https://www.mastercard.com"),
        ("UNH", "UnitedHealth Group Incorporated", "CS", "0000731766", "1984-10-17", 910_000_000, ("6324", "HOSPITAL & MEDICAL SERVICE PLANS"), "https://www.unitedhealthgroup.com"),
        ("XOM", "Exxon Mobil Corporation", "CS", "0000034088", "1920-01-02", 4_300_000_000, ("2911", "PETROLEUM REFINING"), "https://corporate.exxonmobil.com"),
        ("LLY", "Eli Lilly and Company", "CS", "0000059478", "1970-07-09", 900_000_000, _DRUGS, "https://www.lilly.com"),
        ("JNJ", "Johnson & Johnson", "CS", "0000200406", "1944-09-25", 2_410_000_000, _DRUGS, "https://www.jnj.com"),
        ("WMT", "Walmart Inc.", "CS", "0000104169", "1972-08-25", 8_000_000_000, _RETAIL, "https://corporate.walmart.com"),
        ("PG", "Procter & Gamble Company", "CS", "0000080424", "1950-03-22", 2_350_000_000, ("2840", "SOAP, DETERGENTS, CLEANG PREPARATIONS, PERFUMES, COSMETICS"), "https://us.pg.com"),
        ("HD", "Home Depot, Inc.", "CS", "0000354950", "1981-09-22", 990_000_000, ("5211", "RETAIL-LUMBER & OTHER BUILDING MATERIALS DEALERS"), "https://www.homedepot.com"),
        ("COST", "Costco Wholesale Corp", "CS", "0000909832", "1985-12-05", 443_000_000, _RETAIL, "https://www.costco.com"),
        ("NFLX", "Netflix Inc", "CS", "0001065280", "2002-05-23", 428_000_000, ("7841", "SERVICES-VIDEO TAPE RENTAL"), "https://www.netflix.com"),
        ("AMD", "Advanced Micro Devices", "CS", "0000002488", "1972-09-27", 1_620_000_000, _SEMIS, "https://www.amd.com"),
        ("INTC", "Intel Corp", "CS", "0000050863", "1971-10-13", 4_360_000_000, _SEMIS, "https://www.intel.com"),
        ("ORCL", "Oracle Corporation", "CS", "0001341439", "1986-03-12", 2_800_000_000, _SOFTWARE, "https://www.oracle.com"),
        ("CRM", "Salesforce, Inc.", "CS", "0001108524", "2004-06-23", 960_000_000, _SOFTWARE, "https://www.salesforce.com"),
        ("ADBE", "Adobe Inc.", "CS", "0000796343", "1986-08-20", 430_000_000, _SOFTWARE, "https://www.adobe.com"),
        ("KO", "Coca-Cola Company", "CS", "0000021344", "1919-09-05", 4_300_000_000, ("2080", "BEVERAGES"), "https://www.coca-colacompany.com"),
        ("PEP", "PepsiCo, Inc.", "CS", "0000077476", "1972-06-01", 1_370_000_000, ("2080", "BEVERAGES"), "https://www.pepsico.com"),
        ("BAC", "Bank of America Corporation", "CS", "0000070858", "1973-01-02", 7_600_000_000, _BANKS, "https://www.bankofamerica.com"),
        ("DIS", "Walt Disney Company", "CS", "0001744489", "1957-11-12", 1_810_000_000, ("7990", "SERVICES-MISCELLANEOUS AMUSEMENT & RECREATION"), "https://thewaltdisneycompany.com"),
        ("SPY", "SPDR S&P 500 ETF Trust", "ETF", "0000884394", "1993-01-29", 1_030_000_000, _ETF, ""),
        ("QQQ", "Invesco QQQ Trust, Series 1", "ETF", "0001067839", "1999-03-10", 640_000_000, _ETF, ""),
        ("IWM", "iShares Russell 2000 ETF", "ETF", "0001100663", "2000-05-26", 300_000_000, _ETF, ""),
        ("DIA", "SPDR Dow Jones Industrial Average ETF Trust", "ETF", "0001041130", "1998-01-20", 80_000_000, _ETF, ""),
        ("GLD", "SPDR Gold Trust, SPDR Gold Shares", "ETF", "0001222333", "2004-11-18", 300_000_000, _ETF, ""),
    ]
}  # fmt: skip


def profile(symbol: str) -> Profile:
    """A symbol's profile: known ones from the table, others made up (and said to be) from the name."""
    known = PROFILES.get(symbol)
    if known is not None:
        return known
    h = zlib.crc32(symbol.encode())
    return Profile(
        f"{symbol} Simulated Inc.",
        "CS",
        f"{9_000_000_000 + h % 999_999_999:010d}",
        f"{1990 + h % 30}-{1 + (h >> 8) % 12:02d}-{1 + (h >> 12) % 28:02d}",
        100_000_000 + (h >> 4) % 9_900_000_000,
    )


def figi(symbol: str, share_class: bool = False) -> str:
    """A made-up identifier in FIGI's shape (BBG + 9 characters), stable per symbol."""
    alphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZ"  # FIGI has no vowels
    n = zlib.crc32(f"{symbol}/{'share' if share_class else 'composite'}".encode())
    tail = ""
    for _ in range(6):
        n, r = divmod(n, len(alphabet))
        tail += alphabet[r]
    return ("BBG001" if share_class else "BBG000") + tail


def listing(symbol: str) -> Listing:
    """The listing of any symbol: known ones from the table, others made up from the name."""
    known = UNIVERSE.get(symbol)
    if known is not None:
        return known
    h = zlib.crc32(symbol.encode())
    return Listing(
        symbol, 20.0 + h % 480, 1 + h % 3, 0.5 + (h >> 8) % 10 / 10, 0.012 + (h >> 16) % 20 / 1000
    )


def symbol_key(symbol: str) -> int:
    """A stable integer per symbol, to seed its random streams."""
    return zlib.crc32(symbol.encode())


@dataclass(frozen=True)
class HistoryWindow:
    """Which days have data: `day_bars` (completed days) and `intraday` (those, plus a session in progress).

    Both start at COVERAGE_START; they differ only while a session is being played, whose trades,
    quotes and minute bars exist up to the played moment but whose day bar does not yet.
    """

    day_bars: tuple[dt.date, ...]
    intraday: tuple[dt.date, ...]

    @classmethod
    def ending_before(cls, today: dt.date) -> HistoryWindow:
        days = tuple(trading_days(COVERAGE_START, today - dt.timedelta(days=1)))
        return cls(days, days)

    @property
    def day_bar_set(self) -> frozenset[dt.date]:
        return _as_set(self.day_bars)

    @property
    def intraday_set(self) -> frozenset[dt.date]:
        return _as_set(self.intraday)


@lru_cache(maxsize=16)
def _as_set(days: tuple[dt.date, ...]) -> frozenset[dt.date]:
    return frozenset(days)


# --- daily path ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DailyPath:
    """Open and close, as traded, of every trading day in [COVERAGE_START, PATH_END] for one symbol.

    `as_traded` is each day's `corporate.as_traded_multiplier`: the walk's price on today's basis
    times it is the price the day traded at, and a volume on today's basis divided by it is the
    volume the day traded (10 and a tenth for NVDA before its 2024 10-for-1 split).
    """

    index: dict[dt.date, int]
    open: np.ndarray
    close: np.ndarray
    as_traded: np.ndarray


@lru_cache(maxsize=512)
def daily_path(seed: int, symbol: str) -> DailyPath:
    """The seeded daily walk: log price reverts slowly to the listing's reference price.

    From PATH_START it runs forward from a draw near the reference price; before PATH_START it
    runs backward from PATH_START's close, so both parts meet without a jump. The walk is on
    today's basis (after every split); each day's open and close are then scaled to the basis the
    day traded on, so the tape shows a split's jump and split-adjusted bars are continuous.
    """
    info = listing(symbol)
    days = trading_days(PATH_START, PATH_END)
    open_, close = _forward_walk(seed, symbol, info, len(days))
    old_days = trading_days(COVERAGE_START, PATH_START - dt.timedelta(days=1))
    old_open, old_close = _backward_walk(seed, symbol, info, len(old_days), float(close[0]))
    # the first forward day's open was drawn from its own close; keep it as first served
    all_days = old_days + days
    as_traded = _as_traded_multipliers(symbol, all_days)
    return DailyPath(
        {d: i for i, d in enumerate(all_days)},
        np.round(np.concatenate([old_open, open_]) * as_traded, 2),
        np.round(np.concatenate([old_close, close]) * as_traded, 2),
        as_traded,
    )


def _as_traded_multipliers(symbol: str, days: list[dt.date]) -> np.ndarray:
    """`corporate.as_traded_multiplier(symbol, day)` for each of `days`."""
    if not corporate.splits_of(symbol):
        return np.ones(len(days))
    return np.array([corporate.as_traded_multiplier(symbol, d) for d in days])


def _forward_walk(seed: int, symbol: str, info: Listing, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` days walked forward from a draw near the reference price."""
    rng = np.random.default_rng([seed, symbol_key(symbol), 1])
    return _walk(rng, info, n, None, forward=True)


def _backward_walk(
    seed: int, symbol: str, info: Listing, n: int, later_close: float
) -> tuple[np.ndarray, np.ndarray]:
    """`n` days ending the day before the day that closed at `later_close`, walked backward."""
    rng = np.random.default_rng([seed, symbol_key(symbol), 2])
    return _walk(rng, info, n, float(np.log(later_close)), forward=False)


def _walk(
    rng: np.random.Generator, info: Listing, n: int, start: float | None, *, forward: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Opens and closes of `n` days of a log price reverting to the reference price from `start`.

    Backward, `start` is the close of the day after the last one, and the walk fills the days from
    the last back to the first; forward, None: the level before the first day is drawn near the
    reference price after the shocks and opening gaps (the order the walk's values depend on).
    """
    shocks = rng.standard_normal(n) * info.daily_vol
    gaps = rng.standard_normal(n) * info.daily_vol * 0.3
    mean = np.log(info.price)
    theta = 0.01
    logp = np.empty(n)
    x = mean + rng.standard_normal() * 0.1 if start is None else start
    sign = 1.0 if forward else -1.0
    for i, shock in enumerate(shocks.tolist()):
        x = x + theta * (mean - x) + sign * shock
        logp[i if forward else n - 1 - i] = x
    close = np.round(np.exp(logp), 2)
    prev = np.concatenate([[close[0]], close[:-1]]) if n else close
    open_ = np.round(prev * np.exp(gaps if forward else gaps[::-1]), 2)
    return open_, close


def previous_close(seed: int, symbol: str, before: dt.date) -> float:
    """The close of the last trading day before `before` (the live feed starts from it)."""
    path = daily_path(seed, symbol)
    day = before - dt.timedelta(days=1)
    while day not in path.index:
        day -= dt.timedelta(days=1)
        if day < COVERAGE_START:
            return listing(symbol).price
    return float(path.close[path.index[day]])
