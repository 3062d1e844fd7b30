"""Indicators as whole-array numpy functions, for the built-in strategies and for users' own.

Every function returns an array as long as its input, with NaN where the window is not yet full,
and value t depends only on inputs 0..t: nothing here looks ahead.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average over the last `n` values (NaN for the first n-1)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"sma takes a one-dimensional array, not shape {x.shape}")
    n = int(n)
    out = np.full(len(x), np.nan)
    if n <= 0 or n > len(x):
        return out
    if _loaded is not None:
        return _loaded.sma(x, n)
    base = x[0]
    csum = np.cumsum(x - base)  # centred, so the running sum stays small and exact enough
    out[n - 1] = csum[n - 1]
    np.subtract(csum[n:], csum[:-n], out=out[n:])
    tail = out[n - 1 :]
    tail /= n
    tail += base
    return out


def ema(x: np.ndarray, n: int) -> np.ndarray:
    """Exponential moving average with alpha = 2 / (n + 1), started at the first value (NaN for the first n-1)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    if n <= 0 or len(x) < n:
        return out
    alpha = 2.0 / (n + 1.0)
    beta = 1.0 - alpha
    if beta == 0.0:
        out[n - 1 :] = x[n - 1 :]
        return out
    # y[t] = alpha x[t] + beta y[t-1], y[0] = x[0], solved in closed form block by block:
    # y[s+i] = beta^(i+1) y[s-1] + alpha * beta^i * sum_{j<=i} beta^(-j) x[s+j]
    # (blocks keep beta^(-j) below ~1e130, far from overflow)
    block = max(1, min(len(x), int(300 / -np.log(beta))))
    y = np.empty(len(x))
    y[0] = x[0]
    prev = x[0]
    for start in range(1, len(x), block):
        seg = x[start : start + block]
        j = np.arange(len(seg), dtype=np.float64)
        grow = beta ** (-j)
        y_seg = beta ** (j + 1) * prev + alpha * np.cumsum(seg * grow) / grow
        y[start : start + len(seg)] = y_seg
        prev = y_seg[-1]
    out[n - 1 :] = y[n - 1 :]
    return out


def _rolling(x: np.ndarray, n: int, reduce: str) -> np.ndarray:
    """`reduce` (std, max, min) over the last `n` values; NaN until `n` values exist."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    if n <= 0 or len(x) < n:
        return out
    out[n - 1 :] = getattr(sliding_window_view(x, n), reduce)(axis=1)
    return out


def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Population standard deviation over the last `n` values."""
    return _rolling(x, n, "std")


def rolling_max(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling(x, n, "max")


def rolling_min(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling(x, n, "min")


def shift(x: np.ndarray, k: int = 1) -> np.ndarray:
    """x delayed by k bars (NaN for the first k): value t is x[t-k]."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    if 0 < k < len(x):
        out[k:] = x[:-k]
    elif k == 0:
        out[:] = x
    return out


def ffill(x: np.ndarray, initial: float = 0.0) -> np.ndarray:
    """NaN replaced by the last non-NaN value before it (`initial` before the first one)."""
    x = np.asarray(x, dtype=np.float64)
    valid = ~np.isnan(x)
    idx = np.where(valid, np.arange(len(x)), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, x[np.maximum(idx, 0)], initial)
    return out


def latch(enter: np.ndarray, leave: np.ndarray) -> np.ndarray:
    """1 from a bar where `enter` is true until a bar where `leave` is true (leave wins a tie), else 0."""
    events = np.full(len(enter), np.nan)
    events[np.asarray(enter, dtype=bool)] = 1.0
    events[np.asarray(leave, dtype=bool)] = 0.0
    return ffill(events, 0.0)


def cross_state(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """+1 after `a` crossed above `b`, -1 after it crossed below, 0 before the first crossing.

    A crossing is a change in the sign of a - b (a tie, or a bar where either is undefined, keeps
    the previous side), so the state starts at the first real crossing, not at the end of warm-up.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        a, b = np.broadcast_arrays(a, b)
    if a.ndim != 1:
        raise ValueError(f"cross_state takes one-dimensional arrays, not shape {a.shape}")
    if _loaded is not None:
        return _loaded.cross_state(np.ascontiguousarray(a), np.ascontiguousarray(b))
    side = np.subtract(a, b)
    np.sign(side, out=side)
    fast = _cross_state_no_gaps(side)
    if fast is not None:
        return fast
    known = side != 0
    known &= ~np.isnan(side)
    idx = np.where(known, np.arange(len(side)), -1)
    np.maximum.accumulate(idx, out=idx)
    if len(idx) == 0 or idx[-1] < 0:
        return np.zeros(len(side))
    first_known = int(np.argmax(idx >= 0))
    side_ff = side[np.maximum(idx, 0)]
    flipped = side_ff != side_ff[first_known]
    flipped[:first_known] = False
    if not flipped.any():
        return np.zeros(len(side))
    first_cross = int(np.argmax(flipped))
    side_ff[:first_cross] = 0.0
    return side_ff


def _cross_state_no_gaps(side: np.ndarray) -> np.ndarray | None:
    """cross_state for the usual case (NaN only during warm-up, no exact ties): a few array passes; None otherwise."""
    n = len(side)
    nan = np.isnan(side)
    first = int(np.argmin(nan)) if n else 0
    if n == 0 or nan[first] or nan[first:].any() or not side[first:].all():
        return None
    flipped = side[first:] != side[first]
    if not flipped.any():
        return np.zeros(n)
    cross = first + int(np.argmax(flipped))
    side[:cross] = 0.0
    return side


_loaded: ModuleType | None = None  # the compiled loops, once `warm_up` has loaded them


def warm_up() -> None:
    """From now on `sma` and `cross_state` in this process run as compiled loops
    (mesh/backtest/kernels.py): the same arithmetic in the same order, so the same bits as the
    array formulas above (tests/backtest/test_indicator_kernels.py), several times faster on the
    few hundred bars a live decision sees, where numpy's per-call overhead dominates. The strategy
    service calls this at start. Loading numba and the cached loops takes about a second, which a
    backtest (long arrays, where the array formulas are as fast) does not pay."""
    global _loaded
    if _loaded is None:
        from mesh.backtest import kernels

        kernels.warm_up()
        _loaded = kernels
