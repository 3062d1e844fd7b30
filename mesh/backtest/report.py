"""What a person or a program sees of a result: tables, the run folder, the bus summary.

- `table` and `comparison` print the metrics (one strategy, or side by side);
- `save` writes `data/backtests/<run>/`: metrics.json, config.json, equity.parquet, trades.parquet
  and fills.parquet, into a hidden folder first, renamed into place when complete;
- `summary` is the dict published on `bt.result.<id>`: metrics, a downsampled equity curve and
  the trades (capped), small enough for one bus message.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mesh.backtest.runner import BacktestResult

BACKTESTS = "backtests"


def _pct(v: Any) -> str:
    return "—" if v is None else f"{v * 100:,.2f}%"


def _num(v: Any) -> str:
    return "—" if v is None else f"{v:,.2f}"


def _money(v: Any) -> str:
    return "—" if v is None else f"{v:,.2f}"


def _int(v: Any) -> str:
    return "—" if v is None else f"{int(v):,d}"


def _duration(v: Any) -> str:
    if v is None:
        return "—"
    s = float(v)
    if s >= 86400:
        return f"{s / 86400:.1f}d"
    if s >= 3600:
        return f"{s / 3600:.1f}h"
    if s >= 60:
        return f"{s / 60:.1f}m"
    return f"{s:.0f}s"


# (metrics key, label, format): the rows of the table, in order
ROWS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("start", "Start", str),
    ("end", "End", str),
    ("bars", "Bars", _int),
    ("initial_equity", "Initial equity", _money),
    ("final_equity", "Final equity", _money),
    ("total_return", "Total return", _pct),
    ("cagr", "CAGR", _pct),
    ("volatility", "Volatility (ann.)", _pct),
    ("sharpe", "Sharpe", _num),
    ("sortino", "Sortino", _num),
    ("max_drawdown", "Max drawdown", _pct),
    ("max_drawdown_duration_s", "Max DD duration", _duration),
    ("trades", "Trades", _int),
    ("win_rate", "Win rate", _pct),
    ("avg_trade", "Avg trade", _pct),
    ("profit_factor", "Profit factor", _num),
    ("exposure", "Exposure", _pct),
    ("fees_paid", "Fees paid", _money),
    ("slippage_paid", "Slippage/spread paid", _money),
]


def _cell(metrics: dict[str, Any], key: str, fmt: Callable[[Any], str]) -> str:
    value = metrics.get(key)
    return "—" if value is None else fmt(value)


def _prices_line(dataset: dict[str, Any]) -> str:
    """Whether the bars are split-adjusted, as the dataset's manifest says."""
    return f"  prices: {dataset.get('prices') or 'as traded'}"


def table(result: BacktestResult) -> str:
    """The metrics of one result as an aligned two-column table, with a title line."""
    m = result.metrics
    d = result.dataset
    lines = [
        f"{result.label}  on {d.get('name')} ({', '.join(d.get('symbols', [])[:8])}{'…' if len(d.get('symbols', [])) > 8 else ''}; "
        f"{d.get('interval')} bars, {result.fills_mode} fills)",
        _prices_line(d),
    ]
    width = max(len(label) for _, label, _ in ROWS)
    for key, label, fmt in ROWS:
        lines.append(f"  {label:<{width}}  {_cell(m, key, fmt):>22}")
    if m.get("fills_mode") == "quotes":
        lines.append(
            f"  {'Orders (unfilled)':<{width}}  {_int(m.get('orders')) + ' (' + _int(m.get('orders_unfilled')) + ')':>22}"
        )
    if m.get("dataset_gaps"):
        lines.append(
            f"  note: the recording has {m['dataset_gaps']} gap(s), {m.get('dataset_missing_messages', 0)} message(s) known missing"
        )
    if result.per_symbol:
        lines.append("")
        lines.append(per_symbol_table(result))
    return "\n".join(lines)


def per_symbol_table(result: BacktestResult) -> str:
    keys = [
        ("total_return", "Return", _pct),
        ("sharpe", "Sharpe", _num),
        ("max_drawdown", "Max DD", _pct),
        ("trades", "Trades", _int),
    ]
    lines = [f"  {'Symbol':<10}" + "".join(f"{label:>12}" for _, label, _ in keys)]
    for sym, m in result.per_symbol.items():
        lines.append(f"  {sym:<10}" + "".join(f"{_cell(m, k, f):>12}" for k, _, f in keys))
    return "\n".join(lines)


def comparison(results: list[BacktestResult]) -> str:
    """Several results side by side, one column per strategy (or parameter set)."""
    labels = [r.label for r in results]
    width = max(len(label) for _, label, _ in ROWS)
    col = max(14, *(len(label) + 2 for label in labels))
    d = results[0].dataset
    lines = [
        f"{len(results)} runs on {d.get('name')} ({d.get('interval')} bars, {results[0].fills_mode} fills)",
        _prices_line(d),
        " " * (width + 2) + "".join(f"{label:>{col}}" for label in labels),
    ]
    for key, label, fmt in ROWS:
        if key in ("start", "end", "bars"):
            continue
        lines.append(
            f"{label:<{width}}  " + "".join(f"{_cell(r.metrics, key, fmt):>{col}}" for r in results)
        )
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40] or "run"


def new_run_id(dataset: str, strategy: str) -> str:
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{now}-{_slug(dataset)}-{_slug(strategy)}-{secrets.token_hex(2)}"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def save(result: BacktestResult, data_dir: Path | str, run_id: str | None = None) -> Path:
    """Write the run folder `data_dir/backtests/<run>/` all at once; returns its path."""
    root = Path(data_dir) / BACKTESTS
    root.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id(str(result.dataset.get("name")), result.strategy)
    tmp = root / f".{run_id}.tmp"
    final = root / run_id
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        doc = {
            "run_id": run_id,
            "strategy": result.strategy,
            "label": result.label,
            "params": result.params,
            "dataset": result.dataset,
            "metrics": result.metrics,
            "per_symbol": result.per_symbol,
            "elapsed_s": round(result.elapsed_s, 6),
        }
        (tmp / "metrics.json").write_text(json.dumps(doc, indent=2, default=_json_default))
        (tmp / "config.json").write_text(
            json.dumps(result.config(), indent=2, default=_json_default)
        )
        result.equity_frame().to_parquet(tmp / "equity.parquet", index=False, compression="zstd")
        result.trades_frame().to_parquet(tmp / "trades.parquet", index=False, compression="zstd")
        result.fills_frame().to_parquet(tmp / "fills.parquet", index=False, compression="zstd")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.run_id, result.run_dir = run_id, str(final)
    return final


def downsample(
    ts: np.ndarray, values: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` evenly spaced points, always with the first, the last, the lowest and the highest."""
    n = len(values)
    if n <= max_points:
        return ts, values
    idx = np.unique(
        np.r_[
            np.linspace(0, n - 1, max(2, max_points - 2)).astype(np.int64),
            int(np.argmin(values)),
            int(np.argmax(values)),
        ]
    )
    return ts[idx], values[idx]


def summary(result: BacktestResult, max_points: int = 500, max_trades: int = 500) -> dict[str, Any]:
    """The result as plain data for the bus: metrics, a downsampled equity curve, the (last) trades."""
    ts, eq = downsample(result.curve.ts, result.curve.equity, max_points)
    symbols, t = result.trades()
    n = len(t)
    keep = slice(max(0, n - max_trades), n)
    trades = {
        "symbol": symbols[keep],
        "side": t.side[keep].astype(int).tolist(),
        "qty": t.qty[keep].tolist(),
        "entry_ts": t.entry_ts[keep].tolist(),
        "exit_ts": t.exit_ts[keep].tolist(),
        "entry_price": t.entry_price[keep].tolist(),
        "exit_price": t.exit_price[keep].tolist(),
        "pnl": t.pnl[keep].tolist(),
        "return": t.ret[keep].tolist(),
        "closed": t.closed[keep].tolist(),
    }
    clean = {
        k: (None if isinstance(v, float) and not np.isfinite(v) else v)
        for k, v in result.metrics.items()
    }
    return {
        "run_id": result.run_id,
        "run_dir": result.run_dir,
        "strategy": result.strategy,
        "label": result.label,
        "params": result.params,
        "dataset": result.dataset,
        "metrics": clean,
        "per_symbol": result.per_symbol,
        "equity": {
            "ts": ts.astype(np.int64).tolist(),
            "equity": eq.tolist(),
            "points": len(eq),
            "of": len(result.curve.equity),
        },
        "trades": trades,
        "trades_total": n,
        "trades_truncated": n > max_trades,
        "elapsed_s": round(result.elapsed_s, 6),
    }
