"""The Strategies view against a real bus: paper sessions from `sys.stats.strategy`, fills from
`strat.fill.*` and the equity curve from `strat.pnl.*` as published by a real publisher; start and
stop through a stand-in strategy service (the real runtime and control channel); what the view
says without a strategy service; Compare. Plus its snapshot."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Select, Static, TabbedContent

from mesh import control, topics
from mesh.bus import Bus
from mesh.client import Publisher
from mesh.config import Config
from mesh.schema import Fill, Heartbeat, Pnl, Stats
from tests.tui.test_dashboard import wait_until
from tests.tui.test_snapshots import NOW, fixed_app
from tui.app import MassiveTui, make_app
from tui.views.strategies import SessionEquity, StrategiesView, compare_summary

ROOT = Path(__file__).resolve().parents[2]
MINUTE = 60 * 10**9
T0 = 1_765_200_000_000_000_000  # 2025-12-08 13:20 UTC

TRACEBACK = """Traceback (most recent call last):
  File "mesh/paper/session.py", line 88, in on_bar
    target = strategy.signals(bars, params)
ZeroDivisionError: division by zero"""


def session(name: str, **fields: Any) -> dict[str, Any]:
    """One session of `sys.stats.strategy`, as the strategy service reports it."""
    return {
        "name": name, "strategy": "ma-crossover", "params": {"fast": 5, "slow": 20},
        "symbols": ["AAPL", "MSFT"], "interval": "1m", "fills": 2, "state": "running", "error": "",
        "started_ns": T0, "stopped_ns": 0, "recording": f"paper-{name}", "cash": 52_000.0,
        "equity": 100_250.5, "initial_cash": 100_000.0, "positions": {"AAPL": 100.0, "MSFT": 0.0},
        "orders": 3, "bars": 41, "lag_ms": 12.4, "lost": "", **fields,
    }  # fmt: skip


SESSIONS = [
    session("ma-aapl"),
    session(
        "broken",
        strategy="mean-reversion",
        state="failed",
        error=TRACEBACK,
        stopped_ns=T0 + 5 * MINUTE,
        equity=99_800.0,
        positions={},
        lost="the bars of 13:21 and 13:22 (the service restarted)",
    ),
]


def fills() -> list[Fill]:
    return [
        Fill(name="ma-aapl", symbol="AAPL", order_id=1, qty=100.0, price=271.52, ref_price=271.5, fee=0.27, ts_event=T0 + MINUTE, position=100.0, cash=-27_152.27),
        Fill(name="ma-aapl", symbol="MSFT", order_id=1, qty=-40.0, price=472.1, ref_price=472.12, fee=0.19, ts_event=T0 + 2 * MINUTE, position=-40.0, cash=18_883.81),
    ]  # fmt: skip


def pnls() -> list[Pnl]:
    """Two symbols over three bar closes; MSFT is not heard of at the third."""
    rows = [
        ("AAPL", 1, 50_000.0), ("MSFT", 1, 50_000.0),
        ("AAPL", 2, 50_100.0), ("MSFT", 2, 49_950.0),
        ("AAPL", 3, 50_300.0),
    ]  # fmt: skip
    return [
        Pnl(name="ma-aapl", symbol=s, ts=T0 + k * MINUTE, position=100.0, cash=0.0, equity=e, initial_cash=50_000.0, fills=1)
        for s, k, e in rows
    ]  # fmt: skip


def strategy_beat() -> Heartbeat:
    return Heartbeat(
        service="strategy",
        instance="0000",
        pid=4242,
        state="ok",
        started=time.time_ns(),
        interval=1.0,
        counters={},
        message="",
    )


def cells(table: DataTable, key: str) -> dict[str, str]:  # type: ignore[type-arg]
    names = [str(c.label) for c in table.columns.values()]
    return dict(zip(names, map(str, table.get_row(key)), strict=True))


def line(app: MassiveTui, which: str = "#paper-line") -> str:
    return str(app.query_one(which, Static).render())


async def show_strategies(app: MassiveTui, pilot: Any) -> StrategiesView:
    # At start-up the Live view's board takes the focus, which brings its tab back to the front
    # when that lands after the switch: press 7 until the Strategies view holds the focus.
    for _ in range(25):
        await pilot.press("7")
        await pilot.pause(0.2)
        if app.query_one(TabbedContent).active == "strategies" and app.focused is app.query_one(
            "#paper-sessions"
        ):
            break
    assert app.query_one(TabbedContent).active == "strategies"
    return app.query_one(StrategiesView)


async def publish_until(pilot: Any, send: Callable[[], None], shown: Callable[[], bool]) -> None:
    """Publish until the view shows it (a subscriber misses what is sent before it has joined)."""

    def again() -> bool:
        if shown():
            return True
        send()
        return False

    await wait_until(pilot, again)


async def test_sessions_show_state_positions_and_pnl_and_a_failed_one_its_error(
    bus: Bus, mesh_config: Config
) -> None:
    pub = Publisher("strategy", mesh_config.bus_pub)
    app = make_app(mesh_config)
    async with app.run_test(size=(180, 48)) as pilot:
        await show_strategies(app, pilot)
        table = app.query_one("#paper-sessions", DataTable)

        def send() -> None:
            pub.publish(topics.heartbeat("strategy"), strategy_beat())
            pub.publish(
                topics.stats("strategy"), Stats(service="strategy", stats={"sessions": SESSIONS})
            )

        await publish_until(pilot, send, lambda: table.row_count == 2)
        running = cells(table, "ma-aapl")
        assert running["State"] == "RUNNING"
        assert running["Strategy"] == "ma-crossover"
        assert running["Positions"] == "AAPL 100, MSFT 0"
        assert (running["Cash"], running["Equity"], running["P&L"]) == (
            "52,000.00",
            "100,250.50",
            "+250.50",
        )
        assert (running["Orders"], running["Fills"], running["Bars"], running["Lag"]) == (
            "3",
            "2",
            "41",
            "12 ms",
        )
        failed = cells(table, "broken")
        assert failed["State"] == "FAILED" and failed["P&L"] == "-200.00"
        assert failed["Note"] == "ZeroDivisionError: division by zero"
        await wait_until(pilot, lambda: line(app, "#paper-service").startswith("strategy up"))
        assert "2 session(s), 1 running" in line(app, "#paper-service")

        # the selected session's details: the first, then the failed one's whole error and loss
        detail = app.query_one("#paper-detail", Static)
        assert "ma-aapl: ma-crossover fast=5 slow=20" in str(detail.render())
        table.focus()
        await pilot.press("down")
        await wait_until(pilot, lambda: "broken: mean-reversion" in str(detail.render()))
        shown = str(detail.render())
        assert 'File "mesh/paper/session.py", line 88, in on_bar' in shown
        assert "ZeroDivisionError: division by zero" in shown
        assert "A restart lost: the bars of 13:21 and 13:22 (the service restarted)" in shown
    pub.close()


async def test_fills_and_the_equity_curve_summed_over_symbols(
    bus: Bus, mesh_config: Config
) -> None:
    pub = Publisher("strategy", mesh_config.bus_pub)
    app = make_app(mesh_config)
    async with app.run_test(size=(180, 48)) as pilot:
        await show_strategies(app, pilot)
        fills_table = app.query_one("#paper-fills", DataTable)

        def send() -> None:
            pub.publish(
                topics.stats("strategy"),
                Stats(service="strategy", stats={"sessions": [session("ma-aapl")]}),
            )
            for fill in fills():
                pub.publish(topics.paper(topics.FILL, fill.name), fill)
            for pnl in pnls():
                pub.publish(topics.paper(topics.PNL, pnl.name), pnl)

        await publish_until(pilot, send, lambda: fills_table.row_count >= 2)
        newest = [str(c) for c in fills_table.get_row_at(0)]
        oldest = [str(c) for c in fills_table.get_row_at(1)]
        assert newest == [
            "13:22:00", "ma-aapl", "MSFT", "-40", "472.10", "472.12", "0.19", "-40",
        ]  # fmt: skip
        assert oldest == [
            "13:21:00", "ma-aapl", "AAPL", "100", "271.52", "271.50", "0.27", "100",
        ]  # fmt: skip
        # MSFT's last equity carries into the third close, where only AAPL reported
        times, equity = app.paper.equity_curve("ma-aapl")
        assert times == [T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE]
        assert equity == [100_000.0, 100_050.0, 100_250.0]
        plot = app.query_one(SessionEquity)
        await wait_until(pilot, lambda: plot.title == "Equity of ma-aapl: 100,250.00")
    pub.close()


def compare_installed() -> bool:
    try:
        importlib.import_module("mesh.paper.compare")
    except ImportError:
        return False
    return True


async def test_sessions_that_cannot_be_read_are_counted_and_markup_is_drawn_as_sent(
    bus: Bus, mesh_config: Config
) -> None:
    pub = Publisher("strategy", mesh_config.bus_pub)
    hostile = [
        "not a session",
        session("lots", positions={"AAPL": "lots"}),
        session("[b]bold[/b]", state="[red]running", cash="NaN", error="\x1b[2J"),
    ]
    app = make_app(mesh_config)
    async with app.run_test(size=(180, 48)) as pilot:
        await show_strategies(app, pilot)
        table = app.query_one("#paper-sessions", DataTable)
        stats = Stats(service="strategy", stats={"sessions": hostile})
        await publish_until(
            pilot, lambda: pub.publish(topics.stats("strategy"), stats), lambda: table.row_count
        )
        assert table.row_count == 1
        shown = cells(table, "[b]bold[/b]")
        assert (shown["Session"], shown["State"], shown["Cash"]) == (
            "[b]bold[/b]",
            "[RED]RUNNING",
            "—",
        )
        assert app.feed.skipped["paper"] >= 1
    pub.close()


async def test_a_finished_session_reported_without_its_numbers_is_shown_with_dashes(
    bus: Bus, mesh_config: Config
) -> None:
    """After a restart the service reports a session it finished before from its journal: no
    cash, equity, positions or counts, and its fill mode where the count of fills would be."""
    pub = Publisher("strategy", mesh_config.bus_pub)
    finished = {
        "name": "yesterday", "strategy": "momentum", "params": {}, "symbols": ["SPY"],
        "interval": "1m", "fills": "quotes", "state": "stopped", "error": "", "started_ns": T0,
        "stopped_ns": T0 + 60 * MINUTE, "recording": "paper-yesterday", "initial_cash": 100_000.0,
        "lost": "",
    }  # fmt: skip
    app = make_app(mesh_config)
    async with app.run_test(size=(180, 48)) as pilot:
        await show_strategies(app, pilot)
        table = app.query_one("#paper-sessions", DataTable)
        stats = Stats(service="strategy", stats={"sessions": [finished]})
        await publish_until(
            pilot, lambda: pub.publish(topics.stats("strategy"), stats), lambda: table.row_count
        )
        shown = cells(table, "yesterday")
        assert shown["State"] == "STOPPED" and shown["Positions"] == "flat"
        assert [shown[k] for k in ("Cash", "Equity", "P&L", "Fills")] == ["—"] * 4
        assert "stopped 14:20:00" in str(app.query_one("#paper-detail", Static).render())
        assert not app.feed.skipped
    pub.close()


@pytest.fixture
def strategy_service(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/tui/fake_services.py"), "strategy"],
        env=mesh_environ,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if control.call(mesh_config.bus_ctl, "bus", "services").get("strategy", {}).get("up"):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the strategy service did not come up")
        yield proc
    finally:
        proc.terminate()
        proc.wait(5)


async def fill_form(app: MassiveTui, pilot: Any, name: str, params: str = "") -> None:
    picker = app.query_one("#paper-strategy", Select)
    await wait_until(pilot, lambda: picker._options and len(picker._options) > 1)
    picker.value = "ma-crossover"
    app.query_one("#paper-name", Input).value = name
    app.query_one("#paper-params", Input).value = params
    app.query_one("#paper-symbols", Input).value = "aapl, msft"
    app.query_one("#paper-interval", Select).value = "1s"


async def test_start_and_stop_a_session_on_the_strategy_service(
    strategy_service: subprocess.Popen[bytes], mesh_config: Config
) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(180, 48)) as pilot:
        await show_strategies(app, pilot)
        table = app.query_one("#paper-sessions", DataTable)
        await fill_form(app, pilot, "ma-1s", "fast=abc")
        await pilot.click("#paper-start")
        await wait_until(pilot, lambda: line(app).startswith("Bad parameter"))
        assert "fast='abc': expected a whole number" in line(app)

        app.query_one("#paper-params", Input).value = "fast=3 slow=8"
        await pilot.click("#paper-start")
        await wait_until(pilot, lambda: line(app) == "ma-1s started: running")
        await wait_until(pilot, lambda: table.row_count == 1)
        assert cells(table, "ma-1s")["State"] == "RUNNING"
        assert control.call(mesh_config.bus_ctl, "strategy", "received") == [
            [
                "start",
                {
                    "name": "ma-1s",
                    "strategy": "ma-crossover",
                    "interval": "1s",
                    "symbols": ["AAPL", "MSFT"],
                    "params": {"fast": 3, "slow": 8},
                },
            ]
        ]

        await pilot.click("#paper-stop")
        await wait_until(pilot, lambda: line(app) == "ma-1s stopped: stopped")
        await wait_until(pilot, lambda: cells(table, "ma-1s")["State"] == "STOPPED")
        assert control.call(mesh_config.bus_ctl, "strategy", "received")[-1] == ["stop", "ma-1s"]

        await pilot.click("#paper-compare")
        if not compare_installed():
            await wait_until(pilot, lambda: line(app).startswith("Compare is not available"))
            assert "this installation has no mesh.paper.compare" in line(app)
        else:  # the comparison itself runs: its summary, or why it could not be made
            await wait_until(pilot, lambda: line(app).startswith("compare ma-1s"), 60)


async def test_start_and_stop_without_a_strategy_service_say_so_in_one_line(
    bus: Bus, mesh_config: Config
) -> None:
    pub = Publisher("strategy", mesh_config.bus_pub)
    app = make_app(mesh_config)
    async with app.run_test(size=(180, 48)) as pilot:
        await show_strategies(app, pilot)
        assert line(app, "#paper-service").startswith("The strategy service is not running")
        await fill_form(app, pilot, "ma-1s")
        await pilot.click("#paper-start")
        await wait_until(pilot, lambda: "not running" in line(app))
        assert line(app) == (
            "The strategy service is not running, so ma-1s cannot be started from here: "
            "start it with `massive run strategy` (or the whole mesh with F5)."
        )

        # sessions it reported before it went away can be seen, not stopped
        table = app.query_one("#paper-sessions", DataTable)
        stats = Stats(service="strategy", stats={"sessions": [session("ma-aapl")]})
        await publish_until(
            pilot, lambda: pub.publish(topics.stats("strategy"), stats), lambda: table.row_count
        )
        assert "as it last reported them" in line(app, "#paper-service")
        await pilot.click("#paper-stop")
        await wait_until(pilot, lambda: "cannot be stopped" in line(app))
        assert line(app).startswith("The strategy service is not running, so ma-aapl cannot be")
    pub.close()


# --- snapshot ----------------------------------------------------------------------------------


COMPARED = {
    "matched": 12, "live_only": 1, "backtest_only": 0, "pnl_live": -200.0, "pnl_backtest": -187.5,
    "pnl_difference": -12.5, "exact": False,
    "explanations": ["1 live fill at 13:21:04 waited 3.2 s for a quote the backtest had at once"],
}  # fmt: skip


def test_strategies_view(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = fixed_app(tmp_path)
    app.mesh.apply_heartbeat(
        Heartbeat(
            service="strategy",
            instance="0000",
            pid=1000,
            state="ok",
            started=NOW - 60_000_000_000,
            interval=1.0,
            counters={},
            message="",
        )
    )
    app.paper.apply_stats(Stats(service="strategy", stats={"sessions": SESSIONS}))
    for fill in fills():
        app.paper.apply_fill(fill)
    for pnl in pnls():
        app.paper.apply_pnl(pnl)

    async def fill_view(pilot) -> None:  # type: ignore[no-untyped-def]
        view = await show_strategies(pilot.app, pilot)
        picker = pilot.app.query_one("#paper-strategy", Select)
        await wait_until(pilot, lambda: picker._options and len(picker._options) > 1)
        picker.value = "ma-crossover"
        pilot.app.query_one("#paper-name", Input).value = "ma-msft"
        pilot.app.query_one("#paper-params", Input).value = "fast=3 slow=8"
        view.tick()
        view.say(compare_summary("broken", COMPARED))
        await pilot.pause(0.3)
        await pilot.wait_for_scheduled_animations()

    assert snap_compare(app, terminal_size=(160, 44), run_before=fill_view)


def test_a_symbol_not_yet_heard_counts_its_share_of_the_starting_cash_in_the_curve() -> None:
    from mesh.schema import Stats
    from tui.state import PaperState

    paper = PaperState()
    session = {"name": "two", "strategy": "ma-crossover", "symbols": ["AAPL", "MSFT"],
               "interval": "1s", "state": "running", "initial_cash": 100_000.0}  # fmt: skip
    paper.apply_stats(Stats(service="strategy", stats={"sessions": [session]}))
    paper.apply_pnl(
        Pnl(name="two", symbol="AAPL", ts=T0, position=0.0, cash=50_100.0, equity=50_100.0,
            initial_cash=50_000.0, fills=0)
    )  # fmt: skip
    times, equity = paper.equity_curve("two")
    assert (times, equity) == ([T0], [100_100.0])  # not 50,100: MSFT has not reported yet
