"""From a dataset and a strategy to a `BacktestResult`, in one call; comparisons and sweeps share the data.

    result = run_backtest("demo", "ma-crossover", {"fast": 5, "slow": 20}, data_dir="data")
    result.metrics["sharpe"], result.equity_frame(), result.trades_frame()

`prepare` loads a dataset once (bars for signals, quotes when orders fill against quotes);
`simulate` runs one strategy with one set of parameters on it; `run_many` does several (the CLI's
repeated --strategy, a parameter grid, a TUI comparison) on the same loaded data.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mesh import intervals
from mesh.backtest import datasets, metrics, portfolio
from mesh.backtest.engine import Costs, Fills, SymbolRun, Trades, simulate_bars
from mesh.backtest.errors import BacktestError, StrategyError
from mesh.backtest.quotes import simulate_quotes
from mesh.backtest.strategies import Strategy, check_lookahead, get_strategy
from mesh.datasets import DatasetKind, TableKind

Progress = Callable[[float, str], None]
FILL_MODES = ("auto", "bars", "quotes")
BAR_SOURCES = ("auto", "trades", "mid", "bars")


@dataclass
class Options:
    """How to run: data selection, capital, costs and fill model (docs/backtest.md explains each)."""

    interval: str | None = (
        None  # bar interval for signals, e.g. "1m"; default: the data's own (1m for ticks)
    )
    fills: str = "auto"  # "bars" (next open + costs), "quotes" (bid/ask), "auto" (quotes when the data has them)
    bar_source: str = "auto"  # recordings: bars from quote mids ("mid") or trade prices ("trades")
    symbols: list[str] | None = (
        None  # default: every symbol in the dataset, as an equal-weight portfolio
    )
    cash: float = 100_000.0
    commission_bps: float = 0.0
    slippage_bps: float = 0.0  # bar fills only
    whole_shares: bool = False
    cap_size: bool = False  # quote fills: take at most the quoted size per quote
    latency_ms: float = (
        0.0  # quote fills: delay between the bar's close and the order reaching the quotes
    )
    periods_per_year: float | None = None  # override the annualisation
    check_lookahead: bool = (
        False  # re-run the strategy on truncated data to prove it does not peek ahead
    )
    capture_only: bool = False  # recordings: without the rows a heal added (default: with them)

    def check(self) -> Options:
        self._check_types()
        if self.fills not in FILL_MODES:
            raise BacktestError(f"fills {self.fills!r}: expected one of {', '.join(FILL_MODES)}")
        if self.bar_source not in BAR_SOURCES:
            raise BacktestError(
                f"bar source {self.bar_source!r}: expected one of {', '.join(BAR_SOURCES)}"
            )
        if not (self.cash > 0):
            raise BacktestError("cash must be positive")
        for name in ("commission_bps", "slippage_bps", "latency_ms"):
            if getattr(self, name) < 0:
                raise BacktestError(f"{name.replace('_', '-')} must not be negative")
        if self.periods_per_year is not None and self.periods_per_year <= 0:
            raise BacktestError("periods per year must be positive")
        if isinstance(self.symbols, str):
            self.symbols = [s.strip() for s in self.symbols.split(",") if s.strip()]
        return self

    def _check_types(self) -> None:
        """Each option of its type: options come from the command line and from control requests."""
        for name in ("cash", "commission_bps", "slippage_bps", "latency_ms", "periods_per_year"):
            value = getattr(self, name)
            if value is None and name == "periods_per_year":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BacktestError(f"option {name}: expected a number, got {value!r:.40}")
            if not math.isfinite(value):  # NaN passes every comparison below
                raise BacktestError(
                    f"{name.replace('_', '-')} must be a finite number, got {value}"
                )
        for name in ("whole_shares", "cap_size", "check_lookahead"):
            if not isinstance(getattr(self, name), bool):
                raise BacktestError(f"option {name}: expected true or false")
        for name in ("fills", "bar_source"):
            if not isinstance(getattr(self, name), str):
                raise BacktestError(f"option {name}: expected text")
        if self.interval is not None:
            if not isinstance(self.interval, str):
                raise BacktestError(
                    f"option interval: expected text such as 1m, got {self.interval!r:.40}"
                )
            try:
                intervals.parse(self.interval)
            except intervals.IntervalError as exc:
                raise BacktestError(str(exc)) from None
        symbols = self.symbols
        if symbols is not None and not (
            isinstance(symbols, str)
            or (isinstance(symbols, list) and all(isinstance(s, str) for s in symbols))
        ):
            raise BacktestError("option symbols: expected a list of tickers or A,B")

    @property
    def costs(self) -> Costs:
        return Costs(self.commission_bps, self.slippage_bps)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Options:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise BacktestError(
                f"unknown option {unknown[0]!r}; options: {', '.join(sorted(known))}"
            )
        return cls(**values).check()


@dataclass
class BacktestResult:
    """One strategy with one set of parameters on one dataset: metrics, equity, trades, fills."""

    strategy: str
    params: dict[str, Any]
    options: Options
    dataset: dict[str, Any]
    fills_mode: str
    runs: dict[str, SymbolRun]
    curve: portfolio.Curve
    metrics: dict[str, Any]
    per_symbol: dict[str, dict[str, Any]]
    elapsed_s: float = 0.0
    run_id: str = ""
    run_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    requested: list[str] = field(
        default_factory=list
    )  # the parameters the caller set (shown in labels)

    @property
    def label(self) -> str:
        """The strategy and the parameters the caller set, e.g. `ma-crossover fast=5 slow=20`."""
        shown = [f"{k}={v}" for k, v in self.params.items() if k in self.requested]
        return " ".join([self.strategy, *shown])

    def config(self) -> dict[str, Any]:
        """Everything needed to run it again."""
        return {
            "dataset": self.dataset.get("spec", self.dataset.get("name")),
            "strategy": self.strategy,
            "params": self.params,
            "options": asdict(self.options),
            "fills": self.fills_mode,
            "data": self.dataset,
        }

    def fills(self) -> tuple[list[str], Fills]:
        return _concat_fills(self.runs)

    def trades(self) -> tuple[list[str], Trades]:
        return _concat_trades(self.runs)

    def equity_frame(self) -> Any:
        import pandas as pd

        c = self.curve
        dd = metrics.drawdown(c.equity, self.options.cash)
        return pd.DataFrame(
            {
                "ts": pd.to_datetime(c.ts, unit="ns", utc=True),
                "equity": c.equity,
                "cash": c.cash,
                "position_value": c.position_value,
                "drawdown": dd,
                "invested": c.invested,
            }
        )

    def trades_frame(self) -> Any:
        import pandas as pd

        symbols, t = self.trades()
        return pd.DataFrame(
            {
                "symbol": symbols,
                "side": np.where(t.side > 0, "long", "short"),
                "qty": t.qty,
                "entry_time": pd.to_datetime(t.entry_ts, unit="ns", utc=True),
                "exit_time": pd.to_datetime(t.exit_ts, unit="ns", utc=True),
                "entry_price": t.entry_price,
                "exit_price": t.exit_price,
                "pnl": t.pnl,
                "return": t.ret,
                "fees": t.fees,
                "bars_held": t.bars_held,
                "closed": t.closed,
                "entry_bar": t.entry_bar,
                "exit_bar": t.exit_bar,
            }
        )

    def fills_frame(self) -> Any:
        import pandas as pd

        symbols, f = self.fills()
        return pd.DataFrame(
            {
                "symbol": symbols,
                "ts": pd.to_datetime(f.ts, unit="ns", utc=True),
                "bar": f.bar,
                "signal_bar": f.signal_bar,
                "qty": f.qty,
                "price": f.price,
                "ref_price": f.ref_price,
                "fee": f.fee,
                "cost": f.cost,
            }
        )


def _concat_fills(runs: dict[str, SymbolRun]) -> tuple[list[str], Fills]:
    parts = list(runs.values())
    symbols = [r.symbol for r in parts for _ in range(len(r.fills))]
    cols = {
        k: np.concatenate([getattr(r.fills, k) for r in parts]) if parts else np.zeros(0)
        for k in Fills.__dataclass_fields__
    }
    return symbols, Fills(**cols)


def _concat_trades(runs: dict[str, SymbolRun]) -> tuple[list[str], Trades]:
    parts = list(runs.values())
    symbols = [r.symbol for r in parts for _ in range(len(r.trades))]
    cols = {
        k: np.concatenate([getattr(r.trades, k) for r in parts]) if parts else np.zeros(0)
        for k in Trades.__dataclass_fields__
    }
    return symbols, Trades(**cols)


def prepare(dataset: str, options: Options, data_dir: Path | str) -> datasets.Market:
    """Resolve and load `dataset` for `options` (quotes only when orders will fill against them)."""
    options.check()
    ref = datasets.resolve(dataset, data_dir, capture_only=options.capture_only)
    has_quotes = ref.has(TableKind.QUOTES)
    need_quotes = options.fills == "quotes" or (options.fills == "auto" and has_quotes)
    market = datasets.load(
        ref,
        interval=options.interval,
        symbols=options.symbols,
        need_quotes=need_quotes,
        bar_source=options.bar_source,
    )
    market.spec = dataset
    return market


def simulate(
    market: datasets.Market,
    strategy: str | Strategy,
    params: dict[str, Any] | None,
    options: Options,
    progress: Progress | None = None,
    share: tuple[float, float] = (0.0, 1.0),
) -> BacktestResult:
    """One strategy on a loaded market: per symbol, then the equal-weight portfolio and its metrics."""
    started = time.perf_counter()
    strat = strategy if isinstance(strategy, Strategy) else get_strategy(strategy)
    resolved = strat.resolve(params)
    mode = (
        "quotes"
        if options.fills == "quotes" or (options.fills == "auto" and market.quotes)
        else "bars"
    )
    symbols = market.symbols
    cash_each = options.cash / len(symbols)
    runs: dict[str, SymbolRun] = {}
    lo, span = share
    for i, sym in enumerate(symbols):
        if progress is not None:
            progress(
                lo + span * i / len(symbols), f"{strat.name} on {sym} ({i + 1}/{len(symbols)})"
            )
        bars = market.bars[sym]
        if options.check_lookahead:
            check_lookahead(strat, bars, resolved)
        target = strat.signals(bars, resolved)
        if mode == "quotes":
            q = market.quotes.get(sym)
            if q is None or len(q) == 0:
                raise BacktestError(
                    f"no quotes for {sym} in {market.dataset.name!r}: use --fills bars"
                )
            runs[sym] = simulate_quotes(
                bars,
                target,
                q,
                cash_each,
                options.costs,
                options.whole_shares,
                options.cap_size,
                int(options.latency_ms * 1e6),
            )
        else:
            runs[sym] = simulate_bars(bars, target, cash_each, options.costs, options.whole_shares)
    curve = portfolio.combine(list(runs.values()))
    _, all_trades = _concat_trades(runs)
    _, all_fills = _concat_fills(runs)
    start_ts = min(int(market.bars[s].ts[0]) for s in symbols)
    m = metrics.compute(
        curve.equity,
        curve.ts,
        options.cash,
        start_ts=start_ts,
        interval_ns=market.interval_ns,
        exposure=float(curve.invested.mean()) if len(curve.invested) else 0.0,
        trades=all_trades,
        fills=all_fills,
        ppy=options.periods_per_year,
    )
    per_symbol = {}
    if len(runs) > 1:
        for sym, r in runs.items():
            per_symbol[sym] = metrics.compute(
                r.equity,
                r.ts,
                r.initial_cash,
                start_ts=int(market.bars[sym].ts[0]),
                interval_ns=market.bars[sym].interval_ns,
                exposure=float((r.shares != 0).mean()),
                trades=r.trades,
                fills=r.fills,
                ppy=options.periods_per_year,
            )
    m["fills_mode"] = mode
    if mode == "quotes":
        for key in ("orders", "orders_unfilled"):
            m[key] = sum(int(r.extra.get(key, 0)) for r in runs.values())
    info = market.describe()
    if market.dataset.kind is DatasetKind.RECORDING:
        gaps = datasets.gaps_of(market.dataset)
        m["dataset_gaps"] = gaps["gaps"]
        m["dataset_missing_messages"] = gaps["missing"]
    return BacktestResult(
        strat.name,
        resolved,
        options,
        info,
        mode,
        runs,
        curve,
        m,
        per_symbol,
        time.perf_counter() - started,
        requested=list(params or {}),
    )


def run_backtest(
    dataset: str,
    strategy: str | Strategy,
    params: dict[str, Any] | None = None,
    *,
    data_dir: Path | str | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> BacktestResult:
    """Load `dataset`, run `strategy` with `params`, return the result (nothing is written; see report.save)."""
    opts = Options.from_dict(options)
    market = prepare(dataset, opts, _data_dir(data_dir))
    return simulate(market, strategy, params, opts, progress)


def run_many(
    dataset: str,
    runs: list[tuple[str | Strategy, dict[str, Any]]],
    *,
    data_dir: Path | str | None = None,
    options: Options | None = None,
    progress: Progress | None = None,
) -> list[BacktestResult]:
    """Several (strategy, params) on the same data, loaded once: comparisons and sweeps."""
    opts = (options or Options()).check()
    strategies = [(s if isinstance(s, Strategy) else get_strategy(s), p) for s, p in runs]
    for s, p in strategies:
        s.resolve(p)  # every bad parameter is reported before any work starts
    if progress is not None:
        progress(0.0, f"loading {dataset}")
    market = prepare(dataset, opts, _data_dir(data_dir))
    out = []
    for i, (s, p) in enumerate(strategies):
        share = (0.1 + 0.9 * i / len(strategies), 0.9 / len(strategies))
        out.append(simulate(market, s, p, opts, progress, share))
    if progress is not None:
        progress(1.0, "done")
    return out


def plan(
    strategies: list[str],
    params: dict[str, Any] | list[str] | None = None,
    load: Callable[[str], Strategy] = get_strategy,
) -> list[tuple[str, dict[str, Any]]]:
    """(strategy, params) for every run, checked before any data is loaded.

    A parameter goes to each selected strategy that has it (an error if none has), `NAME.k` to
    strategy NAME only; a comma-separated value sweeps, one run per combination. `load` turns a
    name into a `Strategy` (a service passes one that loads only what it may run).
    """
    from mesh.backtest.strategies import parse_assignments

    if isinstance(strategies, str):
        strategies = [strategies]
    if not strategies:
        raise StrategyError("no strategy given")
    resolved = [(name, load(name)) for name in strategies]
    assignments = (
        parse_assignments(params)
        if isinstance(params, list)
        else {str(k): v for k, v in (params or {}).items()}
    )
    per: dict[str, dict[str, Any]] = {name: {} for name in strategies}
    for key, value in assignments.items():
        target, dot, pname = key.rpartition(".")
        scoped = bool(dot) and target in per
        names = [target] if scoped else strategies
        pname = pname if scoped else key
        takers = [n for n, s in resolved if n in names and any(p.name == pname for p in s.params)]
        if not takers:
            known = "; ".join(
                f"{n}: {', '.join(p.name for p in s.params) or 'none'}"
                for n, s in resolved
                if n in names
            )
            raise StrategyError(f"no selected strategy has a parameter {pname!r} ({known})")
        for n in takers:
            per[n][pname] = value
    runs: list[tuple[str, dict[str, Any]]] = []
    for name, strategy in resolved:
        sweeps = {k: v for k, v in per[name].items() if isinstance(v, str) and "," in v}
        fixed = {k: v for k, v in per[name].items() if k not in sweeps}
        for combo in expand_grid(sweeps) if sweeps else [{}]:
            values = {**fixed, **combo}
            strategy.resolve(values)  # bad values fail here
            runs.append((name, values))
    return runs


def expand_grid(values: dict[str, str]) -> list[dict[str, str]]:
    """`{"fast": "5,10", "slow": "50"}` -> one dict per combination (a comma-separated value is a sweep)."""
    keys = list(values)
    lists = [[v.strip() for v in str(values[k]).split(",") if v.strip()] or [""] for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]


def _data_dir(data_dir: Path | str | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    from mesh.config import load_config

    return load_config().data_dir
