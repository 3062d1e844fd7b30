"""Deterministic history: the quotes and trades of one (seed, symbol, day), and bars built from them.

REST aggregates, v3 trades/quotes and the flat files all read these functions, so they agree
exactly: a minute bar is the aggregate of that minute's trades, a day bar the aggregate of the
day's trades. Each day draws from its own random stream (seed, symbol, day), so any day can be
made on its own, in any order, and comes out the same every time.

A day runs 04:00-20:00 ET (pre-market, regular session, after hours; 13:00/17:00 on early-close
days). The tape is drawn as a market makes it: first the NBBO, whose mid follows a Brownian bridge
from the previous close to the day's open (pre-market), from the open to the close (regular
session) and on from the close (after hours); then the trades, each at the bid, at the ask or
between them in the quote in force at its SIP time. The exceptions are the real ones: a few odd
lots (not protected by the NBBO) and a few extended-hours trades (Form T; the NBBO is not
protected outside regular hours) print a few cents outside the quote. The regular session's first
and last trades print the daily walk's open and close (market.daily_path).

Activity follows the intraday U: busy at the open and the close, quiet at midday, thin outside
regular hours. Every listing in the sim is liquid and trades at least once, with a round lot, in
every regular-hours minute. `scale` multiplies the number of trades and quotes; scale 1 is a real
day's order of magnitude (AAPL about 90,000 trades and 35 million shares).

Bars follow Massive's eligibility rules (mesh.sim.conditions, as /v3/reference/conditions
publishes them): a trade sets a bar's prices only if none of its conditions has
`updates_high_low` or `updates_open_close` false, and counts towards its volume unless one has
`updates_volume` false. Form T (12) is ineligible for the day bar and regular-hours minute bars,
but sets the prices of pre-market and after-hours minute and second bars, as Massive's do. A window
none of whose trades can set a price has no bar.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mesh.sim import conditions, market

NS_PER_SECOND = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_SECOND
NS_PER_HOUR = 60 * NS_PER_MIN
NS_PER_MS = 1_000_000

# A day at scale 1: trades per unit of Listing.activity (AAPL, activity 2.0, makes ~90,000).
TRADES_PER_DAY = 45_000
QUOTES_PER_TRADE = 2
DEFAULT_SCALE = 0.05  # a full day of the default symbols (trades + quotes) builds in ~1 s
LIQUID_ACTIVITY = 0.3  # listings at least this active trade in every regular-hours minute

# trade condition flags -> Massive condition codes
COND_FORM_T = 1  # 12: Form T (extended hours)
COND_ISO = 2  # 14: intermarket sweep
COND_ODD_LOT = 4  # 37: odd lot
CONDITION_CODES = (
    (COND_FORM_T, conditions.FORM_T),
    (COND_ISO, conditions.INTERMARKET_SWEEP),
    (COND_ODD_LOT, conditions.ODD_LOT),
)

# How often the tape's exceptions print outside the NBBO in force, and by how many cents at most.
ODD_LOT_OUTSIDE = 0.03
EXTENDED_OUTSIDE = 0.05
OUTSIDE_CENTS = 5

# exchange IDs (Massive's table) and how often each prints; 4 is the FINRA TRF (off-exchange)
EXCHANGES = np.array([1, 2, 3, 4, 7, 8, 10, 11, 12, 15, 17, 19, 21])
EXCHANGE_WEIGHTS = np.array([2, 1, 1, 35, 2, 2, 3, 4, 16, 4, 3, 2, 25], dtype=float)
EXCHANGE_WEIGHTS /= EXCHANGE_WEIGHTS.sum()
QUOTE_EXCHANGES = np.array([1, 7, 8, 10, 11, 12, 15, 17, 19, 21])
TRF_IDS = np.array([201, 202, 203])


def _blocking_bits(field: str) -> int:
    """The COND_* bits whose condition has `field` (updates_high_low, ...) false."""
    bits = 0
    for bit, code in CONDITION_CODES:
        if not getattr(conditions.eligibility(code), field):
            bits |= bit
    return bits


PRICE_BLOCKING = _blocking_bits("updates_high_low") | _blocking_bits("updates_open_close")
VOLUME_BLOCKING = _blocking_bits("updates_volume")


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


# --- the day's shape -----------------------------------------------------------------------------


@lru_cache(maxsize=64)
def activity_profile(day: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """(start of each minute 04:00-20:00 in Unix ns, its relative activity; a regular minute ~1).

    Regular hours are a U: about four times the midday rate in the first minutes, three times in
    the last. Pre-market activity rises from almost nothing to a tenth of midday's by 09:30; after
    hours start near the closing rate and fall to a trickle within the first hour.
    """
    pre, open_, close, post = session_bounds_ns(day)
    starts = np.arange(pre, post, NS_PER_MIN, dtype=np.int64)
    weight = np.empty(len(starts))
    is_pre, is_post = starts < open_, starts >= close
    is_reg = ~is_pre & ~is_post
    x = (starts[is_reg] - open_) / (close - open_)
    weight[is_reg] = 0.55 + 2.8 * np.exp(-x / 0.05) + 1.9 * np.exp(-(1 - x) / 0.05)
    y = (starts[is_pre] - pre) / (open_ - pre)
    weight[is_pre] = 0.005 + 0.1 * y**3
    z = (starts[is_post] - close) / NS_PER_MIN
    weight[is_post] = 0.01 + 0.5 * np.exp(-z / 12)
    return starts, weight


def _event_times(
    rng: np.random.Generator, starts: np.ndarray, counts: np.ndarray, min_offset_ns: int
) -> np.ndarray:
    """`counts[i]` random instants in each minute, sorted and strictly increasing."""
    t = np.repeat(starts, counts) + rng.integers(min_offset_ns, NS_PER_MIN, int(counts.sum()))
    t.sort()
    i = np.arange(len(t), dtype=np.int64)
    return np.maximum.accumulate(t - i) + i  # ties pushed apart by a nanosecond or so


def _bridge(
    rng: np.random.Generator, t: np.ndarray, t0: int, t1: int, x0: float, x1: float, sigma: float
) -> np.ndarray:
    """A Brownian bridge from x0 at t0 to x1 at t1 (total spread `sigma`), sampled at times t."""
    if len(t) == 0:
        return np.empty(0)
    frac = (t - t0) / max(1, t1 - t0)
    steps = np.sqrt(np.maximum(np.diff(frac, prepend=0.0), 0.0)) * rng.standard_normal(len(t))
    walk = np.cumsum(steps)
    end = walk[-1] + np.sqrt(max(0.0, 1.0 - frac[-1])) * rng.standard_normal()
    return x0 + frac * (x1 - x0) + sigma * (walk - frac * end)


@dataclass(frozen=True)
class _Tape:
    """What bars and prices need: trade times, prices, sizes and conditions; the NBBO's times and prices.

    The rest of each record (ids, participant timestamps, exchanges, sequence numbers, quote sizes)
    is drawn from streams of its own only when trades or quotes are asked for, so day bars over
    long ranges build only this.
    """

    tape: int
    t: np.ndarray
    price: np.ndarray
    size: np.ndarray
    flags: np.ndarray
    qt: np.ndarray
    bid: np.ndarray
    ask: np.ndarray


def _empty_tape(tape: int) -> _Tape:
    e = np.empty(0, np.int64)
    return _Tape(tape, e, np.empty(0), e, np.empty(0, np.int8), e, np.empty(0), np.empty(0))


def _empty_trades(symbol: str, tape: int) -> Trades:
    e = np.empty(0, np.int64)
    return Trades(symbol, tape, e, e, np.empty(0), e, e, np.empty(0, np.int8), e, e, e, e)


def _empty_quotes(symbol: str, tape: int) -> Quotes:
    e = np.empty(0, np.int64)
    return Quotes(symbol, tape, e, e, np.empty(0), e, e, np.empty(0), e, e, e)


@lru_cache(maxsize=128)
def _tape(seed: int, symbol: str, day: dt.date, scale: float) -> _Tape:
    info = market.listing(symbol)
    path = market.daily_path(seed, symbol)
    i = path.index.get(day)
    if i is None:
        return _empty_tape(info.tape)
    rng = np.random.default_rng([seed, market.symbol_key(symbol), day.toordinal(), 4])
    pre, open_, close, post = session_bounds_ns(day)

    # when: trade and quote counts per minute from the U-shaped profile
    starts, weight = activity_profile(day)
    regular = (starts >= open_) & (starts < close)
    per_minute = TRADES_PER_DAY * info.activity * scale / weight.sum() * weight
    per_minute *= rng.uniform(0.8, 1.2)  # busier and quieter days
    counts = rng.poisson(per_minute)
    liquid = info.activity >= LIQUID_ACTIVITY
    if liquid:
        counts[regular] = np.maximum(counts[regular], 1)
    t = _event_times(rng, starts, counts, NS_PER_MS)
    n = len(t)
    q_counts = rng.poisson(per_minute * QUOTES_PER_TRADE)
    q_counts[0] = max(q_counts[0], 1)
    qt = _event_times(rng, starts, q_counts, 0)
    qt[0] = pre  # a quote is in force from 04:00, before the first trade (>= 04:00:00.001)
    m = len(qt)

    # the regular session's first and last trades print the day's open and close
    in_regular = (t >= open_) & (t < close)
    reg_idx = np.flatnonzero(in_regular)
    first, last = (int(reg_idx[0]), int(reg_idx[-1])) if len(reg_idx) else (-1, -1)

    # the NBBO: a mid that bridges previous close -> open -> close -> after-hours drift
    open_c, close_c = round(float(path.open[i]) * 100), round(float(path.close[i]) * 100)
    # the previous close on this day's basis: on a split's day the whole tape trades at the new level
    basis = float(path.as_traded[i] / path.as_traded[i - 1]) if i > 0 else 1.0
    prev_c = round(float(path.close[i - 1]) * basis * 100) if i > 0 else open_c
    t_open = int(t[first]) if first >= 0 else open_
    t_close = int(t[last]) if last >= 0 else close
    lo, hi = np.log(open_c), np.log(close_c)
    vol = info.daily_vol
    a, b = np.searchsorted(qt, [t_open, t_close + 1])  # quotes are in time order: three slices
    drift = hi + rng.standard_normal() * vol * 0.2
    mid_c = np.exp(
        np.concatenate(
            [
                _bridge(rng, qt[:a], pre, t_open, np.log(prev_c), lo, vol * 0.3),
                _bridge(rng, qt[a:b], t_open, t_close, lo, hi, vol * 0.8),
                _bridge(rng, qt[b:], t_close, post, hi, drift, vol * 0.2),
            ]
        )
    )
    # spreads in cents: about half a basis point times a random factor, 5x wider outside hours
    width = mid_c * (0.00005 * (0.5 + 1.5 * rng.random(m)))
    qa, qb = np.searchsorted(qt, [open_, close])
    width[:qa] *= 5
    width[qb:] *= 5
    spread = np.maximum(1, np.rint(width)).astype(np.int64)
    bid_c = np.maximum(1, np.rint(mid_c - spread / 2)).astype(np.int64)
    for j, anchor in ((first, open_c), (last, close_c)):  # the anchors sit inside their quote
        if j >= 0:
            q = int(np.searchsorted(qt, t[j], side="right")) - 1
            bid_c[q] = max(1, anchor - int(spread[q]) // 2)
    ask_c = bid_c + spread

    # the trades, inside the quote in force at their SIP time
    in_force = np.searchsorted(qt, t, side="right") - 1
    bid, ask = bid_c[in_force], ask_c[in_force]
    side = rng.random(n)
    between = bid + (rng.random(n) * (ask - bid + 1)).astype(np.int64)
    price_c = np.where(side < 0.42, bid, np.where(side < 0.84, ask, between))
    extended = ~in_regular
    odd = rng.random(n) < 0.35
    minute = (t - pre) // NS_PER_MIN
    first_of_minute = np.flatnonzero(np.diff(minute, prepend=-1))
    odd[first_of_minute[in_regular[first_of_minute]]] = False  # a round lot every liquid minute
    outside = np.where(
        extended, rng.random(n) < EXTENDED_OUTSIDE, odd & (rng.random(n) < ODD_LOT_OUTSIDE)
    )
    away = rng.integers(1, OUTSIDE_CENTS + 1, n)
    up = rng.random(n) < 0.5
    price_c = np.where(outside, np.where(up, ask + away, np.maximum(1, bid - away)), price_c)
    size = np.where(
        odd,
        rng.integers(1, 100, n),
        np.where(
            rng.random(n) < 0.02, 100 * rng.integers(10, 200, n), 100 * rng.geometric(0.35, n)
        ),
    ).astype(np.int64)
    for j, anchor in ((first, open_c), (last, close_c)):  # opening and closing prints
        if j >= 0:
            odd[j] = False
            price_c[j] = anchor
            size[j] = 100 * max(1, round(rng.integers(500, 5000) * info.activity * scale))
    size, odd = _as_traded_sizes(
        size, odd, float(path.as_traded[i]), first_of_minute, (first, last)
    )
    flags = extended * COND_FORM_T + (rng.random(n) < 0.05) * COND_ISO + odd * COND_ODD_LOT
    return _Tape(
        info.tape, t, price_c / 100, size, flags.astype(np.int8), qt, bid_c / 100, ask_c / 100
    )


def _as_traded_sizes(
    size: np.ndarray, odd: np.ndarray, multiplier: float, round_lots: np.ndarray, prints: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Sizes drawn on today's basis, in the shares the day traded (and which are now odd lots).

    Before a split the shares were fewer (a 10-for-1's multiplier is 10) or, before a reverse
    split, more; so a split-adjusted volume is of the same order on both sides of the split. The
    trades that keep a liquid minute's round lot and the opening and closing prints stay round lots.
    """
    if multiplier == 1.0:
        return size, odd
    shares = np.maximum(1, np.rint(size / multiplier)).astype(np.int64)
    keep_round = np.zeros(len(size), bool)
    keep_round[round_lots] = ~odd[round_lots]
    for j in prints:
        if j >= 0:
            keep_round[j] = True
    shares[keep_round] = 100 * np.maximum(1, np.rint(shares[keep_round] / 100)).astype(np.int64)
    return shares, odd | (shares < 100)


def _details_rng(seed: int, symbol: str, day: dt.date, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, market.symbol_key(symbol), day.toordinal(), stream])


@lru_cache(maxsize=128)
def day_trades(seed: int, symbol: str, day: dt.date, scale: float = DEFAULT_SCALE) -> Trades:
    """Every trade of `symbol` on trading day `day` (empty on non-trading days)."""
    core = _tape(seed, symbol, day, scale)
    t, n = core.t, len(core.t)
    if n == 0:
        return _empty_trades(symbol, core.tape)
    rng = _details_rng(seed, symbol, day, 5)
    exchange = rng.choice(EXCHANGES, n, p=EXCHANGE_WEIGHTS)
    trf = exchange == 4
    return Trades(
        symbol,
        core.tape,
        t,
        t - rng.integers(20_000, 1_500_000, n),
        core.price,
        core.size,
        exchange,
        core.flags,
        np.where(trf, rng.choice(TRF_IDS, n), 0),
        np.where(trf, t - rng.integers(100_000, 900_000, n), 0),
        rng.integers(1, 10**6) * 1000 + np.cumsum(rng.integers(1, 40, n)),
        rng.integers(1000, 5000) + np.cumsum(rng.integers(1, 30, n)),
    )


@lru_cache(maxsize=64)
def day_quotes(seed: int, symbol: str, day: dt.date, scale: float = DEFAULT_SCALE) -> Quotes:
    """The NBBO of `symbol` through `day`, every change from 04:00 ET (empty on non-trading days)."""
    core = _tape(seed, symbol, day, scale)
    qt, m = core.qt, len(core.qt)
    if m == 0:
        return _empty_quotes(symbol, core.tape)
    rng = _details_rng(seed, symbol, day, 6)
    return Quotes(
        symbol,
        core.tape,
        qt,
        qt - rng.integers(20_000, 1_500_000, m),
        core.bid,
        100 * rng.integers(1, 30, m),
        rng.choice(QUOTE_EXCHANGES, m),
        core.ask,
        100 * rng.integers(1, 30, m),
        rng.choice(QUOTE_EXCHANGES, m),
        rng.integers(1000, 5000) + np.cumsum(rng.integers(1, 30, m)),
    )


# --- bars ----------------------------------------------------------------------------------------


def can_set_price(flags: np.ndarray, *, form_t_allowed: bool) -> np.ndarray:
    """Which trades may set a bar's open, high, low and close.

    `form_t_allowed` is the pre-market/after-hours minute (and second) bar rule: there a Form T
    trade sets prices unless another of its conditions forbids it.
    """
    blocking = PRICE_BLOCKING & ~COND_FORM_T if form_t_allowed else PRICE_BLOCKING
    return (flags & blocking) == 0


def counts_volume(flags: np.ndarray) -> np.ndarray:
    """Which trades (by their COND_* bits) count towards a bar's volume."""
    return (flags & VOLUME_BLOCKING) == 0


def bars_from_trades(
    t_ns: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    width_ns: int,
    origin_ns: int = 0,
    price_ok: np.ndarray | None = None,
    volume_ok: np.ndarray | None = None,
) -> Bars:
    """Aggregate time-ordered trades into windows of `width_ns` aligned on `origin_ns`.

    Only trades in `price_ok` set open/high/low/close (a window without one has no bar); `n`
    counts every trade of the window, `v` and `vw` the ones in `volume_ok`.
    """
    if len(t_ns) == 0:
        return EMPTY_BARS
    window = (t_ns - origin_ns) // width_ns
    shares = size if volume_ok is None else np.where(volume_ok, size, 0)
    starts = np.flatnonzero(np.diff(window, prepend=window[0] - 1))
    volume = np.add.reduceat(shares, starts)
    notional = np.add.reduceat(price * shares, starts)
    count = np.diff(np.append(starts, len(t_ns)))
    keys = window[starts]
    if price_ok is not None:
        t_ns, price, window = t_ns[price_ok], price[price_ok], window[price_ok]
        if len(t_ns) == 0:
            return EMPTY_BARS
    p_starts = np.flatnonzero(np.diff(window, prepend=window[0] - 1))
    p_ends = np.append(p_starts[1:], len(window)) - 1
    at = np.searchsorted(keys, window[p_starts])
    return Bars(
        t=(origin_ns + window[p_starts] * width_ns) // NS_PER_MS,
        o=price[p_starts],
        h=np.maximum.reduceat(price, p_starts),
        low=np.minimum.reduceat(price, p_starts),
        c=price[p_ends],
        v=volume[at],
        vw=np.round(notional[at] / np.maximum(volume[at], 1), 4),
        n=count[at],
    )


def _intraday_bars(core: _Tape, width_ns: int) -> Bars:
    return bars_from_trades(
        core.t,
        core.price,
        core.size,
        width_ns,
        price_ok=can_set_price(core.flags, form_t_allowed=True),
        volume_ok=counts_volume(core.flags),
    )


@lru_cache(maxsize=2048)
def minute_bars(seed: int, symbol: str, day: dt.date, scale: float = DEFAULT_SCALE) -> Bars:
    """The day's minute bars, 04:00-20:00 ET (Form T trades set prices outside regular hours)."""
    return _intraday_bars(_tape(seed, symbol, day, scale), NS_PER_MIN)


@lru_cache(maxsize=256)
def second_bars(seed: int, symbol: str, day: dt.date, scale: float = DEFAULT_SCALE) -> Bars:
    """The day's second bars, by the minute bars' rules."""
    return _intraday_bars(_tape(seed, symbol, day, scale), NS_PER_SECOND)


# A one-row day bar costs about 1.1 KB (eight small arrays) and its cache entry about 1.3 KB, so
# 32,768 of them (ten symbols' every day since 2014) hold about 45 MB: well under 100 MB.
DAY_BAR_CACHE_SIZE = 32_768


@lru_cache(maxsize=DAY_BAR_CACHE_SIZE)
def day_bar(seed: int, symbol: str, day: dt.date, scale: float = DEFAULT_SCALE) -> Bars:
    """The day's single bar (empty on non-trading days); `t` is 00:00 ET of the day.

    Its prices are the regular session's (no Form T trade sets them); its volume and count take
    in the whole day, pre-market and after hours included.
    """
    return build_day_bar(seed, symbol, day, scale)


def build_day_bar(seed: int, symbol: str, day: dt.date, scale: float = DEFAULT_SCALE) -> Bars:
    """`day_bar` without keeping it in memory (for callers that keep whole years themselves)."""
    core = _tape(seed, symbol, day, scale)
    return bars_from_trades(
        core.t,
        core.price,
        core.size,
        2 * 86_400 * NS_PER_SECOND,
        market.midnight_ns(day),
        price_ok=can_set_price(core.flags, form_t_allowed=False),
        volume_ok=counts_volume(core.flags),
    )


@dataclass(frozen=True)
class DaySummary:
    """`/v1/open-close`: the regular session's bar, plus the extended sessions' first and last prices."""

    bar: Bars  # one bar: day_bar
    pre_market: float | None  # the open of pre-market trading (its first minute bar's open)
    after_hours: float | None  # the close of after-hours trading (its last minute bar's close)


def day_summary(seed: int, symbol: str, day: dt.date, scale: float = DEFAULT_SCALE) -> DaySummary:
    bar = day_bar(seed, symbol, day, scale)
    minutes = minute_bars(seed, symbol, day, scale)
    _, open_, close, _ = session_bounds_ns(day)
    pre = minutes.o[minutes.t < open_ // NS_PER_MS]
    post = minutes.c[minutes.t >= close // NS_PER_MS]
    return DaySummary(
        bar,
        float(pre[0]) if len(pre) else None,
        float(post[-1]) if len(post) else None,
    )


def clear_caches() -> None:
    """Forget every built day (benchmarks and tests that time or compare fresh builds)."""
    _tape.cache_clear()
    day_trades.cache_clear()
    day_quotes.cache_clear()
    minute_bars.cache_clear()
    second_bars.cache_clear()
    day_bar.cache_clear()


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
