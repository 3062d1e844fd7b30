"""What the Backtest view shows of a finished job: the equity curves, the metrics side by side and
the trades of one run; plus the pure helpers that turn the backtester's answers into rows.

A result is what the backtester's `result` command (and `bt.result.<id>`) carries:
{"dataset": {...}, "runs": [{label, metrics, equity: {ts, equity}, trades: {columns}, ...}]}.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from tui.untrusted import clean, finite, literal


def pct(v: Any) -> str:
    return f"{v * 100:,.2f}%"


def num(v: Any) -> str:
    return f"{v:,.2f}"


def whole(v: Any) -> str:
    return f"{int(v):,d}"


def duration(v: Any) -> str:
    s = float(v)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.1f}{unit}"
    return f"{s:.0f}s"


# (metrics key, label, format): the rows of the metrics table, in order
METRIC_ROWS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("total_return", "Total return", pct),
    ("cagr", "CAGR", pct),
    ("volatility", "Volatility (ann.)", pct),
    ("sharpe", "Sharpe", num),
    ("sortino", "Sortino", num),
    ("max_drawdown", "Max drawdown", pct),
    ("max_drawdown_duration_s", "Max DD duration", duration),
    ("trades", "Trades", whole),
    ("win_rate", "Win rate", pct),
    ("avg_trade", "Avg trade", pct),
    ("exposure", "Exposure", pct),
    ("fees_paid", "Fees paid", num),
    ("final_equity", "Final equity", num),
]


def metric_cell(metrics: dict[str, Any], key: str, fmt: Callable[[Any], str]) -> str:
    value = metrics.get(key)
    if value is None:
        return "—"
    try:
        return fmt(value)
    except (TypeError, ValueError):
        return str(value)


def ns_time(ns: int | None, with_seconds: bool = False) -> str:
    if ns is None:
        return "—"
    stamp = datetime.fromtimestamp(int(ns) / 1e9, tz=UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S" if with_seconds else "%Y-%m-%d %H:%M")


def dataset_key(dataset: dict[str, Any], all_datasets: list[dict[str, Any]]) -> str:
    """What to send as `dataset`: the name, or `kind:name` when a recording and a history share it."""
    name = str(dataset.get("name", ""))
    if sum(1 for d in all_datasets if d.get("name") == name) > 1:
        return f"{dataset.get('kind')}:{name}"
    return name


def dataset_row(d: dict[str, Any]) -> tuple[str, ...]:
    """Name, kind, symbols, start, end, rows of one `datasets` entry."""
    if d.get("error"):
        return (
            str(d.get("name")),
            str(d.get("kind", "?")),
            f"unreadable: {d['error']}"[:60],
            "—",
            "—",
            "—",
        )
    symbols = list(d.get("symbols") or [])
    shown = ",".join(symbols[:4]) + (f" +{len(symbols) - 4}" if len(symbols) > 4 else "")
    rows = d.get("rows") or {}
    total = sum(int(n or 0) for n in rows.values()) if isinstance(rows, dict) else int(rows)
    return (
        str(d.get("name")),
        str(d.get("kind", "?")),
        shown or "—",
        ns_time(d.get("start_ns"), True)
        if d.get("start_ns") is not None
        else str(d.get("start") or "—"),
        ns_time(d.get("end_ns"), True) if d.get("end_ns") is not None else str(d.get("end") or "—"),
        f"{total:,}",
    )


def parse_params(text: str) -> dict[str, str]:
    """`fast=10 slow=50 ma-crossover.kind=ema` -> the backtester's `params`, parsed as `--param` is.

    Imports the backtester's own parser (and so numpy): call it off the UI thread.
    """
    from mesh.backtest.strategies import parse_assignments

    return parse_assignments(text.split())


BOOL_OPTIONS = ("whole_shares", "cap_size", "check_lookahead")
NUMBER_OPTIONS = ("cash", "commission_bps", "slippage_bps", "latency_ms", "periods_per_year")


def parse_options(text: str) -> dict[str, Any]:
    """`interval=5m commission-bps=1 whole_shares=true` -> the backtester's `options` (it checks them)."""
    from mesh.backtest.errors import BacktestError

    options: dict[str, Any] = {}
    for key, value in parse_params(text).items():
        key = key.replace("-", "_")
        if key in BOOL_OPTIONS:
            if value.lower() not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                raise BacktestError(f"option {key}={value!r}: expected true or false")
            options[key] = value.lower() in ("true", "yes", "1", "on")
        elif key in NUMBER_OPTIONS:
            try:
                options[key] = float(value)
            except ValueError:
                raise BacktestError(f"option {key}={value!r}: expected a number") from None
        else:
            options[key] = value
    return options


def _plottable(values: Any) -> bool:
    """A list of finite numbers (anything else would fail only when the plot is drawn)."""
    return isinstance(values, list) and all(finite(v) is not None for v in values)


class EquityPlot(PlotextPlot):
    """Every run's equity curve in one plot, against time."""

    def show(self, runs: list[dict[str, Any]]) -> None:
        plt = self.plt
        plt.clear_figure()
        curves = [
            (
                clean(r.get("label", "?"), 40),
                (r.get("equity") or {}).get("ts") or [],
                (r.get("equity") or {}).get("equity") or [],
            )
            for r in runs
        ]
        curves = [
            (label, ts, eq)
            for label, ts, eq in curves
            if ts and len(ts) == len(eq) and _plottable(ts) and _plottable(eq)
        ]
        if not curves:
            plt.title("no equity curve yet: run a backtest")
            self.refresh()
            return
        t0 = min(ts[0] for _, ts, _ in curves)
        t1 = max(ts[-1] for _, ts, _ in curves)
        span = max(t1 - t0, 1)
        for label, ts, eq in curves:
            plt.plot([(t - t0) / 1e9 for t in ts], list(eq), label=label)
        ticks = [span / 1e9 * i / 4 for i in range(5)]
        fmt = "%Y-%m-%d" if span >= 3 * 86400 * 10**9 else "%m-%d %H:%M"
        plt.xticks(
            ticks,
            [datetime.fromtimestamp((t0 + t * 1e9) / 1e9, tz=UTC).strftime(fmt) for t in ticks],
        )
        plt.title("Equity")
        self.refresh()


class MetricsTable(DataTable[str | Text]):
    """One row per metric, one column per run: the runs side by side. The highlighted run's
    column picks the trade list shown below."""

    def show(self, runs: list[dict[str, Any]]) -> None:
        self.clear(columns=True)
        self.add_column("Metric", key="metric")
        for i, r in enumerate(runs):
            self.add_column(
                literal(r.get("label") or r.get("strategy") or f"run {i + 1}", limit=40),
                key=f"run-{i}",
            )
        for key, label, fmt in METRIC_ROWS:
            self.add_row(
                label,
                *(literal(metric_cell(r.get("metrics") or {}, key, fmt), limit=30) for r in runs),
                key=key,
            )
        if runs:
            self.move_cursor(column=1)  # the first run, whose trades are shown


TRADE_COLUMNS = ("Symbol", "Side", "Qty", "Entry", "Exit", "Entry px", "Exit px", "P&L", "Return")


class TradesTable(DataTable[str | Text]):
    """The trades of one run (the latest ones, when the backtester capped them)."""

    def on_mount(self) -> None:
        self.add_columns(*TRADE_COLUMNS)

    def show(self, run: dict[str, Any] | None) -> None:
        self.clear()
        if not run:
            return
        t = run.get("trades") or {}
        for i in range(len(t.get("symbol") or [])):
            side = t["side"][i]
            closed = t["closed"][i] if "closed" in t else True
            self.add_row(
                literal(t["symbol"][i], limit=20),
                "long" if side > 0 else "short" if side < 0 else "flat",
                f"{t['qty'][i]:,.4g}",
                ns_time(t["entry_ts"][i]),
                ns_time(t["exit_ts"][i]) if closed else "open",
                f"{t['entry_price'][i]:,.2f}",
                f"{t['exit_price'][i]:,.2f}",
                f"{t['pnl'][i]:,.2f}",
                pct(t["return"][i]),
            )


def trades_caption(run: dict[str, Any] | None) -> str:
    if not run:
        return "Trades: run a backtest, then pick a run's column in the metrics"
    shown = len((run.get("trades") or {}).get("symbol") or [])
    total = run.get("trades_total", shown)
    more = f" (the last {shown} of {total:,})" if run.get("trades_truncated") else ""
    return (
        f"Trades of {run.get('label', '?')}: {total:,}{more}   (←/→ in the metrics picks the run)"
    )
