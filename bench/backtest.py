"""Backtest engine speed and agreement: 1,000,000 one-minute bars, SMA(10/50) crossover, long only, no costs.

    python bench/backtest.py [--bars N] [--bt-max-bars N] [--no-vectorbt]

Runs, in one process on the same bars:

- ours: `mesh.backtest.runner.simulate` (signals, fills at the next open, whole shares, equity,
  trades and every metric), warm, median of 5;
- backtesting.py (PyPI `backtesting`), the classic SmaCross strategy fed the very same SMA arrays,
  so both see identical signals; it trades whole shares at the next open, as ours does here.
  If the full run would take longer than ~3 minutes it runs on the first `--bt-max-bars` bars
  and its time is scaled linearly (printed as such);
- vectorbt, if installed: `Portfolio.from_signals` on the same crossings (shifted one bar, filled
  at the open, whole shares), timed warm (after a first call that compiles).

Agreement checks: the entry and exit bars of every trade equal backtesting.py's, and the final
equity is within 0.1% of it. The last line is the JSON summary (bars/s; ratio = speed-up over
backtesting.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault(
    "TQDM_DISABLE", "1"
)  # backtesting.py draws a progress bar when tqdm is installed

from bench._common import report  # noqa: E402
from mesh.backtest import indicators  # noqa: E402
from mesh.backtest.datasets import Dataset, Market  # noqa: E402
from mesh.backtest.frames import Bars  # noqa: E402
from mesh.backtest.runner import Options, simulate  # noqa: E402

FAST, SLOW = 10, 50
CASH = 1_000_000.0
MINUTE = 60_000_000_000
T0 = 1_577_836_800_000_000_000  # 2020-01-01


def make_bars(n: int, seed: int = 7) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0008, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, 0.0002, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.0003, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.0003, n)))
    volume = rng.integers(100, 10_000, n).astype(np.float64)
    ts = T0 + np.arange(n, dtype=np.int64) * MINUTE
    return Bars.from_arrays("BENCH", ts, open_, high, low, close, volume, interval_ns=MINUTE)


def run_ours(bars: Bars, repeats: int = 7) -> tuple[float, Any]:
    market = Market(Dataset("bench", "parquet", Path(".")), {"BENCH": bars}, {}, MINUTE, "bars")
    options = Options(cash=CASH, whole_shares=True, fills="bars")
    result = simulate(market, "ma-crossover", {"fast": FAST, "slow": SLOW}, options)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = simulate(market, "ma-crossover", {"fast": FAST, "slow": SLOW}, options)
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def _frame(bars: Bars, n: int) -> Any:
    import pandas as pd

    index = pd.DatetimeIndex(
        bars.ts[:n].astype("datetime64[ns]")
    )  # tz-naive: both baselines are much slower with a tz
    return pd.DataFrame(
        {
            "Open": bars.open[:n],
            "High": bars.high[:n],
            "Low": bars.low[:n],
            "Close": bars.close[:n],
            "Volume": bars.volume[:n],
        },
        index=index,
    )


def run_backtesting_py(
    bars: Bars, fast_sma: np.ndarray, slow_sma: np.ndarray, n: int
) -> tuple[float, Any]:
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    fast_arr, slow_arr = fast_sma[:n], slow_sma[:n]

    class SmaCross(Strategy):  # the example from backtesting.py's README, on our SMA arrays
        def init(self) -> None:
            self.fast = self.I(lambda: fast_arr, name="fast")
            self.slow = self.I(lambda: slow_arr, name="slow")

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(_frame(bars, n), SmaCross, cash=CASH, commission=0.0, exclusive_orders=False)
        t = time.perf_counter()
        stats = bt.run()
        elapsed = time.perf_counter() - t
    return elapsed, stats


def run_vectorbt(bars: Bars) -> tuple[float, float, float] | None:
    try:
        import pandas as pd
        import vectorbt as vbt
    except Exception as exc:  # not installed, or does not import with this pandas/plotly
        print(f"vectorbt: not available ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None

    close = pd.Series(bars.close, index=pd.DatetimeIndex(bars.ts.astype("datetime64[ns]")))
    open_ = pd.Series(bars.open, index=close.index)

    def once() -> float:
        fast = vbt.MA.run(close, FAST)
        slow = vbt.MA.run(close, SLOW)
        entries = fast.ma_crossed_above(slow).shift(
            1, fill_value=False
        )  # decided at the close, traded at the next open
        exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
        pf = vbt.Portfolio.from_signals(
            close,
            entries,
            exits,
            price=open_,
            init_cash=CASH,
            size=np.inf,
            size_granularity=1.0,
            fees=0.0,
            freq="1min",
        )
        return float(pf.final_value())

    t = time.perf_counter()
    once()
    cold = time.perf_counter() - t
    times = []
    value = 0.0
    for _ in range(3):
        t = time.perf_counter()
        value = once()
        times.append(time.perf_counter() - t)
    return statistics.median(times), cold, value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument(
        "--bt-max-bars",
        type=int,
        default=1_000_000,
        help="run backtesting.py on at most this many bars (scaled to --bars)",
    )
    parser.add_argument("--no-vectorbt", action="store_true")
    args = parser.parse_args()

    bars = make_bars(args.bars)
    ours_s, result = run_ours(bars)
    print(
        f"ours: {ours_s:.3f} s for {args.bars:,} bars ({args.bars / ours_s:,.0f} bars/s), {result.metrics['trades']} trades, "
        f"final equity {result.metrics['final_equity']:,.2f}",
        file=sys.stderr,
    )

    fast_sma, slow_sma = indicators.sma(bars.close, FAST), indicators.sma(bars.close, SLOW)
    # a quick probe decides whether backtesting.py can run on everything within ~3 minutes here
    probe_n = min(args.bars, 50_000)
    probe_s, _ = run_backtesting_py(bars, fast_sma, slow_sma, probe_n)
    projected = probe_s * args.bars / probe_n
    bt_n = args.bars if projected <= 180 else min(args.bt_max_bars, int(180 / probe_s * probe_n))
    bt_n = min(bt_n, args.bt_max_bars)
    bt_s, stats = run_backtesting_py(bars, fast_sma, slow_sma, bt_n)
    bt_scaled = bt_s * args.bars / bt_n
    print(
        f"backtesting.py: {bt_s:.1f} s for {bt_n:,} bars"
        + (f" (scaled to {args.bars:,}: {bt_scaled:.1f} s)" if bt_n < args.bars else ""),
        file=sys.stderr,
    )

    # agreement, on the bars backtesting.py ran
    if bt_n == args.bars:
        ours_cmp = result
    else:
        market = Market(
            Dataset("bench", "parquet", Path(".")), {"BENCH": bars.slice(bt_n)}, {}, MINUTE, "bars"
        )
        ours_cmp = simulate(
            market,
            "ma-crossover",
            {"fast": FAST, "slow": SLOW},
            Options(cash=CASH, whole_shares=True, fills="bars"),
        )
    trades = ours_cmp.runs["BENCH"].trades
    bt_trades = stats["_trades"]
    bt_entries = np.asarray(bt_trades["EntryBar"], dtype=np.int64)
    bt_exits = np.asarray(bt_trades["ExitBar"].fillna(-1), dtype=np.int64)
    our_closed_exits = trades.exit_bar[trades.closed]
    bt_closed_exits = bt_exits[bt_exits >= 0] if (bt_exits >= 0).any() else bt_exits[:0]
    # backtesting.py leaves a trade open at the end unless finalize_trades; compare closed exits
    n_bt_closed = int((np.asarray(bt_trades["ExitBar"].notna())).sum())
    entries_match = len(bt_entries) == len(trades) and bool(
        (np.sort(bt_entries) == trades.entry_bar).all()
    )
    exits_match = len(bt_closed_exits) == len(our_closed_exits) and bool(
        (np.sort(bt_closed_exits) == our_closed_exits).all()
    )
    bt_equity = float(stats["Equity Final [$]"])
    our_equity = float(ours_cmp.metrics["final_equity"])
    diff_pct = abs(our_equity - bt_equity) / bt_equity * 100
    print(
        f"agreement on {bt_n:,} bars: {len(trades)} trades vs {len(bt_entries)} ({n_bt_closed} closed); entries match {entries_match}, "
        f"exits match {exits_match}; final equity {our_equity:,.2f} vs {bt_equity:,.2f} ({diff_pct:.6f}%)",
        file=sys.stderr,
    )

    vbt_warm = vbt_cold = vbt_value = None
    if not args.no_vectorbt:
        got = run_vectorbt(bars)
        if got is not None:
            vbt_warm, vbt_cold, vbt_value = got
            print(
                f"vectorbt: {vbt_warm:.3f} s warm, {vbt_cold:.1f} s first call; final value {vbt_value:,.2f}",
                file=sys.stderr,
            )

    value = args.bars / ours_s
    baseline = args.bars / bt_scaled
    extra: dict[str, Any] = {
        "bars": args.bars,
        "seconds": round(ours_s, 4),
        "backtesting_py_s": round(bt_scaled, 2),
        "backtesting_py_bars_run": bt_n,
        "backtesting_py_scaled": bt_n < args.bars,
        "trades": int(result.metrics["trades"]),
        "entries_match": entries_match,
        "exits_match": exits_match,
        "final_equity": round(our_equity, 2),
        "backtesting_py_final_equity": round(bt_equity, 2),
        "equity_diff_pct": round(diff_pct, 6),
    }
    if vbt_warm is not None:
        extra.update(
            vectorbt_warm_s=round(vbt_warm, 4),
            vectorbt_first_call_s=round(vbt_cold, 2),
            vectorbt_bars_per_s=round(args.bars / vbt_warm, 1),
            faster_than_vectorbt=ours_s <= vbt_warm,
        )
    else:
        extra["vectorbt"] = "not installed"
    report(
        "backtest",
        "bars_per_s",
        value,
        "bars/s",
        baseline,
        ">=100x backtesting.py (ratio), >= vectorbt warm, same entry/exit bars, final equity within 0.1%",
        **extra,
    )


if __name__ == "__main__":
    main()
