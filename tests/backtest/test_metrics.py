"""Metrics computed by hand on small equity curves and trade lists."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from mesh.backtest import metrics
from mesh.backtest.engine import Fills, Trades
from tests.backtest.helpers import DAY, MIN, T0


def _trades(pnl: list[float], ret: list[float]) -> Trades:
    n = len(pnl)
    z = np.zeros(n, dtype=np.int64)
    return Trades(
        entry_bar=z,
        exit_bar=z + 1,
        entry_ts=z,
        exit_ts=z,
        side=np.ones(n),
        qty=np.ones(n),
        entry_price=np.ones(n),
        exit_price=np.ones(n),
        pnl=np.asarray(pnl, float),
        ret=np.asarray(ret, float),
        fees=np.zeros(n),
        bars_held=z + 1,
        closed=np.ones(n, dtype=bool),
    )


NO_FILLS = Fills(*(np.zeros(0, dtype=np.int64) for _ in range(3)), *(np.zeros(0) for _ in range(5)))


def test_returns_risk_and_drawdown_by_hand() -> None:
    equity = np.array([110.0, 99.0, 108.9, 121.0, 120.0])
    ts = T0 + np.arange(1, 6) * MIN
    m = metrics.compute(
        equity,
        ts,
        100.0,
        start_ts=T0,
        interval_ns=MIN,
        exposure=0.6,
        trades=_trades([10, -5, 2], [0.1, -0.05, 0.02]),
        fills=NO_FILLS,
        ppy=1000.0,
    )
    r = np.array([0.1, -0.1, 0.1, 121 / 108.9 - 1, 120 / 121 - 1])
    assert m["total_return"] == pytest.approx(0.2)
    assert m["final_equity"] == pytest.approx(120.0)
    assert m["volatility"] == pytest.approx(r.std(ddof=1) * math.sqrt(1000))
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(1000))
    assert m["sortino"] == pytest.approx(
        r.mean() / math.sqrt(np.mean(np.minimum(r, 0) ** 2)) * math.sqrt(1000)
    )
    assert m["max_drawdown"] == pytest.approx(99 / 110 - 1)
    # peak 110 at bar 0 (1 min), back above it at bar 3 (4 min): 3 minutes, 3 bars
    assert (m["max_drawdown_duration_s"], m["max_drawdown_duration_bars"]) == (180.0, 3)
    assert m["trades"] == 3 and m["win_rate"] == pytest.approx(2 / 3)
    assert m["avg_trade"] == pytest.approx(0.07 / 3)
    assert m["profit_factor"] == pytest.approx(12 / 5)
    assert m["exposure"] == 0.6
    assert m["cagr"] is None  # five minutes of data: not annualised


def test_an_unrecovered_drawdown_runs_to_the_end() -> None:
    equity = np.array([100.0, 90.0, 95.0, 97.0])
    ts = T0 + np.arange(1, 5) * MIN
    m = metrics.compute(
        equity,
        ts,
        100.0,
        start_ts=T0,
        interval_ns=MIN,
        exposure=1.0,
        trades=_trades([], []),
        fills=NO_FILLS,
    )
    assert m["max_drawdown"] == pytest.approx(-0.1)
    assert m["max_drawdown_duration_bars"] == 3  # from the peak at bar 0 to the last bar
    assert m["win_rate"] is None and m["trades"] == 0


def test_cagr_and_annualisation_on_a_year_of_daily_bars() -> None:
    n = 365
    ts = T0 + np.arange(1, n + 1) * DAY
    equity = 100.0 * np.exp(np.linspace(0, math.log(1.21), n))
    m = metrics.compute(
        equity,
        ts,
        100.0,
        start_ts=T0,
        interval_ns=DAY,
        exposure=1.0,
        trades=_trades([], []),
        fills=NO_FILLS,
    )
    years = n * DAY / metrics.YEAR_NS
    assert m["cagr"] == pytest.approx(1.21 ** (1 / years) - 1)
    assert m["periods_per_year"] == pytest.approx(365.25, rel=1e-3)  # measured from the data


def test_short_intraday_data_annualises_as_a_us_session() -> None:
    assert metrics.periods_per_year(T0 + np.arange(180) * MIN, MIN) == pytest.approx(252 * 390)
    assert metrics.periods_per_year(T0 + np.arange(10) * DAY, DAY) == pytest.approx(252)


def test_a_flat_curve_has_no_sharpe_rather_than_a_division_by_zero() -> None:
    equity = np.full(10, 100.0)
    m = metrics.compute(
        equity,
        T0 + np.arange(1, 11) * MIN,
        100.0,
        start_ts=T0,
        interval_ns=MIN,
        exposure=0.0,
        trades=_trades([], []),
        fills=NO_FILLS,
    )
    assert (
        m["sharpe"] is None
        and m["sortino"] is None
        and m["max_drawdown"] == 0.0
        and m["max_drawdown_duration_s"] == 0.0
    )


def test_a_year_of_minute_bars_is_measured_on_one_core() -> None:
    """A sweep runs one backtest per core; metrics that woke a thread per core (a BLAS dot
    product) would leave them spinning and slow every other worker down."""
    n = 100_000
    rng = np.random.default_rng(5)
    equity = 100_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    ts = T0 + np.arange(n, dtype=np.int64) * MIN

    def run() -> dict[str, object]:
        return metrics.compute(
            equity,
            ts,
            100_000.0,
            start_ts=T0,
            interval_ns=MIN,
            exposure=1.0,
            trades=_trades([], []),
            fills=NO_FILLS,
        )

    run()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(30):
        run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert cpu <= 1.3 * wall + 0.05, f"{cpu:.2f} s of CPU in {wall:.2f} s"
