"""`sma` and `cross_state` give the same bits as array formulas and as compiled loops.

A backtest runs the array formulas; the strategy service loads the compiled loops
(mesh/backtest/kernels.py) for its short live windows. `paper compare` holds the live run to the
backtest fill for fill, so the two must not differ by one ulp: both are checked against the
formulas below, written out independently.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from mesh.backtest import indicators as ind
from mesh.backtest import kernels


@pytest.fixture(params=["array formulas", "compiled loops"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test runs on both of the indicators' ways of computing."""
    if request.param == "compiled loops":
        kernels.warm_up()
    monkeypatch.setattr(ind, "_loaded", kernels if request.param == "compiled loops" else None)
    yield request.param


def sma_by_arrays(x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    if n <= 0 or len(x) < n:
        return out
    base = x[0]
    csum = np.cumsum(x - base)
    out[n - 1] = csum[n - 1]
    np.subtract(csum[n:], csum[:-n], out=out[n:])
    tail = out[n - 1 :]
    tail /= n
    tail += base
    return out


def cross_state_by_arrays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    side = np.sign(np.subtract(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))
    known = (side != 0) & ~np.isnan(side)
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
    side_ff[: int(np.argmax(flipped))] = 0.0
    return side_ff


def closes(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(0, 400))
    c = 100 + np.cumsum(rng.normal(0, 0.1, n)) * rng.choice([1e-6, 1.0, 1e4])
    if rng.random() < 0.3:
        c = np.round(c, 1)  # ties between the averages
    if rng.random() < 0.2 and n:
        c[rng.integers(0, n, size=max(1, n // 20))] = np.nan  # gaps
    return c


@pytest.mark.parametrize("seed", range(8))
def test_sma_and_cross_state_equal_their_formulas_bit_for_bit(seed: int, path: str) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(250):
        c = closes(rng)
        fast, slow = int(rng.integers(-1, 30)), int(rng.integers(1, 60))
        a, b = ind.sma(c, fast), ind.sma(c, slow)
        np.testing.assert_array_equal(a, sma_by_arrays(c, fast))
        np.testing.assert_array_equal(b, sma_by_arrays(c, slow))
        np.testing.assert_array_equal(ind.cross_state(a, b), cross_state_by_arrays(a, b))
        np.testing.assert_array_equal(ind.cross_state(c, b), cross_state_by_arrays(c, b))


def test_indicators_take_lists_integers_and_scalars_and_refuse_tables(path: str) -> None:
    assert ind.sma([1, 2, 3, 4], 2)[1:].tolist() == [1.5, 2.5, 3.5]
    assert ind.cross_state([1.0, 3.0, 1.0], 2.0).tolist() == [0.0, 1.0, -1.0]
    assert np.isnan(ind.sma(np.arange(3.0), 10**30)).all()
    with pytest.raises(ValueError, match="one-dimensional"):
        ind.sma(np.ones((3, 3)), 2)
    with pytest.raises(ValueError, match="one-dimensional"):
        ind.cross_state(np.ones((2, 2)), np.ones((2, 2)))
