"""Strategies: paper trading on the `strategy` service, its sessions, their fills and equity.

The sessions come from the service's `sys.stats.strategy` (once a second), the fills from
`strat.fill.<session>` and the equity curves from `strat.pnl.<session>`; the feed keeps them in
`PaperState`, conflated. Starting and stopping a session are the service's `start` and `stop`
commands, sent from workers; Compare runs `mesh.paper.compare.compare` in a worker thread, when
this installation has it.
"""

from __future__ import annotations

import asyncio
import importlib
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, Select, Static
from textual_plotext import PlotextPlot

from tui.state import PaperSession, PaperState
from tui.untrusted import brief, clean, finite, literal, number
from tui.widgets.tables import cursor_key

SERVICE = "strategy"
COMPARE_MODULE = "mesh.paper.compare"
INTERVALS = ("1s", "1m")
FILLS_SHOWN = 50
NOT_RUNNING = ("is not registered", "is not connected", "no answer from the bus")
STATE_STYLE = {
    "running": "bold green",
    "lagging": "bold yellow",
    "failed": "bold red",
    "stopped": "dim",
}
SESSION_COLUMNS = (
    "Session",
    "Strategy",
    "State",
    "Positions",
    "Cash",
    "Equity",
    "P&L",
    "Orders",
    "Fills",
    "Bars",
    "Lag",
    "Note",
)
FILL_COLUMNS = ("Time (UTC)", "Session", "Symbol", "Qty", "Price", "Mid", "Fee", "Position")


def not_running(what: str) -> str:
    return (
        f"The strategy service is not running, so {what} from here: start it with "
        "`massive run strategy` (or the whole mesh with F5)."
    )


def clock(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%H:%M:%S")


def money(value: Any) -> str:
    return number(value, ",.2f", "—")


def signed(value: Any) -> Text:
    amount = finite(value)
    if amount is None:
        return Text("—")
    return Text(f"{amount:+,.2f}", style="green" if amount > 0 else "red" if amount < 0 else "")


def shares(value: Any) -> str:
    return number(value, ",.10g", "—")


def positions(session: PaperSession) -> str:
    held = [(s, q) for s, q in session.positions.items() if finite(q) is not None]
    shown = ", ".join(f"{clean(s, 12)} {shares(q)}" for s, q in held[:4])
    return shown + (f" +{len(held) - 4}" if len(held) > 4 else "") or "flat"


def note(session: PaperSession) -> Text:
    if session.state == "failed" and session.error:
        last = [line for line in session.error.splitlines() if line.strip()][-1:] or [""]
        return literal(last[0], "red", limit=80)
    if session.lost:
        return literal(f"restart lost: {session.lost}", "yellow", limit=80)
    return Text("")


def session_row(session: PaperSession) -> tuple[str | Text, ...]:
    lag = finite(session.lag_ms)
    return (
        literal(session.name, limit=40),
        literal(session.strategy, limit=30),
        literal(session.state.upper() or "?", STATE_STYLE.get(session.state, ""), limit=12),
        literal(positions(session), limit=60),
        money(session.cash),
        money(session.equity),
        signed(session.pnl),
        number(session.orders, ",", "—"),
        number(session.fills, ",", "—"),
        number(session.bars, ",", "—"),
        f"{lag:,.0f} ms" if lag is not None else "—",
        note(session),
    )


def detail(session: PaperSession) -> Text:
    """What the table has no room for: parameters, symbols, interval, recording, times, the error."""
    params = " ".join(
        f"{clean(k, 30)}={brief(v, 30)}" for k, v in list(session.params.items())[:20]
    )
    symbols = ",".join(clean(s, 12) for s in session.symbols[:20]) or "all quoted"
    started = f"started {clock(session.started_ns)}" if session.started_ns > 0 else ""
    stopped = f"stopped {clock(session.stopped_ns)}" if session.stopped_ns > 0 else ""
    parts = [
        f"{session.name}: {session.strategy} {params}".rstrip(),
        f"symbols {symbols}",
        f"interval {session.interval or '?'}",
        f"initial cash {money(session.initial_cash)}",
        f"recording {session.recording}" if session.recording else "",
        started,
        stopped,
    ]
    shown = literal("   ".join(p for p in parts if p), limit=600)
    if session.lost:
        shown.append("\n").append_text(literal(f"A restart lost: {session.lost}", "yellow"))
    if session.state == "failed":
        shown.append("\n").append_text(
            literal(session.error or "failed (no error text)", "red", limit=1500, one_line=False)
        )
    return shown


def compare_summary(name: str, result: Any) -> Text:
    """`compare()`'s answer as one line: matched / live only / backtest only / P&L difference / exact."""
    if not isinstance(result, dict):
        return literal(
            f"compare {name}: an answer that is not a comparison: {brief(result)}", "red"
        )

    def count(key: str) -> str:
        value = result.get(key)
        return f"{len(value):,}" if isinstance(value, list) else number(value, ",", "?")

    exact = result.get("exact") is True
    line = Text.assemble(
        f"compare {clean(name, 40)}: matched {count('matched')}, live only {count('live_only')}, "
        f"backtest only {count('backtest_only')}, P&L difference "
        f"{number(result.get('pnl_difference'), '+,.2f', '?')} (live "
        f"{number(result.get('pnl_live'), ',.2f', '?')}, backtest "
        f"{number(result.get('pnl_backtest'), ',.2f', '?')}), ",
        ("exact" if exact else "not exact", "bold green" if exact else "bold yellow"),
    )
    explanations = result.get("explanations")
    if not exact and isinstance(explanations, list) and explanations:
        line.append_text(literal(f": {clean(explanations[0], 200)}"))
    return line


def parse_params(strategy: str, text: str) -> dict[str, Any]:
    """`fast=5 slow=20` -> the strategy's parameters with their types, checked as the backtester
    checks them (a `StrategyError` says what is wrong). Imports numpy: call it off the UI thread."""
    from mesh.backtest.strategies import get_strategy, parse_assignments

    chosen = get_strategy(strategy)
    given = parse_assignments(text.split())
    resolved = chosen.resolve(given)
    return {key: resolved[key] for key in given}


def builtin_strategies() -> list[dict[str, Any]]:
    from mesh.backtest.strategies import list_strategies

    return list_strategies()


class SessionEquity(PlotextPlot):
    """The selected session's equity at each bar close, summed over its symbols."""

    title = ""  # the plot's title, as drawn

    def show(self, name: str | None, times: list[int], equity: list[float]) -> None:
        plt = self.plt
        plt.clear_figure()
        if not name or len(times) < 1:
            self.title = (
                f"{clean(name, 40)}: no bar has closed yet"
                if name
                else "select a session to see its equity"
            )
            plt.title(self.title)
            self.refresh()
            return
        t0 = times[0]
        span = max(times[-1] - t0, 1)
        plt.plot([(t - t0) / 1e9 for t in times], equity, marker="braille")
        ticks = [span / 1e9 * i / 4 for i in range(5)]
        plt.xticks(ticks, [clock(int(t0 + t * 1e9)) for t in ticks])
        self.title = f"Equity of {clean(name, 40)}: {equity[-1]:,.2f}"
        plt.title(self.title)
        self.refresh()


class StrategiesView(Vertical):
    """Paper sessions of the strategy service: start, stop, compare; positions, fills, equity."""

    MAIN_WIDGET = "#paper-sessions"  # focused when the view is shown
    BINDINGS = [
        Binding("ctrl+r", "start_session", "Start session"),
        Binding("ctrl+x", "stop_session", "Stop session"),
        Binding("ctrl+o", "compare", "Compare"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._drawn = -1  # the PaperState version drawn
        self._selected: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="controls", id="paper-form"):
            yield Input(placeholder="session name, e.g. ma-aapl", id="paper-name")
            yield Select[str]([], prompt="strategy", id="paper-strategy")
            yield Input(placeholder="params: fast=5 slow=20", id="paper-params")
            yield Input(placeholder="symbols (blank = all quoted)", id="paper-symbols")
            yield Select[str](
                [(i, i) for i in INTERVALS], value="1m", allow_blank=False, id="paper-interval"
            )
        with Horizontal(classes="controls", id="paper-buttons"):
            yield Button("Start", id="paper-start", variant="success")
            yield Button("Stop", id="paper-stop", variant="error")
            yield Button("Compare", id="paper-compare", variant="primary")
            yield Static("", id="paper-line")
        yield Static("", id="paper-service")
        yield DataTable(id="paper-sessions", cursor_type="row", zebra_stripes=True)
        yield Static("", id="paper-detail")
        with Horizontal(id="paper-bottom"):
            yield SessionEquity(id="paper-plot")
            with Vertical(id="paper-fills-pane"):
                yield Label("Latest fills", classes="paper-title")
                yield DataTable(id="paper-fills", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#paper-sessions", DataTable).add_columns(*SESSION_COLUMNS)
        self.query_one("#paper-fills", DataTable).add_columns(*FILL_COLUMNS)
        self.query_one(SessionEquity).show(None, [], [])
        self.load_strategies()

    @work(thread=True, exclusive=True, group="paper-strategies")
    def load_strategies(self) -> None:
        strategies = builtin_strategies()
        self.app.call_from_thread(self.show_strategies, strategies)

    def show_strategies(self, strategies: list[dict[str, Any]]) -> None:
        picker: Select[str] = self.query_one("#paper-strategy", Select)
        picker.set_options([(s["name"], s["name"]) for s in strategies])

    # --- called by the app ---------------------------------------------------------------------

    @property
    def paper(self) -> PaperState:
        return self.app.paper  # type: ignore[attr-defined,no-any-return]

    def tick(self) -> None:
        """At most ten times a second while shown: the service's state, then what changed."""
        self._show_service()
        if self.paper.version != self._drawn:
            self._drawn = self.paper.version
            self._show_sessions()
            self._show_fills()
            self._show_selected()

    def _show_service(self) -> None:
        mesh = self.app.mesh  # type: ignore[attr-defined]
        line = self.query_one("#paper-service", Static)
        if mesh.is_up(SERVICE):
            sessions = self.paper.sessions.values()
            running = sum(1 for s in sessions if s.running)
            line.update(
                Text.assemble(
                    ("strategy up", "green"), f"   {len(sessions)} session(s), {running} running"
                )
            )
        else:
            line.update(
                Text(
                    "The strategy service is not running: start it with `massive run strategy` "
                    "(or the whole mesh with F5)"
                    + (
                        "; the sessions below are as it last reported them."
                        if self.paper.sessions
                        else "."
                    ),
                    style="bold red",
                )
            )

    def say(self, message: str | Text, error: bool = False) -> None:
        """One line about the last command (next to the buttons)."""
        shown = message if isinstance(message, Text) else literal(message, limit=600)
        if error:
            shown.stylize("bold red")
        self.query_one("#paper-line", Static).update(shown)

    def _show_sessions(self) -> None:
        table = self.query_one("#paper-sessions", DataTable)
        selected = self.selected_session()
        table.clear()
        names = list(self.paper.sessions)
        for name in names:
            table.add_row(*session_row(self.paper.sessions[name]), key=name)
        if selected in names:
            table.move_cursor(row=names.index(selected), animate=False)

    def _show_fills(self) -> None:
        table = self.query_one("#paper-fills", DataTable)
        table.clear()
        for fill in self.paper.latest_fills()[:FILLS_SHOWN]:
            table.add_row(
                clock(fill.ts_event),
                literal(fill.name, limit=30),
                literal(fill.symbol, limit=12),
                Text(shares(fill.qty), style="green" if fill.qty > 0 else "red"),
                money(fill.price),
                money(fill.ref_price),
                money(fill.fee),
                shares(fill.position),
            )

    def _show_selected(self) -> None:
        name = self.selected_session()
        session = self.paper.sessions.get(name) if name else None
        self.query_one("#paper-detail", Static).update(
            detail(session) if session else Text("No paper session yet: start one above.")
        )
        times, equity = self.paper.equity_curve(name) if name else ([], [])
        self.query_one(SessionEquity).show(name, times, equity)

    def selected_session(self) -> str | None:
        key = cursor_key(self.query_one("#paper-sessions", DataTable))
        return key if isinstance(key, str) else None

    @on(DataTable.RowHighlighted, "#paper-sessions")
    def _highlighted(self) -> None:
        if self.selected_session() != self._selected:
            self._selected = self.selected_session()
            self._show_selected()

    # --- start and stop, on the strategy service ------------------------------------------------

    @on(Button.Pressed, "#paper-start")
    @on(Input.Submitted, "#paper-name, #paper-params, #paper-symbols")
    def action_start_session(self) -> None:
        name = self.query_one("#paper-name", Input).value.strip()
        strategy = self.query_one("#paper-strategy", Select).value
        if not name:
            self.say("Give the session a name first.", error=True)
            return
        if not isinstance(strategy, str):
            self.say("Pick a strategy first.", error=True)
            return
        if not self.app.mesh.is_up(SERVICE):  # type: ignore[attr-defined]
            self.say(not_running(f"{name} cannot be started"), error=True)
            return
        symbols = self.query_one("#paper-symbols", Input).value.replace(",", " ").upper().split()
        args: dict[str, Any] = {
            "name": name,
            "strategy": strategy,
            "interval": self.query_one("#paper-interval", Select).value,
        }
        if symbols:
            args["symbols"] = symbols
        params_text = self.query_one("#paper-params", Input).value
        self.run_worker(self._start(args, params_text), group="paper-commands")

    async def _start(self, args: dict[str, Any], params_text: str) -> None:
        from mesh.backtest.errors import BacktestError  # light: no numpy

        try:
            args["params"] = await asyncio.to_thread(parse_params, args["strategy"], params_text)
        except BacktestError as exc:
            self.say(f"Bad parameter: {exc}", error=True)
            return
        self.say(f"Starting {args['name']}…")
        await self._send("start", args, "started")

    @on(Button.Pressed, "#paper-stop")
    def action_stop_session(self) -> None:
        name = self.selected_session()
        if name is None:
            self.say("Select a session to stop first.", error=True)
            return
        session = self.paper.sessions.get(name)
        if session is not None and not session.running:
            self.say(f"{name} is not running ({session.state}).")
            return
        if not self.app.mesh.is_up(SERVICE):  # type: ignore[attr-defined]
            self.say(not_running(f"{name} cannot be stopped"), error=True)
            return
        self.run_worker(self._send("stop", {"name": name}, "stopped"), group="paper-commands")

    async def _send(self, cmd: str, args: dict[str, Any], done: str) -> None:
        reply = await self.app.feed.call(SERVICE, cmd, args, timeout=5.0)  # type: ignore[attr-defined]
        name = args["name"]
        if reply.ok:
            state = reply.result.get("state", "") if isinstance(reply.result, dict) else ""
            self.say(f"{name} {done}" + (f": {state}" if state else ""))
        elif any(s in reply.error for s in NOT_RUNNING):
            self.say(not_running(f"{name} cannot be {done}"), error=True)
        else:
            self.say(f"strategy {cmd} {name}: {reply.error}", error=True)

    # --- compare, locally ------------------------------------------------------------------------

    @on(Button.Pressed, "#paper-compare")
    def action_compare(self) -> None:
        name = self.selected_session()
        if name is None:
            self.say("Select a stopped session to compare first.", error=True)
            return
        session = self.paper.sessions.get(name)
        if session is not None and session.running:
            self.say(
                f"Stop {name} first: Compare sets a stopped session against a backtest of the same bars."
            )
            return
        self.say(f"Comparing {name} with a backtest of the same bars…")
        self.compare(name)

    @work(thread=True, exclusive=True, group="paper-compare")
    def compare(self, name: str) -> None:
        try:
            module = importlib.import_module(COMPARE_MODULE)
        except ImportError:
            self.app.call_from_thread(
                self.say,
                f"Compare is not available: this installation has no {COMPARE_MODULE}.",
                True,
            )
            return
        try:
            result = module.compare(name, self.app.config)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a comparison that fails is one line, not a crash
            self.app.call_from_thread(
                self.say, f"compare {name}: {type(exc).__name__}: {exc}", True
            )
            return
        self.app.call_from_thread(self.say, compare_summary(name, result))
