"""The History view against a real bus, the real fetcher service and the simulator's REST and S3:
the plan and its cost before anything runs, a fetch's progress and result, the fetcher's refusal
of bad input, and what the view says when there is no fetcher. Plus its snapshot."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, ProgressBar, Select, Static

from mesh import calendar, client, control
from mesh.bus import Bus
from mesh.config import Config
from mesh.schema import JobUpdate
from tests.conftest import mesh_env
from tests.tui.test_dashboard import toasts, wait_until
from tests.tui.test_snapshots import beat, fixed_app
from tui.app import MassiveTui, make_app
from tui.views.history import HistoryView, QuotaGauge, level

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`massive run sim` on free ports with a small universe, in its own process (it builds the day
    files when the bucket is listed); its REST and S3 URLs, as the fetcher's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    env.update(
        mesh_env(tmp_path_factory.mktemp("sim"))
    )  # a bus of its own that never runs: the sim's heartbeats go nowhere
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mesh.cli",
            "run",
            "sim",
            "--rate",
            "5",
            "--symbols",
            "AAPL,MSFT,SPY",
            "--ws-port",
            "0",
            "--rest-port",
            "0",
            "--s3-port",
            "0",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    urls: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("sim: REST"):
            urls["MASSIVE_REST_URL"] = line.split()[2]
        elif line.startswith("sim: S3"):
            urls["MASSIVE_S3_ENDPOINT"] = line.split()[2]
        if len(urls) == 2:
            break
    assert len(urls) == 2, f"the sim did not start (exit code {proc.poll()})"
    yield urls
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def days() -> list[dt.date]:
    """The last trading days before today (the sim has minute history for them)."""
    today = calendar.today_et()
    return calendar.trading_days(today - dt.timedelta(days=30), today - dt.timedelta(days=1))[-4:]


@pytest.fixture
def fetcher(
    sim: dict[str, str], bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> Iterator[subprocess.Popen[str]]:
    """`massive run fetcher` on the test bus, with REST and S3 at the simulator."""
    env = {
        **mesh_environ,
        **sim,
        "MASSIVE_REST_CALLS_PER_MINUTE": "1000",
        "MASSIVE_REST_CALLS_PER_DAY": "1000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "run", "fetcher"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            client.call("fetcher", "ping", config=mesh_config, timeout=1.0)
            break
        except control.ControlError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(
                    f"fetcher did not come up: {proc.stderr.read() if proc.stderr else ''}"
                ) from None
            time.sleep(0.1)
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


def text_of(app: MassiveTui, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def open_history(pilot: Any) -> HistoryView:
    await pilot.press("3")
    await pilot.pause(0.3)  # let the view switch settle before clicking into it
    return pilot.app.query_one(HistoryView)


def fill(
    app: MassiveTui,
    symbols: str,
    start: object,
    end: object,
    interval: str = "1d",
    method: str = "auto",
) -> None:
    app.query_one("#history-symbols", Input).value = symbols
    app.query_one("#history-start", Input).value = str(start)
    app.query_one("#history-end", Input).value = str(end)
    app.query_one("#history-interval", Select).value = interval
    app.query_one("#history-method", Select).value = method


def test_gauge_levels() -> None:
    assert [level(u, 100) for u in (0, 69, 70, 89, 90, 120)] == [
        "ok",
        "ok",
        "warning",
        "warning",
        "error",
        "error",
    ]
    assert level(10**9, 0) == "ok"  # 0 = no limit


async def test_plan_shows_method_and_cost_then_fetch_shows_progress_result_and_dataset(
    fetcher: subprocess.Popen[str], mesh_config: Config, days: list[dt.date]
) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(130, 40)) as pilot:
        view = await open_history(pilot)
        await wait_until(
            pilot, lambda: app.query_one("#history-body").display and view.quota(), timeout=15
        )
        assert not app.query_one("#history-down").display
        # the quota gauges come from sys.quota
        await wait_until(
            pilot,
            lambda: (
                "0 of 1,000 calls" in str(app.query_one("#gauge-rest-day .gauge-value").render())
            ),
        )

        # Plan: the method, the reason and the cost, and nothing spent
        fill(app, "aapl,msft", days[-3], days[-1], "1h")
        await pilot.click("#history-plan")
        await wait_until(pilot, lambda: "REST call" in text_of(app, "#plan-panel"))
        plan = text_of(app, "#plan-panel")
        assert (
            "method  REST — auto: small query (2 symbols" in plan
            and "up to 2 REST call(s)" in plan
            and "quota   fits" in plan
        )
        assert view.job_id is None and not (mesh_config.data_dir / "historical").exists()

        # Fetch (flat files): the plan first, then the job's progress as its updates arrive
        fill(app, "AAPL,MSFT", days[-4], days[-1], "1h", "flat_file")
        shown: list[tuple[str, float | None, str]] = []
        bar = app.query_one("#job-progress", ProgressBar)
        apply_job = app.mesh.apply_job

        def draw_each_update(
            update: JobUpdate,
        ) -> None:  # what the view draws for every update, however fast they come
            apply_job(update)
            if update.job_id == view.job_id:
                view._show_job()
                shown.append(
                    (
                        update.state,
                        bar.percentage,
                        str(app.query_one("#job-result", Static).render()),
                    )
                )

        setattr(app.mesh, "apply_job", draw_each_update)  # noqa: B010
        await pilot.click("#history-fetch")
        await wait_until(
            pilot, lambda: view.job_id is not None, timeout=20
        )  # the sim builds the day files to list them
        assert "flat files" in text_of(app, "#plan-panel") and "4 day file(s)" in text_of(
            app, "#plan-panel"
        )
        await wait_until(pilot, lambda: view.job_state().get("state") == "done", timeout=20)
        await pilot.pause(0.2)
        running = [s for s in shown if s[0] == "running"]
        assert running and shown[-1][0] == "done", shown
        progress = [p for _, p, _ in running]
        assert all(p is not None and p < 1 for p in progress), (
            shown
        )  # a bar, partly filled, with the job's message
        assert progress == sorted(p or 0.0 for p in progress) and running[-1][2], shown
        assert app.query_one("#job-progress", ProgressBar).percentage == 1.0
        result = text_of(app, "#job-result")
        dataset = f"AAPL-MSFT_1h_{days[-4]}_{days[-1]}"
        assert (
            "rows via flat_file" in result and dataset in result and "method flat files" in result
        )
        assert any(t.startswith("fetch done: ") for t in toasts(app))
        table = app.query_one("#datasets", DataTable)
        await wait_until(pilot, lambda: dataset in [k.value for k in table.rows])
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == dataset
        assert (mesh_config.data_dir / "historical" / dataset / "bars_1h.parquet").is_file()
        # the flat-file bytes now show in the month's gauge
        await wait_until(
            pilot,
            lambda: (
                not str(app.query_one("#gauge-s3-month .gauge-value").render()).startswith("0 B")
            ),
        )
        assert app.query_one("#gauge-s3-month", QuotaGauge).state == "ok"


async def test_bad_input_shows_the_fetchers_error(
    fetcher: subprocess.Popen[str], mesh_config: Config, days: list[dt.date]
) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(130, 40)) as pilot:
        view = await open_history(pilot)
        await wait_until(pilot, lambda: app.query_one("#history-body").display, timeout=15)
        await pilot.click("#history-fetch")
        await wait_until(pilot, lambda: any("Type one or more symbols" in t for t in toasts(app)))
        fill(app, "AAPL", days[-1], days[-3])
        await pilot.click("#history-fetch")
        message = f"end {days[-3]} is before start {days[-1]}"
        await wait_until(pilot, lambda: any(message in t for t in toasts(app)))
        assert message in text_of(app, "#plan-panel")
        assert view.job_id is None and client.call("fetcher", "jobs", config=mesh_config) == []


async def test_without_the_fetcher_the_view_says_it_is_not_running(
    bus: Bus, mesh_config: Config
) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(130, 40)) as pilot:
        await open_history(pilot)
        await wait_until(pilot, lambda: app.query_one("#history-down").display)
        assert "The fetcher is not running" in text_of(
            app, "#history-down"
        ) and "massive run fetcher" in text_of(app, "#history-down")
        assert not app.query_one("#history-body").display
        fill(app, "AAPL", "2025-11-03", "2025-11-04")
        await pilot.click("#history-plan")
        await wait_until(
            pilot, lambda: any("'fetcher' is not registered" in t for t in toasts(app))
        )


# --- snapshot ----------------------------------------------------------------------------------

QUOTA = {
    "rest_calls_minute": 4, "rest_calls_per_minute": 5, "rest_calls_today": 93, "rest_calls_per_day": 100,
    "s3_bytes_month": 2_140_000_000, "s3_files_month": 41, "s3_bytes_per_month": 10_000_000_000,
    "throttled_24h": 0, "refused_24h": 0, "day": "2025-11-22", "month": "2025-11",
    "day_resets": "2025-11-23T00:00:00Z", "month_resets": "2025-12-01T00:00:00Z",
}  # fmt: skip
PLAN = {
    "request": {"symbols": ["AAPL", "MSFT", "NVDA", "SPY", "QQQ", "TSLA"], "start": "2025-11-17", "end": "2025-11-21", "interval": "5m", "method": "auto"},
    "method": "flat_file", "reason": "auto: large query (6 symbols, 5 days; more than 5 symbols), flat files do not use the REST quota",
    "trading_days": 5, "rest_calls": 0, "files": 5, "files_cached": 2, "bytes_total": 312_000_000, "bytes_to_download": 188_000_000,
    "missing_days": [], "flat_files_error": "", "quota": QUOTA, "problems": [], "fits": True,
}  # fmt: skip
DATASETS = [
    {"name": "AAPL-MSFT_1h_2025-11-10_2025-11-14", "symbols": ["AAPL", "MSFT"], "interval": "1h", "start": "2025-11-10", "end": "2025-11-14", "rows": 160, "method": "rest", "rest_calls": 2, "bytes_downloaded": 212_400, "created": "2025-11-21T16:02:11Z"},
    {"name": "SPY_1d_2024-01-02_2025-10-31", "symbols": ["SPY"], "interval": "1d", "start": "2024-01-02", "end": "2025-10-31", "rows": 461, "method": "flat_file", "rest_calls": 0, "bytes_downloaded": 1_950_000_000, "created": "2025-11-20T09:41:55Z"},
]  # fmt: skip


def test_history_view(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = fixed_app(tmp_path)
    app.mesh.apply_heartbeat(beat("fetcher", jobs_running=1))
    app.mesh.quota = QUOTA

    async def fill_view(pilot) -> None:  # type: ignore[no-untyped-def]
        view = await open_history(pilot)
        fill(pilot.app, "AAPL,MSFT,NVDA,SPY,QQQ,TSLA", "2025-11-17", "2025-11-21", "5m")
        view.show_plan(PLAN)
        view.follow_job({"job_id": "f4242-1", "state": "queued", "args": PLAN["request"]})
        app.mesh.apply_job(
            JobUpdate(
                job_id="f4242-1",
                kind="fetch",
                state="running",
                progress=0.45,
                message="downloading 2025-11-19.csv.gz",
            )
        )
        view.show_datasets(DATASETS)
        view.tick()  # draw now rather than at the next redraw, however busy the machine
        await pilot.pause(0.3)
        await pilot.wait_for_scheduled_animations()  # the tab underline slides to History

    assert snap_compare(app, terminal_size=(130, 36), run_before=fill_view)
