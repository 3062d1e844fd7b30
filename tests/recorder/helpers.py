"""Data builders and waits shared by the recorder tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mesh.schema import QuoteBatch, TradeBatch

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA")


def quotes(
    first: int,
    n: int,
    *,
    symbols: tuple[str, ...] = SYMBOLS,
    step_ns: int = 7_000_000,
    seed: int = 0,
) -> QuoteBatch:
    """n quotes whose `sequence` runs first..first+n-1 (a unique id per row), times step_ns apart."""
    rng = np.random.default_rng(seed + first)
    bid = np.round(100 + rng.normal(0, 1, n), 2)
    seq = list(range(first, first + n))
    ts = [T0 + s * step_ns for s in seq]
    return QuoteBatch(
        symbol=[symbols[s % len(symbols)] for s in seq],
        bid_price=bid.tolist(),
        bid_size=rng.integers(1, 9, n).tolist(),
        ask_price=(bid + 0.02).tolist(),
        ask_size=rng.integers(1, 9, n).tolist(),
        bid_exchange=[11] * n,
        ask_exchange=[12] * n,
        condition=[0] * n,
        tape=[3] * n,
        sequence=seq,
        ts_event=ts,
        ts_recv=[t + 1000 for t in ts],
    )


def trades(
    first: int,
    n: int,
    *,
    symbols: tuple[str, ...] = SYMBOLS,
    step_ns: int = 11_000_000,
    seed: int = 0,
) -> TradeBatch:
    rng = np.random.default_rng(seed + first + 7)
    seq = list(range(first, first + n))
    ts = [T0 + s * step_ns for s in seq]
    return TradeBatch(
        symbol=[symbols[s % len(symbols)] for s in seq],
        price=np.round(100 + rng.normal(0, 1, n), 2).tolist(),
        size=rng.integers(1, 500, n).tolist(),
        exchange=[4] * n,
        trade_id=[f"t{s}" for s in seq],
        conditions=[[12, 37] if s % 3 == 0 else [] for s in seq],
        tape=[3] * n,
        sequence=seq,
        ts_event=ts,
        ts_recv=[t + 2000 for t in ts],
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 25.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
