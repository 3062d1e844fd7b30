"""The help screen: what each view shows and every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# massive-tui

**Views** (number keys): **1 Live** quotes board · **2 Recording** · **3 History** · **4 Mesh** health · **5 Logs** · **6 Backtest** · **7 Strategies**

## Live
- Type anywhere on the board to filter symbols; `Esc` clears the filter.
- `↑` `↓` `PgUp` `PgDn` move; the sparkline shows the selected symbol's last two minutes.
- `F2` changes the sort column, `F3` reverses it; a click on a column title sorts by it.
- Rows flash green or red when the quote moves up or down.
- **Add** / **Remove** subscribe or unsubscribe symbols at ingest (quotes and trades).

## Recording
Name a session, optionally list symbols, **Start**; **Stop** finishes it. Sessions on disk are
listed with their manifests; select one to see it.

## History
Symbols, start and end dates (New York trading dates, both included), interval and method
(auto: REST for up to 5 symbols and 7 days, flat files otherwise). **Plan** (or `Enter`) shows the
method, why, and the cost: REST calls, day files and bytes, and whether it fits the quota.
**Fetch** plans, then runs the job: a progress bar, then the summary and the new dataset in the
table. The gauges show REST calls this minute and today and flat-file bytes this month; they turn
yellow at 70% of a limit and red at 90%. Needs the `fetcher` service (`massive run fetcher`).

## Mesh
Every service, up or down from its heartbeats (down after three missed beats), its rate and
counters; ingest's connection, lag (now minus the last event's time) and reconnects. LAGGING in red
means the feed is more than five seconds behind.

## Backtest
Pick a dataset (recordings and historical datasets, with their symbols and time ranges) and one or
more strategies (`space` toggles one; the line under them shows the highlighted one's parameters),
give parameters as on the command line (`fast=10 slow=50`, `ma-crossover.fast=10` for one strategy,
`fast=5,10` to sweep) and options (`interval=5m commission_bps=1 symbols=AAPL`), then **Run**
(`ctrl+r`). The backtester's progress shows in the bar; then every run's equity curve in one plot,
the metrics side by side, and the trades of the run whose column is highlighted in the metrics
(`←` `→`). **Cancel** stops the job; **Reload** (`ctrl+l`) lists the datasets again. Needs the
`backtester` service (`massive run backtester`, or a mesh started here).

## Strategies
Paper trading on the `strategy` service (`massive run strategy`). Name a session, pick a strategy
(the backtester's built-ins), give parameters (`fast=5 slow=20`), symbols (blank: all quoted) and
the bar interval, then **Start** (`ctrl+r`); **Stop** (`ctrl+x`) stops the selected session. The
table shows each session's state (LAGGING, FAILED with its error), positions, cash, equity, P&L,
orders, fills, bars, lag and what a restart lost; below, the selected session's equity curve and
the latest fills. **Compare** (`ctrl+o`) sets a stopped session against a backtest of the same bars.

## Keys
`ctrl+p` command palette · `ctrl+t` light/dark theme · `F5` start a mesh here (when none is
running) · `?` or `F1` this help · `ctrl+q` quit
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        yield Markdown(HELP, id="help")
