"""Command palette entries: everything the dashboard can do, searchable by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

COMMANDS = [
    ("Show Live quotes", "show_view('live')", "the quotes board"),
    ("Show Recording", "show_view('recording')", "start/stop a recording, sessions on disk"),
    ("Show Mesh health", "show_view('mesh')", "services up/down, rates, lag"),
    ("Show Logs", "show_view('logs')", "child output and mesh events"),
    ("Show Strategies", "show_view('strategies')", "paper trading sessions, fills, equity"),
    ("Stop recording", "stop_recording", "finish the current recording session"),
    ("Toggle light/dark theme", "toggle_theme", "switch between the light and dark theme"),
    ("Start a mesh here", "start_mesh", "run the Procfile's services as children of the dashboard"),
    ("Help", "help", "keys and views"),
]


class MeshCommands(Provider):
    async def discover(self) -> Hits:
        for title, action, help_text in COMMANDS:
            yield DiscoveryHit(title, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in COMMANDS:
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(title),
                    partial(self.app.run_action, action),
                    help=help_text,
                )
