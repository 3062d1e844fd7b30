"""Backtests on a recording written by the real recorder, and agreement with backtesting.py on bars."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from mesh.backtest import indicators
from mesh.backtest.datasets import Dataset, Market
from mesh.backtest.runner import Options, run_backtest, simulate
from mesh.datasets import DatasetKind
from tests.backtest.helpers import MIN, SEC, T0, random_bars


def test_a_session_written_by_the_recorder_backtests_on_its_quotes_and_trades(
    tmp_path: Path,
) -> None:
    session_mod = pytest.importorskip("mesh.recorder.session")
    from mesh.schema import QuoteBatch, TradeBatch

    rng = np.random.default_rng(5)
    n = 6000
    ts = (T0 + np.sort(rng.integers(0, 1800 * SEC, n))).tolist()
    mid = 50 + np.cumsum(rng.normal(0, 0.01, n))
    symbols = ["AAPL" if i % 3 else "MSFT" for i in range(n)]
    session = session_mod.Session("live-test", data_dir=tmp_path).open()
    for start in range(0, n, 1000):
        part = slice(start, start + 1000)
        k = len(ts[part])
        session.write(
            "quotes",
            QuoteBatch(
                symbol=symbols[part],
                bid_price=(mid[part] - 0.02).tolist(),
                bid_size=[300] * k,
                ask_price=(mid[part] + 0.02).tolist(),
                ask_size=[200] * k,
                bid_exchange=[11] * k,
                ask_exchange=[12] * k,
                condition=[0] * k,
                tape=[3] * k,
                sequence=list(range(start, start + k)),
                ts_event=ts[part],
                ts_recv=ts[part],
            ),
        )
        session.write(
            "trades",
            TradeBatch(
                symbol=symbols[part],
                price=mid[part].tolist(),
                size=[100] * k,
                exchange=[4] * k,
                trade_id=[str(i) for i in range(start, start + k)],
                conditions=[[] for _ in range(k)],
                tape=[3] * k,
                sequence=list(range(start, start + k)),
                ts_event=ts[part],
                ts_recv=ts[part],
            ),
        )
    session.stop()

    result = run_backtest(
        "live-test",
        "ma-crossover",
        {"fast": 3, "slow": 8},
        data_dir=tmp_path,
        interval="1m",
        cap_size=True,
        whole_shares=True,
    )
    assert result.dataset["kind"] == "recording" and result.dataset["symbols"] == ["AAPL", "MSFT"]
    assert result.fills_mode == "quotes" and result.metrics["trades"] > 0
    fills = result.runs["AAPL"].fills
    buys = fills.qty > 0
    assert np.allclose(fills.price[buys] - fills.ref_price[buys], 0.02) and np.allclose(
        fills.ref_price[~buys] - fills.price[~buys], 0.02
    )
    assert (np.abs(fills.qty) <= 300).all()  # capped by the quoted size
    on_trades = run_backtest(
        "live-test",
        "ma-crossover",
        {"fast": 3, "slow": 8},
        data_dir=tmp_path,
        interval="1m",
        fills="bars",
        bar_source="trades",
    )
    assert on_trades.fills_mode == "bars" and on_trades.dataset["bar_source"] == "trades"


def test_same_trades_and_equity_as_backtesting_py_on_the_same_bars_and_signals() -> None:
    backtesting = pytest.importorskip("backtesting")
    import pandas as pd
    from backtesting.lib import crossover

    bars = random_bars(4000, seed=12)
    fast, slow = indicators.sma(bars.close, 10), indicators.sma(bars.close, 30)

    class SmaCross(backtesting.Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(lambda: fast)
            self.slow = self.I(lambda: slow)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    frame = pd.DataFrame(
        {
            "Open": bars.open,
            "High": bars.high,
            "Low": bars.low,
            "Close": bars.close,
            "Volume": bars.volume,
        },
        index=pd.DatetimeIndex(bars.ts.astype("datetime64[ns]")),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = backtesting.Backtest(frame, SmaCross, cash=100_000, commission=0.0).run()
    market = Market(Dataset("bars", DatasetKind.FILE, Path(".")), {"X": bars}, {}, MIN, "bars")
    ours = simulate(
        market, "ma-crossover", {"fast": 10, "slow": 30}, Options(cash=100_000, whole_shares=True)
    )
    trades = ours.runs["X"].trades
    assert trades.entry_bar.tolist() == stats["_trades"]["EntryBar"].tolist()
    theirs_exit = stats["_trades"]["ExitBar"].dropna().astype(int).tolist()
    assert trades.exit_bar[trades.closed].tolist() == theirs_exit[: int(trades.closed.sum())]
    assert ours.metrics["final_equity"] == pytest.approx(float(stats["Equity Final [$]"]), rel=1e-9)
