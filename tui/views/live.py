"""Live: the quotes board, a sparkline for the selected symbol, and adding or removing symbols.

Names, previous closes and the market's state come from the fetcher's `reference` command (it
reads Massive's REST API within the quota and keeps the answers for the day), asked by a worker
when the board holds symbols it has not asked about, and once a minute; never from the UI thread
and never per symbol. The market's state goes in the header and on the line above the board.
"""

from __future__ import annotations

import datetime as dt
import time

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Sparkline, Static

from tui.state import MarketView, ReferenceState
from tui.untrusted import clean, literal
from tui.widgets.quote_board import QuoteBoard


def subscription_params(text: str) -> list[str]:
    """`AMD, intc` -> quote and trade subscriptions for each symbol."""
    symbols = [s.strip().upper() for s in text.replace(" ", ",").split(",") if s.strip()]
    return [f"{kind}.{symbol}" for symbol in symbols for kind in ("Q", "T")]


REFERENCE_CHECK_S = 2.0  # how often the view checks whether to ask the fetcher
MARKET_STATES = {
    "pre-market": "pre-market",
    "open": "open",
    "early-close": "open, closing early (13:00 ET)",
    "after-hours": "after-hours",
    "closed": "closed",
}
HEADER_SEPARATOR = " · market "


def market_text(market: MarketView | None) -> str:
    """`open at 10:02 ET` from the reference's market state, or "" when none is known."""
    if market is None:
        return ""
    state = MARKET_STATES.get(market.state, clean(market.state, 30))
    try:
        clock = dt.datetime.fromisoformat(market.server_time).strftime("%H:%M ET %a %Y-%m-%d")
    except ValueError:
        return state
    return f"{state} at {clock}"


def reference_line(reference: ReferenceState) -> Text:
    """The line above the board: the market's state, the previous close's day, and what failed."""
    text = Text()
    if reference.market is not None:
        text.append("market ")
        text.append_text(literal(market_text(reference.market), "bold cyan", limit=80))
    else:
        text.append("market state not known yet", style="dim")
    if reference.previous_day:
        text.append_text(
            literal(f"   change from the close of {reference.previous_day}", "dim", limit=60)
        )
    if reference.refused:
        text.append_text(
            literal(
                f"   REST quota refused names/previous closes: {reference.refused}",
                "bold yellow",
                limit=200,
            )
        )
    elif reference.error:
        text.append_text(
            literal(f"   reference data unavailable: {reference.error}", "bold red", limit=200)
        )
    return text


class LiveView(Vertical):
    """The quotes board with its controls."""

    MAIN_WIDGET = "#board"  # focused when the view is shown

    def compose(self) -> ComposeResult:
        with Horizontal(classes="controls"):
            yield Input(placeholder="filter (just type)", id="filter")
            yield Input(placeholder="symbols, e.g. AMD,INTC", id="symbols")
            yield Button("Add", id="subscribe", variant="success")
            yield Button("Remove", id="unsubscribe", variant="error")
        yield Static(reference_line(ReferenceState()), id="market-line")
        yield QuoteBoard(self.app.market, id="board")  # type: ignore[attr-defined]
        yield Label("select a symbol to see its price over the last two minutes", id="spark-label")
        yield Sparkline([], id="spark")

    def on_mount(self) -> None:
        self.set_interval(REFERENCE_CHECK_S, self._ask_reference)

    @property
    def board(self) -> QuoteBoard:
        return self.query_one(QuoteBoard)

    def tick(self) -> None:
        self.board.update_rows()

    def show_reference(self) -> None:
        """The market line and the header's market state, from what the fetcher last said."""
        reference = self.app.market.reference  # type: ignore[attr-defined]
        self.query_one("#market-line", Static).update(reference_line(reference))
        base = self.app.sub_title.split(HEADER_SEPARATOR)[0]
        state = market_text(reference.market)
        self.app.sub_title = f"{base}{HEADER_SEPARATOR}{state}" if state else base

    def _ask_reference(self) -> None:
        market = self.app.market  # type: ignore[attr-defined]
        symbols = set(market.symbols())
        now = time.monotonic()
        if not self.app.mesh.is_up("fetcher") or not market.reference.due(symbols, now):  # type: ignore[attr-defined]
            return
        market.reference.asking(symbols, now)
        self.run_worker(self._reference(sorted(symbols)), group="reference", exclusive=True)

    async def _reference(self, symbols: list[str]) -> None:
        reply = await self.app.feed.call(  # type: ignore[attr-defined]
            "fetcher", "reference", {"symbols": symbols}, timeout=30.0
        )
        market = self.app.market  # type: ignore[attr-defined]
        if reply.ok:
            market.reference.apply(reply.result, time.monotonic())
        else:
            market.reference.failed(f"fetcher: {reply.error}", time.monotonic())
        market.version += 1
        self.show_reference()

    def sample(self) -> None:
        self._show_spark(self.board.selected)

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        self.board.filter_text = event.value

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.board.focus()

    def on_key(self, event: events.Key) -> None:
        # typing on the board filters it
        if (
            self.board.has_focus
            and event.character
            and (event.character.isalpha() or event.character in ".-:")
        ):
            filter_input = self.query_one("#filter", Input)
            filter_input.value += event.character
            filter_input.focus()
            filter_input.cursor_position = len(filter_input.value)
            event.stop()
        elif self.board.has_focus and event.key == "backspace":
            filter_input = self.query_one("#filter", Input)
            filter_input.value = filter_input.value[:-1]
            event.stop()

    @on(QuoteBoard.Selected)
    def _selected(self, event: QuoteBoard.Selected) -> None:
        self._show_spark(event.symbol)

    def _show_spark(self, symbol: str | None) -> None:
        spark = self.query_one(Sparkline)
        label = self.query_one("#spark-label", Label)
        history = list(self.app.market.history.get(symbol, [])) if symbol else []  # type: ignore[attr-defined]
        spark.data = history
        if symbol and history:
            label.update(
                literal(
                    f"{clean(symbol, 30)}  mid {history[-1]:,.2f}   range {min(history):,.2f} – {max(history):,.2f} over {len(history)} s"
                )
            )
        elif symbol:
            label.update(literal(f"{clean(symbol, 30)}: collecting prices…"))

    @on(Button.Pressed, "#subscribe")
    async def _subscribe(self) -> None:
        await self._change_subscription("subscribe")

    @on(Button.Pressed, "#unsubscribe")
    async def _unsubscribe(self) -> None:
        await self._change_subscription("unsubscribe")

    @on(Input.Submitted, "#symbols")
    async def _submit_symbols(self) -> None:
        await self._change_subscription("subscribe")

    async def _change_subscription(self, cmd: str) -> None:
        field = self.query_one("#symbols", Input)
        params = subscription_params(field.value)
        if not params:
            self.app.notify("Type one or more symbols first, e.g. AMD,INTC", severity="warning")
            return
        self.run_worker(self._send(cmd, params), group="commands")

    async def _send(self, cmd: str, params: list[str]) -> None:
        reply = await self.app.feed.call("ingest", cmd, {"params": params})  # type: ignore[attr-defined]
        symbols = sorted({p.split(".", 1)[1] for p in params})
        if reply.ok:
            market = self.app.market  # type: ignore[attr-defined]
            if cmd == "unsubscribe":
                market.hidden.update(symbols)
            else:
                market.hidden.difference_update(symbols)
            market.version += 1
            verb = "Subscribed to" if cmd == "subscribe" else "Unsubscribed from"
            self.app.notify(f"{verb} {', '.join(symbols)}")
            self.query_one("#symbols", Input).value = ""
        else:
            self.app.notify(f"ingest {cmd}: {reply.error}", severity="error", timeout=8)
