"""Deterministic history: the trades and quotes of one (seed, symbol, day), and bars built from them.

REST aggregates, v3 trades/quotes and the flat files all read these functions, so they agree
exactly: a minute bar is the aggregate of that minute's trades, a day bar the aggregate of the
day's trades. Each day draws from its own random stream (seed, symbol, day), so any day can be
made on its own, in any order, and comes out the same every time.

A day runs 04:00-20:00 ET (pre-market, regular session, after hours; 13:00/17:00 on early-close
days). The trade path is a Brownian bridge from the day's open to its close (market.daily_path),
so the day bar's open and close are the walk's; quotes straddle the same path.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mesh.sim import market

NS_PER_MIN = 60_000_000_000
NS_PER_HOUR = 60 * NS_PER_MIN
TRADES_PER_DAY = 1500  # times Listing.activity
QUOTES_PER_TRADE = 2

# trade condition flags -> Massive condition codes (all of them count towards bars in the sim)
COND_FORM_T = 1  # 12: Form T (extended hours)
COND_ISO = 2  # 14: intermarket sweep
COND_ODD_LOT = 4  # 37: odd lot
CONDITION_CODES = ((COND_FORM_T, 12), (COND_ISO, 14), (COND_ODD_LOT, 37))

# exchange IDs (Massive's table) and how often each prints; 4 is the FINRA TRF (off-exchange)
EXCHANGES = np.array([1, 2, 3, 4, 7, 8, 10, 11, 12, 15, 17, 19, 21])
EXCHANGE_WEIGHTS = np.array([2, 1, 1, 35, 2, 2, 3, 4, 16, 4, 3, 2, 25], dtype=float)
EXCHANGE_WEIGHTS /= EXCHANGE_WEIGHTS.sum()
QUOTE_EXCHANGES = np.array([1, 7, 8, 10, 11, 12, 15, 17, 19, 21])
TRF_IDS = np.array([201, 202, 203])


@dataclass(frozen=True)
class Trades:
    """One symbol-day of trades, in time order. Times are Unix ns; prices in dollars; sizes in shares."""

    symbol: str
    tape: int
    sip_ns: np.ndarray
    participant_ns: np.ndarray
    price: np.ndarray
    size: np.ndarray
    exchange: np.ndarray
    flags: np.ndarray  # COND_* bits
    trf_id: np.ndarray  # 0 for exchange prints
    trf_ns: np.ndarray  # 0 for exchange prints
    trade_id: np.ndarray
    sequence: np.ndarray

    def __len__(self) -> int:
        return len(self.sip_ns)


@dataclass(frozen=True)
class Quotes:
    """One symbol-day of NBBO quotes, in time order. Sizes in shares."""

    symbol: str
    tape: int
    sip_ns: np.ndarray
    participant_ns: np.ndarray
    bid_price: np.ndarray
    bid_size: np.ndarray
    bid_exchange: np.ndarray
    ask_price: np.ndarray
    ask_size: np.ndarray
    ask_exchange: np.ndarray
    sequence: np.ndarray

    def __len__(self) -> int:
        return len(self.sip_ns)


@dataclass(frozen=True)
class Bars:
    """OHLCV bars: `t` is the window start in Unix ms; `vw` is rounded to 4 decimals."""

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    low: np.ndarray
    c: np.ndarray
    v: np.ndarray
    vw: np.ndarray
    n: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def take(self, idx: np.ndarray | slice) -> Bars:
        return Bars(*(getattr(self, f)[idx] for f in BAR_FIELDS))

    @staticmethod
    def concat(parts: list[Bars]) -> Bars:
        if not parts:
            return EMPTY_BARS
        return Bars(*(np.concatenate([getattr(p, f) for p in parts]) for f in BAR_FIELDS))


BAR_FIELDS = ("t", "o", "h", "low", "c", "v", "vw", "n")
EMPTY_BARS = Bars(
    t=np.empty(0, np.int64),
    o=np.empty(0),
    h=np.empty(0),
    low=np.empty(0),
    c=np.empty(0),
    v=np.empty(0, np.int64),
    vw=np.empty(0),
    n=np.empty(0, np.int64),
)


def session_bounds_ns(day: dt.date) -> tuple[int, int, int, int]:
    """(pre-market open, regular open, regular close, after-hours close) in Unix ns."""
    base = market.midnight_ns(day)
    close_h = 13 if market.is_early_close(day) else 16
    return (
        base + 4 * NS_PER_HOUR,
        base + 9 * NS_PER_HOUR + 30 * NS_PER_MIN,
        base + close_h * NS_PER_HOUR,
        base + (close_h + 4) * NS_PER_HOUR,
    )


@lru_cache(maxsize=256)
def day_trades(seed: int, symbol: str, day: dt.date) -> Trades:
    """Every trade of `symbol` on trading day `day` (empty on non-trading days)."""
    info = market.listing(symbol)
    path = market.daily_path(seed, symbol)
    i = path.index.get(day)
    if i is None:
        return _empty_trades(symbol, info.tape)
    rng = np.random.default_rng([seed, market.symbol_key(symbol), day.toordinal(), 2])
    n = max(10, int(TRADES_PER_DAY * info.activity * rng.uniform(0.8, 1.2)))
    pre, open_, close, post = session_bounds_ns(day)
    n_pre, n_post = int(n * 0.06), int(n * 0.05)
    n_reg = n - n_pre - n_post
    t = np.concatenate(
        [
            pre + rng.random(n_pre) * (open_ - pre),
            open_
            + rng.beta(0.7, 0.7, n_reg) * (close - open_),  # busier near the open and the close
            close + rng.random(n_post) * (post - close),
        ]
    ).astype(np.int64)
    t.sort()
    t += np.arange(n, dtype=np.int64)  # strictly increasing: every trade has its own timestamp
    # Brownian bridge in log price from the day's open to its close
    first, last = float(path.open[i]), float(path.close[i])
    frac = (t - t[0]) / max(1, t[-1] - t[0])
    walk = np.cumsum(rng.standard_normal(n) * np.sqrt(np.diff(frac, prepend=0.0)))
    bridge = walk - frac * walk[-1]
    logp = np.log(first) + frac * (np.log(last) - np.log(first)) + bridge * info.daily_vol * 0.8
    price = np.round(np.exp(logp), 2)
    price[0], price[-1] = first, last
    odd = rng.random(n) < 0.4
    size = np.where(odd, rng.integers(1, 100, n), 100 * rng.geometric(0.45, n)).astype(np.int64)
    exchange = rng.choice(EXCHANGES, n, p=EXCHANGE_WEIGHTS)
    extended = (t < open_) | (t >= close)
    flags = extended * COND_FORM_T + (rng.random(n) < 0.05) * COND_ISO + odd * COND_ODD_LOT
    trf = exchange == 4
    trf_id = np.where(trf, rng.choice(TRF_IDS, n), 0)
    trf_ns = np.where(trf, t - rng.integers(100_000, 900_000, n), 0)
    participant = t - rng.integers(20_000, 1_500_000, n)
    trade_id = rng.integers(1, 10**6) * 1000 + np.cumsum(rng.integers(1, 40, n))
    sequence = rng.integers(1000, 5000) + np.cumsum(rng.integers(1, 30, n))
    return Trades(
        symbol,
        info.tape,
        t,
        participant,
        price,
        size,
        exchange,
        flags.astype(np.int8),
        trf_id,
        trf_ns,
        trade_id,
        sequence,
    )


def _empty_trades(symbol: str, tape: int) -> Trades:
    e = np.empty(0, np.int64)
    return Trades(symbol, tape, e, e, np.empty(0), e, e, np.empty(0, np.int8), e, e, e, e)


@lru_cache(maxsize=64)
def day_quotes(seed: int, symbol: str, day: dt.date) -> Quotes:
    """The NBBO of `symbol` through `day`: the trade path's mid with a one-or-more-cent spread."""
    trades = day_trades(seed, symbol, day)
    info = market.listing(symbol)
    if len(trades) == 0:
        e = np.empty(0, np.int64)
        return Quotes(symbol, info.tape, e, e, np.empty(0), e, e, np.empty(0), e, e, e)
    rng = np.random.default_rng([seed, market.symbol_key(symbol), day.toordinal(), 3])
    n = len(trades) * QUOTES_PER_TRADE
    t0, t1 = int(trades.sip_ns[0]), int(trades.sip_ns[-1])
    t = (t0 + np.sort(rng.random(n)) * (t1 - t0)).astype(np.int64)
    t += np.arange(n, dtype=np.int64)
    mid = np.interp(t, trades.sip_ns, trades.price) * np.exp(rng.standard_normal(n) * 0.0002)
    spread = np.maximum(1, np.round(mid * 0.0001 * rng.uniform(0.5, 2.0, n) / 0.01)).astype(
        np.int64
    )
    bid_cents = np.floor(mid * 100 - spread / 2).astype(np.int64)
    bid = np.round(bid_cents / 100, 2)
    ask = np.round((bid_cents + spread) / 100, 2)
    return Quotes(
        symbol,
        info.tape,
        t,
        t - rng.integers(20_000, 1_500_000, n),
        bid,
        100 * rng.integers(1, 30, n),
        rng.choice(QUOTE_EXCHANGES, n),
        ask,
        100 * rng.integers(1, 30, n),
        rng.choice(QUOTE_EXCHANGES, n),
        rng.integers(1000, 5000) + np.cumsum(rng.integers(1, 30, n)),
    )


def bars_from_trades(
    t_ns: np.ndarray, price: np.ndarray, size: np.ndarray, width_ns: int, origin_ns: int = 0
) -> Bars:
    """Aggregate time-ordered trades into windows of `width_ns` aligned on `origin_ns`."""
    if len(t_ns) == 0:
        return EMPTY_BARS
    window = (t_ns - origin_ns) // width_ns
    starts = np.flatnonzero(np.diff(window, prepend=window[0] - 1))
    ends = np.append(starts[1:], len(t_ns)) - 1
    notional = np.add.reduceat(price * size, starts)
    volume = np.add.reduceat(size, starts)
    return Bars(
        t=(origin_ns + window[starts] * width_ns) // 1_000_000,
        o=price[starts],
        h=np.maximum.reduceat(price, starts),
        low=np.minimum.reduceat(price, starts),
        c=price[ends],
        v=volume,
        vw=np.round(notional / volume, 4),
        n=ends - starts + 1,
    )


@lru_cache(maxsize=2048)
def minute_bars(seed: int, symbol: str, day: dt.date) -> Bars:
    trades = day_trades(seed, symbol, day)
    return bars_from_trades(trades.sip_ns, trades.price, trades.size, NS_PER_MIN)


@lru_cache(maxsize=256)
def second_bars(seed: int, symbol: str, day: dt.date) -> Bars:
    trades = day_trades(seed, symbol, day)
    return bars_from_trades(trades.sip_ns, trades.price, trades.size, 1_000_000_000)


_day_bar_cache: dict[tuple[int, str, dt.date], Bars] = {}


def day_bar(seed: int, symbol: str, day: dt.date) -> Bars:
    """The day's single bar (empty on non-trading days); `t` is 00:00 ET of the day."""
    key = (seed, symbol, day)
    bar = _day_bar_cache.get(key)
    if bar is None:
        trades = day_trades(seed, symbol, day)
        origin = market.midnight_ns(day)
        bar = bars_from_trades(
            trades.sip_ns, trades.price, trades.size, 86_400_000_000_000 * 2, origin
        )
        _day_bar_cache[key] = bar
    return bar


def merge_bars(parts: Bars, keys: np.ndarray, starts_ms: np.ndarray) -> Bars:
    """Combine consecutive base bars that share a window key into one bar starting at `starts_ms`."""
    if len(parts) == 0:
        return EMPTY_BARS
    first = np.flatnonzero(np.diff(keys, prepend=keys[0] - 1))
    last = np.append(first[1:], len(keys)) - 1
    volume = np.add.reduceat(parts.v, first)
    notional = np.add.reduceat(parts.vw * parts.v, first)
    return Bars(
        t=starts_ms[first],
        o=parts.o[first],
        h=np.maximum.reduceat(parts.h, first),
        low=np.minimum.reduceat(parts.low, first),
        c=parts.c[last],
        v=volume,
        vw=np.round(notional / np.maximum(volume, 1), 4),
        n=np.add.reduceat(parts.n, first),
    )
