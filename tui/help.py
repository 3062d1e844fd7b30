"""The help screen: what each view shows and every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# massive-tui

**Views** (number keys): **1 Live** quotes board · **2 Recording** · **3 Mesh** health · **4 Logs**

## Live
- Type anywhere on the board to filter symbols; `Esc` clears the filter.
- `↑` `↓` `PgUp` `PgDn` move; the sparkline shows the selected symbol's last two minutes.
- `F2` changes the sort column, `F3` reverses it; a click on a column title sorts by it.
- Rows flash green or red when the quote moves up or down.
- **Add** / **Remove** subscribe or unsubscribe symbols at ingest (quotes and trades).

## Recording
Name a session, optionally list symbols, **Start**; **Stop** finishes it. Sessions on disk are
listed with their manifests; select one to see it.

## Mesh
Every service, up or down from its heartbeats (down after three missed beats), its rate and
counters; ingest's connection, lag (now minus the last event's time) and reconnects. LAGGING in red
means the feed is more than five seconds behind.

## Keys
`ctrl+p` command palette · `t` light/dark theme · `m` start a mesh here (when none is running) ·
`?` this help · `q` quit
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        yield Markdown(HELP, id="help")
