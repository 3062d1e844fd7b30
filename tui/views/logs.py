"""Logs: the output of the services this dashboard started, and every event the mesh reports."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog

from mesh.schema import Event

LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}


class LogView(Vertical):
    """Child-process output (with `--mesh`) and `sys.event.*` notices."""

    MAIN_WIDGET = "#log"  # focused when the view is shown

    def compose(self) -> ComposeResult:
        yield RichLog(id="log", max_lines=5000, wrap=False, markup=False, highlight=False)

    def write_line(self, source: str, line: str) -> None:
        text = Text()
        text.append(f"{source:>10} | ", style="bold cyan")
        text.append(line)
        self.query_one(RichLog).write(text)

    def write_event(self, event: Event) -> None:
        text = Text()
        text.append(f"{event.service:>10} ! ", style="bold magenta")
        text.append(event.message, style=LEVEL_STYLES.get(event.level, ""))
        self.query_one(RichLog).write(text)
