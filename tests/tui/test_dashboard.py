"""The dashboard against a real bus: quotes appear and update, buttons send the right commands and
show the answer, and a service that stops is shown as down."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Button, DataTable, Input

from mesh import control, topics
from mesh.bus import Bus
from mesh.client import Publisher
from mesh.config import Config
from mesh.schema import Quote, QuoteBatch, Trade, TradeBatch
from tui.app import MassiveTui, make_app

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_763_800_000_000_000_000


def quotes(bid: float, symbols: tuple[str, ...] = ("AAPL", "MSFT")) -> QuoteBatch:
    return QuoteBatch.from_rows(
        [
            Quote(
                symbol=s,
                bid_price=bid + i,
                bid_size=100,
                ask_price=bid + i + 0.02,
                ask_size=200,
                bid_exchange=1,
                ask_exchange=2,
                ts_event=T0,
                ts_recv=T0,
            )
            for i, s in enumerate(symbols)
        ]
    )


def toasts(app: MassiveTui) -> list[str]:
    """The pop-ups shown so far, those that expired too (tests/tui/conftest.py)."""
    shown = app.__dict__.get("toasts_shown", [])
    return [*shown, *(n.message for n in app._notifications if n.message not in shown)]


async def wait_until(pilot, predicate, timeout: float = 25.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def services(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs = {
        kind: subprocess.Popen(
            [sys.executable, str(ROOT / "tests/tui/fake_services.py"), kind],
            env=mesh_environ,
            cwd=ROOT,
        )
        for kind in ("ingest", "recorder")
    }
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        report = control.call(mesh_config.bus_ctl, "bus", "services")
        if all(report.get(k, {}).get("up") for k in procs):
            break
        time.sleep(0.1)
    yield procs
    for proc in procs.values():
        proc.terminate()
        proc.wait(5)


async def test_quotes_appear_on_the_board_and_update(bus: Bus, mesh_config: Config) -> None:
    pub = Publisher("test", mesh_config.bus_pub)
    app = make_app(mesh_config)
    async with app.run_test(size=(120, 40)) as pilot:
        board = app.query_one("#board")

        def publish_until(bid: float) -> bool:
            pub.publish(topics.quotes(), quotes(bid))
            return any(r.symbol == "AAPL" and r.bid == bid for r in board.rows)

        await wait_until(pilot, lambda: publish_until(100.0))
        assert [r.symbol for r in board.rows] == ["AAPL", "MSFT"]
        pub.publish(topics.quotes(), quotes(101.5))
        pub.publish(
            topics.trades(),
            TradeBatch.from_rows(
                [
                    Trade(
                        symbol="MSFT",
                        price=102.0,
                        size=300,
                        exchange=1,
                        trade_id="1",
                        ts_event=T0 + 1,
                        ts_recv=T0,
                    )
                ]
            ),
        )
        await wait_until(
            pilot,
            lambda: (
                any(r.symbol == "AAPL" and r.bid == 101.5 for r in board.rows)
                and any(r.symbol == "MSFT" and r.volume == 300 for r in board.rows)
            ),
        )
        aapl = next(r for r in board.rows if r.symbol == "AAPL")
        assert aapl.direction == 1 and round(aapl.spread, 2) == 0.02
        msft = next(r for r in board.rows if r.symbol == "MSFT")
        assert msft.last == 102.0
        # typing filters the board
        board.focus()
        await pilot.press("m", "s")
        await pilot.pause(0.2)
        assert [r.symbol for r in board.rows] == ["MSFT"]
    pub.close()


async def test_add_and_remove_buttons_send_subscriptions_and_show_the_reply(
    services: dict, mesh_config: Config
) -> None:  # type: ignore[type-arg]
    app = make_app(mesh_config)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#symbols", Input).value = "amd, intc"
        await pilot.click("#subscribe")
        await wait_until(pilot, lambda: any("Subscribed to AMD, INTC" in t for t in toasts(app)))
        assert control.call(mesh_config.bus_ctl, "ingest", "received") == [
            ["subscribe", ["Q.AMD", "T.AMD", "Q.INTC", "T.INTC"]]
        ]
        app.query_one("#symbols", Input).value = "AMD"
        await pilot.click("#unsubscribe")
        await wait_until(pilot, lambda: any("not subscribed to that" in t for t in toasts(app)))
        assert control.call(mesh_config.bus_ctl, "ingest", "received")[-1] == [
            "unsubscribe",
            ["Q.AMD", "T.AMD"],
        ]


async def test_recording_buttons_send_start_and_stop_and_show_errors(
    services: dict, mesh_config: Config
) -> None:  # type: ignore[type-arg]
    app = make_app(mesh_config)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await pilot.pause(0.3)  # let the view switch settle before clicking into it
        await pilot.click("#record-start")
        await wait_until(pilot, lambda: any("Give the session a name" in t for t in toasts(app)))
        app.query_one("#session-name", Input).value = "morning"
        app.query_one("#session-symbols", Input).value = "aapl,msft"
        await pilot.click("#record-start")
        await wait_until(pilot, lambda: any("recorder start: ok" in t for t in toasts(app)))
        await pilot.click("#record-stop")
        await wait_until(pilot, lambda: any("no session is recording" in t for t in toasts(app)))
        assert control.call(mesh_config.bus_ctl, "recorder", "received") == [
            ["start", "morning", "AAPL,MSFT"],
            ["stop"],
        ]


async def test_a_command_to_a_missing_service_shows_the_error(
    bus: Bus, mesh_config: Config
) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#symbols", Input).value = "AMD"
        await pilot.click("#subscribe")
        await wait_until(pilot, lambda: any("'ingest' is not registered" in t for t in toasts(app)))


async def test_a_stopped_service_is_shown_as_down(services: dict, mesh_config: Config) -> None:  # type: ignore[type-arg]
    app = make_app(mesh_config)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause(0.3)
        table = app.query_one("#services", DataTable)

        def status_of(name: str) -> str:
            try:
                return str(table.get_cell(name, table.ordered_columns[1].key))
            except Exception:
                return ""

        await wait_until(pilot, lambda: status_of("recorder") == "UP")
        services["recorder"].terminate()
        services["recorder"].wait(5)
        await wait_until(pilot, lambda: status_of("recorder") == "DOWN", timeout=8)
        assert status_of("ingest") == "UP" and status_of("bus") == "UP"


async def test_without_a_mesh_it_says_so_and_offers_to_start_one(mesh_config: Config) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(120, 40)) as pilot:
        banner = app.query_one("#no-mesh")
        await wait_until(pilot, lambda: banner.display, timeout=6)
        assert mesh_config.bus_sub in str(app.query_one("#no-mesh-text").render())
        assert app.query_one("#start-mesh", Button).label.plain.startswith("Start one here")


async def test_mesh_option_starts_the_procfile_services_and_stops_them_on_exit(
    mesh_config: Config,
    mesh_environ: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in mesh_environ.items():
        monkeypatch.setenv(key, value)
    procfile = tmp_path / "Procfile"
    procfile.write_text("bus: massive run bus\n")
    app = make_app(mesh_config, start_mesh=True, procfile=procfile)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.mesh.bus_up, timeout=15)
        await pilot.press("5")
        log_lines = "\n".join(str(line) for line in app.query_one("#log").lines)
        assert "started: massive run bus" in log_lines
        assert app.children_procs is not None and app.children_procs.running
        pid = app.children_procs.procs["bus"].pid
    assert not app.children_procs.running
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
