"""The feed as the day's history: a trading session's trades, quotes and bars sent as they come due.

Every event comes from `history`, the same functions REST `/v3/trades`, `/v3/quotes`, the
aggregates and the flat files read, so what the feed sends for a day is exactly that day's
history: the same trade ids, prices, sizes, conditions and SIP timestamps (`t`, in ms), and A/AM
bars equal to the second and minute aggregates, each sent once its window has closed.

A session's events for all symbols are merged once into time-ordered columns (`SessionTape`);
each tick then takes the slice that came due on the shared `SimClock` with two binary searches
and renders it in bulk as fixed-width rows (`frames`), so one tick costs the same for one event
or ten thousand. A connection to the delayed feed gets the slice of 15 minutes earlier.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mesh.sim import frames, history
from mesh.sim.clock import SimClock, next_session
from mesh.sim.history import Bars
from mesh.sim.source import KINDS, SYMBOLS, Batch

TICK_S = 0.02
NS_PER_MS = 1_000_000
_T, _Q, _A, _AM = (KINDS.code(k) for k in ("T", "Q", "A", "AM"))
# ids up to 15 digits right-aligned; quote sizes in round lots; the SIP's sequence numbers per symbol
_FORMAT = frames.TickFormat(
    trade_id_words=4, fixed_width_ids=False, quote_size_words=2, sorted_sequences=False
)


@dataclass(frozen=True)
class BarTape:
    """One bar width's bars for all symbols, ordered by the time their window closes."""

    ev: str
    end_ms: np.ndarray
    sym: np.ndarray
    bars: Bars
    day_volume: np.ndarray  # the symbol's volume up to the bar's end (`av`)
    day_vwap: np.ndarray  # and its VWAP (`a`)
    day_open: np.ndarray  # `op`: the official open, 0 in bars that end before it


@dataclass(frozen=True)
class SessionTape:
    """A trading day's trades, quotes and bars for all symbols, merged into time order."""

    day: Any
    symbols: list[str]
    codes: np.ndarray  # symbol index -> SYMBOLS code
    tapes: np.ndarray  # symbol index -> tape
    trades: dict[str, np.ndarray]
    quotes: dict[str, np.ndarray]
    seconds: BarTape
    minutes: BarTape
    layouts: frames.TickLayouts

    @property
    def events(self) -> int:
        return (
            len(self.trades["t"])
            + len(self.quotes["t"])
            + len(self.seconds.end_ms)
            + len(self.minutes.end_ms)
        )


def build_tape(
    seed: int, symbols: list[str], day: Any, scale: float = history.DEFAULT_SCALE
) -> SessionTape:
    """Merge every symbol's history of `day` (seconds for a day of the default universe)."""
    trades = [history.day_trades(seed, s, day, scale) for s in symbols]
    quotes = [history.day_quotes(seed, s, day, scale) for s in symbols]
    tr = _merge(
        trades,
        {
            "t": "sip_ns",
            "p": "price",
            "s": "size",
            "x": "exchange",
            "flags": "flags",
            "i": "trade_id",
            "q": "sequence",
        },
    )
    qu = _merge(
        quotes,
        {
            "t": "sip_ns",
            "bp": "bid_price",
            "bs": "bid_size",
            "bx": "bid_exchange",
            "ap": "ask_price",
            "as": "ask_size",
            "ax": "ask_exchange",
            "q": "sequence",
        },
    )
    opening = _Opening(
        history.session_bounds_ns(day)[1],
        [
            float(b.o[0]) if len(b) else 0.0
            for b in (history.day_bar(seed, s, day, scale) for s in symbols)
        ],
    )
    qu["bs"] = qu["bs"] // 100  # the WebSocket feed gives quote sizes in round lots
    qu["as"] = qu["as"] // 100
    tapes = np.array([t.tape for t in trades], np.int64)
    return SessionTape(
        day,
        list(symbols),
        np.array([SYMBOLS.code(s) for s in symbols], np.int64),
        tapes,
        tr,
        qu,
        _bar_tape(
            "A", [history.second_bars(seed, s, day, scale) for s in symbols], trades, 1000, opening
        ),
        _bar_tape(
            "AM",
            [history.minute_bars(seed, s, day, scale) for s in symbols],
            trades,
            60_000,
            opening,
        ),
        frames.TickLayouts(symbols, tapes, _FORMAT),
    )


def _merge(parts: list[Any], fields: dict[str, str]) -> dict[str, np.ndarray]:
    sym = np.concatenate([np.full(len(p), j, np.int64) for j, p in enumerate(parts)])
    cols = {k: np.concatenate([getattr(p, f) for p in parts]) for k, f in fields.items()}
    order = np.argsort(cols["t"], kind="stable")
    out = {k: v[order] for k, v in cols.items()}
    out["sym"] = sym[order]
    return out


@dataclass(frozen=True)
class _Opening:
    """The regular session's opening time and each symbol's official open (the day bar's)."""

    at_ns: int
    price: list[float]


def _bar_tape(
    ev: str, per_symbol: list[Bars], trades: list[Any], width_ms: int, opening: _Opening
) -> BarTape:
    volume, vwap, opens = [], [], []
    for bars, tr, official in zip(per_symbol, trades, opening.price, strict=True):
        ends_ns = (bars.t + width_ms) * NS_PER_MS
        last = np.searchsorted(tr.sip_ns, ends_ns, side="left") - 1
        cum_v = np.cumsum(tr.size)
        cum_n = np.cumsum(tr.price * tr.size)
        v = cum_v[last] if len(bars) else np.empty(0, np.int64)
        volume.append(v)
        vwap.append(np.round(cum_n[last] / np.maximum(v, 1), 4) if len(bars) else np.empty(0))
        opens.append(np.where(ends_ns > opening.at_ns, official, 0.0))
    sym = np.concatenate([np.full(len(b), j, np.int64) for j, b in enumerate(per_symbol)])
    merged = Bars.concat(per_symbol)
    end = merged.t + width_ms
    order = np.lexsort((sym, end))
    return BarTape(
        ev,
        end[order],
        sym[order],
        merged.take(order),
        np.concatenate(volume)[order],
        np.concatenate(vwap)[order],
        np.concatenate(opens)[order],
    )


class PlaybackSource:
    """Plays the sessions of `clock` for `symbols`, one step per tick, building each day's tape once."""

    def __init__(
        self,
        symbols: list[str],
        seed: int,
        clock: SimClock,
        tick: float = TICK_S,
        scale: float = history.DEFAULT_SCALE,
    ) -> None:
        self.symbols = list(symbols)
        self.seed = seed
        self.scale = scale  # the history's, so that the feed is REST's and the flat files' day
        self.clock = clock
        self.tick = tick
        self.tape: SessionTape | None = None
        self.played = 0  # events that came due (whether or not anyone was subscribed)
        self.build_s = 0.0
        self.ticks_behind = 0

    async def steps(self) -> AsyncIterator[PlaybackStep]:
        while True:
            session = self.clock.session
            if self.tape is None or self.tape.day != session.day:
                began = time.perf_counter()
                self.tape = await asyncio.to_thread(
                    build_tape, self.seed, self.symbols, session.day, self.scale
                )
                self.build_s = round(time.perf_counter() - began, 3)
            tape = self.tape
            played_to = session.start_ns
            next_at = time.monotonic()
            while True:
                next_at += self.tick
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    self.ticks_behind += 1
                    next_at = time.monotonic()
                    await asyncio.sleep(0)
                now = self.clock.now_ns()
                step = PlaybackStep(tape, played_to, now)
                self.played += step.count(0)
                yield step
                played_to = now
                if now >= session.end_ns:
                    break
            self.clock.session = next_session(session, self.clock.wall())

    def counters(self) -> dict[str, Any]:
        return {
            **self.clock.counters(),
            "events_played": self.played,
            "session_build_s": self.build_s,
            "ticks_behind": self.ticks_behind,
        }


class PlaybackStep:
    """The events with SIP times in (after_ns, upto_ns]; a delayed feed gets those of `delay` earlier."""

    def __init__(self, tape: SessionTape, after_ns: int, upto_ns: int) -> None:
        self.tape = tape
        self.after_ns = after_ns
        self.upto_ns = upto_ns

    def _slice(self, times: np.ndarray, delay_ns: int, unit: int = 1) -> slice:
        lo, hi = (self.after_ns - delay_ns) // unit, (self.upto_ns - delay_ns) // unit
        return slice(
            int(np.searchsorted(times, lo, side="right")),
            int(np.searchsorted(times, hi, side="right")),
        )

    def count(self, delay_ms: int) -> int:
        d = delay_ms * NS_PER_MS
        tape = self.tape
        parts = (
            self._slice(tape.trades["t"], d),
            self._slice(tape.quotes["t"], d),
            self._slice(tape.seconds.end_ms, d, NS_PER_MS),
            self._slice(tape.minutes.end_ms, d, NS_PER_MS),
        )
        return sum(p.stop - p.start for p in parts)

    def render(self, delay_ms: int) -> Batch:
        d = delay_ms * NS_PER_MS
        tape, lay = self.tape, self.tape.layouts
        ts = self._slice(tape.trades["t"], d)
        qs = self._slice(tape.quotes["t"], d)
        tr = {k: v[ts] for k, v in tape.trades.items()}
        qu = {k: v[qs] for k, v in tape.quotes.items()}
        nt, nq = len(tr["t"]), len(qu["t"])
        order = np.argsort(np.concatenate([tr["t"], qu["t"]]), kind="stable")
        is_trade = order < nt
        rows = lay.rows(nt + nq)
        if nt:
            rows[is_trade] = lay.trades(tr, tr["t"] // NS_PER_MS)
        if nq:
            rows[~is_trade] = lay.quotes(qu, qu["t"] // NS_PER_MS)
        kinds = np.where(is_trade, _T, _Q)
        symbols = tape.codes[np.concatenate([tr["sym"], qu["sym"]])[order]]
        loose, loose_kinds, loose_symbols = [], [], []
        for bars, kind in ((tape.seconds, _A), (tape.minutes, _AM)):
            for event, code in _bar_events(tape, bars, self._slice(bars.end_ms, d, NS_PER_MS)):
                loose.append(frames.encode_event(event))
                loose_kinds.append(kind)
                loose_symbols.append(code)
        present = frozenset(k for k, n in ((_T, nt), (_Q, nq)) if n)
        return Batch(
            rows.view(np.uint8), kinds, symbols, loose, loose_kinds, loose_symbols, present
        )


def _bar_events(tape: SessionTape, bars: BarTape, part: slice) -> list[tuple[dict[str, Any], int]]:
    b = bars.bars.take(part)
    width = 1000 if bars.ev == "A" else 60_000
    cols = zip(
        bars.sym[part].tolist(), b.t.tolist(), b.o.tolist(), b.h.tolist(), b.low.tolist(),
        b.c.tolist(), b.v.tolist(), b.vw.tolist(), b.n.tolist(), bars.day_volume[part].tolist(),
        bars.day_vwap[part].tolist(), bars.day_open[part].tolist(), strict=True,
    )  # fmt: skip
    out = []
    for j, s, o, h, low, c, v, vw, n, av, a, op in cols:
        event = frames.bar_event(
            bars.ev, tape.symbols[j], s, width, (o, h, low, c, v, vw, n), (av, a, op)
        )
        out.append((event, int(tape.codes[j])))
    return out
