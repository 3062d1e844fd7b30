"""The bar engine: hand-computed trades and equity, invariants, costs, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pytest

from mesh.backtest.engine import Costs, reconcile, simulate_bars
from mesh.backtest.errors import StrategyError
from mesh.backtest.strategies import check_lookahead, from_function, get_strategy
from tests.backtest.helpers import bars, random_bars


def test_a_signal_at_bar_t_fills_at_the_open_of_t_plus_1_with_known_equity() -> None:
    b = bars(opens=[10, 11, 12, 13, 14], closes=[10.5, 11.5, 12.5, 13.5, 14.5])
    run = simulate_bars(b, np.array([1, 1, 0, 0, 0.0]), cash=1100.0)
    # decided at the close of bar 0 -> 100 shares at bar 1's open (11); flat decided at bar 2 -> sold at bar 3's open (13)
    assert run.fills.bar.tolist() == [1, 3]
    assert run.fills.price.tolist() == [11.0, 13.0]
    assert run.fills.qty.tolist() == pytest.approx([100.0, -100.0])
    assert run.equity.tolist() == pytest.approx([1100.0, 1150.0, 1250.0, 1300.0, 1300.0])
    assert run.shares.tolist() == pytest.approx([0, 100, 100, 0, 0])
    t = run.trades
    assert (t.entry_bar.tolist(), t.exit_bar.tolist(), t.closed.tolist()) == ([1], [3], [True])
    assert t.pnl.tolist() == pytest.approx([200.0])
    assert t.ret.tolist() == pytest.approx([200.0 / 1100.0])
    reconcile(run)


def test_commission_and_slippage_are_charged_on_both_fills() -> None:
    b = bars(opens=[10, 11, 12, 13, 14], closes=[10.5, 11.5, 12.5, 13.5, 14.5])
    run = simulate_bars(
        b, np.array([1, 1, 0, 0, 0.0]), cash=1100.0, costs=Costs(commission_bps=10, slippage_bps=20)
    )
    buy = 11 * 1.002
    shares = 1100 / (buy * 1.001)
    sell = 13 * 0.998
    cash_after = 1100 - shares * buy * 1.001 + shares * sell * 0.999
    assert run.fills.price.tolist() == pytest.approx([buy, sell])
    assert run.equity[-1] == pytest.approx(cash_after)
    assert run.equity[1] == pytest.approx(shares * 11.5)
    assert run.fills.fee.sum() == pytest.approx(shares * buy * 0.001 + shares * sell * 0.001)
    assert run.fills.cost.sum() == pytest.approx(shares * 11 * 0.002 + shares * 13 * 0.002)
    reconcile(run)


def test_an_open_position_at_the_end_is_marked_at_the_last_close_and_reported_open() -> None:
    b = bars(opens=[10, 10, 10, 10], closes=[10, 10, 10, 12])
    run = simulate_bars(b, np.array([1, 1, 1, 1.0]), cash=1000.0)
    assert run.equity[-1] == pytest.approx(1200.0)
    assert run.trades.closed.tolist() == [False]
    assert run.trades.pnl.tolist() == pytest.approx([200.0])


@pytest.mark.parametrize("commission, slippage", [(0.0, 0.0), (2.0, 5.0)])
def test_buy_and_hold_equals_the_price_path_less_costs(commission: float, slippage: float) -> None:
    b = random_bars(2000, seed=4)
    costs = Costs(commission, slippage)
    run = simulate_bars(b, get_strategy("buy-and-hold").signals(b, {}), cash=50_000.0, costs=costs)
    entry = b.open[1] * (1 + slippage / 1e4) * (1 + commission / 1e4)
    expected = 50_000.0 * b.close / entry
    expected[0] = 50_000.0
    assert run.equity == pytest.approx(expected, rel=1e-12)
    assert len(run.fills) == 1 and run.fills.bar[0] == 1


def test_whole_shares_round_toward_zero_and_cash_stays_non_negative() -> None:
    b = bars(opens=[10, 33, 30, 30], closes=[10, 30, 30, 30])
    run = simulate_bars(b, np.array([1, 1, 1, 1.0]), cash=1000.0, whole_shares=True)
    assert run.fills.qty.tolist() == [30.0]  # 1000 / 33 = 30.3
    assert run.cash[1] == pytest.approx(1000 - 30 * 33)
    assert (run.cash >= 0).all()


def test_short_positions_and_flips_reconcile() -> None:
    b = bars(opens=[10, 10, 12, 8, 9], closes=[10, 11, 10, 9, 9])
    run = simulate_bars(b, np.array([-1, 1, 0, 0, 0.0]), cash=1000.0)
    # short 100 at 10 (bar 1), flip long at 12 (bar 2): cover 100 at 12 -> cash 800, long 800/12; sell at 8 (bar 3)
    assert run.fills.bar.tolist() == [1, 2, 2, 3]
    assert run.fills.qty.tolist() == pytest.approx([-100, 100, 800 / 12, -800 / 12])
    assert run.equity[-1] == pytest.approx(800 / 12 * 8)
    assert run.trades.side.tolist() == [-1, 1]
    assert run.trades.pnl.tolist() == pytest.approx([-200.0, 800 / 12 * 8 - 800])
    reconcile(run)


def _random_targets(n: int, seed: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "sides":
        t = rng.choice([-1.0, 0.0, 1.0], size=n, p=[0.05, 0.9, 0.05])
    else:  # resizing, NaN (keep) and fractions: the general loop
        t = rng.choice([-1.0, -0.5, 0.0, 0.25, 1.0, np.nan], size=n)
    return np.repeat(t, 5)[:n]


@pytest.mark.parametrize("kind", ["sides", "fractions"])
@pytest.mark.parametrize("whole", [False, True])
def test_invariants_hold_on_random_targets(kind: str, whole: bool) -> None:
    b = random_bars(3000, seed=11)
    target = _random_targets(len(b), 5, kind)
    run = simulate_bars(b, target, cash=100_000.0, costs=Costs(1.0, 2.0), whole_shares=whole)
    reconcile(run)  # shares and cash follow the fills at every bar; equity = cash + shares * close
    assert len(run.fills) > 20
    assert (run.fills.bar == run.fills.signal_bar + 1).all()
    assert (
        run.fills.ts >= b.ts_end[run.fills.signal_bar]
    ).all()  # no fill before its signal bar has closed
    # the held target at each bar is the target decided one bar earlier
    decided = np.where(np.isnan(target), np.nan, target)
    assert (run.held[1:][~np.isnan(decided[:-1])] == decided[:-1][~np.isnan(decided[:-1])]).all()


def test_the_vectorised_path_and_the_fill_loop_agree() -> None:
    b = random_bars(5000, seed=2)
    target = _random_targets(len(b), 9, "sides")
    for whole in (False, True):
        fast = simulate_bars(b, target, 10_000.0, Costs(3, 4), whole)
        slow = simulate_bars(b, target, 10_000.0, Costs(3, 4), whole, vectorised=False)
        assert fast.equity == pytest.approx(slow.equity, rel=1e-9)
        assert fast.trades.pnl == pytest.approx(slow.trades.pnl, rel=1e-9, abs=1e-9)
        assert fast.fills.bar.tolist() == slow.fills.bar.tolist()


def test_changing_future_prices_never_changes_past_equity() -> None:
    b = random_bars(1000, seed=8)
    s = get_strategy("ma-crossover")
    p = s.resolve({"fast": 5, "slow": 20})
    run = simulate_bars(b, s.signals(b, p), 10_000.0)
    b.close[600:] *= 1.5
    b.open[600:] *= 1.5
    b.high[600:] *= 1.5
    b.low[600:] *= 1.5
    later = simulate_bars(b, s.signals(b, p), 10_000.0)
    assert later.equity[:600] == pytest.approx(run.equity[:600])


def test_a_strategy_that_peeks_ahead_is_caught() -> None:
    def cheat(bars, lead: int = 1):  # type: ignore[no-untyped-def]
        """Long when the next close is higher (impossible to know)."""
        nxt = np.r_[bars.close[lead:], np.full(lead, np.nan)]
        return (nxt > bars.close).astype(float)

    b = random_bars(500, seed=1)
    with pytest.raises(StrategyError, match="looks ahead"):
        check_lookahead(from_function("cheat", cheat), b, {"lead": 1})


@pytest.mark.parametrize(
    "name", ["buy-and-hold", "ma-crossover", "mean-reversion", "breakout", "momentum"]
)
def test_built_in_strategies_do_not_look_ahead(name: str) -> None:
    s = get_strategy(name)
    b = random_bars(3000, seed=6)
    for short in (False, True) if any(p.name == "short" for p in s.params) else (None,):
        params = s.resolve({} if short is None else {"short": short})
        check_lookahead(s, b, params, cuts=6)
