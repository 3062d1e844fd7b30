"""Recording: start and stop a session, its live statistics, and the sessions already on disk.

Each session on disk shows, from its audit.json, its data-quality report, how complete
reconciliation found it and what heals put back (docs/data.md, docs/recorder.md). Reconcile and
Heal (buttons, ctrl+r and ctrl+e) send the fetcher's `reconcile` / `heal` command for the
selected session, with a job id chosen here so that its `job.<id>` updates are followed from the
first; the job's progress and its result line show under the table, and the session's audit
columns are read again when it ends.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import msgspec
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Static

from mesh.datasets import DatasetError, audit, quality, storage
from mesh.datasets.audit import Audit, EventKind
from mesh.datasets.layout import MANIFEST, RECORDINGS, dataset_folders
from mesh.datasets.manifest import read_manifest
from mesh.replies import JobView, UnreadableReply, read
from mesh.schema import JobState
from tui.untrusted import amount, clean, finite, literal, number, total
from tui.widgets.tables import cursor_key

JOB_CHECK_AFTER_S = 5.0  # no job.<id> update for this long: ask the fetcher about the job


def _sum(value: Any) -> int:
    return int(total(value))


def format_stats(stats: dict[str, Any]) -> Text:
    """The recorder's `sys.stats.recorder` (or heartbeat counters) as one readable line, drawn literally."""
    rows = stats.get("rows", 0)
    per_table = (
        "  (" + ", ".join(f"{clean(k, 20)} {number(v)}" for k, v in list(rows.items())[:8]) + ")"
        if isinstance(rows, dict) and rows
        else ""
    )
    wal = stats.get("wal_depth", {})
    gaps = stats.get("gaps", 0)
    parts = [
        f"session: {clean(stats.get('session') or '-', 60)} ({clean(stats.get('state', stats.get('recording', 'idle')), 20)})",
        f"duration: {number(stats.get('duration_s', 0), ',.0f')} s",
        f"events/s: {number(stats.get('events_per_s', 0), ',.0f')}",
        f"rows: {_sum(rows):,}{per_table}",
        f"written: {amount(stats.get('bytes_written')) / 1e6:,.1f} MB in {number(stats.get('files', 0))} files",
        f"WAL: {number(wal.get('segments', 0))} segments, {number(wal.get('at_risk_ms', 0), '.0f')} ms at risk"
        if isinstance(wal, dict)
        else "",
        f"gaps: {number(gaps.get('recorded', 0) if isinstance(gaps, dict) else gaps)}",
        f"frames lost: {_sum(stats.get('dropped', 0)):,}",
    ]
    if stats.get("error"):
        parts.append(f"ERROR: {clean(stats['error'], 300)}")
    return literal("   ".join(p for p in parts if p), limit=2000)


MANIFEST_SUMMARY = (
    "name",
    "location",
    "state",
    "clean",
    "error",
    "symbols",
    "first_event",
    "last_event",
    "rows",
    "bytes",
    "gaps_total",
    "missing_total",
    "updated",
)


def reconciled(found: Audit) -> str:
    """How complete the recording was found, per kind: "trades 99.97%, quotes 100%"."""
    if found.reconciliation is None:
        return "not reconciled"
    parts = []
    for kind in EventKind:
        results = [r for r in found.reconciliation.results if r.kind is kind]
        if not results:
            continue
        reference = sum(r.reference for r in results)
        matched = sum(r.matched for r in results)
        pct = 100.0 if reference == 0 else 100.0 * matched / reference
        shown = "100" if matched >= reference else f"{min(pct, 99.99):.2f}".rstrip("0").rstrip(".")
        parts.append(f"{kind} {shown}%")
    return ", ".join(parts) or "nothing to compare"


def healed(found: Audit) -> str:
    """What heals put back, and what the last one could not: "healed 41 rows, 3 spans unhealed"."""
    if not found.heals:
        return "-"
    rows = sum(span.rows for heal in found.heals for span in heal.spans)
    left = len(found.heals[-1].unhealed)
    parts = [f"healed {rows:,} row{'s' if rows != 1 else ''}"] if rows or not left else []
    if left:
        parts.append(f"{left:,} span{'s' if left != 1 else ''} unhealed")
    return ", ".join(parts)


def read_sessions(data_dir: Path) -> list[dict[str, Any]]:
    """Every recording's manifest (mesh.datasets' layout), newest first; a damaged one is its error line.

    Each also carries what its audit.json says (`_quality`, `_reconciled`, `_healed`).
    """
    sessions: list[dict[str, Any]] = []
    for place, folder in dataset_folders(data_dir):
        if place != RECORDINGS:
            continue
        try:
            data = read_manifest(folder, required=True)
            mtime = (folder / MANIFEST).stat().st_mtime
        except (DatasetError, OSError) as exc:
            data, mtime = {"error": str(exc)}, 0.0
        data["name"] = folder.name  # the folder names the session (and keys its row)
        data["_mtime"] = mtime
        found = audit.read_audit(folder)
        data["_quality"] = quality.summary(found.quality)
        data["_reconciled"] = reconciled(found)
        data["_healed"] = healed(found)
        sessions.append(data)
    return sorted(sessions, key=lambda d: d["_mtime"], reverse=True)


class RecordingView(Vertical):
    """Controls for the recorder and what it has written."""

    MAIN_WIDGET = "#sessions"  # focused when the view is shown
    BINDINGS = [
        Binding("ctrl+r", "reconcile", "Reconcile session"),
        Binding("ctrl+e", "heal", "Heal session"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job: JobView | None = None  # the reconcile or heal this view sent, as last heard of
        self._job_heard = 0.0  # when job.<id> or the fetcher last told us about it
        self._job_asked = 0.0
        self._job_ended: set[str] = set()

    def compose(self) -> ComposeResult:
        with Horizontal(classes="controls"):
            yield Input(placeholder="session name, e.g. open-2026-11-22", id="session-name")
            yield Input(placeholder="symbols (blank = all)", id="session-symbols")
            yield Button("Start", id="record-start", variant="success")
            yield Button("Stop", id="record-stop", variant="error")
            yield Button("Reconcile", id="session-reconcile", variant="primary")
            yield Button("Heal", id="session-heal", variant="warning")
        yield Static("The recorder has not reported yet.", id="record-stats")
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Static(
            "Reconcile (ctrl+r) compares the selected session with Massive's trades and quotes; "
            "Heal (ctrl+e) fetches what it is missing. Both run on the fetcher.",
            id="audit-job",
        )
        yield Static("", id="manifest")

    def on_mount(self) -> None:
        self.query_one("#sessions", DataTable).add_columns(
            "Session",
            "State",
            "Symbols",
            "Rows",
            "First event",
            "Last event",
            "Gaps",
            "Ended cleanly",
            "Quality",
            "Reconciled",
            "Healed",
        )
        self.refresh_sessions()
        self.set_interval(2.0, self.refresh_sessions)
        self.set_interval(0.25, self._watch_job)

    def tick(self) -> None:
        mesh = self.app.mesh  # type: ignore[attr-defined]
        status = mesh.services.get("recorder")
        stats_widget = self.query_one("#record-stats", Static)
        if status is None:
            stats_widget.update(
                "The recorder is not running (start the mesh, or `massive run recorder`)."
            )
            return
        up = "up" if status.up(mesh.clock()) else "DOWN"
        stats_widget.update(
            Text(f"recorder {up}   ").append_text(format_stats(status.stats or status.counters))
        )

    @work(thread=True, exclusive=True, group="sessions")
    def refresh_sessions(self) -> None:
        config = self.app.config  # type: ignore[attr-defined]
        try:  # MESH_DATA_DIR=s3://...: a local copy of the recordings, brought up to date
            folder = storage.local_datasets(config.data_location, config.data_dir)
        except OSError as exc:
            self.app.call_from_thread(self._show_sessions, [{"name": "?", "error": str(exc)}])
            return
        sessions = read_sessions(folder)
        self.app.call_from_thread(self._show_sessions, sessions)

    def _show_sessions(self, sessions: list[dict[str, Any]]) -> None:
        self._sessions = {s["name"]: s for s in sessions}
        found = self.query("#sessions").results(DataTable)
        table = next(found, None)
        if table is None:  # the answer came after the view was taken down (the app is closing)
            return
        table.clear()
        for s in sessions:
            symbols = s.get("symbols") or []
            gaps = s.get("gaps_total", len(s["gaps"]) if isinstance(s.get("gaps"), list) else 0)
            table.add_row(
                literal(s["name"], limit=60),
                literal(s.get("state", "?"), limit=20),
                literal(
                    ",".join(clean(x, 12) for x in symbols[:4]) + ("…" if len(symbols) > 4 else "")
                    if isinstance(symbols, list)
                    else symbols,
                    limit=60,
                ),
                f"{_sum(s.get('rows', 0)):,}",
                literal(s.get("first_event") or "", limit=23),
                literal(s.get("last_event") or "", limit=23),
                literal(gaps, limit=20),
                literal(
                    "yes"
                    if s.get("clean")
                    else (f"no: {clean(s['error'], 100)}" if s.get("error") else "no")
                ),
                literal(s["_quality"], limit=60),
                literal(s["_reconciled"], limit=40),
                literal(s["_healed"], limit=40),
                key=s["name"],
            )

    @on(DataTable.RowHighlighted, "#sessions")
    def _show_manifest(self, event: DataTable.RowHighlighted) -> None:
        name = event.row_key.value if event.row_key else None
        manifest = getattr(self, "_sessions", {}).get(name)
        if manifest:
            shown = {k: v for k, v in manifest.items() if k in MANIFEST_SUMMARY}
            runs = manifest.get("runs")
            shown["runs"] = len(runs) if isinstance(runs, list) else 0
            shown["quality"] = manifest["_quality"]
            shown["reconciled"] = manifest["_reconciled"]
            shown["healed"] = manifest["_healed"]
            self.query_one("#manifest", Static).update(
                literal(json.dumps(shown, indent=1, default=str), limit=2000, one_line=False)
            )

    @on(Button.Pressed, "#record-start")
    def _start(self) -> None:
        name = self.query_one("#session-name", Input).value.strip()
        symbols = self.query_one("#session-symbols", Input).value.strip()
        if not name:
            self.app.notify("Give the session a name first", severity="warning")
            return
        args: dict[str, Any] = {"name": name}
        if symbols:
            args["symbols"] = symbols.upper()
        self.run_worker(self._send("start", args), group="commands")

    @on(Button.Pressed, "#record-stop")
    def _stop(self) -> None:
        self.run_worker(self._send("stop", {}), group="commands")

    async def _send(self, cmd: str, args: dict[str, Any]) -> None:
        reply = await self.app.feed.call("recorder", cmd, args)  # type: ignore[attr-defined]
        if reply.ok:
            self.app.notify(f"recorder {cmd}: ok")
            self.refresh_sessions()
        else:
            self.app.notify(f"recorder {cmd}: {reply.error}", severity="error", timeout=8)

    # --- reconcile and heal, on the fetcher ------------------------------------------------------

    def selected_session(self) -> str | None:
        key = cursor_key(self.query_one("#sessions", DataTable))
        return key if isinstance(key, str) else None

    @on(Button.Pressed, "#session-reconcile")
    def action_reconcile(self) -> None:
        self._ask_fetcher("reconcile")

    @on(Button.Pressed, "#session-heal")
    def action_heal(self) -> None:
        self._ask_fetcher("heal")

    def _ask_fetcher(self, cmd: str) -> None:
        line = self.query_one("#audit-job", Static)
        session = self.selected_session()
        if session is None:
            line.update(Text(f"Select a session to {cmd} first.", style="bold yellow"))
            return
        if not self.app.mesh.is_up("fetcher"):  # type: ignore[attr-defined]
            line.update(
                Text(
                    f"The fetcher is not running, so {session} cannot be {cmd}d from here: start it "
                    f"with `massive run fetcher` (or the whole mesh with F5), or run `massive {cmd} {session}`.",
                    style="bold red",
                )
            )
            return
        if self.job is not None and not self.job.state.finished:
            line.update(
                Text(
                    f"Wait for the {self.job.kind} of {self.job.args.get('session')} to end first."
                )
            )
            return
        job_id = f"{cmd}-{secrets.token_hex(4)}"
        args = {"session": session, "job_id": job_id}
        self._follow(JobView(job_id=job_id, state=JobState.QUEUED, kind=cmd, args=args))
        self.run_worker(self._send_job(cmd, args), group="audit-jobs")

    async def _send_job(self, cmd: str, args: dict[str, Any]) -> None:
        reply = await self.app.feed.call("fetcher", cmd, args, timeout=5.0)  # type: ignore[attr-defined]
        job_id = args["job_id"]
        if self.job is None or self.job.job_id != job_id:
            return
        if not reply.ok:
            self._follow(
                JobView(
                    job_id=job_id, state=JobState.FAILED, kind=cmd, args=args, message=reply.error
                )
            )
            return
        try:
            answer = read(reply.result, JobView)
        except UnreadableReply as exc:
            self._follow(
                JobView(job_id=job_id, state=JobState.FAILED, kind=cmd, args=args, message=str(exc))
            )
            return
        if not self.job.state.finished:  # job.<id> may already have said more than the answer
            self._follow(answer)

    def _follow(self, job: JobView) -> None:
        self.job = job
        self._job_heard = time.monotonic()
        self._show_job()

    def _watch_job(self) -> None:
        """Four times a second: take in job.<id>'s news; ask the fetcher when it went quiet."""
        job = self.job
        if job is None or job.job_id in self._job_ended:
            return
        update = self.app.mesh.jobs.get(job.job_id)  # type: ignore[attr-defined]
        if update is not None and (
            update.state != job.state
            or update.progress != job.progress
            or update.message != job.message
        ):
            if not job.state.finished or update.state.finished:
                self._follow(
                    msgspec.structs.replace(
                        job,
                        state=update.state,
                        progress=update.progress,
                        message=update.message,
                        result=update.result if isinstance(update.result, dict) else {},
                    )
                )
                return
        now = time.monotonic()
        if job.state.finished:
            self._show_job()
        elif (
            self.app.connect  # type: ignore[attr-defined]
            and now - self._job_heard >= JOB_CHECK_AFTER_S
            and now - self._job_asked >= JOB_CHECK_AFTER_S
        ):
            self._job_asked = now
            self.run_worker(self._ask_job(job.job_id), group="audit-job-poll", exclusive=True)

    async def _ask_job(self, job_id: str) -> None:
        reply = await self.app.feed.call("fetcher", "job", {"job_id": job_id})  # type: ignore[attr-defined]
        if reply.ok and self.job is not None and self.job.job_id == job_id:
            try:
                self._follow(read(reply.result, JobView))
            except UnreadableReply:
                pass

    def _show_job(self) -> None:
        job = self.job
        if job is None:
            return
        line = self.query_one("#audit-job", Static)
        what = f"{clean(job.kind, 20)} {clean(job.args.get('session', ''), 60)}"
        message = clean(job.message or "", 300)
        if job.state is JobState.DONE:
            summary = job.result.get("summary") if isinstance(job.result, dict) else None
            shown = Text.assemble(
                ("done ", "bold green"), f"{what}: ", clean(summary or message or "done", 300)
            )
        elif job.state.finished:
            shown = Text.assemble(
                (f"{job.state} ", "bold red"), f"{what}: ", message or str(job.state)
            )
        else:
            pct = min(max(finite(job.progress) or 0.0, 0.0), 1.0) * 100
            shown = Text.assemble(
                (f"{job.state} ", "bold"), f"{what} {pct:3.0f}%  ", (message, "dim")
            )
        line.update(shown)
        if job.state.finished and job.job_id not in self._job_ended:
            self._job_ended.add(job.job_id)
            self.refresh_sessions()  # the audit columns, as the job left audit.json
