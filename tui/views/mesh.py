"""Mesh: every service up or down from its heartbeats, with the numbers that say it is healthy."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

LAG_WARNING_S = 5.0

# the counters worth a column, in order of preference
RATE_KEYS = ("events_per_s", "msgs_per_s", "rows_per_s", "requests_per_s")


def _rate(counters: dict[str, Any]) -> str:
    for key in RATE_KEYS:
        if key in counters:
            unit = key.replace("_per_s", "/s")
            return f"{counters[key]:,.0f} {unit}"
    return ""


def _detail(counters: dict[str, Any]) -> str:
    skip = {"uptime_s", "commands", "command_errors", *RATE_KEYS}
    parts = [f"{k}={v}" for k, v in counters.items() if k not in skip and v not in ("", None)]
    return "  ".join(parts[:6])


class MeshView(Vertical):
    """Services, the bus rate, ingest lag, reconnects and the server's last word."""

    MAIN_WIDGET = "#services"  # focused when the view is shown

    def compose(self) -> ComposeResult:
        yield Static(id="mesh-summary")
        yield DataTable(id="services", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Service", "Status", "State", "Seen", "Rate", "Counters", "Message")

    def tick(self) -> None:
        mesh = self.app.mesh  # type: ignore[attr-defined]
        now = mesh.clock()
        table = self.query_one(DataTable)
        table.clear()
        for status in mesh.ordered():
            up = status.up(now)
            beat = status.heartbeat
            age = (now - status.last_seen_ns) / 1e9
            state = Text(beat.state, style="green" if beat.state == "ok" else "yellow" if beat.state in ("degraded", "disabled") else "red")
            table.add_row(
                status.name,
                Text("UP", style="bold green") if up else Text("DOWN", style="bold white on red"),
                state,
                f"{age:.1f}s ago",
                _rate(beat.counters),
                _detail(beat.counters),
                beat.message,
                key=status.name,
            )
        self.query_one("#mesh-summary", Static).update(self.summary())

    def summary(self) -> Text:
        mesh = self.app.mesh  # type: ignore[attr-defined]
        if not mesh.services:
            return Text("No heartbeats yet.", style="yellow")
        bus = mesh.counters("bus")
        ingest = mesh.counters("ingest")
        text = Text()
        text.append("bus ")
        text.append(f"{bus.get('msgs_per_s', 0):,.0f} msg/s  {bus.get('bytes_per_s', 0) / 1e6:,.1f} MB/s" if mesh.bus_up else "DOWN", style="bold" if mesh.bus_up else "bold red")
        if ingest:
            lag = ingest.get("last_event_age_s", -1)
            connection = ingest.get("connection", "?")
            text.append("   ingest ")
            text.append(connection, style="green" if connection == "streaming" else "bold red")
            text.append("   lag ")
            if lag is None or lag < 0:
                text.append("no events yet", style="yellow")
            else:
                text.append(f"{lag:.1f}s", style="bold red" if lag > LAG_WARNING_S else "green")
                if lag > LAG_WARNING_S:
                    text.append(" LAGGING", style="bold white on red")
            text.append(f"   reconnects {ingest.get('reconnects', 0)}")
            if ingest.get("server_status"):
                text.append(f"   server: {ingest['server_status']}", style="dim")
        return text
