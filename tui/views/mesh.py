"""Mesh: every service up or down from its heartbeats, with the numbers that say it is healthy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from mesh import health
from tui.untrusted import amount, brief, clean, literal, number, total

LAG_WARNING_S = health.LAG_WARNING_S

# the counters worth a column, in order of preference
RATE_KEYS = ("events_per_s", "msgs_per_s", "rows_per_s", "requests_per_s")
STATE_STYLES = {"ok": "green", "degraded": "yellow", "disabled": "yellow"}


def _rate(counters: dict[str, Any]) -> str:
    for key in RATE_KEYS:
        if key in counters:
            unit = key.replace("_per_s", "/s")
            return f"{number(counters[key], ',.0f')} {unit}"
    return ""


def malformed_cell(counters: dict[str, Any]) -> Text:
    """What the service's subscribers could not decode (its `malformed` counter, a number or counts by kind)."""
    if "malformed" not in counters:
        return Text("")
    count = total(counters["malformed"])
    return Text(f"{count:,.0f}", style="bold red" if count else "dim")


def _detail(counters: dict[str, Any]) -> Text:
    skip = {"uptime_s", "commands", "command_errors", "malformed", *RATE_KEYS}
    parts = [
        f"{clean(k, 30)}={brief(v, 40, depth=1)}"
        for k, v in list(counters.items())[:40]
        if k not in skip and v not in ("", None)
    ]
    return literal("  ".join(parts[:6]), limit=200)


def by_kind(counts: Mapping[str, int]) -> str:
    """`3 (body 2, payload 1)`, or `0`."""
    count = sum(counts.values())
    return f"{count:,}" + (
        " (" + ", ".join(f"{kind} {n:,}" for kind, n in sorted(counts.items())) + ")"
        if count
        else ""
    )


class MeshView(Vertical):
    """Services, the bus rate, ingest lag, reconnects and the server's last word."""

    MAIN_WIDGET = "#services"  # focused when the view is shown

    def compose(self) -> ComposeResult:
        yield Static(id="mesh-summary")
        yield DataTable(id="services", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(
            "Service", "Status", "State", "Seen", "Rate", "Malformed", "Counters", "Message"
        )

    def tick(self) -> None:
        mesh = self.app.mesh  # type: ignore[attr-defined]
        now = mesh.clock()
        table = self.query_one(DataTable)
        table.clear()
        for status in mesh.ordered():
            up = status.up(now)
            beat = status.heartbeat
            age = (now - status.last_seen_ns) / 1e9
            table.add_row(
                literal(status.name, limit=30),
                Text("UP", style="bold green") if up else Text("DOWN", style="bold white on red"),
                literal(beat.state, STATE_STYLES.get(beat.state, "red"), limit=20),
                f"{age:.1f}s ago",
                _rate(beat.counters),
                malformed_cell(beat.counters),
                _detail(beat.counters),
                literal(beat.message, limit=200),
                key=status.name,
            )
        self.query_one("#mesh-summary", Static).update(self.summary())

    def summary(self) -> Text:
        text = self.mesh_summary()
        text.append("\n")
        text.append_text(self.dashboard_summary())
        return text

    def mesh_summary(self) -> Text:
        mesh = self.app.mesh  # type: ignore[attr-defined]
        if not mesh.services:
            return Text("No heartbeats yet.", style="yellow")
        bus = mesh.counters("bus")
        ingest = mesh.counters("ingest")
        text = Text()
        text.append("bus ")
        if mesh.bus_up:
            text.append(
                f"{number(bus.get('msgs_per_s', 0), ',.0f')} msg/s  {number(amount(bus.get('bytes_per_s')) / 1e6, ',.1f')} MB/s",
                style="bold",
            )
        else:
            text.append("DOWN", style="bold red")
        sim = mesh.counters("sim")
        if sim.get("session"):  # a sim playing a session says which; a past one is not lag
            text.append_text(literal(f"   sim: {sim['session']}", "cyan", limit=90))
        if ingest:
            lag = health.ingest_lag_s(ingest, sim)
            connection = ingest.get("connection", "?")
            text.append("   ingest ")
            text.append_text(
                literal(connection, "green" if connection == "streaming" else "bold red", limit=30)
            )
            text.append("   lag ")
            if lag is None or lag < 0:
                text.append("no events yet", style="yellow")
            else:
                text.append(f"{lag:.1f}s", style="bold red" if lag > LAG_WARNING_S else "green")
                if lag > LAG_WARNING_S:
                    text.append(" LAGGING", style="bold white on red")
            text.append(f"   reconnects {number(ingest.get('reconnects', 0))}")
            if ingest.get("server_status"):
                text.append_text(
                    literal(f"   server: {clean(ingest['server_status'], 120)}", "dim")
                )
        return text

    def dashboard_summary(self) -> Text:
        """What this dashboard could not decode or show, so junk on the bus never goes unnoticed."""
        app = self.app
        feed = app.feed  # type: ignore[attr-defined]
        malformed, skipped = feed.malformed, feed.skipped
        dropped = app.market.dropped_rows  # type: ignore[attr-defined]
        failed = sum(app.draw_errors.values())  # type: ignore[attr-defined]
        bad = sum(malformed.values()) + sum(skipped.values()) + dropped + failed
        text = Text("dashboard ", style="bold")
        text.append(
            f"malformed {by_kind(malformed)}   skipped {by_kind(skipped)}   rows dropped {dropped:,}",
            style="bold red" if bad else "dim",
        )
        if failed:
            text.append(f"   draw failures {failed:,} (see Logs)", style="bold red")
        return text
