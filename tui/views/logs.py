"""Logs: the output of the services this dashboard started, and every event the mesh reports."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog

from mesh.schema import Event
from tui.untrusted import clean

LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}
LINE_LIMIT = 2000  # characters of one line or event shown; the rest is cut


class LogView(Vertical):
    """Child-process output (with `--mesh`) and `sys.event.*` notices."""

    MAIN_WIDGET = "#log"  # focused when the view is shown

    def compose(self) -> ComposeResult:
        yield RichLog(id="log", max_lines=5000, wrap=False, markup=False, highlight=False)

    def write_line(self, source: str, line: str) -> None:
        text = Text()
        text.append(f"{clean(source, 30):>10} | ", style="bold cyan")
        text.append(clean(line, LINE_LIMIT))
        self.query_one(RichLog).write(text)

    def write_event(self, event: Event) -> None:
        """The event's text exactly as sent (never read as markup), control characters made visible."""
        text = Text()
        text.append(f"{clean(event.service, 30):>10} ! ", style="bold magenta")
        text.append(
            clean(event.message, LINE_LIMIT, one_line=False),
            style=LEVEL_STYLES.get(event.level, ""),
        )
        self.query_one(RichLog).write(text)
