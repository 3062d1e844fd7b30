"""Attach to the bus in a few lines: publish, subscribe, send commands.

    from mesh.client import Subscriber

    with Subscriber(["md.quote."]) as sub:
        for msg in sub:
            for quote in msg.payload.rows():
                print(quote.symbol, quote.bid_price, quote.ask_price)

Subscribers never die of bad input: a malformed message is counted in `stats.malformed` by kind,
logged once per kind, and skipped. They also count sequence gaps per (source, topic), so a
consumer knows how many messages it did not get.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from mesh import auth, control, wire
from mesh.config import Config, load_config
from mesh.schema import Header
from mesh.wire import MalformedFrame, Message

log = logging.getLogger(__name__)

# Deep queues: a burst is held in memory rather than dropped; loss still shows in the gap counters.
PUB_HWM = 200_000
SUB_HWM = 200_000
# A sequence that jumps further than this was not counting lost messages (no publisher sends a
# trillion messages between two we see): it is counted as a jump, so no counter can overflow.
MAX_PLAUSIBLE_GAP = 10**12
_SNDMORE = int(zmq.SNDMORE)


class Publisher:
    """Publishes records on the bus with this source's name and per-topic sequence numbers."""

    def __init__(
        self,
        source: str,
        endpoint: str | None = None,
        *,
        context: zmq.Context | None = None,
        hwm: int = PUB_HWM,
        bind: bool = False,
        config: Config | None = None,
    ) -> None:
        self.source = source
        config = config or load_config()
        self.endpoint = endpoint or config.bus_pub
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.sndhwm = hwm
        self._sock.linger = 500
        # Services always connect (only the bus binds); `bind` exists for a direct pair with no bus.
        if bind:
            self._sock.bind(self.endpoint)
        else:
            auth.secure_client(self._sock, auth.client_keys(config))
            self._sock.connect(self.endpoint)
        self._seq: dict[str, int] = {}
        self.sent = 0

    def publish(self, topic: str, payload: Any, ts_send: int | None = None) -> None:
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        topic_frame, body = wire.encode(topic, payload, src=self.source, seq=seq, ts_send=ts_send)
        send = self._sock.send
        send(
            topic_frame, _SNDMORE
        )  # two sends with a plain int flag: send_multipart's enum arithmetic costs more than the copy
        send(body)
        self.sent += 1

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class SubscriberStats:
    """What a subscriber saw: messages, malformed input by kind, sequence gaps and restarts."""

    received: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    gaps: int = 0  # messages missing according to (source, topic) sequence numbers
    restarts: int = 0  # sources whose sequence started again (a restarted process)
    jumps: int = 0  # sequence jumps too large to be lost messages (a forged or corrupt header)
    _last_seq: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    _logged: set[str] = field(default_factory=set, repr=False)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def observe(self, msg: Message) -> int:
        """Account for one good message; returns the number of messages missing just before it."""
        return self.observe_header(msg.topic, msg.header)

    def observe_header(self, topic: str, header: Header) -> int:
        """`observe` for a message known by its topic and header (a message merged into a burst)."""
        self.received += 1
        key = (header.src, topic)
        seq = header.seq
        last = self._last_seq.get(key)
        self._last_seq[key] = seq
        if last is None:
            return 0
        if seq <= last:
            self.restarts += 1
            return 0
        missing = seq - last - 1
        if missing > MAX_PLAUSIBLE_GAP:
            self.jumps += 1
            return 0
        self.gaps += missing
        return missing

    def continues(self, received: Iterable[tuple[str, Header]]) -> bool:
        """Whether these (topic, header)s, in order, follow on from what was seen with no message
        missing and no source restarting (nothing is counted: `observe_header` does that)."""
        last_seq = self._last_seq
        seen: dict[tuple[str, str], int] = {}
        for topic, header in received:
            key = (header.src, topic)
            last = seen.get(key, last_seq.get(key))
            if last is not None and header.seq != last + 1:
                return False
            seen[key] = header.seq
        return True

    def reject(self, error: MalformedFrame) -> None:
        """Count a message that could not be decoded. When its envelope was readable, its sequence
        number still counts as seen: a bad message is malformed, not also missing."""
        self.malformed[error.kind] += 1
        if error.header is not None and error.topic is not None:
            key = (error.header.src, error.topic)
            last = self._last_seq.get(key)
            if last is None or 0 < error.header.seq - last <= MAX_PLAUSIBLE_GAP + 1:
                if last is not None:
                    self.gaps += error.header.seq - last - 1
                self._last_seq[key] = error.header.seq
        if error.kind not in self._logged:
            self._logged.add(error.kind)
            log.warning(
                "skipping malformed bus message (%s); further ones of this kind are only counted",
                error,
            )

    def as_counters(self) -> dict[str, Any]:
        """Flat counters for a heartbeat: totals, then malformed messages by kind (`malformed_<kind>`)."""
        counters: dict[str, Any] = {
            "received": self.received,
            "malformed": self.malformed_total,
            "gaps": self.gaps,
            "restarts": self.restarts,
            "seq_jumps": self.jumps,
        }
        counters.update(
            {f"malformed_{kind}": count for kind, count in sorted(self.malformed.items())}
        )
        return counters


def _subscribe_all(sock: zmq.Socket, prefixes: Iterable[str]) -> None:
    prefixes = list(prefixes) or [""]
    for prefix in prefixes:
        sock.setsockopt(zmq.SUBSCRIBE, prefix.encode("ascii"))


class Subscriber:
    """Receives bus messages whose topic starts with one of `prefixes` (all if none)."""

    def __init__(
        self,
        prefixes: Iterable[str] = (),
        endpoint: str | None = None,
        *,
        context: zmq.Context | None = None,
        hwm: int = SUB_HWM,
        columnar: bool = False,
        config: Config | None = None,
    ) -> None:
        config = config or load_config()
        self.endpoint = endpoint or config.bus_sub
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.rcvhwm = hwm
        self._sock.linger = 0
        _subscribe_all(self._sock, prefixes)
        auth.secure_client(self._sock, auth.client_keys(config))
        self._sock.connect(self.endpoint)
        self.columnar = columnar  # numpy columns for quote, trade and bar batches (mesh.columnar)
        self.stats = SubscriberStats()

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next good message, or None after `timeout` seconds (None waits for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # a wait of years (`massive tap --seconds 1e308`) is polled an hour at a time
            left = None if deadline is None else min(deadline - time.monotonic(), 3600.0)
            if not self._sock.poll(-1 if left is None else max(0, int(left * 1000))):
                if deadline is None or time.monotonic() >= deadline:
                    return None
                continue
            frames = self._sock.recv_multipart(copy=False)
            try:
                msg = wire.decode(frames, columnar=self.columnar)
            except MalformedFrame as exc:
                self.stats.reject(exc)
                continue
            self.stats.observe(msg)
            return msg

    def __iter__(self) -> Iterator[Message]:
        while True:
            msg = self.recv()
            if msg is not None:
                yield msg

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSubscriber:
    """The asyncio twin of `Subscriber`, for services and the TUI."""

    def __init__(
        self,
        prefixes: Iterable[str] = (),
        endpoint: str | None = None,
        *,
        context: zmq.asyncio.Context | None = None,
        hwm: int = SUB_HWM,
        columnar: bool = False,
        config: Config | None = None,
    ) -> None:
        config = config or load_config()
        self.endpoint = endpoint or config.bus_sub
        self._ctx = context or zmq.asyncio.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.rcvhwm = hwm
        self._sock.linger = 0
        _subscribe_all(self._sock, prefixes)
        auth.secure_client(self._sock, auth.client_keys(config))
        self._sock.connect(self.endpoint)
        self._sync: zmq.SyncSocket = zmq.Socket.shadow(
            self._sock.underlying
        )  # same socket, for non-blocking drains
        self.columnar = columnar  # numpy columns for quote, trade and bar batches (mesh.columnar)
        self.stats = SubscriberStats()

    def subscribe(self, prefix: str) -> None:
        self._sock.setsockopt(zmq.SUBSCRIBE, prefix.encode("ascii"))

    async def recv(self) -> Message:
        while True:
            frames = await self._sock.recv_multipart(copy=False)
            try:
                msg = wire.decode(frames, columnar=self.columnar)
            except MalformedFrame as exc:
                self.stats.reject(exc)
                continue
            self.stats.observe(msg)
            return msg

    def recv_nowait(self) -> Message | None:
        """A message already queued, or None: lets a consumer drain a burst without awaiting each one."""
        while True:
            try:
                frames = self._sync.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return None
            try:
                msg = wire.decode(frames, columnar=self.columnar)
            except MalformedFrame as exc:
                self.stats.reject(exc)
                continue
            self.stats.observe(msg)
            return msg

    async def recv_burst(
        self, limit: int = 1000, fields: Mapping[str, Collection[str]] | None = None
    ) -> list[Message]:
        """The next message and up to `limit` - 1 more already queued, decoded together.

        Quote and trade batches of one topic come back merged into one batch with numpy columns
        (`wire.decode_many`, which also explains `fields`); every message still counts in `stats`
        (sequence gaps, malformed).
        """
        batch = [await self._sock.recv_multipart(copy=False)]
        while len(batch) < limit:
            try:
                batch.append(self._sync.recv_multipart(flags=zmq.NOBLOCK, copy=False))
            except zmq.Again:
                break
        burst = wire.decode_many(batch, fields)
        for error in burst.errors:
            self.stats.reject(error)
        for topic, header in burst.received:
            self.stats.observe_header(topic, header)
        return burst.messages

    def close(self) -> None:
        self._sock.close()


def request(
    service: str,
    cmd: str,
    args: dict[str, Any] | None = None,
    *,
    config: Config | None = None,
    timeout: float = control.DEFAULT_TIMEOUT,
    busy_wait: float = 0.0,
) -> control.Reply:
    """Send a command to a service through the bus and return its `Reply`.

    Nothing within `timeout` raises `control.BusUnreachable` or, when the bus answers but the
    service is late, waits up to `busy_wait` seconds more, then `control.ServiceBusy`.
    """
    config = config or load_config()
    return control.request(
        config.bus_ctl,
        service,
        cmd,
        args,
        timeout=timeout,
        busy_wait=busy_wait,
        keys=auth.client_keys(config),
    )


def call(
    service: str,
    cmd: str,
    args: dict[str, Any] | None = None,
    *,
    config: Config | None = None,
    timeout: float = control.DEFAULT_TIMEOUT,
    busy_wait: float = 0.0,
) -> Any:
    """Send a command and return its result; raises `mesh.control.ControlError` on an error reply
    (`BusUnreachable` / `ServiceBusy` when nothing answers, as `request` explains)."""
    config = config or load_config()
    return control.call(
        config.bus_ctl,
        service,
        cmd,
        args,
        timeout=timeout,
        busy_wait=busy_wait,
        keys=auth.client_keys(config),
    )
