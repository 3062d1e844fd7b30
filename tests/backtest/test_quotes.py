"""The quote path: buys at the ask and sells at the bid of the quote in force, sizes capped on request."""

from __future__ import annotations

import numpy as np
import pytest

from mesh.backtest.engine import Costs, reconcile
from mesh.backtest.frames import Quotes
from mesh.backtest.quotes import simulate_quotes
from tests.backtest.helpers import MIN, SEC, T0, bars


def _quotes(rows: list[tuple[float, float, float, float, float]]) -> Quotes:
    """(seconds after T0, bid, ask, bid_size, ask_size) rows."""
    a = np.asarray(rows, dtype=float)
    return Quotes("TEST", (T0 + a[:, 0] * SEC).astype(np.int64), a[:, 1], a[:, 2], a[:, 3], a[:, 4])


QUOTES = _quotes(
    [
        (10, 99.9, 100.1, 5, 5),
        (59, 100.0, 100.2, 5, 5),
        (60.5, 100.5, 100.7, 5, 5),  # arrives after the first decision: must not be used for it
        (100, 101.0, 101.2, 5, 5),
        (130, 102.0, 102.4, 5, 5),
    ]
)
BARS = bars(opens=[100, 100.6, 101.9], closes=[100.1, 101.1, 102.2])  # 3 one-minute bars from T0


def test_buys_fill_at_the_ask_and_sells_at_the_bid_of_the_quote_in_force() -> None:
    run = simulate_quotes(BARS, np.array([1.0, 0.0, 0.0]), QUOTES, cash=1002.0, whole_shares=True)
    # long decided at 60 s: the quote in force then is the 59 s one -> 10 shares at its ask 100.2
    # flat decided at 120 s: the 100 s quote -> sold at its bid 101.0
    assert run.fills.price.tolist() == [100.2, 101.0]
    assert run.fills.qty.tolist() == [10.0, -10.0]
    assert run.fills.ts.tolist() == [T0 + MIN, T0 + 2 * MIN]
    assert run.fills.bar.tolist() == [1, 2]
    assert run.fills.cost.tolist() == pytest.approx(
        [10 * 0.1, 10 * 0.1]
    )  # half the spread each way
    assert run.equity[-1] == pytest.approx(1002.0 - 10 * 100.2 + 10 * 101.0)
    reconcile(run)


def test_positions_are_marked_at_the_mid_of_the_quote_in_force_at_each_close() -> None:
    run = simulate_quotes(BARS, np.array([1.0, 1.0, 1.0]), QUOTES, cash=1002.0, whole_shares=True)
    # bar 1 closes at 120 s: last quote 100 s, mid 101.1; bar 2 at 180 s: mid 102.2
    assert run.close.tolist() == pytest.approx([100.1, 101.1, 102.2])
    assert run.equity[1] == pytest.approx(1002.0 - 1002.0 + 10 * 101.1)


def test_capped_orders_take_the_quoted_size_and_walk_forward() -> None:
    run = simulate_quotes(
        BARS, np.array([1.0, 1.0, 1.0]), QUOTES, cash=1002.0, whole_shares=True, cap_size=True
    )
    # 10 shares wanted, 5 on the 59 s ask, the next 5 from the following quotes (60.5 s ask 100.7)
    assert run.fills.qty.tolist() == [5.0, 5.0]
    assert run.fills.price.tolist() == [100.2, 100.7]
    assert run.fills.ts.tolist() == [T0 + MIN, T0 + int(60.5 * SEC)]
    assert run.trades.qty.tolist() == [10.0]
    reconcile(run)


def test_latency_moves_the_fill_to_the_quote_in_force_later() -> None:
    run = simulate_quotes(BARS, np.array([1.0, 0.0, 0.0]), QUOTES, cash=1000.0, latency_ns=2 * SEC)
    assert run.fills.price[0] == 100.7  # 62 s: the 60.5 s quote


def test_orders_pay_commission_on_top_of_the_spread() -> None:
    run = simulate_quotes(
        BARS, np.array([1.0, 0.0, 0.0]), QUOTES, cash=1000.0, costs=Costs(commission_bps=10)
    )
    shares = 1000.0 / (100.2 * 1.001)
    assert run.fills.qty[0] == pytest.approx(shares)
    assert run.fills.fee.tolist() == pytest.approx([shares * 100.2 * 0.001, shares * 101.0 * 0.001])


def test_random_quote_runs_reconcile_and_never_fill_before_the_decision() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    ts = np.sort(T0 + rng.integers(0, 3600 * SEC, n))
    mid = 100 + np.cumsum(rng.normal(0, 0.02, n))
    q = Quotes(
        "TEST",
        ts,
        mid - 0.01,
        mid + 0.01,
        rng.integers(1, 50, n).astype(float),
        rng.integers(1, 50, n).astype(float),
    )
    from mesh.backtest.frames import bars_from_ticks

    b = bars_from_ticks("TEST", q.ts, q.mid, None, MIN)
    target = np.repeat(rng.choice([-1.0, 0.0, 1.0], size=len(b) // 3 + 1), 3)[: len(b)]
    for cap in (False, True):
        run = simulate_quotes(b, target, q, cash=10_000.0, cap_size=cap, whole_shares=True)
        reconcile(run)
        decided = b.ts_end[run.fills.signal_bar]
        assert (run.fills.ts >= decided).all()
        buys = run.fills.qty > 0
        idx = np.searchsorted(q.ts, run.fills.ts, side="right") - 1
        assert (run.fills.price[buys] == q.ask[idx[buys]]).all()
        assert (run.fills.price[~buys] == q.bid[idx[~buys]]).all()
