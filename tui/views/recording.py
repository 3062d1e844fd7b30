"""Recording: start and stop a session, its live statistics, and the sessions already on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Static


def _sum(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_sum(v) for v in value.values())
    return int(value) if isinstance(value, int | float) else 0


def format_stats(stats: dict[str, Any]) -> str:
    """The recorder's `sys.stats.recorder` (or heartbeat counters) as one readable line."""
    rows = stats.get("rows", 0)
    per_table = "  (" + ", ".join(f"{k} {v:,}" for k, v in rows.items()) + ")" if isinstance(rows, dict) and rows else ""
    wal = stats.get("wal_depth", {})
    gaps = stats.get("gaps", 0)
    parts = [
        f"session: {stats.get('session') or '-'} ({stats.get('state', stats.get('recording', 'idle'))})",
        f"duration: {stats.get('duration_s', 0):,.0f} s",
        f"events/s: {stats.get('events_per_s', 0):,.0f}",
        f"rows: {_sum(rows):,}{per_table}",
        f"written: {stats.get('bytes_written', 0) / 1e6:,.1f} MB in {stats.get('files', 0)} files",
        f"WAL: {wal.get('segments', 0)} segments, {wal.get('at_risk_ms', 0):.0f} ms at risk" if isinstance(wal, dict) else "",
        f"gaps: {gaps.get('recorded', 0) if isinstance(gaps, dict) else gaps}",
        f"frames lost: {_sum(stats.get('dropped', 0))}",
    ]
    if stats.get("error"):
        parts.append(f"ERROR: {stats['error']}")
    return "   ".join(p for p in parts if p)


MANIFEST_SUMMARY = ("name", "location", "state", "clean", "error", "symbols", "first_event", "last_event", "rows", "bytes", "gaps_total", "missing_total", "updated")


def read_sessions(recordings: Path) -> list[dict[str, Any]]:
    """Every session's manifest under data/recordings, newest first; unreadable ones are named as such."""
    sessions: list[dict[str, Any]] = []
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


class RecordingView(Vertical):
    """Controls for the recorder and what it has written."""

    MAIN_WIDGET = "#sessions"  # focused when the view is shown

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
        self.query_one("#sessions", DataTable).add_columns("Session", "State", "Symbols", "Rows", "First event", "Last event", "Gaps", "Ended cleanly")
        self.refresh_sessions()
        self.set_interval(2.0, self.refresh_sessions)

    def tick(self) -> None:
        mesh = self.app.mesh  # type: ignore[attr-defined]
        status = mesh.services.get("recorder")
        stats_widget = self.query_one("#record-stats", Static)
        if status is None:
            stats_widget.update("The recorder is not running (start the mesh, or `massive run recorder`).")
            return
        up = "up" if status.up(mesh.clock()) else "DOWN"
        stats_widget.update(f"recorder {up}   " + format_stats(status.stats or status.counters))

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
            gaps = s.get("gaps_total", len(s.get("gaps") or []))
            table.add_row(
                s["name"],
                str(s.get("state", "?")),
                ",".join(symbols[:4]) + ("…" if len(symbols) > 4 else "") if isinstance(symbols, list) else str(symbols),
                f"{_sum(s.get('rows', 0)):,}",
                str(s.get("first_event") or "")[:23],
                str(s.get("last_event") or "")[:23],
                str(gaps),
                "yes" if s.get("clean") else ("no: " + str(s["error"]) if s.get("error") else "no"),
                key=s["name"],
            )

    @on(DataTable.RowHighlighted, "#sessions")
    def _show_manifest(self, event: DataTable.RowHighlighted) -> None:
        name = event.row_key.value if event.row_key else None
        manifest = getattr(self, "_sessions", {}).get(name)
        if manifest:
            shown = {k: v for k, v in manifest.items() if k in MANIFEST_SUMMARY}
            shown["runs"] = len(manifest.get("runs", []))
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
