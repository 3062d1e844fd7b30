"""The Backtest view against a real bus and the real backtester (`massive run backtester`), plus a
snapshot of it filled from a fixed result."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from textual.widgets import DataTable, Input, ProgressBar, SelectionList, Static, TabbedContent

from mesh import bar_schema, control
from mesh.bus import Bus
from mesh.config import Config
from mesh.fetcher.datasets import write_dataset
from mesh.intervals import DAY as DAY_BARS
from tui.app import MassiveTui, make_app
from tui.views.backtest import BacktestView

DAY = 86_400 * 10**9
T0 = 1_704_205_800 * 10**9  # 2024-01-02 14:30 UTC
BARS = 260
NOW = 1_763_820_000_000_000_000


def write_daily(data_dir: Path, name: str = "spy-daily") -> None:
    """A year of daily bars for one symbol, written as `massive fetch` writes a dataset."""
    close = [100 + 10 * math.sin(i / 15) + i * 0.05 for i in range(BARS)]
    opens = [close[0], *close[:-1]]
    bars = bar_schema.from_columns(
        ["SPY"] * BARS,
        np.array([T0 + i * DAY for i in range(BARS)], dtype=np.int64),
        DAY_BARS,
        open=np.array(opens),
        high=np.array([max(o, c) * 1.002 for o, c in zip(opens, close, strict=True)]),
        low=np.array([min(o, c) * 0.998 for o, c in zip(opens, close, strict=True)]),
        close=np.array(close),
        volume=np.full(BARS, 1e6),
        vwap=np.array(close),
        transactions=np.full(BARS, 1000),
    )
    write_dataset(
        bars,
        data_dir,
        name,
        {"symbols": ["SPY"], "interval": "1d", "start": "2024-01-02", "end": "2024-09-17"},
    )


def toasts(app: MassiveTui) -> list[str]:
    return [str(n.message) for n in app._notifications]


def cells(row: list[object]) -> list[str]:
    """A table row as the text it shows (cells from outside are drawn as literal rich Text)."""
    return [str(cell) for cell in row]


def status_text(app: MassiveTui) -> str:
    return str(app.query_one("#bt-status", Static).render())


async def wait_until(pilot, predicate, timeout: float = 25.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    app = pilot.app
    raise AssertionError(
        f"condition not met in time; status: {status_text(app)!r}; notifications: {toasts(app)}"
    )


@pytest.fixture
def backtester(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    write_daily(mesh_config.data_dir)
    massive = Path(sys.executable).parent / "massive"
    proc = subprocess.Popen(
        [str(massive), "run", "backtester"], env=mesh_environ, cwd=mesh_config.data_dir.parent
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if control.call(mesh_config.bus_ctl, "bus", "services").get("backtester", {}).get("up"):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the backtester did not come up")
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


async def show_backtest(app: MassiveTui, pilot) -> BacktestView:  # type: ignore[no-untyped-def]
    # At start-up the first view's main widget takes the focus, which brings its tab back to the
    # front when that lands after the switch: switch until the Backtest view holds the focus.
    for _ in range(25):
        app.action_show_view("backtest")
        await pilot.pause(0.2)
        if app.query_one(TabbedContent).active == "backtest" and app.focused is app.query_one(
            "#bt-datasets"
        ):
            break
    assert app.query_one(TabbedContent).active == "backtest"
    await pilot.pause(0.1)
    return app.query_one(BacktestView)


async def test_a_two_strategy_run_shows_progress_curves_metrics_and_trades(
    backtester: subprocess.Popen[bytes], mesh_config: Config
) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(150, 48)) as pilot:
        view = await show_backtest(app, pilot)
        assert app.focused is app.query_one("#bt-datasets")
        datasets = app.query_one("#bt-datasets", DataTable)
        await wait_until(pilot, lambda: datasets.row_count == 1 and view.loaded)
        assert cells(datasets.get_row_at(0)) == [
            "spy-daily",
            "historical",
            "SPY",
            "2024-01-02 14:30:00",
            "2024-09-17 14:30:00",
            f"{BARS}",
        ]
        picker = app.query_one("#bt-strategies", SelectionList)
        assert {"buy-and-hold", "ma-crossover", "mean-reversion"} <= {
            picker.get_option_at_index(i).value for i in range(picker.option_count)
        }

        statuses: list[str] = []
        set_status = view.set_status
        view.set_status = lambda message, error=False: (
            statuses.append(message),
            set_status(message, error),
        )[1]  # type: ignore[method-assign]
        picker.select("buy-and-hold")
        picker.select("ma-crossover")
        app.query_one("#bt-params", Input).value = "fast=5 slow=20"
        app.query_one("#bt-options", Input).value = "commission_bps=1"
        await pilot.click("#bt-run")
        await wait_until(pilot, lambda: view.result is not None, timeout=20)

        assert any(": queued, 2 run(s) on spy-daily" in s for s in statuses)
        assert any(": done — 2 run(s) on spy-daily" in s for s in statuses)
        job = app.mesh.jobs[view.job_id or ""]
        assert job.kind == "backtest" and job.state == "done"
        assert app.query_one("#bt-progress", ProgressBar).progress == 1.0

        # the equity curves of both runs in one plot
        plot = str(app.query_one("#bt-plot").render())
        assert "buy-and-hold" in plot and "ma-crossover fast=5 slow=20" in plot
        # the metrics side by side: one column per run
        metrics = app.query_one("#bt-metrics", DataTable)
        assert [str(c.label) for c in metrics.ordered_columns] == [
            "Metric",
            "buy-and-hold",
            "ma-crossover fast=5 slow=20",
        ]
        total = cells(metrics.get_row("total_return"))
        assert total[0] == "Total return" and all(cell.endswith("%") for cell in total[1:])
        runs = view.result["runs"]  # type: ignore[index]
        assert cells(metrics.get_row("trades"))[1:] == [
            f"{r['metrics']['trades']:,d}" for r in runs
        ]
        assert [
            metrics.get_row(k)[0]
            for k in (
                "sharpe",
                "sortino",
                "max_drawdown",
                "max_drawdown_duration_s",
                "win_rate",
                "exposure",
                "fees_paid",
            )
        ] == [
            "Sharpe",
            "Sortino",
            "Max drawdown",
            "Max DD duration",
            "Win rate",
            "Exposure",
            "Fees paid",
        ]
        # the trade list of the selected run: the first, then the second one's column
        trades = app.query_one("#bt-trades", DataTable)
        assert trades.row_count == len(runs[0]["trades"]["symbol"]) == 1
        assert "Trades of buy-and-hold" in str(app.query_one("#bt-trades-caption").render())
        metrics.focus()
        metrics.move_cursor(column=2)
        await pilot.pause(0.1)
        assert runs[1]["metrics"]["trades"] > 1
        assert trades.row_count == len(runs[1]["trades"]["symbol"])
        assert cells(trades.get_row_at(0))[:2] == ["SPY", "long"]
        assert "Trades of ma-crossover fast=5 slow=20" in str(
            app.query_one("#bt-trades-caption").render()
        )


async def test_bad_parameters_and_missing_choices_are_shown(
    backtester: subprocess.Popen[bytes], mesh_config: Config
) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(150, 48)) as pilot:
        view = await show_backtest(app, pilot)
        await wait_until(pilot, lambda: view.loaded)
        await pilot.click("#bt-run")
        await wait_until(
            pilot, lambda: any("Pick one or more strategies" in t for t in toasts(app))
        )
        app.query_one("#bt-strategies", SelectionList).select("ma-crossover")
        params = app.query_one("#bt-params", Input)
        params.value = "nosuch=3"  # the backtester rejects it
        app.clear_notifications()  # as a user dismisses a toast: one lying over the button takes the click
        await pilot.pause(
            0.2
        )  # the toast gone from the screen and the selection applied, as a person would see
        await pilot.click("#bt-run")
        await wait_until(
            pilot,
            lambda: any("no selected strategy has a parameter 'nosuch'" in t for t in toasts(app)),
        )
        assert "backtester: " in status_text(app) and view.job_id is None
        params.value = "fast=abc"
        app.clear_notifications()
        await pilot.pause(0.2)
        await pilot.click("#bt-run")
        await wait_until(pilot, lambda: any("fast" in t and "abc" in t for t in toasts(app)))
        params.value = (
            "fast"  # not NAME=VALUE: caught before it is sent; Enter runs as the button does
        )
        params.focus()
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: any(
                t.startswith("Bad parameter: --param 'fast': expected NAME=VALUE")
                for t in toasts(app)
            ),
        )
        assert view.job_id is None


async def test_without_a_backtester_it_says_so(bus: Bus, mesh_config: Config) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(150, 48)) as pilot:
        view = await show_backtest(app, pilot)
        await wait_until(pilot, lambda: "The backtester is not running" in status_text(app))
        assert "massive run backtester" in status_text(app) and not view.loaded
        app.query_one("#bt-params", Input).value = "fast=5"
        await pilot.click("#bt-run")
        await wait_until(
            pilot,
            lambda: any(
                "No dataset selected" in t and "is the backtester running" in t for t in toasts(app)
            ),
        )


# --- snapshot ------------------------------------------------------------------------------------------


def fixed_result() -> dict[str, Any]:
    """Two runs as the backtester's `result` carries them, made up and fixed."""
    ts = [T0 + i * DAY for i in range(0, BARS, 5)]
    hold = [100_000 * (1 + 0.1 * math.sin(i / 9) + i * 0.002) for i in range(len(ts))]
    cross = [100_000 * (1 + 0.04 * math.sin(i / 5) + i * 0.003) for i in range(len(ts))]

    def trades(n: int, step: int) -> dict[str, list[Any]]:
        return {
            "symbol": ["SPY"] * n,
            "side": [1] * n,
            "qty": [250.0 + k for k in range(n)],
            "entry_ts": [T0 + (k * step + 1) * DAY for k in range(n)],
            "exit_ts": [T0 + (k * step + step // 2) * DAY for k in range(n)],
            "entry_price": [100.0 + k for k in range(n)],
            "exit_price": [101.5 + k * 1.1 for k in range(n)],
            "pnl": [375.0 + 10 * k for k in range(n)],
            "return": [0.015 + 0.001 * k for k in range(n)],
            "closed": [True] * (n - 1) + [False],
        }

    def metrics(total: float, trades: int, win: float | None) -> dict[str, Any]:
        return {
            "total_return": total, "cagr": total * 1.3, "volatility": 0.1412, "sharpe": 1.23, "sortino": 1.87,
            "max_drawdown": -0.0931, "max_drawdown_duration_s": 41 * 86400.0, "trades": trades, "win_rate": win,
            "avg_trade": 0.0213 if trades else None, "exposure": 0.62 if trades > 1 else 0.996, "fees_paid": 41.5, "final_equity": 100_000 * (1 + total),
        }  # fmt: skip

    return {
        "dataset": {"name": "spy-daily", "kind": "historical", "symbols": ["SPY"]},
        "runs": [
            {"label": "buy-and-hold", "strategy": "buy-and-hold", "params": {}, "metrics": metrics(0.6235, 1, 1.0), "equity": {"ts": ts, "equity": hold, "points": len(ts), "of": BARS}, "trades": trades(1, 40), "trades_total": 1, "trades_truncated": False},
            {"label": "ma-crossover fast=5 slow=20", "strategy": "ma-crossover", "params": {"fast": 5, "slow": 20}, "metrics": metrics(0.2719, 7, 0.5714), "equity": {"ts": ts, "equity": cross, "points": len(ts), "of": BARS}, "trades": trades(7, 30), "trades_total": 7, "trades_truncated": False},
        ],
    }  # fmt: skip


DATASETS = [
    {
        "name": "open-bell",
        "kind": "recording",
        "symbols": ["AAPL", "MSFT", "NVDA", "SPY", "QQQ"],
        "start_ns": NOW - 3600 * 10**9,
        "end_ns": NOW,
        "rows": {"quotes": 120000, "trades": 45000},
    },
    {
        "name": "spy-daily",
        "kind": "historical",
        "symbols": ["SPY"],
        "start_ns": T0,
        "end_ns": T0 + (BARS - 1) * DAY,
        "rows": {"bars": BARS},
    },
]
STRATEGIES = [
    {
        "name": "buy-and-hold",
        "description": "Long from the first bar to the last: the benchmark.",
        "params": [],
    },
    {
        "name": "ma-crossover",
        "description": "Long after the fast moving average crosses above the slow one.",
        "params": [
            {"name": "fast", "default": 10},
            {"name": "slow", "default": 50},
            {"name": "kind", "default": "sma", "choices": ["sma", "ema"]},
            {"name": "short", "default": False},
        ],
    },
    {
        "name": "mean-reversion",
        "description": "z-score of the close against its moving average.",
        "params": [{"name": "lookback", "default": 20}],
    },
]


def test_backtest_view(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = Config.load(environ={"MESH_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path)
    app = make_app(config, connect=False, clock=lambda: NOW, show_clock=False, sample_history=False)

    async def fill(pilot) -> None:  # type: ignore[no-untyped-def]
        view = await show_backtest(pilot.app, pilot)
        view.loaded = True  # no backtester here: the lists come from fixed data
        view.show_datasets(DATASETS)
        view.show_strategies(STRATEGIES)
        pilot.app.query_one("#bt-datasets", DataTable).move_cursor(row=1)
        picker = pilot.app.query_one("#bt-strategies", SelectionList)
        picker.select("buy-and-hold")
        picker.select("ma-crossover")
        pilot.app.query_one("#bt-params", Input).value = "fast=5 slow=20"
        view.show_result(fixed_result())
        pilot.app.query_one("#bt-progress", ProgressBar).update(progress=1.0)
        view.set_status(
            "bt-0001: done — 2 run(s) on spy-daily: buy-and-hold, ma-crossover fast=5 slow=20"
        )
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(150, 48), run_before=fill)
