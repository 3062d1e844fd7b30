"""Compiled loops behind the indicators a strategy calls once per bar when it trades live.

A paper session asks its strategy for a target at every bar's close, on all bars so far, for
every symbol at once when their bars close together: the built-in `ma-crossover` then spends most
of its time in numpy's per-call overhead (about ten small array operations per call). These
loops do the same arithmetic in the same order (so their results are bit-for-bit those of the
array versions they replace, checked in tests/backtest/test_indicator_kernels.py) in one pass,
about six times faster on a few hundred bars (docs/paper.md, "Speed").

numba is already the project's compiler (ingest's scanner); it is imported only when an
indicator is first called, and the compiled code is cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def sma(x: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover - compiled
    """As indicators.sma: the running sum of x - x[0] (numpy's cumsum adds left to right too),
    differenced n apart, divided by n, plus x[0]."""
    m = len(x)
    out = np.full(m, np.nan)
    if n <= 0 or m < n:
        return out
    base = x[0]
    csum = np.empty(m)
    acc = 0.0
    for i in range(m):
        acc += x[i] - base
        csum[i] = acc
    out[n - 1] = csum[n - 1]
    for i in range(n, m):
        out[i] = csum[i] - csum[i - n]
    for i in range(n - 1, m):
        out[i] = out[i] / n + base
    return out


@numba.njit(cache=True, nogil=True)
def cross_state(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """As indicators.cross_state: the side of a - b in force (a tie or NaN keeps the previous
    side), 0 until the side first differs from the first side known."""
    m = len(a)
    out = np.zeros(m)
    side = 0.0  # the side in force
    first = 0.0  # the first side known
    crossed = False
    for i in range(m):
        d = a[i] - b[i]
        if d > 0.0:
            s = 1.0
        elif d < 0.0:
            s = -1.0
        else:
            s = 0.0  # a tie, or NaN
        if s != 0.0:
            if first == 0.0:
                first = s
            elif s != first:
                crossed = True
            side = s
        if crossed:
            out[i] = side
    return out


def warm_up() -> None:
    """Compile (or load from the disk cache) every kernel now, not on a live bar's first close."""
    x = np.arange(4, dtype=np.float64)
    cross_state(sma(x, 2), sma(x, 3))
