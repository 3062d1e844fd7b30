"""Performance metrics from an equity curve and a trade list, shared by the bar and quote paths.

Definitions (docs/backtest.md repeats them for users):

- returns are per bar: r[t] = equity[t] / equity[t-1] - 1, with equity[-1] the starting cash;
- annualisation uses `periods_per_year`: bars per year measured from the data when it spans at
  least 30 days (bars / years spanned), otherwise a US regular session (252 days of 6.5 hours)
  divided by the bar interval; the caller can override it;
- volatility = std(r) * sqrt(periods_per_year); Sharpe = mean(r) / std(r) * sqrt(ppy) and
  Sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(ppy), both with a zero risk-free rate;
- CAGR only when the data spans at least 90 days (shorter spans would extrapolate noise);
- max drawdown = the largest fall from a running peak, as a fraction; its duration is the longest
  time from a peak until equity is back at it (or the end of the data);
- exposure = fraction of bars with a position; a trade is a round trip (see engine.Trades), win
  rate and average trade count open trades at their last mark.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mesh.backtest.engine import Fills, Trades

DAY_NS = 86_400_000_000_000
YEAR_NS = int(365.25 * DAY_NS)
SESSION_NS = int(6.5 * 3_600_000_000_000)
TRADING_DAYS = 252
MIN_SPAN_FOR_MEASURED_PPY = 30 * DAY_NS
MIN_SPAN_FOR_CAGR = 90 * DAY_NS


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return (
        datetime.fromtimestamp(ns / 1e9, tz=UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def periods_per_year(ts: np.ndarray, interval_ns: int) -> float:
    """Bars per year: measured when the data spans 30+ days, else a US session's worth per trading day."""
    if len(ts) >= 2 and ts[-1] - ts[0] >= MIN_SPAN_FOR_MEASURED_PPY:
        return float((len(ts) - 1) / ((ts[-1] - ts[0]) / YEAR_NS))
    interval_ns = max(int(interval_ns or 60_000_000_000), 1)
    return float(TRADING_DAYS * max(1.0, SESSION_NS / interval_ns))


def _num(x: float | None, digits: int = 10) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else round(x, digits)


def _with_initial(equity: np.ndarray, initial: float) -> np.ndarray:
    full = np.empty(len(equity) + 1)
    full[0] = initial
    full[1:] = equity
    return full


def drawdown(equity: np.ndarray, initial: float) -> np.ndarray:
    """Drawdown per bar as a fraction of the running peak (0 at a peak, negative below it)."""
    full = _with_initial(equity, initial)
    peak = np.maximum.accumulate(full)
    with np.errstate(invalid="ignore", divide="ignore"):
        dd = full / peak
    dd -= 1.0
    dd[~(peak > 0)] = 0.0
    return dd[1:]


def drawdown_duration(
    equity: np.ndarray, ts: np.ndarray, start_ts: int, initial: float
) -> tuple[int, int]:
    """(longest peak-to-recovery time in ns, the same in bars); an unrecovered drawdown runs to the last bar."""
    full = _with_initial(equity, initial)
    return _duration(full, np.maximum.accumulate(full), ts, start_ts)


def _duration(full: np.ndarray, peak: np.ndarray, ts: np.ndarray, start_ts: int) -> tuple[int, int]:
    peaks = np.flatnonzero(full >= peak)  # bars at a (new or equal) high
    ends = np.empty(
        len(peaks), dtype=np.int64
    )  # the next peak, or the last bar for the final stretch
    ends[:-1] = peaks[1:]
    ends[-1] = len(full) - 1
    bars = ends - peaks
    under = bars > 1  # something under water between them
    under[-1] = bars[-1] > 0
    if not under.any():
        return 0, 0
    p, e = peaks[under], ends[under]
    times_p = np.where(
        p > 0, ts[np.maximum(p - 1, 0)], start_ts
    )  # full[i] is ts[i-1]; full[0] is the start
    return int((ts[e - 1] - times_p).max()), int(bars[under].max())


def _sum_of_squares(r: np.ndarray) -> float:
    """r . r in numpy's own loop, on this thread.

    Not `np.dot`: on a long array OpenBLAS runs a dot product on a thread per core and leaves
    those threads spinning after it, which doubled a serial sweep's CPU time and halved a
    process pool's speed (each worker's threads fighting the others' for the same cores;
    docs/scaling.md).
    """
    return float(np.einsum("i,i->", r, r))


def compute(
    equity: np.ndarray,
    ts: np.ndarray,
    initial: float,
    *,
    start_ts: int,
    interval_ns: int,
    exposure: float,
    trades: Trades,
    fills: Fills,
    ppy: float | None = None,
) -> dict[str, Any]:
    """Every metric of one equity curve (see the module docstring), JSON-ready (None where undefined)."""
    n = len(equity)
    final = float(equity[-1]) if n else float(initial)
    span_ns = int(ts[-1] - start_ts) if n else 0
    if ppy:
        ppy = float(ppy)
    elif n and span_ns >= MIN_SPAN_FOR_MEASURED_PPY:
        ppy = n / (span_ns / YEAR_NS)
    else:
        ppy = periods_per_year(np.zeros(0), interval_ns)
    full = _with_initial(equity, initial)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = full[1:] / full[:-1]
    r -= 1.0
    total_r = float(r.sum()) if n else 0.0
    if not math.isfinite(total_r):  # equity at or below zero: no return after ruin
        r[~np.isfinite(r)] = 0.0
        total_r = float(r.sum())
    mean = total_r / n if n else math.nan
    std = math.sqrt(max(_sum_of_squares(r) - n * mean * mean, 0.0) / (n - 1)) if n > 1 else math.nan
    np.minimum(r, 0.0, out=r)
    downside = math.sqrt(_sum_of_squares(r) / n) if n else math.nan
    total = final / initial - 1.0 if initial else math.nan
    years = span_ns / YEAR_NS
    cagr = (
        (final / initial) ** (1.0 / years) - 1.0
        if span_ns >= MIN_SPAN_FOR_CAGR and final > 0 and initial > 0
        else None
    )
    peak = np.maximum.accumulate(full)
    max_dd = float((full / peak).min() - 1.0) if n and peak[0] > 0 else 0.0
    dd_ns, dd_bars = _duration(full, peak, ts, start_ts) if n else (0, 0)
    n_trades = len(trades)
    wins = trades.pnl > 0 if n_trades else np.zeros(0, dtype=bool)
    gross_win = float(trades.pnl[wins].sum()) if n_trades else 0.0
    gross_loss = float(-trades.pnl[~wins].sum()) if n_trades else 0.0
    return {
        "start": iso(start_ts if n else None),
        "end": iso(int(ts[-1]) if n else None),
        "bars": n,
        "span_days": _num(span_ns / DAY_NS, 4),
        "periods_per_year": _num(ppy, 2),
        "initial_equity": _num(initial, 6),
        "final_equity": _num(final, 6),
        "total_return": _num(total),
        "cagr": _num(cagr),
        "volatility": _num(std * math.sqrt(ppy)) if std == std else None,
        "sharpe": _num(mean / std * math.sqrt(ppy)) if std and std == std and std > 1e-15 else None,
        "sortino": _num(mean / downside * math.sqrt(ppy))
        if downside and downside == downside and downside > 1e-15
        else None,
        "max_drawdown": _num(min(max_dd, 0.0)),
        "max_drawdown_duration_s": _num(dd_ns / 1e9, 3),
        "max_drawdown_duration_bars": dd_bars,
        "trades": n_trades,
        "open_trades": int((~trades.closed).sum()) if n_trades else 0,
        "win_rate": _num(float(wins.mean())) if n_trades else None,
        "avg_trade": _num(float(trades.ret.mean())) if n_trades else None,
        "avg_trade_pnl": _num(float(trades.pnl.mean()), 6) if n_trades else None,
        "best_trade": _num(float(trades.ret.max())) if n_trades else None,
        "worst_trade": _num(float(trades.ret.min())) if n_trades else None,
        "profit_factor": _num(gross_win / gross_loss) if gross_loss > 0 else None,
        "avg_bars_held": _num(float(trades.bars_held.mean()), 3) if n_trades else None,
        "exposure": _num(exposure),
        "fills": len(fills),
        "fees_paid": _num(float(fills.fee.sum()), 6),
        "slippage_paid": _num(float(fills.cost.sum()), 6),
    }
