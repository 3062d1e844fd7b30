"""The Live board with a real sim and fetcher: each symbol's company name, its change from the
previous close (REST's prev close against the last trade), and the market's state at the sim's
played clock in the header; a quota that refuses the names says so on the board's line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from massive import RESTClient

from tests.meshproc import Mesh
from tui.app import MassiveTui, make_app
from tui.views.live import LiveView

SYMBOLS = "AAPL,MSFT"


async def wait_until(pilot, predicate, timeout: float = 45.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError("condition not met in time")


def _start(mesh: Mesh, at: str) -> None:
    mesh.point_at_sim()
    mesh.start("bus")
    mesh.wait_up(["bus"], 20)
    mesh.start("sim", *mesh.sim_args("--at", at, "--symbols", SYMBOLS))
    mesh.start("fetcher")
    mesh.start("ingest", "--subscriptions", "Q.*,T.*")
    mesh.wait_up(["sim", "fetcher", "ingest"], 60)


def _line(app: MassiveTui) -> str:
    return str(app.query_one("#market-line").render())


async def test_the_board_shows_names_change_from_the_previous_close_and_the_market_state(
    tmp_path: Path,
) -> None:
    with Mesh(tmp_path / "data", {"MASSIVE_REST_CALLS_PER_MINUTE": "100"}) as mesh:
        _start(mesh, "2026-12-04T10:00")
        rest = RESTClient(
            api_key="sim-demo-key", base=f"http://127.0.0.1:{mesh.sim_ports['rest']}", retries=0
        )
        app = make_app(mesh.config, show_clock=False)
        async with app.run_test(size=(140, 30)) as pilot:
            market = app.market
            await wait_until(
                pilot,
                lambda: "AAPL" in market.last and market.reference.previous_close.get("AAPL"),
            )
            prev = rest.get_previous_close_agg("AAPL")[0]
            name = rest.get_ticker_details("AAPL").name
            row = market.row("AAPL")
            assert row.name == name and name
            assert market.reference.previous_close["AAPL"] == prev.close
            assert row.last == market.last["AAPL"][0]
            assert row.change == pytest.approx(row.last - prev.close)
            assert row.change_pct == pytest.approx(100 * (row.last / prev.close - 1))
            assert "market open at 10:0" in app.sub_title
            assert "market open at 10:0" in _line(app)
            assert "change from the close of 2026-12-03" in _line(app)
            board = app.query_one(LiveView).board
            await pilot.pause(0.3)
            drawn = "".join(
                seg.text for seg in board.render_line(1 + board.rows.symbols.index("AAPL"))
            )
            assert name[:17] in drawn and f"{row.change:+.2f}"[:4] in drawn


async def test_a_quota_that_refuses_the_names_says_so_above_the_board(tmp_path: Path) -> None:
    with Mesh(tmp_path / "data", {"MASSIVE_REST_CALLS_PER_MINUTE": "2"}) as mesh:
        _start(mesh, "2026-12-04T08:00")
        app = make_app(mesh.config, show_clock=False)
        async with app.run_test(size=(140, 30)) as pilot:
            reference = app.market.reference
            await wait_until(pilot, lambda: reference.refused)
            line = _line(app)
            assert "REST quota refused names/previous closes" in line
            assert "per-minute limit" in line
            assert "market pre-market at 08:0" in line  # what it could read, it shows
            assert reference.names == {}
