"""Replay of a recorded session through the sim's WebSocket feed.

`massive run sim --replay NAME [--speed N|max] [--loop]` streams a recording made by the recorder
(`data/recordings/NAME/`, any folder, or an `s3://` URI) as Massive `Q`, `T`, `A` and `AM` events,
in the order they were recorded and at their recorded pace divided by `speed`. The events carry
their recorded times, not the current time.

Pacing follows the recorded receipt times (`ts_recv`, the order the recording keeps): events
received together are sent together, and a gap of one second between receipts becomes a gap of
1/speed seconds. `max` sends as fast as the slowest subscribed client reads (the feed waits while
a client's send queue holds more than `MAX_QUEUED_BYTES`, and while no client is subscribed).
The replay starts `START_GRACE` seconds after the first client subscribes, so a client that
connects after the sim started still gets the whole recording.

Turning rows back into Massive events undoes what ingest did to them: times in Unix milliseconds
(recorded nanoseconds are floored to the millisecond, which is all Massive's protocol carries),
quote sizes in round lots (shares // 100), trade sizes in shares. Bars (`bars_1s`, `bars_1m`) go
out as `A` / `AM` events once the replay clock passes the end of their window; `av`, `a` and `op`
are accumulated over the recording per symbol and New York day.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mesh import bar_schema, datasets
from mesh.datasets import DatasetError, DatasetKind, bar_file, bar_table
from mesh.datasets.columns import QUOTES, TRADES
from mesh.datasets.layout import MANIFEST, part_number
from mesh.intervals import MINUTE, SECOND
from mesh.recorder.replay import replay_batches
from mesh.recorder.store import Store, StoreError, open_session
from mesh.schema import QuoteBatch
from mesh.sim import frames, market
from mesh.sim.source import DictStep
from mesh.times import to_ns

if TYPE_CHECKING:
    from mesh.sim.ws import Feed

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
SHARES_PER_LOT = 100
START_GRACE = 0.25  # seconds between the first subscription and the first replayed event
MAX_QUEUED_BYTES = 1 << 20  # at speed max, wait while a client has more than this queued
STEP_SPAN_NS = 2_000_000  # events due within 2 ms (of replay time) go out as one step
STEP_EVENTS = 1_000  # at most this many events per step
READ_ROWS = 2_000  # rows per batch read from the recording
BAR_EVENTS = {SECOND: "A", MINUTE: "AM"}  # the recorded trade bars -> Massive's bar events
BAR_KINDS = {bar_table(interval): ev for interval, ev in BAR_EVENTS.items()}


class ReplayError(Exception):
    """A recording that cannot be replayed; the message is one line saying why."""


@dataclass
class Recording:
    """A recording found and checked: where it is and how many events it holds."""

    location: str  # what `replay_batches` opens: a folder or an s3:// URI
    name: str
    shown: str  # the location without credentials
    quotes: int = 0
    trades: int = 0
    bars: int = 0  # 1 s and 1 min trade bars
    capture_only: bool = False  # without the rows a heal added (mesh/datasets/healed.py)

    @property
    def total(self) -> int:
        return self.quotes + self.trades + self.bars


def open_recording(recording: str, data_dir: Path, *, capture_only: bool = False) -> Recording:
    """Find a recording and check that every file of it can be opened; raises ReplayError.

    A NAME or path means what it means to every command (`mesh.datasets.resolve`), with the same
    one-line errors; an `s3://` URI is opened as the recorder wrote it there.
    """
    text = recording.strip()
    if not text:
        raise ReplayError(
            "no recording given: --replay takes a recording folder or the NAME of one under MESH_DATA_DIR/recordings"
        )
    if text.startswith("s3://"):
        return _open_remote(text, capture_only)
    try:
        dataset = datasets.resolve(text, data_dir, capture_only=capture_only)
    except DatasetError as exc:
        raise ReplayError(str(exc)) from None
    if dataset.kind is not DatasetKind.RECORDING:
        raise ReplayError(
            f"{dataset.path} is not a recording (it is a {dataset.kind} dataset): --replay takes a recording, see `massive data list`"
        )
    rows = {name: table.rows for name, table in dataset.tables.items()}
    return Recording(
        str(dataset.path),
        dataset.name,
        str(dataset.path),
        quotes=rows.get(QUOTES, 0),
        trades=rows.get(TRADES, 0),
        bars=sum(rows.get(table, 0) for table in BAR_KINDS),
        capture_only=capture_only,
    )


def _open_remote(location: str, capture_only: bool = False) -> Recording:
    try:
        store, name = open_session(location)
        shown = store.uri(name)
        if not store.exists(name):
            raise ReplayError(f"no recording at {shown}")
        found = Recording(location, name, shown, capture_only=capture_only)
        parts = {
            table: sorted(
                f for f in store.list_files(f"{name}/{table}") if part_number(f) is not None
            )
            for table in (QUOTES, TRADES)
        }
        if not any(parts.values()) and not store.exists(f"{name}/{MANIFEST}"):
            raise ReplayError(
                f"{shown} is not a recording: it has no {MANIFEST}, quotes/ or trades/"
            )
        for table, files in parts.items():
            rows = sum(_rows(store, f"{name}/{table}/{f}") for f in files)
            setattr(found, table, rows)
        found.bars = sum(
            _rows(store, f"{name}/{t}.parquet")
            for t in BAR_KINDS
            if store.exists(f"{name}/{t}.parquet")
        )
        return found
    except (StoreError, OSError, pa.ArrowException) as exc:
        raise ReplayError(f"cannot open recording {location}: {_one_line(str(exc))}") from None


def _rows(store: Store, rel: str) -> int:
    try:
        return int(store.parquet_file(rel).metadata.num_rows)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise ReplayError(
            f"cannot read recording file {store.uri(rel)}: {_one_line(str(exc))}"
        ) from None


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


# --- rows -> Massive events ------------------------------------------------------------------------


def quote_events(batch: QuoteBatch) -> list[dict[str, Any]]:
    """Recorded quotes as Massive `Q` events (sizes back in round lots, times in ms)."""
    return [
        {"ev": "Q", "sym": sym, "bx": bx, "bp": bp, "bs": bs // SHARES_PER_LOT, "ax": ax, "ap": ap, "as": as_ // SHARES_PER_LOT,
         "c": c, "t": t // NS_PER_MS, "q": q, "z": z}
        for sym, bp, bs, ap, as_, bx, ax, c, z, q, t in zip(
            batch.symbol, batch.bid_price, batch.bid_size, batch.ask_price, batch.ask_size, batch.bid_exchange,
            batch.ask_exchange, batch.condition, batch.tape, batch.sequence, batch.ts_event, strict=True,
        )
    ]  # fmt: skip


def trade_events(batch: Any) -> list[dict[str, Any]]:
    """Recorded trades as Massive `T` events (`c` left out when there are no conditions)."""
    out = []
    for sym, p, s, x, i, c, z, q, t in zip(
        batch.symbol,
        batch.price,
        batch.size,
        batch.exchange,
        batch.trade_id,
        batch.conditions,
        batch.tape,
        batch.sequence,
        batch.ts_event,
        strict=True,
    ):
        event = {
            "ev": "T",
            "sym": sym,
            "i": i,
            "x": x,
            "p": p,
            "s": s,
            "t": t // NS_PER_MS,
            "q": q,
            "z": z,
        }
        if c:
            event["c"] = list(c)
        out.append(event)
    return out


def bar_events(store: Store, name: str) -> list[tuple[int, dict[str, Any]]]:
    """The recording's trade bars as (window end ns, `A`/`AM` event), by window end."""
    out: list[tuple[int, int, dict[str, Any]]] = []
    for order, (interval, ev) in enumerate(BAR_EVENTS.items()):
        rel = f"{name}/{bar_file(interval)}"
        if not store.exists(rel):
            continue
        data = bar_schema.to_current(store.read_table(rel), interval)
        cols = {
            f.name: (
                to_ns(data.column(f.name)).tolist()
                if pa.types.is_timestamp(f.type)
                else data.column(f.name).to_pylist()
            )
            for f in data.schema
        }
        rows = sorted(zip(cols["ts_start"], cols["symbol"], range(data.num_rows), strict=True))
        day_key: dict[str, Any] = {}
        day: dict[str, list[float]] = {}  # symbol -> [volume, notional, official open]
        for start, sym, i in rows:
            today = market.today_et(start)
            if day_key.get(sym) != today:
                day_key[sym], day[sym] = today, [0.0, 0.0, cols["open"][i]]
            volume, vwap, n = cols["volume"][i], cols["vwap"][i], cols["transactions"][i]
            acc = day[sym]
            acc[0] += volume
            acc[1] += volume * vwap if volume else 0.0
            event = {
                "ev": ev, "sym": sym, "v": _number(volume), "av": _number(acc[0]), "op": acc[2], "vw": round(vwap, 4) if volume else 0.0,
                "o": cols["open"][i], "c": cols["close"][i], "h": cols["high"][i], "l": cols["low"][i],
                "a": round(acc[1] / acc[0], 4) if acc[0] else 0.0, "z": volume / n if n else 0,
                "s": start // NS_PER_MS, "e": cols["ts_end"][i] // NS_PER_MS,
            }  # fmt: skip
            out.append((cols["ts_end"][i], order, event))
    out.sort(key=lambda item: (item[0], item[1]))
    return [(end, event) for end, _, event in out]


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def recorded_events(
    location: str, *, max_rows: int = READ_ROWS, capture_only: bool = False
) -> Generator[list[tuple[int, dict[str, Any]]], None, None]:
    """The recording as chunks of (replay clock ns, Massive event), in recorded order, bars merged in.

    The clock of a quote or trade is its `ts_recv`; a bar is due once the clock passes the end of
    its window. The clock never goes back (an event received out of order waits for no one).
    """
    store, name = open_session(location)
    bars = bar_events(store, name)
    b = 0
    clock = 0
    for batch in replay_batches(location, max_rows=max_rows, capture_only=capture_only):
        events = quote_events(batch) if isinstance(batch, QuoteBatch) else trade_events(batch)
        chunk: list[tuple[int, dict[str, Any]]] = []
        for recv, event in zip(batch.ts_recv, events, strict=True):
            while b < len(bars) and bars[b][0] <= recv:
                clock = max(clock, bars[b][0])
                chunk.append((clock, bars[b][1]))
                b += 1
            clock = max(clock, recv)
            chunk.append((clock, event))
        yield chunk
    if b < len(bars):
        yield [(max(clock, end), event) for end, event in bars[b:]]


# --- the source ------------------------------------------------------------------------------------


class ReplaySource:
    """A `Source` for the sim's feed that replays a recording (see the module docstring).

    After the last event it tells connected clients (a `success` status, "replay finished: ...")
    and idles, so the sim stays up; with `loop` it starts over instead.
    """

    def __init__(
        self,
        recording: Recording,
        *,
        speed: float | None = 1.0,
        loop: bool = False,
        start_grace: float = START_GRACE,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as clients read)")
        self.recording = recording
        self.speed = speed
        self.loop = loop
        self.start_grace = start_grace
        self.feed: Feed | None = None
        self.state = "waiting"  # waiting | replaying | finished | empty | failed
        self.error: str | None = None
        self.events = 0  # events replayed in this pass
        self.passes = 0  # passes completed
        self.started_at: float | None = None
        self.finished_at: float | None = None

    def attach(self, feed: Feed) -> None:
        """Called by `SimServer`: the feed whose clients the replay waits for and paces by."""
        self.feed = feed

    # --- reporting ------------------------------------------------------------------------------

    @property
    def speed_text(self) -> str:
        return "max" if self.speed is None else f"{self.speed:g}x"

    def counters(self) -> dict[str, Any]:
        return {
            "replay_events": self.events,
            "replay_total": self.recording.total,
            "replay_done": self.state == "finished",
            "replay_passes": self.passes,
            "replay_state": self.state,
        }

    def message(self) -> str:
        r = self.recording
        if self.state == "empty":
            return f"replay of {r.name}: the recording is empty (no quotes, trades or bars); idle"
        if self.state == "failed":
            return f"replay of {r.name} failed: {self.error}"
        if self.state == "waiting":
            return f"replay of {r.name} ({r.total} events, {self.speed_text}): waiting for a client to subscribe"
        if self.state == "finished":
            took = (self.finished_at or 0) - (self.started_at or 0)
            return f"replay of {r.name} finished: {self.events} events in {took:.1f} s; connections stay open"
        loop = f", pass {self.passes + 1}" if self.loop else ""
        return f"replaying {r.name} at {self.speed_text}{loop}: {self.events}/{r.total} events"

    # --- the feed's side ------------------------------------------------------------------------

    async def steps(self) -> AsyncIterator[DictStep]:
        if self.recording.total == 0:
            self.state = "empty"
            log.warning("%s", self.message())
            await asyncio.Event().wait()
        await self._wait_for_listener()
        await asyncio.sleep(self.start_grace)
        while True:
            self.state, self.events = "replaying", 0
            self.started_at = time.monotonic()
            log.info("%s", self.message())
            try:
                async for step in self._one_pass():
                    yield step
            except (OSError, pa.ArrowException, StoreError, ValueError) as exc:
                self.state, self.error = "failed", _one_line(str(exc))
                raise ReplayError(f"cannot read {self.recording.shown}: {self.error}") from None
            self.passes += 1
            if not self.loop:
                break
        self.state, self.finished_at = "finished", time.monotonic()
        log.info("%s", self.message())
        self._tell_clients(f"replay finished: {self.events} events of {self.recording.name}")
        await asyncio.Event().wait()  # the feed (and every connection) stays up

    async def _one_pass(self) -> AsyncIterator[DictStep]:
        chunks = recorded_events(self.recording.location, capture_only=self.recording.capture_only)
        first: int | None = None
        began = 0.0
        pending: list[dict[str, Any]] = []
        pending_due = 0.0
        try:
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    break
                for clock, event in chunk:
                    if first is None:
                        first, began = clock, time.monotonic()
                    due = (clock - first) / 1e9 / self.speed if self.speed is not None else 0.0
                    if pending and (
                        len(pending) >= STEP_EVENTS or due - pending_due > STEP_SPAN_NS / 1e9
                    ):
                        yield await self._release(pending, began + pending_due)
                        pending = []
                    if not pending:
                        pending_due = due
                    pending.append(event)
            if pending:
                yield await self._release(pending, began + pending_due)
        finally:
            chunks.close()

    async def _release(self, events: list[dict[str, Any]], at: float) -> DictStep:
        if self.speed is None:
            await self._wait_for_readers()
        else:
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        self.events += len(events)
        return DictStep(events)

    def _listeners(self) -> list[Any]:
        if self.feed is None:
            return []
        return [c for c in self.feed.connections if c.key is not None and c.live and c.subs]

    async def _wait_for_listener(self) -> None:
        if self.feed is None:
            return
        while not self._listeners():
            await asyncio.sleep(0.02)

    async def _wait_for_readers(self) -> None:
        """Speed max: wait for a subscribed client, and until every one has drained its queue."""
        if self.feed is None:
            return
        while True:
            listeners = self._listeners()
            if listeners and all(c.queued_bytes <= MAX_QUEUED_BYTES for c in listeners):
                return
            await asyncio.sleep(0.001 if listeners else 0.02)

    def _tell_clients(self, message: str) -> None:
        if self.feed is None:
            return
        frame = frames.status_frame(frames.status("success", message))
        for conn in self.feed.connections:
            if conn.key is not None and conn.live:
                conn.enqueue(frame)
