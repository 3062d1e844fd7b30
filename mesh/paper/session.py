"""A paper session: what was asked for, one `SymbolTrader` per symbol, and its journal on disk.

A session trades on its own thread, fed quotes and clock ticks through a queue: a strategy that
is slow falls behind (shown as lagging, with its backlog) without holding up the service, its
commands or the other sessions; one that raises stops its own session only.

Each session lives in `MESH_DATA_DIR/paper/<name>/`: `session.json` (the spec and the state, all
or nothing) and `journal.jsonl`, every order and fill appended and fsync'd before it goes on the
bus. After a crash the service resumes a running session from them: positions and cash come
from the journal's fills (never guessed), the strategy starts again from no bars, and the time
nothing was watched is written down as lost.
"""

from __future__ import annotations

import math
import os
import queue
import re
import stat
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

from mesh import files, intervals, topics
from mesh.backtest.engine import Costs, _Book
from mesh.backtest.strategies import Strategy
from mesh.client import Publisher
from mesh.paper.engine import Settings, SymbolTrader
from mesh.schema import Fill, Order, Pnl

NAME = re.compile(r"[A-Za-z0-9_\-]{1,48}")
INTERVALS = ("1s", "1m")
MAX_CASH = 1e12
MAX_SYMBOLS = 5_000  # per session: each symbol holds a trader and its bar columns
FIRST_SAVE_S = 0.5  # symbols that began trading are written to session.json at most this often


class PaperError(ValueError):
    """A paper request that cannot be carried out (bad name, options, or unknown session)."""


class State(StrEnum):
    RUNNING = "running"
    LAGGING = "lagging"
    STOPPED = "stopped"
    FAILED = "failed"


class Spec(msgspec.Struct, frozen=True, kw_only=True):
    """What a paper session was started with (the backtester's options of the same names)."""

    name: str
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    interval: str = "1s"
    fills: str = "quotes"
    cash: float = 100_000.0
    commission_bps: float = 0.0
    whole_shares: bool = False
    cap_size: bool = False
    latency_ms: float = 0.0

    def check(self) -> Spec:
        if not NAME.fullmatch(self.name):
            raise PaperError(
                f"paper session name {self.name!r:.60}: 1-48 letters, digits, '_' or '-'"
            )
        if self.interval not in INTERVALS:
            raise PaperError(f"interval {self.interval!r:.20}: expected 1s or 1m")
        if self.fills != "quotes":
            raise PaperError(
                f"fills {self.fills!r:.20}: paper sessions fill against live quotes (quotes)"
            )
        if not self.symbols or not all(
            isinstance(s, str) and re.fullmatch(r"[A-Z][A-Z0-9.\-]{0,15}", s) for s in self.symbols
        ):
            raise PaperError("symbols: give one or more tickers, e.g. AAPL,MSFT")
        if len(set(self.symbols)) != len(self.symbols):
            raise PaperError("symbols: each ticker once")
        if len(self.symbols) > MAX_SYMBOLS:
            raise PaperError(f"symbols: at most {MAX_SYMBOLS:,} in one session")
        if not (math.isfinite(self.cash) and 0 < self.cash <= MAX_CASH):
            raise PaperError(f"cash must be a positive number up to {MAX_CASH:,.0f}")
        for what, most in (("commission_bps", 10_000.0), ("latency_ms", 60_000.0)):
            value = getattr(self, what)
            if not (math.isfinite(value) and 0 <= value <= most):
                raise PaperError(f"{what.replace('_', '-')} must be between 0 and {most:,.0f}")
        if not isinstance(self.strategy, str) or not 0 < len(self.strategy) <= 300:
            raise PaperError("strategy: a built-in's name or FILE:function")
        return self

    def settings(self) -> Settings:
        return Settings(
            interval_ns=intervals.parse(self.interval).ns,
            cash=self.cash / len(self.symbols),
            costs=Costs(self.commission_bps),
            whole_shares=self.whole_shares,
            cap_size=self.cap_size,
            latency_ns=int(self.latency_ms * 1e6),
        )


class Record(msgspec.Struct, kw_only=True):
    """`session.json`: the spec and what happened to the session."""

    spec: Spec
    state: State = State.RUNNING
    error: str = ""
    started_ns: int = 0
    stopped_ns: int = 0
    recording: str = ""  # the recording that holds the session's quotes
    started_recording: bool = False  # the session started it (and stops it)
    recording_stopped: bool = False  # and has stopped it (once)
    first_ts: dict[str, int] = {}  # per symbol, the first and last quote traded on (ns)
    last_ts: dict[str, int] = {}
    lost: list[list[int]] = []  # [from_ns, to_ns] spans no trader watched (a crash)


_json = msgspec.json.Encoder()
_KIND = {Order: topics.ORDER, Fill: topics.FILL, Pnl: topics.PNL}


@dataclass
class Session:
    """A running (or finished) paper session of one strategy over its symbols."""

    record: Record
    strategy: Strategy
    params: dict[str, Any]
    folder: Path
    traders: dict[str, SymbolTrader] = field(default_factory=dict)
    journal: Any = None  # the open journal file while running
    lost_note: str = ""
    inbox: queue.SimpleQueue[tuple[Any, ...]] = field(default_factory=queue.SimpleQueue)
    thread: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None  # set once by the thread when the strategy fails
    _lock: threading.RLock = field(default_factory=threading.RLock)
    bus: Any = None  # the mesh's Config: the session's thread publishes its own records
    published: dict[str, int] = field(default_factory=dict)  # records sent, by kind
    _unsynced: bool = False
    _first_saved: float = -math.inf  # when `_sync` last saved new symbols' first quotes
    _publisher: Any = None

    @property
    def name(self) -> str:
        return self.record.spec.name

    @property
    def state(self) -> State:
        return self.record.state

    @property
    def active(self) -> bool:
        return self.state in (State.RUNNING, State.LAGGING)

    # --- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, spec: Spec, strategy: Strategy, params: dict[str, Any], root: Path, recording: str
    ) -> Session:
        folder = root / spec.name
        if folder.is_symlink():
            raise PaperError(
                f"{folder} is a symbolic link: a session keeps its files in its own folder"
            )
        if (folder / "session.json").exists():
            raise PaperError(
                f"a paper session {spec.name!r} exists already ({folder}); pick another name"
            )
        folder.mkdir(parents=True, exist_ok=True)
        record = Record(spec=spec, started_ns=time.time_ns(), recording=recording)
        session = cls(record, strategy, params, folder)
        session._open()
        session.save()
        return session

    @classmethod
    def load(cls, folder: Path) -> Record:
        path = folder / "session.json"
        try:
            record = msgspec.json.decode(_read_regular(path), type=Record)
            record.spec.check()
            return record
        except (OSError, msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            raise PaperError(f"{path} cannot be read: {exc}") from None
        except PaperError as exc:
            raise PaperError(f"{path} cannot be read: {exc}") from None

    @classmethod
    def resume(
        cls, record: Record, strategy: Strategy, params: dict[str, Any], folder: Path
    ) -> Session:
        """A running session after a crash: books from the journal's fills, the gap written down."""
        session = cls(record, strategy, params, folder)
        settings = record.spec.settings()
        books = {s: _Book(settings.cash, settings.costs.fee) for s in record.spec.symbols}
        held = dict.fromkeys(record.spec.symbols, 0.0)
        orders = dict.fromkeys(record.spec.symbols, 0)
        filled = dict.fromkeys(record.spec.symbols, 0)
        last_event = record.started_ns
        for item in journal_items(folder):
            if item.symbol not in books:
                continue
            if isinstance(item, Fill):
                book = books[item.symbol]
                book.cash -= item.qty * item.price + item.fee
                book.shares = item.position
                filled[item.symbol] += 1
                last_event = max(last_event, item.ts_event)
            else:
                held[item.symbol] = item.target
                orders[item.symbol] = max(orders[item.symbol], item.order_id)
                last_event = max(last_event, item.ts_decided)
        if not all(math.isfinite(b.cash) and math.isfinite(b.shares) for b in books.values()):
            raise PaperError(f"{folder / 'journal.jsonl'} holds fills no book could have made")
        for symbol in record.spec.symbols:
            session.traders[symbol] = SymbolTrader(
                record.spec.name,
                symbol,
                strategy,
                params,
                settings,
                book=books[symbol],
                held=held[symbol],
                orders=orders[symbol],
            )
            trader = session.traders[symbol]
            trader.fills = trader.fills_before = filled[symbol]
        now = time.time_ns()
        record.lost.append([last_event, now])
        session.lost_note = (
            f"restarted after a stop it could not record: nothing watched from the last journal "
            f"entry to the restart ({(now - last_event) / 1e9:.1f} s); positions and cash rebuilt "
            f"from its {sum(filled.values())} journalled fills, "
            f"bars start again"
        )
        session._open(resumed=True)
        session.save()
        return session

    def _open(self, resumed: bool = False) -> None:
        spec = self.record.spec
        settings = spec.settings()
        if not resumed:
            for symbol in spec.symbols:
                self.traders[symbol] = SymbolTrader(
                    spec.name, symbol, self.strategy, self.params, settings
                )
        path = self.folder / "journal.jsonl"
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise PaperError(f"{path} is not a regular file")
        self.journal = open(path, "ab")  # noqa: SIM115

    def save(self) -> None:
        for symbol, trader in self.traders.items():
            if trader.first_ts:
                self.record.first_ts.setdefault(symbol, trader.first_ts)
                self.record.last_ts[symbol] = trader.last_ts
        files.replace_file(self.folder / "session.json", _json.encode(self.record))

    def begin(self) -> None:
        """Start trading on the session's own thread."""
        self.thread = threading.Thread(target=self._work, name=f"paper-{self.name}", daemon=True)
        self.thread.start()

    def quotes(
        self, rows: list[tuple[str, int, float, float, float, float]], arrived: float
    ) -> None:
        self.inbox.put(("quotes", rows, arrived))

    def tick(self, event_now: int, mono: float) -> None:
        if self.inbox.empty():  # behind already: the queued quotes come first
            self.inbox.put(("clock", event_now, mono))

    @property
    def backlog(self) -> int:
        return self.inbox.qsize()

    def stop(self, state: State = State.STOPPED, error: str = "", wait: float = 10.0) -> None:
        """Stop trading: what is still queued is dropped; the thread ends, the state is saved."""
        if not self.active:
            return
        self.stopping.set()
        self.inbox.put(("stop",))
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait)
        self._finish(state, error)

    def _finish(self, state: State, error: str) -> None:
        with self._lock:
            if not self.active:
                return
            for trader in self.traders.values():
                trader.finish()
                if trader.out:
                    self._flush(trader.out)
                    trader.out = []
            self._sync()
            self.record.state, self.record.error = state, error
            self.record.stopped_ns = time.time_ns()
            self.save()
            if self.journal is not None:
                self.journal.close()
                self.journal = None

    def _work(self) -> None:
        # the thread's own socket: a record goes out the moment it is journalled, without waiting
        # for the service's event loop (or the interpreter's lock) to come round
        if self.bus is not None:
            self._publisher = Publisher("strategy", config=self.bus)
        try:
            self._trade()
        finally:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None

    def _trade(self) -> None:
        while True:
            item = self.inbox.get()
            if item[0] == "stop" or self.stopping.is_set():
                return
            try:
                with self._lock:
                    if not self.active:
                        return
                    pnl: list[Pnl] = []  # the batch's P&L, sent once its every bar is decided
                    if item[0] == "quotes":
                        _, rows, arrived = item
                        traders = self.traders
                        for symbol, ts, bid, ask, bid_size, ask_size in rows:
                            trader = traders.get(symbol)
                            if trader is not None:
                                trader.on_quote(ts, bid, ask, bid_size, ask_size, arrived)
                                if trader.out:  # orders out at once, not after other symbols'
                                    self._flush(trader.out, durable=False, pnl=pnl)
                                    trader.out = []
                    else:
                        _, event_now, mono = item
                        for trader in self.traders.values():
                            trader.on_clock(event_now, mono)
                            if trader.out:
                                self._flush(trader.out, durable=False, pnl=pnl)
                                trader.out = []
                    self._publish(pnl)
                    self._sync()
            except Exception as exc:  # the strategy's failure (or the journal's) ends this session
                text = "".join(traceback.format_exception(exc)).strip().splitlines()
                self.failure = exc
                self._finish(State.FAILED, "\n".join(text[-12:]))
                return

    def _flush(
        self,
        out: list[Order | Fill | Pnl],
        *,
        durable: bool = True,
        pnl: list[Pnl] | None = None,
    ) -> None:
        """Journal the orders and fills in `out`, then publish them; P&L records go to `pnl`
        when given (published after the batch), else out with them.

        The journal is written and flushed to the operating system before anything is published
        (a `kill -9` of the service cannot lose it); the fsync that also survives a machine
        crash follows at the end of each batch of quotes (`_sync`), so one symbol's order does
        not wait for the disk behind another's. When many bars close at once, every order goes
        out before any of their P&L records: the records a trader acts on come first, and the
        last symbol's decision does not wait behind the others' bookkeeping (docs/paper.md).
        """
        kept = [r for r in out if not isinstance(r, Pnl)]
        if kept and self.journal is not None:
            self.journal.write(b"".join(_json.encode(item) + b"\n" for item in kept))
            self.journal.flush()
            self._unsynced = True
            if durable:
                self._sync()
        if pnl is None:
            self._publish(out)
            return
        self._publish(kept)
        pnl.extend(r for r in out if isinstance(r, Pnl))

    def _publish(self, records: Sequence[Order | Fill | Pnl]) -> None:
        publisher = self._publisher
        for record in records if publisher is not None else ():
            kind = _KIND[type(record)]
            publisher.publish(topics.paper(kind, self.name), record)
            self.published[kind] = self.published.get(kind, 0) + 1

    def _sync(self) -> None:
        """After each batch: the journal to disk, the session's state and where each symbol's
        trading began (so both survive a crash; a symbol's start within FIRST_SAVE_S)."""
        if self._unsynced and self.journal is not None:
            os.fsync(self.journal.fileno())
        self._unsynced = False
        traders = self.traders.values()
        if self.record.state is State.RUNNING and any(t.lagging_bars for t in traders):
            self.record.state = State.LAGGING
        if any(t.first_ts and t.symbol not in self.record.first_ts for t in traders):
            # at most every FIRST_SAVE_S: a session's symbols each start at their own first quote,
            # and one durable write each would hold the first bars' decisions behind them
            now = time.monotonic()
            if now - self._first_saved >= FIRST_SAVE_S:
                self._first_saved = now
                self.save()

    def view(self) -> dict[str, Any]:
        """The session as `status` and `sys.stats.strategy` show it (/docs/paper.md)."""
        spec, traders = self.record.spec, self.traders.values()
        cash = sum(t.book.cash for t in traders)
        equity = sum(
            t.book.cash + t.book.shares * ((t.last.bid + t.last.ask) / 2 if t.last else 0.0)
            for t in traders
        )
        return {
            "name": spec.name,
            "strategy": spec.strategy,
            "params": self.params,
            "symbols": spec.symbols,
            "interval": spec.interval,
            "fill_mode": spec.fills,
            "state": str(self.state),
            "error": self.record.error,
            "started_ns": self.record.started_ns,
            "stopped_ns": self.record.stopped_ns,
            "recording": self.record.recording,
            "cash": cash,
            "equity": equity,
            "initial_cash": spec.cash,
            "positions": {t.symbol: t.book.shares for t in traders},
            "orders": sum(t.orders for t in traders),
            "fills": sum(t.fills for t in traders),
            "bars": sum(len(t.bar_ends) for t in traders),
            "lag_ms": round(max((t.decision_s for t in traders), default=0.0) * 1e3, 3),
            "lagging_bars": sum(t.lagging_bars for t in traders),
            "late_quotes": sum(t.late_quotes for t in traders),
            "unfilled": sum(t.unfilled for t in traders),
            "lost": self.lost_note,
            "backlog": self.backlog,
        }


_item = msgspec.json.Decoder(Order | Fill)


def journal_items(folder: Path) -> list[Order | Fill]:
    """The journal's orders and fills; a torn last line (a crash mid-write) is left out."""
    try:
        data = _read_regular(folder / "journal.jsonl")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise PaperError(f"{folder / 'journal.jsonl'} cannot be read: {exc}") from None
    items: list[Order | Fill] = []
    for line in data.splitlines():
        try:
            items.append(_item.decode(line))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return items


def _read_regular(path: Path) -> bytes:
    """The bytes of `path` if it is a regular file, not a link: a FIFO or a device left in a
    session's folder is refused, not read (which could block forever or never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file (a FIFO or a device is not read)")
        return f.read()
