"""Backtest: pick a dataset and strategies, run them on the backtester service, and compare the
equity curves, the metrics side by side and the trades.

Everything goes through the `backtester` service's control commands (`datasets`, `strategies`,
`run`, `result`, `cancel`, `jobs`); progress comes from its `job.<id>` updates on the bus, which
the feed keeps in `MeshState.jobs`. Commands run as workers, so the screen never waits on them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, SelectionList, Static

from mesh.replies import BacktestJob, BacktestQueued, UnreadableReply, read
from mesh.schema import JobState
from tui.untrusted import finite, literal
from tui.widgets.backtest_results import (
    EquityPlot,
    MetricsTable,
    TradesTable,
    dataset_key,
    dataset_row,
    parse_options,
    parse_params,
    trades_caption,
)

SERVICE = "backtester"
POLL_SECONDS = (
    2.0  # ask the backtester directly when the bus has said nothing of a job for this long
)
NOT_RUNNING = ("is not registered", "is not connected", "no answer from the bus")


def not_running_message(error: str) -> str:
    return f"The backtester is not running ({error}). Start it with `massive run backtester`, or F5 to start the whole mesh; then Reload."


class BacktestView(Vertical):
    """Datasets and strategies to choose from, a Run button, progress, and the results."""

    MAIN_WIDGET = "#bt-datasets"  # focused when the view is shown (not an Input: number keys still switch views)
    BINDINGS = [
        Binding("ctrl+r", "run", "Run backtest"),
        Binding("ctrl+l", "reload", "Reload lists"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.datasets: list[dict[str, Any]] = []
        self.strategies: list[dict[str, Any]] = []
        self.loaded = False
        self._loading = False
        self._load_failed_at = 0.0
        self.job_id: str | None = None
        self._job_seen = 0.0  # monotonic time of the last news of the job
        self._job_done = False
        self._last_job: object = None
        self._polling = False
        self.result: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="bt-setup"):
            with Vertical(id="bt-data-pane"):
                yield Label("Datasets (recordings and history)", classes="bt-title")
                yield DataTable(id="bt-datasets", cursor_type="row", zebra_stripes=True)
            with Vertical(id="bt-strategy-pane"):
                yield Label("Strategies (space picks)", classes="bt-title")
                yield SelectionList[str](id="bt-strategies")
        with Horizontal(classes="controls"):
            yield Input(
                placeholder="params: fast=10 slow=50, ma-crossover.fast=10, fast=5,10 sweeps",
                id="bt-params",
            )
            yield Input(
                placeholder="options: interval=5m commission_bps=1 symbols=AAPL", id="bt-options"
            )
            yield Button("Run", id="bt-run", variant="success")
            yield Button("Cancel", id="bt-cancel", variant="error")
            yield Button("Reload", id="bt-reload")
        yield Static("", id="bt-hint")
        with Horizontal(id="bt-progress-row"):
            yield Static(
                "Pick a dataset and one or more strategies, then Run (ctrl+r).", id="bt-status"
            )
            yield ProgressBar(total=1.0, show_eta=False, id="bt-progress")
        with Horizontal(id="bt-results"):
            yield EquityPlot(id="bt-plot")
            yield MetricsTable(id="bt-metrics", cursor_type="column", zebra_stripes=True)
        yield Label(trades_caption(None), id="bt-trades-caption")
        yield TradesTable(id="bt-trades", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#bt-datasets", DataTable).add_columns(
            "Name", "Kind", "Symbols", "Start (UTC)", "End (UTC)", "Rows"
        )
        self.query_one(EquityPlot).show([])

    # --- called by the app ---------------------------------------------------------------------------

    def tick(self) -> None:
        """At most ten times a second while shown: load the lists once, follow the running job."""
        mesh = self.app.mesh  # type: ignore[attr-defined]
        if not self.loaded and not self._loading:
            retry = self._load_failed_at == 0.0 or (
                mesh.is_up(SERVICE) and time.monotonic() - self._load_failed_at > 1.0
            )
            if retry:
                self.action_reload()
        if self.job_id and not self._job_done:
            job = mesh.jobs.get(self.job_id)
            if job is not None and job is not self._last_job:
                self._last_job = job
                self._follow(job.state, job.progress, job.message, job.result)
            if (
                not self._job_done
                and not self._polling
                and time.monotonic() - self._job_seen > POLL_SECONDS
            ):
                self._polling = True
                self.run_worker(self._poll_job(self.job_id), group="bt-commands")

    # --- showing ---------------------------------------------------------------------------------------

    def set_status(self, message: str, error: bool = False) -> None:
        status = self.query_one("#bt-status", Static)
        status.update(literal(message))
        status.set_class(error, "error")

    def error(self, message: str) -> None:
        self.set_status(message, error=True)
        self.app.notify(message, severity="error", timeout=10)

    def show_datasets(self, datasets: list[dict[str, Any]]) -> None:
        self.datasets = list(datasets)
        table = self.query_one("#bt-datasets", DataTable)
        current = self.selected_dataset()
        table.clear()
        for i, d in enumerate(self.datasets):
            table.add_row(*(literal(cell, limit=80) for cell in dataset_row(d)), key=str(i))
        names = [d.get("name") for d in self.datasets]
        if current and current.get("name") in names:
            table.move_cursor(row=names.index(current.get("name")))

    def show_strategies(self, strategies: list[dict[str, Any]]) -> None:
        self.strategies = list(strategies)
        picker: SelectionList[str] = self.query_one("#bt-strategies", SelectionList)
        chosen = set(picker.selected)
        picker.clear_options()
        for s in self.strategies:
            picker.add_option((literal(s["name"], limit=60), s["name"], s["name"] in chosen))
        if self.strategies:
            self._show_hint(self.strategies[0]["name"])

    def show_result(self, result: dict[str, Any]) -> None:
        """The runs' curves, metrics and trades; a result not shaped as the backtester sends it is
        reported as such (it may have come from anyone on the bus) and shows nothing."""
        try:
            runs = [run for run in result.get("runs") or [] if isinstance(run, dict)]
            self.result = {**result, "runs": runs}
            self.query_one(EquityPlot).show(runs)
            self.query_one(MetricsTable).show(runs)
            self._show_trades(0)
        except Exception as exc:  # noqa: BLE001 - a malformed result must not end the dashboard
            self.result = None
            self.query_one(EquityPlot).show([])
            self.query_one(MetricsTable).show([])
            self._show_trades(0)
            self.set_status(f"the result could not be shown: {exc!r}", error=True)

    def _show_trades(self, index: int) -> None:
        runs = list((self.result or {}).get("runs") or [])
        run = runs[index] if 0 <= index < len(runs) else None
        try:
            self.query_one(TradesTable).show(run)
            caption = trades_caption(run)
        except Exception as exc:  # noqa: BLE001 - as in show_result
            self.query_one(TradesTable).show(None)
            caption = f"the trades could not be shown: {exc!r}"
        self.query_one("#bt-trades-caption", Label).update(literal(caption))

    def _show_hint(self, name: str | None) -> None:
        strategy = next((s for s in self.strategies if s["name"] == name), None)
        if strategy is None:
            return
        params = "  ".join(
            f"{p['name']}={p['default']}"
            + (f" ({'|'.join(p['choices'])})" if p.get("choices") else "")
            for p in strategy.get("params", [])
        )
        self.query_one("#bt-hint", Static).update(
            literal(f"{name}: {params or 'no parameters'} — {strategy.get('description', '')}")
        )

    def selected_dataset(self) -> dict[str, Any] | None:
        table = self.query_one("#bt-datasets", DataTable)
        if not self.datasets or table.row_count == 0:
            return None
        row = table.cursor_row
        return self.datasets[row] if 0 <= row < len(self.datasets) else None

    # --- events ----------------------------------------------------------------------------------------

    @on(SelectionList.SelectionHighlighted, "#bt-strategies")
    def _highlighted(self, event: SelectionList.SelectionHighlighted) -> None:  # type: ignore[type-arg]
        self._show_hint(str(event.selection.value))

    @on(DataTable.ColumnHighlighted, "#bt-metrics")
    def _run_picked(self, event: DataTable.ColumnHighlighted) -> None:
        self._show_trades(max(event.cursor_column - 1, 0))

    @on(Button.Pressed, "#bt-run")
    @on(Input.Submitted, "#bt-params, #bt-options")
    def action_run(self) -> None:
        dataset = self.selected_dataset()
        if dataset is None:
            if self.loaded:
                self.error(
                    "No dataset to run on: the backtester lists none yet (record a session, or fetch history with `massive fetch`)."
                )
            else:
                self.error(
                    "No dataset selected: the datasets are not loaded yet (is the backtester running? Reload)."
                )
            return
        if dataset.get("error"):
            self.error(f"Dataset {dataset.get('name')} cannot be read: {dataset['error']}")
            return
        strategies = list(self.query_one("#bt-strategies", SelectionList).selected)
        if not strategies:
            self.error("Pick one or more strategies first (space in the strategies list).")
            return
        params_text = self.query_one("#bt-params", Input).value
        options_text = self.query_one("#bt-options", Input).value
        self.run_worker(
            self._run(dataset_key(dataset, self.datasets), strategies, params_text, options_text),
            group="bt-commands",
        )

    @on(Button.Pressed, "#bt-cancel")
    def _cancel(self) -> None:
        if not self.job_id or self._job_done:
            self.app.notify("No backtest is running.", severity="warning")
            return
        self.run_worker(self._send_cancel(self.job_id), group="bt-commands")

    @on(Button.Pressed, "#bt-reload")
    def action_reload(self) -> None:
        self._loading = True
        self.run_worker(self._load(), group="bt-load", exclusive=True)

    # --- commands (workers) ----------------------------------------------------------------------------

    async def _call(
        self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> Any:
        return await self.app.feed.call(SERVICE, cmd, args or {}, timeout=timeout)  # type: ignore[attr-defined]

    async def _load(self) -> None:
        try:
            datasets, strategies = await asyncio.gather(
                self._call("datasets", timeout=10.0), self._call("strategies")
            )
            for reply in (datasets, strategies):
                if not reply.ok:
                    self._load_failed_at = time.monotonic()
                    self.loaded = False
                    not_running = any(s in reply.error for s in NOT_RUNNING)
                    self.set_status(
                        not_running_message(reply.error)
                        if not_running
                        else f"backtester: {reply.error}",
                        error=True,
                    )
                    return
            self.show_datasets(datasets.result)
            self.show_strategies(strategies.result)
            self.loaded = True
            if not self.job_id:
                count = len(self.datasets)
                self.set_status(
                    f"{count} dataset(s), {len(self.strategies)} strategies. Pick a dataset and one or more strategies, then Run (ctrl+r)."
                    if count
                    else "The backtester found no datasets: record a session, or fetch history with `massive fetch`; then Reload."
                )
        finally:
            self._loading = False

    async def _run(
        self, dataset: str, strategy: list[str], params_text: str, options_text: str
    ) -> None:
        from mesh.backtest.errors import BacktestError  # light: no numpy

        try:
            params = await asyncio.to_thread(parse_params, params_text)
            options = await asyncio.to_thread(parse_options, options_text)
        except BacktestError as exc:
            self.error(f"Bad parameter: {exc}")
            return
        self.set_status(f"Sending {', '.join(strategy)} on {dataset}…")
        reply = await self._call(
            "run",
            {"dataset": dataset, "strategy": strategy, "params": params, "options": options},
            timeout=10.0,
        )
        if not reply.ok:
            not_running = any(s in reply.error for s in NOT_RUNNING)
            self.error(
                not_running_message(reply.error) if not_running else f"backtester: {reply.error}"
            )
            return
        try:
            queued = read(reply.result, BacktestQueued)
        except UnreadableReply as exc:
            self.error(f"backtester run: {exc}")
            return
        self.job_id = queued.job_id
        self._job_done = False
        self._job_seen = time.monotonic()
        self.query_one("#bt-progress", ProgressBar).update(total=1.0, progress=0.0)
        self.set_status(f"{self.job_id}: {queued.state}, {queued.runs} run(s) on {dataset}")

    async def _send_cancel(self, job_id: str) -> None:
        reply = await self._call("cancel", {"job_id": job_id})
        try:
            job = read(reply.result, BacktestJob) if reply.ok else None
        except UnreadableReply as exc:
            self.error(f"backtester cancel: {exc}")
            return
        if job is None:
            self.error(f"backtester cancel: {reply.error}")
        elif job.state is JobState.RUNNING:
            self.app.notify(f"backtester: {job_id} stops at its next step")
        else:
            self.app.notify(f"backtester cancel {job_id}: {job.state}")

    async def _poll_job(self, job_id: str) -> None:
        """The bus said nothing of the job for a while: ask the backtester."""
        try:
            reply = await self._call("jobs")
            if reply.ok and job_id == self.job_id:
                jobs = read(reply.result, list[BacktestJob])
                job = next((j for j in jobs if j.job_id == job_id), None)
                if job is not None:
                    self._follow(job.state, job.progress, job.error or job.message, {}, polled=True)
        except UnreadableReply as exc:
            self.error(f"backtester jobs: {exc}")
        finally:
            self._job_seen = time.monotonic()
            self._polling = False

    async def _fetch_result(self, job_id: str) -> None:
        reply = await self._call("result", {"job_id": job_id}, timeout=10.0)
        if job_id != self.job_id:
            return
        if reply.ok:
            self.show_result(reply.result)
        else:
            self.error(f"backtester result: {reply.error}")

    # --- the running job -------------------------------------------------------------------------------

    def _follow(
        self,
        state: str,
        progress: float,
        message: str,
        result: dict[str, Any],
        polled: bool = False,
    ) -> None:
        if not polled:
            self._job_seen = time.monotonic()
        bar = self.query_one("#bt-progress", ProgressBar)
        if state == JobState.DONE:
            self._job_done = True
            bar.update(progress=1.0)
            self.set_status(f"{self.job_id}: done — {message}")
            if isinstance(result, dict) and result.get(
                "runs"
            ):  # the bt.result.<id> update carries the whole result
                self.show_result(result)
            else:
                self.run_worker(self._fetch_result(self.job_id or ""), group="bt-commands")
        elif state in (JobState.FAILED, JobState.CANCELLED):
            self._job_done = True
            self.error(
                f"{self.job_id} {state}: {message or (result.get('error', '') if isinstance(result, dict) else '')}"
            )
        else:
            progress = min(max(finite(progress) or 0.0, 0.0), 1.0)
            bar.update(progress=progress)
            self.set_status(
                f"{self.job_id}: {state} {progress:.0%}" + (f" — {message}" if message else "")
            )
