"""Recording: start and stop a session, its live statistics, and the sessions already on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Static

STAT_ORDER = ("session", "state", "duration_s", "events_per_s", "rows", "bytes", "files", "wal_depth", "gaps", "frames_lost", "error")


def read_sessions(recordings: Path) -> list[dict[str, Any]]:
    """Every session's manifest under data/recordings, newest first; unreadable ones are named as such."""
    sessions = []
    if not recordings.is_dir():
        return sessions
    for folder in recordings.iterdir():
        manifest = folder / "manifest.json"
        if not folder.is_dir():
            continue
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            data = {"name": folder.name, "error": "no readable manifest"}
        data.setdefault("name", folder.name)
        data["_mtime"] = manifest.stat().st_mtime if manifest.exists() else 0
        sessions.append(data)
    return sorted(sessions, key=lambda d: d["_mtime"], reverse=True)


def _rows_total(manifest: dict[str, Any]) -> int:
    rows = manifest.get("rows", {})
    return sum(v for v in rows.values() if isinstance(v, int)) if isinstance(rows, dict) else int(rows or 0)


class RecordingView(Vertical):
    """Controls for the recorder and what it has written."""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="controls"):
            yield Input(placeholder="session name, e.g. open-2026-11-22", id="session-name")
            yield Input(placeholder="symbols (blank = all)", id="session-symbols")
            yield Button("Start", id="record-start", variant="success")
            yield Button("Stop", id="record-stop", variant="error")
        yield Static("The recorder has not reported yet.", id="record-stats")
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Static("", id="manifest")

    def on_mount(self) -> None:
        self.query_one("#sessions", DataTable).add_columns("Session", "Symbols", "Rows", "First event", "Last event", "Gaps", "Ended")
        self.refresh_sessions()
        self.set_interval(2.0, self.refresh_sessions)

    def tick(self) -> None:
        mesh = self.app.mesh  # type: ignore[attr-defined]
        status = mesh.services.get("recorder")
        stats_widget = self.query_one("#record-stats", Static)
        if status is None:
            stats_widget.update("The recorder is not running (start the mesh, or `massive run recorder`).")
            return
        stats = {**status.counters, **status.stats}
        shown = [f"{key}: {stats[key]}" for key in STAT_ORDER if key in stats]
        extra = [f"{k}: {v}" for k, v in stats.items() if k not in STAT_ORDER and k not in ("uptime_s", "commands", "command_errors")][:8]
        up = "up" if status.up(mesh.clock()) else "DOWN"
        stats_widget.update(f"recorder {up}   " + "   ".join(shown + extra))

    @work(thread=True, exclusive=True, group="sessions")
    def refresh_sessions(self) -> None:
        sessions = read_sessions(self.app.config.data_dir / "recordings")  # type: ignore[attr-defined]
        self.app.call_from_thread(self._show_sessions, sessions)

    def _show_sessions(self, sessions: list[dict[str, Any]]) -> None:
        self._sessions = {s["name"]: s for s in sessions}
        table = self.query_one("#sessions", DataTable)
        table.clear()
        for s in sessions:
            symbols = s.get("symbols") or []
            gaps = s.get("gaps") or []
            table.add_row(
                s["name"],
                ",".join(symbols[:4]) + ("…" if len(symbols) > 4 else "") if isinstance(symbols, list) else str(symbols),
                f"{_rows_total(s):,}",
                str(s.get("first_event", s.get("first_event_time", "")))[:26],
                str(s.get("last_event", s.get("last_event_time", "")))[:26],
                str(len(gaps) if isinstance(gaps, list) else gaps),
                "yes" if s.get("clean", s.get("ended_cleanly")) else s.get("error", "no"),
                key=s["name"],
            )

    @on(DataTable.RowHighlighted, "#sessions")
    def _show_manifest(self, event: DataTable.RowHighlighted) -> None:
        name = event.row_key.value if event.row_key else None
        manifest = getattr(self, "_sessions", {}).get(name)
        if manifest:
            shown = {k: v for k, v in manifest.items() if not k.startswith("_")}
            self.query_one("#manifest", Static).update(json.dumps(shown, indent=1, default=str)[:2000])

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
