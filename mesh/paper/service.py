"""`massive run strategy`: paper sessions from the control channel, live quotes from the bus.

Commands (each answered at once; docs/paper.md):

    start(name, strategy, params={}, symbols=[...], interval="1s", cash=100000,
          commission_bps=0, whole_shares=False, cap_size=False, latency_ms=0)  -> the session
    stop(name)                                                                 -> the session
    status()                                                                   -> {"sessions": [...]}

One process holds any number of sessions. Quotes (`md.quote.*`) go to the traders of every
running session that trades the symbol; a clock closes bars and starts orders that no quote will
(mesh/paper/engine.py). Orders, fills and P&L go on `strat.order|fill|pnl.<name>` after the
orders and fills are journalled. A strategy that raises stops its own session (the traceback in
the log, in `status` and on `sys.event.strategy`); the others go on. Strategies are the
backtester's: a built-in, or `FILE:function` from a .py file in `MESH_STRATEGY_PATH`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import zmq

from mesh import client, topics
from mesh.argtypes import OneLineParser
from mesh.backtest import indicators
from mesh.backtest.errors import BacktestError
from mesh.backtest.strategy_path import StrategyPath
from mesh.client import Subscriber
from mesh.config import Config
from mesh.control import ControlError
from mesh.paper.session import MAX_SYMBOLS, PaperError, Record, Session, Spec, State
from mesh.schema import QuoteBatch
from mesh.service import Runtime, Service, run_service

log = logging.getLogger(__name__)

CLOCK_S = 0.05  # how often the clock closes bars no quote closed
AHEAD_NS = 300 * 10**9  # a quote stamped this far past both clocks is left out (a bad stamp)


class EventClock:
    """The market's time, from quotes' SIP stamps: wall time less the smallest delay seen.

    The simulator plays past sessions when the market is closed, so SIP time and wall time may
    be a day apart; a jump of over a minute in the delay starts the estimate again.
    """

    def __init__(self) -> None:
        self.offset: int | None = None

    def saw(self, latest_ts: int) -> None:
        delay = time.time_ns() - latest_ts
        if self.offset is None or delay < self.offset or delay - self.offset > 60 * 10**9:
            self.offset = delay

    def now(self) -> int | None:
        return None if self.offset is None else time.time_ns() - self.offset


class StrategyService(Service):
    """Paper sessions; see the module docstring."""

    name: ClassVar[str] = "strategy"

    def __init__(self, config: Config, strategy_path: StrategyPath | None = None) -> None:
        super().__init__(config)
        self.strategy_path = strategy_path or StrategyPath.from_environ()
        self.root = config.data_dir / "paper"
        self.sessions: dict[str, Session] = {}
        self.finished: dict[str, Record] = {}  # sessions of earlier runs, from disk
        self.clock = EventClock()
        self.subscriber: Subscriber | None = None
        self.quotes_seen = 0
        self.starting: set[str] = set()  # sessions whose `start` is under way
        self.ahead_quotes = 0  # left out: stamped far past the market's time and the wall clock
        self.reported: set[str] = set()  # failed sessions already logged
        self.symbols_seen: set[str] = set()  # every symbol quoted on the bus (a session's default)

    # --- the loop --------------------------------------------------------------------------------

    async def run(self, runtime: Runtime) -> None:
        await asyncio.to_thread(self._resume_all)
        # the built-in strategies' compiled indicators, loaded before any quote is taken
        await asyncio.to_thread(indicators.warm_up)
        halt = threading.Event()  # the receiving thread's stop (the service's, or a failure here)
        receiving = asyncio.ensure_future(
            asyncio.to_thread(self._receive, zmq.Context.shadow(runtime.context.underlying), halt)
        )
        try:
            while not runtime.stopping.is_set() and not receiving.done():
                await asyncio.wait({receiving}, timeout=CLOCK_S)
                self._report_failures(runtime)
            if receiving.done():
                receiving.result()  # its error, if it failed
        finally:
            halt.set()
            await asyncio.wait({receiving}, timeout=5 * CLOCK_S)
            for session in list(self.sessions.values()):
                if session.active:  # a restart resumes it
                    session.stopping.set()
                    session.inbox.put(("stop",))
                    session.save()

    def _receive(self, context: zmq.Context, halt: threading.Event) -> None:
        """Quotes from the bus, on a thread of their own, until `halt`.

        A blocking socket hands each batch to the sessions' threads with no event loop in
        between (and the interpreter handed over at once): about a third off the median and p99
        of a bar's close -> its decision (docs/paper.md, "Speed"). The clock ticks when no quote
        is waiting; commands stay on the event loop. Batches are decoded to lists, not numpy
        columns: a live feed's batches are small, and a one-quote batch decodes in about 20 us
        as lists against 220 us as columns (numpy's per-call cost, once per column)."""
        sub = self.subscriber = Subscriber(
            [topics.quotes()],
            self.config.bus_sub,
            context=context,
            config=self.config,
        )
        try:
            while not halt.is_set():
                msg = sub.recv(timeout=CLOCK_S)
                if msg is not None:
                    if isinstance(msg.payload, QuoteBatch):
                        self._on_quotes(msg.payload)
                    if sub.socket.poll(0):  # the clock waits while quotes are still queued
                        continue
                self._tick()
        finally:
            sub.close()

    def _on_quotes(self, batch: QuoteBatch) -> None:
        n = len(batch.symbol)
        if not n:
            return
        columns: list[Sequence[Any]] = [
            batch.ts_event,
            batch.bid_price,
            batch.ask_price,
            batch.bid_size,
            batch.ask_size,
        ]
        symbols = list(batch.symbol)
        now = self.clock.now()
        if now is not None:  # one quote stamped far ahead would make every later one late
            limit = max(now, time.time_ns()) + AHEAD_NS
            if max(columns[0]) > limit:
                keep = [i for i, ts in enumerate(columns[0]) if ts <= limit]
                self.ahead_quotes += n - len(keep)
                columns = [[c[i] for i in keep] for c in columns]
                symbols = [symbols[i] for i in keep]
                n = len(keep)
                if not n:
                    return
        self.clock.saw(max(columns[0]))
        self.quotes_seen += n
        if len(self.symbols_seen) < MAX_SYMBOLS:
            self.symbols_seen.update(symbols)
        active = [s for s in list(self.sessions.values()) if s.active]  # a copy: commands add
        if not active:
            return
        arrived = time.monotonic()
        rows = list(zip(symbols, *columns, strict=True))
        for session in active:
            wanted = session.traders
            mine = [row for row in rows if row[0] in wanted]
            if mine:
                session.quotes(mine, arrived)
        time.sleep(0)  # the interpreter to the sessions' threads now, not when this one waits

    def _tick(self) -> None:
        now = self.clock.now()
        if now is None:
            return
        mono = time.monotonic()
        for session in list(self.sessions.values()):  # a copy: commands add sessions
            if session.active:
                session.tick(now, mono)

    def _report_failures(self, runtime: Runtime) -> None:
        """Report failed sessions once (each session's thread publishes its own records)."""
        for session in self.sessions.values():
            if session.failure is not None and session.name not in self.reported:
                self.reported.add(session.name)
                log.error(
                    "paper session %s stopped: its strategy failed",
                    session.name,
                    exc_info=session.failure,
                )
                runtime.event(
                    "error",
                    f"paper session {session.name} failed: {session.failure}",
                    session=session.name,
                )

    # --- sessions on disk ------------------------------------------------------------------------

    def _resume_all(self) -> None:
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_symlink() or not folder.is_dir():
                log.warning("%s skipped: not a session's folder (a link, or not a folder)", folder)
                continue
            try:
                record = Session.load(folder)
            except PaperError as exc:
                log.warning("%s", exc)
                continue
            if record.spec.name != folder.name:  # two folders could hold one session
                log.warning("%s skipped: it holds session %r", folder, record.spec.name)
                continue
            if record.state not in (State.RUNNING, State.LAGGING):
                self.finished[record.spec.name] = record
                continue
            try:
                strategy = self.strategy_path.load(record.spec.strategy)
                params = strategy.resolve(record.spec.params)
                session = Session.resume(record, strategy, params, folder)
            except (BacktestError, PaperError, OSError) as exc:
                log.error("paper session %s cannot resume: %s", record.spec.name, exc)
                continue
            self.sessions[session.name] = session
            session.bus = self.config
            session.begin()
            log.warning("paper session %s: %s", session.name, session.lost_note)

    # --- commands --------------------------------------------------------------------------------

    async def cmd_start(
        self,
        name: str,
        strategy: str,
        params: dict[str, Any] | None = None,
        symbols: list[str] | str | None = None,
        interval: str = "1s",
        fills: str = "quotes",
        cash: float = 100_000.0,
        commission_bps: float = 0.0,
        whole_shares: bool = False,
        cap_size: bool = False,
        latency_ms: float = 0.0,
    ) -> dict[str, Any]:
        if isinstance(symbols, str):
            symbols = [s.strip().upper() for s in symbols.split(",") if s.strip()]
        if not symbols:  # every symbol quoted on the bus so far
            symbols = sorted(self.symbols_seen)
            if not symbols:
                raise PaperError("no quotes on the bus yet to pick symbols from: give symbols")
        if params is not None and not isinstance(params, dict):
            raise PaperError("params: expected a map of names to values")
        try:
            spec = Spec(
                name=name,
                strategy=strategy,
                params=dict(params or {}),
                symbols=list(symbols or []),
                interval=interval,
                fills=fills,
                cash=float(cash),
                commission_bps=float(commission_bps),
                whole_shares=bool(whole_shares),
                cap_size=bool(cap_size),
                latency_ms=float(latency_ms),
            ).check()
        except (TypeError, ValueError) as exc:
            raise PaperError(str(exc)) from None
        if name in self.sessions and self.sessions[name].active:
            raise PaperError(f"paper session {name!r} is running; stop it first")
        if name in self.starting:  # its folder is being made: a second would share it
            raise PaperError(f"paper session {name!r} is being started already")
        self.starting.add(name)
        try:
            return await self._start(spec)
        finally:
            self.starting.discard(name)

    async def _start(self, spec: Spec) -> dict[str, Any]:
        name, strategy = spec.name, spec.strategy
        self.strategy_path.check(strategy)
        loaded = await asyncio.to_thread(self.strategy_path.load, strategy)
        resolved = loaded.resolve(spec.params)
        recording, started = await asyncio.to_thread(self._recording_for, spec)
        session = await asyncio.to_thread(
            Session.create, spec, loaded, resolved, self.root, recording
        )
        session.record.started_recording = started
        session.save()
        self.sessions[name] = session
        session.bus = self.config
        session.begin()
        self.finished.pop(name, None)
        log.info(
            "paper session %s: %s on %s at %s bars, recorded in %s",
            name,
            strategy,
            ",".join(spec.symbols),
            spec.interval,
            recording,
        )
        return session.view()

    def _recording_for(self, spec: Spec) -> tuple[str, bool]:
        """(the recording that will hold the session's quotes, whether this session started it)."""
        try:
            status = client.call("recorder", "status", config=self.config, timeout=3)
            current = status.get("session") or {}
            if current.get("state") == "recording":
                return str(current.get("session") or current.get("name")), False
            name = f"paper-{spec.name}"
            client.call(
                "recorder",
                "start",
                {"name": name, "symbols": spec.symbols},
                config=self.config,
                timeout=5,
            )
            return name, True
        except ControlError as exc:
            raise PaperError(
                f"no recording for the session: the recorder did not answer ({exc}); "
                "start it (`massive run recorder`) so the session can be compared"
            ) from None

    async def cmd_stop(self, name: str) -> dict[str, Any]:
        session = self.sessions.get(name) if isinstance(name, str) else None
        if session is None:
            raise PaperError(
                f"no running paper session {name!r:.60}; `massive paper status` lists them"
            )
        await asyncio.to_thread(session.stop)
        if self.runtime is not None:
            self._report_failures(self.runtime)
        record = session.record
        heir = next(
            (
                other
                for other in self.sessions.values()
                if other is not session
                and other.active
                and other.record.recording == record.recording
            ),
            None,
        )
        if record.started_recording and not record.recording_stopped and heir is not None:
            # another running session records into it: that one stops it when it stops
            record.started_recording = False
            heir.record.started_recording = True
            await asyncio.to_thread(session.save)
            await asyncio.to_thread(heir.save)
        elif record.started_recording and not record.recording_stopped:  # once, not a later one
            record.recording_stopped = True
            await asyncio.to_thread(session.save)
            try:
                await asyncio.to_thread(
                    client.call, "recorder", "stop", config=self.config, timeout=10
                )
            except ControlError as exc:
                log.warning("paper session %s: stopping its recording failed: %s", name, exc)
        return session.view()

    def cmd_status(self) -> dict[str, Any]:
        return self.stats()

    def stats(self) -> dict[str, Any]:
        views = [s.view() for s in self.sessions.values()]
        views += [_record_view(r) for n, r in self.finished.items() if n not in self.sessions]
        return {"sessions": views}

    def counters(self) -> dict[str, Any]:
        states = [s.state for s in self.sessions.values()]
        return {
            "sessions_running": sum(s in (State.RUNNING, State.LAGGING) for s in states),
            "sessions_failed": sum(s is State.FAILED for s in states),
            "quotes": self.quotes_seen,
            "ahead_quotes": self.ahead_quotes,
            "orders": sum(s.published.get(topics.ORDER, 0) for s in self.sessions.values()),
            "fills": sum(s.published.get(topics.FILL, 0) for s in self.sessions.values()),
            **(dict(self.subscriber.stats.as_counters()) if self.subscriber else {}),
        }


def _record_view(record: Record) -> dict[str, Any]:
    spec = record.spec
    return {
        "name": spec.name,
        "strategy": spec.strategy,
        "params": spec.params,
        "symbols": spec.symbols,
        "interval": spec.interval,
        "fill_mode": spec.fills,
        "state": str(record.state),
        "error": record.error,
        "started_ns": record.started_ns,
        "stopped_ns": record.stopped_ns,
        "recording": record.recording,
        "initial_cash": spec.cash,
        "lost": "",
    }


def build_parser() -> argparse.ArgumentParser:
    return OneLineParser(
        prog="massive run strategy",
        description=(
            "Run paper sessions: backtester strategies evaluated live at each bar close on bars of "
            "live quote mids, their orders filled against live quotes as the backtester fills "
            "them (start them with `massive paper start`)."
        ),
    )


def main(config: Config, argv: list[str] | None = None) -> int:
    """`massive run strategy`."""
    build_parser().parse_args(argv or [])
    # the sessions' threads and the event loop hand the interpreter to each other every 0.5 ms
    # rather than every 5 ms, so a bar's decision never waits a whole slice behind the loop
    sys.setswitchinterval(0.0005)
    try:
        strategy_path = StrategyPath.from_environ()
    except BacktestError as exc:
        log.error("%s", exc)
        return 2
    return run_service(StrategyService(config, strategy_path))
