"""The live trader, fed a quote stream one quote at a time, fills exactly as the backtester fills
the same quotes as a recording: same times, sides, quantities, prices and P&L."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mesh.backtest.engine import Costs
from mesh.backtest.frames import Bars, Quotes, bars_from_ticks
from mesh.backtest.quotes import simulate_quotes
from mesh.backtest.strategies import Strategy, get_strategy
from mesh.paper.engine import Settings, SymbolTrader
from mesh.schema import Fill, Pnl

SECOND = 1_000_000_000
T0 = 1_796_400_000 * SECOND


def stream(seed: int, n: int = 4000) -> Quotes:
    """A symbol's quotes: bursts and silences, a random-walk mid, a few bad quotes."""
    rng = np.random.default_rng(seed)
    gaps = rng.choice([1_000_000, 50_000_000, 400_000_000, 3 * SECOND], n, p=[0.3, 0.4, 0.2, 0.1])
    ts = T0 + np.cumsum(gaps)
    mid = 100 + np.cumsum(rng.normal(0, 0.05, n))
    half = rng.choice([0.005, 0.01, 0.05], n)
    bid, ask = np.round(mid - half, 4), np.round(mid + half, 4)
    bad = rng.random(n) < 0.01
    bid[bad] = 0.0  # one-sided: neither side trades against it
    return Quotes(
        "AAPL", ts, bid, ask, rng.integers(1, 20, n) * 100.0, rng.integers(1, 20, n) * 100.0
    )


def flipper(bars: Bars, every: int = 7) -> np.ndarray:
    """Long, short, half, flat and 'keep' in turn, from the bar's own close only."""
    choices = np.array([1.0, -1.0, 0.5, 0.0, np.nan, 0.25])
    pick = (np.round(bars.close * 1000).astype(np.int64) // every) % len(choices)
    return choices[pick]


FLIPPER = Strategy("flipper", flipper, "test strategy")


def backtest(quotes: Quotes, strategy: Strategy, params: dict[str, Any], s: Settings) -> Any:
    valid = quotes.valid()
    bars = bars_from_ticks("AAPL", valid.ts, valid.mid, None, s.interval_ns)
    target = strategy.signals(bars, params)
    return simulate_quotes(
        bars, target, valid, s.cash, s.costs, s.whole_shares, s.cap_size, s.latency_ns
    )


def live(quotes: Quotes, strategy: Strategy, params: dict[str, Any], s: Settings) -> SymbolTrader:
    trader = SymbolTrader("t", "AAPL", strategy, params, s)
    for row in zip(
        quotes.ts.tolist(), quotes.bid.tolist(), quotes.ask.tolist(),
        quotes.bid_size.tolist(), quotes.ask_size.tolist(), strict=True,
    ):  # fmt: skip
        trader.on_quote(*row, closed_mono=0.0)
    trader.on_clock(int(quotes.ts[-1]) + 10 * SECOND, 0.0)  # stopped well after the last quote
    trader.finish()
    return trader


CASES = [
    ("ma-crossover", {"fast": 3, "slow": 8}, {}),
    ("flipper", {}, {}),
    ("flipper", {}, {"cap_size": True}),
    ("flipper", {}, {"whole_shares": True, "latency_ns": 30_000_000}),
    ("flipper", {}, {"cap_size": True, "whole_shares": True, "latency_ns": 700_000_000}),
]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(("name", "params", "options"), CASES)
def test_live_fills_equal_the_backtest_of_the_same_quotes(
    seed: int, name: str, params: dict[str, Any], options: dict[str, Any]
) -> None:
    strategy = FLIPPER if name == "flipper" else get_strategy(name)
    settings = Settings(SECOND, 10_000.0, Costs(commission_bps=1.0), **options)
    quotes = stream(seed)
    run = backtest(quotes, strategy, strategy.resolve(params), settings)
    trader = live(quotes, strategy, strategy.resolve(params), settings)
    fills = [r for r in trader.out if isinstance(r, Fill)]
    assert len(run.fills) > 20
    assert [f.ts_event for f in fills] == run.fills.ts.tolist()
    assert [f.qty for f in fills] == run.fills.qty.tolist()
    assert [f.price for f in fills] == run.fills.price.tolist()
    assert [f.fee for f in fills] == run.fills.fee.tolist()
    # equity at every bar the live run closed equals the backtest's at that bar
    pnl = [r for r in trader.out if isinstance(r, Pnl)]
    assert [p.ts for p in pnl] == run.ts[: len(pnl)].tolist()
    assert np.allclose([p.equity for p in pnl], run.equity[: len(pnl)], rtol=0, atol=1e-9)


def test_a_quote_older_than_one_already_taken_is_counted_late_and_left_out() -> None:
    settings = Settings(SECOND, 10_000.0, Costs())
    trader = SymbolTrader("t", "AAPL", FLIPPER, {"every": 7}, settings)
    trader.on_quote(T0 + 2 * SECOND, 99.9, 100.1, 100, 100, 0.0)
    trader.on_quote(T0 + 1 * SECOND, 99.9, 100.1, 100, 100, 0.0)
    assert trader.late_quotes == 1
    assert trader.last is not None and trader.last.ts == T0 + 2 * SECOND


def test_the_clock_closes_a_bar_no_quote_closes_and_its_order_fills_at_the_next_quote() -> None:
    settings = Settings(SECOND, 10_000.0, Costs(), grace_ns=200_000_000)
    always_long = Strategy("long", lambda bars: np.ones(len(bars)), "always long")
    trader = SymbolTrader("t", "AAPL", always_long, {}, settings)
    trader.on_quote(T0 + 100_000_000, 99.9, 100.1, 100, 100, 0.0)
    trader.on_clock(T0 + SECOND + 100_000_000, 0.0)  # within the grace: still open
    assert not trader.bar_ends
    trader.on_clock(T0 + SECOND + 300_000_000, 0.0)
    assert trader.bar_ends == [T0 + SECOND] and len(trader.pending) == 1
    assert not [r for r in trader.out if isinstance(r, Fill)]  # no bar to fill in yet
    trader.on_quote(T0 + 5 * SECOND, 100.4, 100.6, 100, 100, 0.0)
    (fill,) = [r for r in trader.out if isinstance(r, Fill)]
    # at the order's arrival, at the ask in force then (not the later quote's)
    assert fill.ts_event == T0 + SECOND and fill.price == 100.1 and fill.qty > 0
