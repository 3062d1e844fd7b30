"""The quotes board: a table drawn line by line (Textual's Line API), so that its cost is the
rows on screen, not the symbols in the market: 500 symbols at a firehose redraw as cheaply as 20.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from datetime import datetime
from typing import overload
from zoneinfo import ZoneInfo

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.state import SORT_KEYS, BoardRow, MarketState
from tui.untrusted import clean

MARKET_TZ = ZoneInfo("America/New_York")

# (title, width, sort key or None); the first TEXT_COLUMNS are text, left-aligned, the rest numbers
TEXT_COLUMNS = 2
FLASHED = (2, 3, 6)  # bid, ask and last flash green or red on a move
CHANGES = (7, 8)  # coloured by the sign of the change from the previous close
COLUMNS: list[tuple[str, int, str | None]] = [
    ("Symbol", 8, "symbol"),
    ("Name", 18, None),
    ("Bid", 10, None),
    ("Ask", 10, None),
    ("BidSz", 7, None),
    ("AskSz", 7, None),
    ("Last", 10, None),
    ("Chg", 8, "change"),
    ("Chg%", 7, "change"),
    ("Spread", 7, "spread"),
    ("Volume", 11, "volume"),
    ("Time ET", 13, "updated"),
]


def _price(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _int(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


@functools.lru_cache(maxsize=4096)
def _clock(second: int) -> str:
    try:
        return datetime.fromtimestamp(second, MARKET_TZ).strftime("%H:%M:%S")
    except (OverflowError, OSError, ValueError):  # a time no calendar has
        return "??:??:??"


@functools.lru_cache(maxsize=8192)
def shown_symbol(symbol: str, width: int) -> str:
    """A symbol as exactly `width` terminal cells: control characters made visible, wide
    characters counted as two, a longer one cut with an ellipsis."""
    text = clean(symbol, 4 * width)
    if text.isascii():
        return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
    if cell_len(text) <= width:
        return set_cell_size(text, width)
    return set_cell_size(set_cell_size(text, width - 1).rstrip() + "…", width)


def _time(ns: int) -> str:
    if not ns:
        return ""
    second, rest = divmod(ns, 1_000_000_000)
    return f"{_clock(second)}.{rest // 1_000_000:03d}"


def cells(row: BoardRow) -> list[str]:
    change = "" if row.change is None else f"{row.change:+.2f}"
    change_pct = "" if row.change_pct is None else f"{row.change_pct:+.2f}%"
    spread = "" if row.spread is None else f"{row.spread:.2f}"
    return [
        row.symbol,
        row.name,
        _price(row.bid),
        _price(row.ask),
        _int(row.bid_size),
        _int(row.ask_size),
        _price(row.last),
        change,
        change_pct,
        spread,
        _int(row.volume),
        _time(row.updated_ns),
    ]


def _fit(value: str, width: int) -> str:
    """A number's text right-aligned in `width` cells; a longer one keeps its head and an ellipsis."""
    return value.rjust(width) if len(value) <= width else value[: width - 1] + "…"


class BoardRows(Sequence[BoardRow]):
    """The board's rows in display order, each built when first read: a redraw builds the rows on
    screen, not one per symbol in the market."""

    def __init__(self, market: MarketState, symbols: list[str]) -> None:
        self.market = market
        self.symbols = symbols
        self._built: dict[int, BoardRow] = {}
        self._now = time.monotonic()

    def __len__(self) -> int:
        return len(self.symbols)

    @overload
    def __getitem__(self, index: int) -> BoardRow: ...
    @overload
    def __getitem__(self, index: slice) -> list[BoardRow]: ...
    def __getitem__(self, index: int | slice) -> BoardRow | list[BoardRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if index < 0:
            index += len(self.symbols)
        row = self._built.get(index)
        if row is None:
            row = self._built[index] = self.market.row(self.symbols[index], self._now)
        return row


class QuoteBoard(ScrollView, can_focus=True):
    """Symbols with name, bid, ask, sizes, last, change from the previous close, spread, volume and
    time; sortable and filterable."""

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "cursor(-20)", "Page up", show=False),
        Binding("pagedown", "cursor(20)", "Page down", show=False),
        Binding("home", "cursor(-100000)", "Top", show=False),
        Binding("end", "cursor(100000)", "Bottom", show=False),
        Binding("f2", "next_sort", "Sort"),
        Binding("f3", "reverse_sort", "Reverse"),
    ]

    class Selected(Message):
        """The cursor moved to a symbol."""

        def __init__(self, symbol: str | None) -> None:
            super().__init__()
            self.symbol = symbol

    sort_key: reactive[str] = reactive("symbol")
    reverse: reactive[bool] = reactive(False)
    filter_text: reactive[str] = reactive("")

    def __init__(self, market: MarketState, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.market = market
        self.rows: BoardRows = BoardRows(market, [])
        self.cursor = 0
        self.renders = 0  # lines drawn, for benchmarks and tests
        self.last_render = 0.0
        self._seen_version = -1
        self._styles = {
            "header": Style(bold=True, reverse=True),
            "up": Style(color="green", bold=True),
            "down": Style(color="red", bold=True),
            "cursor": Style(reverse=True),
            "plain": Style(),
            "dim": Style(dim=True),
            "selected": Style(
                underline=True, bold=True
            ),  # the cursor's symbol while the board is not focused
        }

    @property
    def selected(self) -> str | None:
        return self.rows.symbols[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def update_rows(self, force: bool = False) -> None:
        """Re-read the market (at most at the app's redraw rate); redraw only if something changed."""
        if not force and self.market.version == self._seen_version:
            return
        self._seen_version = self.market.version
        selected = self.selected
        symbols = self.market.ordered(self.sort_key, self.reverse, self.filter_text.upper())
        self.rows = BoardRows(self.market, symbols)
        if selected is not None:
            try:
                self.cursor = symbols.index(selected)
            except ValueError:
                pass
        self.cursor = max(0, min(self.cursor, len(symbols) - 1))
        self.virtual_size = Size(sum(w + 1 for _, w, _ in COLUMNS), len(symbols) + 1)
        self.refresh()

    def watch_filter_text(self) -> None:
        self.update_rows(force=True)
        self.post_message(self.Selected(self.selected))

    def watch_sort_key(self) -> None:
        self.update_rows(force=True)

    def watch_reverse(self) -> None:
        self.update_rows(force=True)

    def action_cursor(self, delta: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(len(self.rows) - 1, self.cursor + delta))
        top = self.scroll_offset.y
        visible = max(1, self.size.height - 1)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False)
        self.refresh()
        self.post_message(self.Selected(self.selected))

    def action_next_sort(self) -> None:
        keys = list(SORT_KEYS)
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]

    def action_reverse_sort(self) -> None:
        self.reverse = not self.reverse

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:  # the header: sort by the clicked column
            x = 0
            for _, width, key in COLUMNS:
                if x <= event.x < x + width + 1 and key:
                    if key == self.sort_key:
                        self.reverse = not self.reverse
                    else:
                        self.sort_key = key
                    return
                x += width + 1
            return
        self.action_cursor(self.scroll_offset.y + event.y - 1 - self.cursor)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        self.renders += 1
        self.last_render = time.monotonic()
        if y == 0:
            text = " ".join(
                self._header_title(title, key).ljust(w)
                if i < TEXT_COLUMNS
                else self._header_title(title, key).rjust(w)
                for i, (title, w, key) in enumerate(COLUMNS)
            )
            return Strip([Segment(text, self._styles["header"])]).adjust_cell_length(
                width, self._styles["header"]
            )
        index = self.scroll_offset.y + y - 1
        if index >= len(self.rows):
            return Strip.blank(width)
        row = self.rows[index]
        values = cells(row)
        base = (
            self._styles["cursor"]
            if index == self.cursor and self.has_focus
            else self._styles["plain"]
        )
        flash = (
            self._styles["up"]
            if row.direction > 0
            else self._styles["down"]
            if row.direction < 0
            else None
        )
        # one segment per run of equally styled cells (usually three to five a line, not twenty):
        # Textual's cost per line grows with its segments
        segments: list[Segment] = []
        run: list[str] = []
        run_style = base
        wide = 0  # cells beyond one per character (a symbol in wide characters)
        for i, ((_, w, _), value) in enumerate(zip(COLUMNS, values, strict=True)):
            style = base
            if i == 0 and index == self.cursor and not self.has_focus:
                style = self._styles["selected"]
            elif flash is not None and i in FLASHED:
                style = base + flash
            elif i in CHANGES and row.change:
                style = base + (self._styles["up"] if row.change > 0 else self._styles["down"])
            if style != run_style and run:
                segments.append(Segment("".join(run), run_style))
                run = []
            run_style = style
            if i < TEXT_COLUMNS:  # text from outside: made visible, cut to its cells
                text = shown_symbol(value, w)
                wide += w - len(text)
                run.append(text)
            else:
                run.append(_fit(value, w))
            if style == base:
                run.append(" ")
            else:
                segments.append(Segment("".join(run), style))
                run, run_style = [" "], base
        if run:
            segments.append(Segment("".join(run), run_style))
        used = (
            sum(len(segment.text) for segment in segments) + wide
        )  # cells: one per character but in the symbol and the name
        if used < width:  # pad here rather than have the Strip copied to pad it
            segments.append(Segment(" " * (width - used), base))
            used = width
        strip = Strip(segments, used)
        return strip if used == width else strip.crop(0, width)

    def _header_title(self, title: str, key: str | None) -> str:
        if key and key == self.sort_key:
            return title + ("▼" if self.reverse else "▲")
        return title
