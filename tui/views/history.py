"""History: fetch historical bars through the fetcher, with the plan and its cost shown first, the
job's progress and outcome, the quota as gauges, and the datasets already on disk.

Everything goes through the `fetcher` service: `plan` (free: method, reason, REST calls, files,
bytes, whether it fits the quota), `fetch` (queues a job that reports on `job.<id>`, which the feed
keeps in `MeshState.jobs`), `datasets` and `quota`. The quota normally arrives once a second on
`sys.quota` (`MeshState.quota`); the view asks for it only when that goes quiet.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import msgspec
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Select, Static

from mesh import control
from mesh.fetcher.ledger import human_bytes
from mesh.replies import JobView, UnreadableReply, read
from mesh.schema import JobState
from tui.untrusted import amount, clean, finite, literal, number
from tui.widgets.tables import cursor_key

INTERVALS = ("1m", "5m", "15m", "1h", "1d")
METHODS = (("auto", "auto"), ("REST", "rest"), ("flat file", "flat_file"))
WARNING_AT = 0.7  # gauge turns warning at 70% of a limit
ERROR_AT = 0.9  # and error at 90%

DATASETS_EVERY_S = 10.0  # refresh of the datasets table while the view is shown
QUOTA_STALE_S = 5.0  # no sys.quota for this long: ask the fetcher
QUOTA_EVERY_S = 10.0
JOB_CHECK_AFTER_S = 5.0  # no job.<id> update for this long: ask the fetcher about the job
PLAN_TIMEOUT_S = 30.0  # a flat-file plan lists the bucket

FINAL_STATES = frozenset(state for state in JobState if state.finished)


def level(used: float, limit: float) -> str:
    """`ok`, `warning` (>= 70% of the limit) or `error` (>= 90%); a limit of 0 means none."""
    if not limit:
        return "ok"
    share = used / limit
    return "error" if share >= ERROR_AT else "warning" if share >= WARNING_AT else "ok"


def format_plan(plan: dict[str, Any]) -> Text:
    """The fetcher's `plan` answer: what will be fetched, how, why, what it costs, whether it fits."""
    r = plan.get("request", {})
    text = Text()
    text.append(
        f"{','.join(r.get('symbols', []))}  {r.get('start')} .. {r.get('end')}  {r.get('interval')}",
        style="bold",
    )
    text.append(f"  ({plan.get('trading_days', '?')} trading day(s))\n")
    text.append("method  ")
    text.append("flat files" if plan.get("method") == "flat_file" else "REST", style="bold")
    text.append(f" — {plan.get('reason', '')}\n", style="dim")
    text.append("cost    ")
    if plan.get("method") == "flat_file":
        if plan.get("flat_files_error"):
            text.append(f"flat files unavailable: {plan['flat_files_error']}\n", style="yellow")
            text.append(f"        REST instead, up to {plan.get('rest_calls', 0)} call(s)\n")
        else:
            text.append(
                f"{plan.get('files', 0)} day file(s), {human_bytes(plan.get('bytes_total', 0))}; {plan.get('files_cached', 0)} cached, {human_bytes(plan.get('bytes_to_download', 0))} to download\n"
            )
            missing = plan.get("missing_days") or []
            if missing:
                text.append(
                    f"        {len(missing)} day(s) not in the bucket: REST, up to {plan.get('rest_calls', 0)} call(s)\n",
                    style="yellow",
                )
    else:
        text.append(f"up to {plan.get('rest_calls', 0)} REST call(s)\n")
    text.append("quota   ")
    if plan.get("fits", not plan.get("problems")):
        text.append("fits", style="bold green")
    else:
        text.append("WILL NOT FIT", style="bold white on red")
        for problem in plan.get("problems", []):
            text.append(f"\n        {problem}", style="red")
    return text


def format_result(result: dict[str, Any]) -> Text:
    """A finished fetch job's report (from `job.<id>` on the bus: every value is checked before use)."""
    rows = number(result.get("rows", 0))
    text = Text()
    text.append(clean(result.get("summary") or f"{rows} rows", 300), style="bold green")
    method = result.get("method_used") or result.get("method") or "?"
    text.append(
        f"\nmethod {'flat files' if method == 'flat_file' else clean(method, 40)}", style="bold"
    )
    if result.get("reason"):
        text.append(f"  {clean(result['reason'], 300)}", style="dim")
    if result.get("fallback"):
        text.append(f"\nfallback: {clean(result['fallback'], 300)}", style="yellow")
    text.append(
        f"\n{rows} rows   {number(result.get('rest_calls', 0))} REST call(s)   {human_bytes(amount(result.get('bytes_downloaded')))} downloaded"
        f"   {number(result.get('files_downloaded', 0))} file(s) downloaded, {number(result.get('files_cached', 0))} cached"
    )
    if result.get("path"):
        text.append(
            f"\ndataset {clean(result.get('dataset', ''), 100)}  ->  {clean(result['path'], 300)}",
            style="dim",
        )
    return text


def dataset_row(d: dict[str, Any]) -> tuple[str, ...]:
    if d.get("error"):  # a damaged dataset: the one line that names the file at fault
        return (str(d.get("name", "?")), f"DAMAGED: {d['error']}", *([""] * 8))
    symbols = d.get("symbols") or []
    shown = (
        ",".join(symbols[:4]) + ("…" if len(symbols) > 4 else "")
        if isinstance(symbols, list)
        else str(symbols)
    )
    rows = d.get("rows")
    method = str(d.get("method") or "")
    return (
        str(d.get("name", "?")),
        shown,
        str(d.get("interval") or ""),
        str(d.get("start") or ""),
        str(d.get("end") or ""),
        f"{rows:,}" if isinstance(rows, int) else str(rows or ""),
        "flat files" if method == "flat_file" else method,
        str(d.get("rest_calls", "")),
        human_bytes(d["bytes_downloaded"])
        if isinstance(d.get("bytes_downloaded"), int | float)
        else "",
        str(d.get("created") or "")[:19].replace("T", " "),
    )


class QuotaGauge(Horizontal):
    """One quota: a title, a bar against the limit and the numbers; class -warning/-error near it."""

    def __init__(self, title: str, *, id: str) -> None:
        super().__init__(id=id, classes="gauge -ok")
        self.title = title

    def compose(self) -> ComposeResult:
        yield Label(self.title, classes="gauge-title")
        yield ProgressBar(total=1, show_eta=False)
        yield Label("", classes="gauge-value")

    def show(self, used: float, limit: float, text: str) -> None:
        bar = self.query_one(ProgressBar)
        bar.update(total=limit or 1, progress=min(used, limit) if limit else 0)
        state = level(used, limit)
        for name in ("ok", "warning", "error"):
            self.set_class(name == state, f"-{name}")
        self.query_one(".gauge-value", Label).update(literal(text))

    @property
    def state(self) -> str:
        return next((name for name in ("error", "warning") if self.has_class(f"-{name}")), "ok")


class HistoryView(Vertical):
    """The fetch form, its plan, the running job, the quota and the historical datasets."""

    MAIN_WIDGET = "#datasets"  # focused when the view is shown

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_id: str | None = None
        self._job_reply: JobView | None = None  # the fetch command's answer (the queued job)
        self._job_polled: JobView | None = (
            None  # the `job` command's answer, when job.<id> went quiet
        )
        self._job_since = 0.0
        self._job_asked = 0.0
        self._job_shown: tuple[Any, ...] = ()
        self._job_finished: set[str] = set()
        self._quota_reply: dict[str, Any] = {}
        self._quota_reply_ns = 0
        self._quota_asked = float("-inf")
        self._datasets_at = float("-inf")
        self._datasets_key: tuple[Any, ...] | None = None
        self._select_dataset: str | None = None
        self._was_up: bool | None = None
        self._calls_in_flight = 0
        self.plan: dict[str, Any] = {}
        self.datasets: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Horizontal(classes="controls", id="history-form"):
            yield Input(placeholder="symbols, e.g. AAPL,MSFT", id="history-symbols")
            yield Input(
                placeholder="start YYYY-MM-DD",
                id="history-start",
                restrict=r"[0-9-]*",
                max_length=10,
            )
            yield Input(
                placeholder="end YYYY-MM-DD", id="history-end", restrict=r"[0-9-]*", max_length=10
            )
            yield Select(
                [(i, i) for i in INTERVALS], value="1d", allow_blank=False, id="history-interval"
            )
            yield Select(METHODS, value="auto", allow_blank=False, id="history-method")
            yield Button("Plan", id="history-plan", variant="primary")
            yield Button("Fetch", id="history-fetch", variant="success")
        yield Static("", id="history-down")
        with Vertical(id="history-body"):
            with Horizontal(id="history-panels"):
                yield Static(
                    "Fill in the form and press Plan to see the method and what the fetch will cost.",
                    id="plan-panel",
                )
                with Vertical(id="quota-panel"):
                    yield QuotaGauge("REST this minute", id="gauge-rest-minute")
                    yield QuotaGauge("REST today", id="gauge-rest-day")
                    yield QuotaGauge("Flat files (month)", id="gauge-s3-month")
                    yield Static("waiting for the fetcher's quota…", id="quota-note")
            with Vertical(id="job-panel"):
                yield Label(
                    "No fetch yet: Plan shows what it will cost, Fetch runs it.", id="job-title"
                )
                yield ProgressBar(total=1.0, show_eta=False, id="job-progress")
                yield Static("", id="job-result")
            yield DataTable(id="datasets", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#plan-panel").border_title = "Plan"
        self.query_one("#quota-panel").border_title = "Quota"
        self.query_one("#job-panel").border_title = "Job"
        self.query_one("#datasets", DataTable).add_columns(
            "Dataset",
            "Symbols",
            "Interval",
            "From",
            "To",
            "Rows",
            "Method",
            "REST calls",
            "Downloaded",
            "Created",
        )
        self.query_one("#history-down").display = False
        self.set_interval(1.0, self._watch_job)

    def _watch_job(self) -> None:
        """Once a second, shown or not: a fetch that ends while another view is up is still announced."""
        if self.job_id is not None and self.job_id not in self._job_finished and self.size.width:
            try:
                self._show_job()
            except Exception as exc:  # noqa: BLE001 - a job update the view cannot show must not end the dashboard
                self.app.view_failed("history", exc)  # type: ignore[attr-defined]

    # --- redraw (at most 10 Hz, while shown) ------------------------------------------------------

    def tick(self) -> None:
        if not self.size.width:  # not laid out yet
            return
        up = self.app.mesh.is_up("fetcher") or self._calls_in_flight > 0  # type: ignore[attr-defined]
        if self._show_fetcher(up) or not up:
            return  # a bar's fill is rounded to its width when set: draw once the panels are laid out
        self._show_quota()
        self._show_job()
        if self.app.connect:  # type: ignore[attr-defined]
            self._poll()

    def _show_fetcher(self, up: bool) -> bool:
        """The "not running" notice instead of the panels, or the panels; True when that changed."""
        down = self.query_one("#history-down", Static)
        if not up:
            status = self.app.mesh.services.get("fetcher")  # type: ignore[attr-defined]
            if status is None:
                why = "The fetcher is not running"
            else:
                why = f"The fetcher is not running (last heartbeat {(self.app.mesh.clock() - status.last_seen_ns) / 1e9:,.0f} s ago)"  # type: ignore[attr-defined]
            down.update(
                f"{why}: plans, fetches, the quota and the datasets come from it.\nStart it with `massive run fetcher`, or the whole mesh with F5."
            )
        if up != self._was_up:
            self._was_up = up
            down.display = not up
            self.query_one("#history-body").display = up
            return True
        return False

    def _poll(self) -> None:
        """Ask the fetcher for what the bus does not bring, never more than every few seconds."""
        now = time.monotonic()
        if now - self._datasets_at >= DATASETS_EVERY_S:
            self.refresh_datasets()
        mesh = self.app.mesh  # type: ignore[attr-defined]
        quota_age_s = (mesh.clock() - max(mesh.quota_seen_ns, self._quota_reply_ns)) / 1e9
        if quota_age_s >= QUOTA_STALE_S and now - self._quota_asked >= QUOTA_EVERY_S:
            self._quota_asked = now
            self.run_worker(self._ask_quota(), group="history-quota", exclusive=True)
        if (
            self.job_id
            and self.job_id not in self._job_finished
            and now - self._job_since >= JOB_CHECK_AFTER_S
            and now - self._job_asked >= JOB_CHECK_AFTER_S
        ):
            update = mesh.jobs.get(self.job_id)
            if update is None or update.state not in FINAL_STATES:
                self._job_asked = now
                self.run_worker(self._ask_job(self.job_id), group="history-job", exclusive=True)

    async def _call(
        self, cmd: str, args: dict[str, Any] | None = None, **options: Any
    ) -> control.Reply:
        """One command to the fetcher. While it is answering, its missing heartbeats do not mean it
        is gone: a plan that lists a large bucket keeps it busy for a while."""
        self._calls_in_flight += 1
        try:
            return await self.app.feed.call("fetcher", cmd, args, **options)  # type: ignore[attr-defined]
        finally:
            self._calls_in_flight -= 1

    # --- quota ----------------------------------------------------------------------------------

    def quota(self) -> dict[str, Any]:
        """The latest quota snapshot: sys.quota, or the `quota` command's answer if newer."""
        mesh = self.app.mesh  # type: ignore[attr-defined]
        if mesh.quota and (mesh.quota_seen_ns >= self._quota_reply_ns or not self._quota_reply):
            return mesh.quota  # type: ignore[no-any-return]
        return self._quota_reply

    def _show_quota(self) -> None:
        q = self.quota()
        note = self.query_one("#quota-note", Static)
        if not q:
            note.update("waiting for the fetcher's quota…")
            return

        def calls(used: float, limit: float) -> str:
            return f"{used:,.0f} of {limit:,.0f} calls" if limit else f"{used:,.0f} (no limit)"

        # sys.quota comes from the bus: anything not a count is shown as 0
        minute, per_minute = (
            amount(q.get("rest_calls_minute")),
            amount(q.get("rest_calls_per_minute")),
        )
        today, per_day = amount(q.get("rest_calls_today")), amount(q.get("rest_calls_per_day"))
        month, per_month = amount(q.get("s3_bytes_month")), amount(q.get("s3_bytes_per_month"))
        self.query_one("#gauge-rest-minute", QuotaGauge).show(
            minute, per_minute, calls(minute, per_minute)
        )
        self.query_one("#gauge-rest-day", QuotaGauge).show(today, per_day, calls(today, per_day))
        self.query_one("#gauge-s3-month", QuotaGauge).show(
            month,
            per_month,
            f"{human_bytes(month)} of {human_bytes(per_month)}"
            if per_month
            else f"{human_bytes(month)} (no limit)",
        )
        resets = clean(q.get("day_resets", ""), 40)[:16].replace("T", " ")
        notes = [f"{number(q.get('s3_files_month', 0))} file(s) this month"]
        if resets:
            notes.append(f"day resets {resets} UTC")
        if q.get("throttled_24h") or q.get("refused_24h"):
            notes.append(
                f"throttled {number(q.get('throttled_24h', 0))}, refused {number(q.get('refused_24h', 0))} in 24 h"
            )
        note.update(literal("   ".join(notes)))

    async def _ask_quota(self) -> None:
        reply = await self._call("quota")
        if reply.ok and isinstance(reply.result, dict):
            self._quota_reply = reply.result
            self._quota_reply_ns = self.app.mesh.clock()  # type: ignore[attr-defined]

    # --- the form -------------------------------------------------------------------------------

    def form(self) -> dict[str, Any] | None:
        """The fetch arguments from the form, or None (with a hint) when something is missing."""
        symbols = self.query_one("#history-symbols", Input).value.strip().upper()
        start = self.query_one("#history-start", Input).value.strip()
        end = self.query_one("#history-end", Input).value.strip()
        if not symbols:
            self.app.notify("Type one or more symbols first, e.g. AAPL,MSFT", severity="warning")
            return None
        if not start or not end:
            self.app.notify(
                "Give a start and an end date (YYYY-MM-DD, both included)", severity="warning"
            )
            return None
        return {
            "symbols": symbols,
            "start": start,
            "end": end,
            "interval": self.query_one("#history-interval", Select).value,
            "method": self.query_one("#history-method", Select).value,
        }

    @on(Button.Pressed, "#history-plan")
    @on(Input.Submitted)
    def _plan(self) -> None:
        args = self.form()
        if args is not None:
            self.run_worker(self._run(args, fetch=False), group="history-commands")

    @on(Button.Pressed, "#history-fetch")
    def _fetch(self) -> None:
        args = self.form()
        if args is not None:
            self.run_worker(self._run(args, fetch=True), group="history-commands")

    async def _run(self, args: dict[str, Any], *, fetch: bool) -> None:
        """Plan (so the cost is on screen before anything is spent), then fetch if asked."""
        panel = self.query_one("#plan-panel", Static)
        panel.update(Text("asking the fetcher for a plan…", style="dim"))
        reply = await self._call("plan", args, timeout=PLAN_TIMEOUT_S)
        if not reply.ok:
            self._refused("plan", reply.error)
            return
        self.show_plan(reply.result)
        if not fetch:
            return
        # The job is named here, so that its updates are followed from the first one, even if
        # the bus brings some before the fetcher's answer does.
        job_id = f"f-{secrets.token_hex(4)}"
        self.follow_job(JobView(job_id=job_id, state=JobState.QUEUED, kind="fetch", args=args))
        reply = await self._call("fetch", {**args, "job_id": job_id})
        if not reply.ok:
            self.follow_job(
                JobView(
                    job_id=job_id,
                    state=JobState.FAILED,
                    kind="fetch",
                    args=args,
                    message=reply.error,
                )
            )
            self._refused("fetch", reply.error)
            return
        try:
            self.follow_job(read(reply.result, JobView))
        except UnreadableReply as exc:
            self._refused("fetch", str(exc))

    def _refused(self, cmd: str, error: str) -> None:
        self.query_one("#plan-panel", Static).update(
            Text(f"fetcher {cmd}: {error}", style="bold red")
        )
        self.app.notify(f"fetcher {cmd}: {error}", severity="error", timeout=8)

    def show_plan(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        try:
            shown = format_plan(plan)
        except Exception as exc:  # noqa: BLE001 - an answer not shaped as expected is reported, not fatal
            shown = literal(f"the fetcher's plan could not be shown: {exc!r}", "bold red")
        self.query_one("#plan-panel", Static).update(shown)

    # --- the job --------------------------------------------------------------------------------

    def follow_job(self, job: JobView | object) -> None:
        """Show this job (the fetch command's answer, read here if it is not a JobView yet)."""
        view = job if isinstance(job, JobView) else read(job, JobView)
        self.job_id = view.job_id
        self._job_reply = view
        self._job_polled = None
        self._job_since = time.monotonic()
        self._job_shown = ()
        self._show_job()

    def job_view(self) -> JobView | None:
        """The followed job as last heard of: job.<id> on the bus over the fetcher's answers."""
        known = self._job_polled or self._job_reply
        if self.job_id is None or known is None:
            return None
        update = self.app.mesh.jobs.get(self.job_id)  # type: ignore[attr-defined]
        if update is not None and (update.state in FINAL_STATES or known.state not in FINAL_STATES):
            return msgspec.structs.replace(
                known,
                state=update.state,
                progress=update.progress,
                message=update.message,
                result=update.result,
            )
        return known

    def job_state(self) -> dict[str, Any]:
        """`job_view()` as a plain dict ({} before any job)."""
        view = self.job_view()
        return msgspec.structs.asdict(view) if view is not None else {}

    def _show_job(self) -> None:
        job = self.job_view()
        if job is None:
            return
        state, message = clean(job.state, 20), clean(job.message or "", 500)
        progress = min(max(finite(job.progress) or 0.0, 0.0), 1.0)
        key = (self.job_id, state, round(progress, 3), message)
        if key == self._job_shown:
            return
        self._job_shown = key
        args = self._job_reply.args if self._job_reply is not None else {}
        symbols = args.get("symbols", [])
        what = clean(
            f"{','.join(map(str, symbols)) if isinstance(symbols, list) else symbols} {args.get('start', '')} .. {args.get('end', '')} {args.get('interval', '')}".strip(),
            200,
        )
        title = self.query_one("#job-title", Label)
        bar = self.query_one("#job-progress", ProgressBar)
        result = self.query_one("#job-result", Static)
        if state == JobState.DONE:
            title.update(Text.assemble(("done ", "bold green"), f"{what}  (job {self.job_id})"))
            bar.update(total=1.0, progress=1.0)
            outcome = job.result
            result.update(format_result(outcome if isinstance(outcome, dict) else {}))
        elif state in FINAL_STATES:  # failed or cancelled
            title.update(Text.assemble((f"{state} ", "bold red"), f"{what}  (job {self.job_id})"))
            result.update(Text(message or state, style="bold red"))
        else:
            title.update(Text.assemble((f"{state} ", "bold"), f"{what}  (job {self.job_id})"))
            bar.update(total=1.0, progress=progress if state == JobState.RUNNING else 0.0)
            result.update(Text(message, style="dim"))
        if state in FINAL_STATES and self.job_id not in self._job_finished:
            self._job_finished.add(self.job_id)  # type: ignore[arg-type]
            if state == JobState.DONE:
                res: dict[str, Any] = job.result if isinstance(job.result, dict) else {}
                self._select_dataset = (
                    res.get("dataset") if isinstance(res.get("dataset"), str) else None
                )
                self.app.notify(
                    f"fetch done: {res.get('summary') or res.get('dataset', '')}", timeout=8
                )
                if self.app.connect:  # type: ignore[attr-defined]
                    self.refresh_datasets()
            else:
                self.app.notify(f"fetch {state}: {message}", severity="error", timeout=10)

    async def _ask_job(self, job_id: str) -> None:
        reply = await self._call("job", {"job_id": job_id})
        if reply.ok and job_id == self.job_id:
            try:
                self._job_polled = read(reply.result, JobView)
            except UnreadableReply as exc:
                self.app.notify(f"fetcher job: {exc}", severity="error", timeout=8)

    # --- datasets -------------------------------------------------------------------------------

    def refresh_datasets(self) -> None:
        self._datasets_at = time.monotonic()
        self.run_worker(self._ask_datasets(), group="history-datasets", exclusive=True)

    async def _ask_datasets(self) -> None:
        reply = await self._call("datasets")
        if reply.ok and isinstance(reply.result, list):
            self.show_datasets(reply.result)

    def show_datasets(self, datasets: list[dict[str, Any]]) -> None:
        """Fill the table (newest first); the cursor stays on its dataset, or moves to a new fetch."""
        self.datasets = datasets
        table = self.query_one("#datasets", DataTable)
        key = tuple((d.get("name"), d.get("created")) for d in datasets)
        if key != self._datasets_key:
            self._datasets_key = key
            current = cursor_key(table)
            table.clear()
            for d in datasets:
                table.add_row(
                    *(literal(cell, limit=80) for cell in dataset_row(d)), key=str(d.get("name"))
                )
            wanted = self._select_dataset or current
            names = [str(d.get("name")) for d in datasets]
            if wanted in names:
                table.move_cursor(row=names.index(wanted))
        if self._select_dataset in (d.get("name") for d in datasets):
            self._select_dataset = None
