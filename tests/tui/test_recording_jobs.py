"""The Recording view's Reconcile and Heal against a real bus, the real fetcher service and the
simulator: the selected session is reconciled (found incomplete), then healed, the job's result
line shows, and the session's audit columns follow; without a fetcher, one line says so."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from mesh.bus import Bus
from mesh.config import Config
from mesh.schema import JobUpdate
from tests.fetcher.test_service_reconcile import record_played
from tests.tui.test_dashboard import wait_until
from tests.tui.test_history_view import fetcher, sim  # noqa: F401 - fixtures
from tui.app import MassiveTui, make_app
from tui.views.recording import RecordingView


@pytest.fixture
def mesh_environ(mesh_environ: dict[str, str]) -> dict[str, str]:
    """The test's mesh, with the fetcher's automatic mode off: the view's buttons do the work."""
    return {**mesh_environ, "MESH_AUTO_RECONCILE": "off"}


def line(app: MassiveTui) -> str:
    return str(app.query_one("#audit-job", Static).render())


def columns(app: MassiveTui, session: str) -> dict[str, str]:
    table = app.query_one("#sessions", DataTable)
    names = [str(c.label) for c in table.columns.values()]
    return dict(zip(names, map(str, table.get_row(session)), strict=True))


async def open_session(pilot: Any, session: str) -> RecordingView:
    await pilot.press("2")
    view = pilot.app.query_one(RecordingView)
    table = pilot.app.query_one("#sessions", DataTable)
    await wait_until(pilot, lambda: table.row_count == 1)
    table.move_cursor(row=table.get_row_index(session))
    return view


async def test_reconcile_then_heal_the_selected_session_shows_each_job_and_its_audit(
    fetcher: subprocess.Popen[str],  # noqa: F811
    mesh_config: Config,
) -> None:
    record_played(Path(mesh_config.data_dir), "holed", hole=True)
    app = make_app(mesh_config)
    async with app.run_test(size=(200, 40)) as pilot:
        view = await open_session(pilot, "holed")
        assert columns(app, "holed")["Reconciled"] == "not reconciled"
        await wait_until(pilot, lambda: app.mesh.is_up("fetcher"), 20)
        shown: list[str] = []
        apply_job = app.mesh.apply_job

        def draw_each_update(update: JobUpdate) -> None:  # what the view draws for every update
            apply_job(update)
            if view.job is not None and update.job_id == view.job.job_id:
                view._watch_job()
                shown.append(line(app))

        setattr(app.mesh, "apply_job", draw_each_update)  # noqa: B010
        await pilot.click("#session-reconcile")
        await wait_until(pilot, lambda: line(app).startswith("done reconcile holed"), 60)
        assert view.job is not None and view.job.job_id.startswith("reconcile-")
        assert "holed: incomplete" in line(app) and "by flat_file" in line(app)
        running = [s for s in shown if s.startswith("running reconcile holed")]
        assert running and "%" in running[-1] and "trades_v1" in "".join(running), shown
        await wait_until(pilot, lambda: columns(app, "holed")["Reconciled"] != "not reconciled")
        assert "100%" not in columns(app, "holed")["Reconciled"].split(",")[0]

        app.query_one("#sessions", DataTable).focus()
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: line(app).startswith("done heal holed"), 60)
        assert "reconciled again: complete" in line(app)
        await wait_until(
            pilot, lambda: columns(app, "holed")["Reconciled"] == "trades 100%, quotes 100%"
        )
        assert columns(app, "holed")["Healed"].startswith("healed ")


async def test_without_the_fetcher_one_line_says_it_is_not_running(
    bus: Bus, mesh_config: Config
) -> None:
    record_played(Path(mesh_config.data_dir), "friday")
    app = make_app(mesh_config)
    async with app.run_test(size=(200, 40)) as pilot:
        await open_session(pilot, "friday")
        await pilot.click("#session-heal")
        await wait_until(pilot, lambda: "The fetcher is not running" in line(app))
        assert "massive run fetcher" in line(app) and "massive heal friday" in line(app)
