"""`massive-tui`: the terminal dashboard over the mesh.

The App holds the state, the feed and the views, and nothing else: each view is its own module
(tui/views/), registered in `VIEWS`. One feed worker reads the bus on the app's event loop; a
10 Hz timer redraws the view on screen; commands go out as workers, so the UI never waits.

Nothing from the bus ends it: the feed counts and skips what it cannot show, a view that fails to
draw is counted and its error logged (tui/crash.py), and every text from the bus is drawn
literally. An error that does end it exits non-zero, its traceback in a log file named on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Button, Footer, Header, Input, Static, TabbedContent, TabPane

from mesh.config import Config, ConfigError
from mesh.gc_tuning import tune_gc
from mesh.schema import Event
from tui import untrusted
from tui.commands import MeshCommands
from tui.crash import CrashLog, summary, unwrap
from tui.feed import BusFeed
from tui.help import HelpScreen
from tui.procs import MeshProcesses, read_procfile
from tui.state import MarketState, MeshState, PaperState
from tui.views.backtest import BacktestView
from tui.views.history import HistoryView
from tui.views.live import LiveView
from tui.views.logs import LogView
from tui.views.mesh import MeshView
from tui.views.recording import RecordingView
from tui.views.strategies import StrategiesView

REDRAW_SECONDS = 0.1  # at most 10 Hz
NO_MESH_AFTER_S = 3.0
EVENT_TOAST_EVERY_S = 1.0  # at most one pop-up a second for error events; all of them are in Logs

# (id, title, view class): adding a view is one module and one line here
VIEWS: list[tuple[str, str, type[Widget]]] = [
    ("live", "Live", LiveView),
    ("recording", "Recording", RecordingView),
    ("history", "History", HistoryView),
    ("mesh", "Mesh", MeshView),
    ("logs", "Logs", LogView),
    ("backtest", "Backtest", BacktestView),
    ("strategies", "Strategies", StrategiesView),
]


class MassiveTui(App[None]):
    """The dashboard."""

    # app.tcss for the frame, plus tui/views/<view>.tcss for any view that has its own styles
    CSS_PATH = [
        "app.tcss",
        *sorted(
            str(p.relative_to(Path(__file__).parent))
            for p in (Path(__file__).parent / "views").glob("*.tcss")
        ),
    ]
    TITLE = "massive-mesh"
    COMMANDS = App.COMMANDS | {MeshCommands}
    BINDINGS = [
        *(
            Binding(str(i + 1), f"show_view('{view_id}')", title)
            for i, (view_id, title, _) in enumerate(VIEWS)
        ),
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("f5", "start_mesh", "Start mesh"),
        Binding("question_mark,f1", "help", "Help"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        config: Config,
        *,
        connect: bool = True,
        start_mesh: bool = False,
        procfile: Path | None = None,
        clock: Callable[[], int] = time.time_ns,
        show_clock: bool = True,
        sample_history: bool = True,
    ) -> None:
        super().__init__()
        self.config = config
        self.market = MarketState()
        self.mesh = MeshState(clock=clock)
        self.paper = PaperState()
        self.feed = BusFeed(
            config.bus_sub, config.bus_ctl, self.market, self.mesh, config=config, paper=self.paper
        )
        self.connect = connect
        self.show_clock = show_clock
        self.sample_history = sample_history
        self.start_mesh_on_mount = start_mesh
        self.procfile = procfile or Path.cwd() / "Procfile"
        self.children_procs: MeshProcesses | None = None
        self.started_at = time.monotonic()
        self.redraws = 0
        self.mesh.listeners.append(self._on_event)
        self.feed.on_problem = self._on_feed_problem
        self.views: dict[str, Widget] = {}
        self.log_file = CrashLog(config.data_dir)
        self.draw_errors: dict[str, int] = {}  # view id -> redraws that failed
        self.crash: BaseException | None = None  # the error that ended the app, if one did
        self._last_event_toast = 0.0

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self.show_clock)
        with Static(id="no-mesh"):
            yield Static(f"No mesh is running at {self.config.bus_sub}.", id="no-mesh-text")
            yield Button("Start one here (F5)", id="start-mesh", variant="primary")
        with TabbedContent(id="views"):
            for view_id, title, view in VIEWS:
                with TabPane(title, id=view_id):
                    self.views[view_id] = view(id=f"{view_id}-view")
                    yield self.views[view_id]
        yield Footer()

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.sub_title = "simulator" if self.config.sim_mode else f"Massive {self.config.feed}"
        self.query_one("#no-mesh").display = False
        if self.connect:
            self.run_feed()
        self.set_interval(REDRAW_SECONDS, self.redraw)
        self.set_interval(1.0, self.sample)
        if self.start_mesh_on_mount:
            self.call_after_refresh(self.action_start_mesh)
        self.call_after_refresh(self._focus_view, "live")
        if not self.is_headless:
            self._quit_on_hangup()

    def _quit_on_hangup(self) -> None:
        """A closed terminal (SIGHUP) or a plain `kill` (SIGTERM) quits as ctrl+q does.

        The services `--mesh` started run in sessions of their own (a ctrl+c in the dashboard must
        not reach them), so without this a closed terminal would leave them running, orphaned.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.exit)

    @work(exclusive=True, group="feed")
    async def run_feed(self) -> None:
        await self.feed.run()

    def active_view(self) -> object:
        return self.views.get(self.query_one(TabbedContent).active)

    def redraw(self) -> None:
        """At most ten times a second: the visible view re-reads the state."""
        try:
            if not self.views or self.screen.is_modal:
                return
            self._redraw()
        except (
            NoMatches,
            ScreenStackError,
        ):  # widgets or screens already gone while the app shuts down
            pass

    def _redraw(self) -> None:
        self.redraws += 1
        view = self.active_view()
        tick = getattr(view, "tick", None)
        if tick is not None:
            try:
                tick()
            except (NoMatches, ScreenStackError):
                raise
            except Exception as exc:  # noqa: BLE001 - a value the view cannot draw must not end the dashboard
                self.view_failed(self.query_one(TabbedContent).active, exc)
        waiting = time.monotonic() - self.started_at > NO_MESH_AFTER_S
        self.query_one("#no-mesh").display = (
            self.connect
            and waiting
            and not self.mesh.bus_up
            and not (self.children_procs and self.children_procs.running)
        )

    def sample(self) -> None:
        if self.sample_history:
            self.market.sample_history()
        try:
            if self.query_one(TabbedContent).active == "live":
                self.query_one(LiveView).sample()
        except NoMatches:
            pass

    def _on_event(self, event: Event) -> None:
        self.query_one(LogView).write_event(event)
        if (
            event.level == "error"
            and time.monotonic() - self._last_event_toast >= EVENT_TOAST_EVERY_S
        ):
            self._last_event_toast = time.monotonic()
            self.notify(
                f"{untrusted.clean(event.service, 40)}: {event.message}",
                severity="error",
                timeout=10,
            )

    def _on_feed_problem(self, kind: str, message: str) -> None:
        self.query_one(LogView).write_line("dashboard", message)

    def view_failed(self, view_id: str, error: Exception) -> None:
        """A view could not draw what it was given: counted (Mesh view), the first one logged with its traceback."""
        failures = self.draw_errors[view_id] = self.draw_errors.get(view_id, 0) + 1
        if failures == 1:
            path = self.log_file.write(f"the {view_id} view failed to draw", error)
            where = f" (traceback in {path})" if path else ""
            self.query_one(LogView).write_line(
                "dashboard",
                f"the {view_id} view could not draw something: {summary(error)}{where}; further failures are only counted (Mesh view)",
            )

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:  # type: ignore[override]
        """A pop-up, drawn literally by default: its text is often a service's or the bus's."""
        if not markup:
            message, title = untrusted.clean(message, one_line=False), untrusted.clean(title, 80)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def _handle_exception(self, error: Exception) -> None:
        """An error nothing handled ends the app (Textual's rule); first its traceback goes to the log file."""
        if self.crash is None:
            self.crash = unwrap(error)
            self.log_file.write("the dashboard stopped on an unhandled error", self.crash)
        super()._handle_exception(error)

    # --- actions ---------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Single-key view switches and help must not steal keys a text field is typing."""
        if action in ("show_view", "help") and isinstance(self.focused, Input):
            return False
        return True

    def action_show_view(self, view_id: str) -> None:
        self.query_one(TabbedContent).active = view_id

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.call_after_refresh(self._focus_view, event.pane.id or "")

    def _focus_view(self, view_id: str) -> None:
        """Focus the view's main widget (never a text field, so number keys keep switching views).

        Only while that view is still the active one: focusing a widget in a hidden pane would
        switch the tabs back to it.
        """
        view = self.views.get(view_id)
        if view is None or self.query_one(TabbedContent).active != view_id:
            return
        self.query_one(getattr(view, "MAIN_WIDGET", f"#{view_id}-view")).focus()

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_clear_filter(self) -> None:
        if self.query_one(TabbedContent).active == "live":
            self.query_one("#filter", Input).value = ""
            self.call_after_refresh(self._focus_view, "live")

    def action_stop_recording(self) -> None:
        self.query_one(RecordingView).run_worker(
            self.query_one(RecordingView)._send("stop", {}), group="commands"
        )

    async def action_start_mesh(self) -> None:
        if self.children_procs and self.children_procs.running:
            self.notify("The mesh started here is already running.")
            return
        if self.mesh.bus_up:
            self.notify("A mesh is already running; attached to it.")
            return
        logs = self.query_one(LogView)
        self.children_procs = MeshProcesses(read_procfile(self.procfile), logs.write_line)
        await self.children_procs.start()
        self.query_one("#no-mesh").display = False
        logs_key = [view_id for view_id, _, _ in VIEWS].index("logs") + 1
        self.notify(
            f"Started {len(self.children_procs.procs)} services; their output is in Logs ({logs_key})."
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start-mesh":
            self.run_worker(self.action_start_mesh())

    async def on_unmount(self) -> None:
        if self.children_procs is not None:
            await self.children_procs.stop()


def make_app(config: Config | None = None, **options: object) -> MassiveTui:
    """The one factory the command line and the tests share."""
    return MassiveTui(config or Config.load(), **options)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="massive-tui",
        description="The massive-mesh dashboard: live quotes, recording, mesh health. Attaches to a running mesh; with --mesh it starts one.",
    )
    parser.add_argument(
        "--bus",
        metavar="ENDPOINT",
        help="bus subscriber endpoint to attach to (default MESH_BUS_SUB)",
    )
    parser.add_argument(
        "--ctl", metavar="ENDPOINT", help="bus command endpoint (default MESH_BUS_CTL)"
    )
    parser.add_argument(
        "--mesh",
        action="store_true",
        help="also start the Procfile's services as children, show their output, and stop them on exit",
    )
    parser.add_argument(
        "--procfile",
        type=Path,
        help="Procfile for --mesh (default ./Procfile, else the built-in mesh)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = Config.load()
    except ConfigError as exc:
        print(f"massive-tui: configuration: {exc}", file=sys.stderr)
        return 2
    if args.bus or args.ctl:
        from dataclasses import replace

        config = replace(
            config, bus_sub=args.bus or config.bus_sub, bus_ctl=args.ctl or config.bus_ctl
        )
    app = make_app(config, start_mesh=args.mesh, procfile=args.procfile)
    tune_gc()  # as every service does: a firehose allocates fast, almost all of it freed by refcounts
    return run(app)


def run(app: MassiveTui) -> int:
    """Run the dashboard; 0 when the user quit, 1 (and one line on stderr naming the log) when an error ended it."""
    try:
        app.run()
    except Exception as exc:  # noqa: BLE001 - outside Textual's own handling (its driver, the terminal)
        app.crash = app.crash or exc
        app.log_file.write("the dashboard stopped on an unhandled error", exc)
    if app.crash is None and not app.return_code:
        return 0
    path = app.log_file.path
    what = summary(app.crash) if app.crash is not None else f"exit code {app.return_code}"
    where = f"the traceback is in {path}" if path else "no log file could be written"
    print(f"massive-tui: stopped by an error ({what}); {where}", file=sys.stderr)
    return app.return_code or 1


if __name__ == "__main__":
    sys.exit(main())
