"""The bus: the one process that binds. An XSUB/XPUB proxy for data plus a ROUTER for commands.

Publishers connect to `MESH_BUS_PUB` (the XSUB side), subscribers to `MESH_BUS_SUB` (the XPUB
side), so start order never matters. The proxy itself is libzmq's `zmq.proxy` in a thread, with a
capture socket that lets the main thread count messages and bytes without touching the data path.
The main thread also routes control requests (`mesh.control`) and keeps the registry of services
from their HELLOs, which is what `massive status` reads. No control message can stop it: one it
cannot read is counted in `control_rejected` (and answered, when it was a request) and skipped.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import zmq
import zmq.utils.monitor

from mesh import auth, bounds, control, health, topics
from mesh.client import PUB_HWM, SUB_HWM, Publisher
from mesh.config import AUTH_OFF_WARNING, Config
from mesh.schema import Heartbeat
from mesh.service import HEARTBEAT_INTERVAL

log = logging.getLogger(__name__)
_heartbeat_decoder = msgspec.msgpack.Decoder(Heartbeat)


class BusError(RuntimeError):
    """The bus cannot start (an endpoint in use, a bad address); the message is one clear line."""


@dataclass
class ServiceEntry:
    name: str
    routing_id: bytes
    last_seen: int
    heartbeat: Heartbeat | None
    owner: str = ""  # the authenticated key that registered the name (mesh.auth)


class Bus:
    """Binds the three endpoints and runs until `stop()`."""

    def __init__(self, config: Config, context: zmq.Context | None = None) -> None:
        self.config = config
        self.ctx = context or zmq.Context()
        self.instance = secrets.token_hex(4)
        self.started = time.time_ns()
        self.services: dict[str, ServiceEntry] = {}
        self.messages = 0
        self.bytes = 0
        self.routed = 0
        self.route_errors = 0
        self.control_rejected = 0
        self._logged_rejections: set[str] = set()
        self._stop = threading.Event()
        self._in_message = False
        self._capture_addr = f"inproc://bus-capture-{id(self)}"
        self.auth = config.bus_auth
        self.impostors = 0  # registrations refused: the name belongs to another key's live service
        self.forged_replies = 0  # replies that answer no request routed to their sender
        self._awaited: dict[
            tuple[bytes, bytes, str], list[float]
        ] = {}  # (service id, client id, request id) -> [open, deadline]
        self._gatekeeper: auth.Gatekeeper | None = None
        self._server_keys: tuple[bytes, bytes] | None = None
        if self.auth:
            try:
                store = auth.KeyStore(config.data_dir)
                self._server_keys = store.server_keys()
                self._gatekeeper = auth.Gatekeeper(self.ctx, store)
            except auth.AuthError as exc:
                raise BusError(str(exc)) from None
        # The deep queues are set before bind: a connection the bus accepts takes its listener's
        # options from bind time, so an HWM set after it would leave every peer at libzmq's 1000,
        # and the XPUB would drop a burst a fast subscriber is still reading.
        self._xsub = self._bind(
            zmq.XSUB, config.bus_pub, "MESH_BUS_PUB", "publish", {zmq.RCVHWM: PUB_HWM}
        )
        self._xpub = self._bind(
            zmq.XPUB, config.bus_sub, "MESH_BUS_SUB", "subscribe", {zmq.SNDHWM: SUB_HWM}
        )
        self._router = self._bind(zmq.ROUTER, config.bus_ctl, "MESH_BUS_CTL", "control")
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # Handshakes libzmq refuses before any key is looked at (a client with no keys, or the wrong
        # server key) are seen only by a socket monitor: counted in `handshakes_refused`.
        self.handshakes_refused = 0
        self._monitors = (
            [
                sock.get_monitor_socket(_HANDSHAKE_FAILED)
                for sock in (self._xsub, self._xpub, self._router)
            ]
            if self.auth
            else []
        )
        self._capture_in = self.ctx.socket(zmq.PULL)
        self._capture_in.rcvhwm = (
            1000  # counting only: if it falls behind, the data path is unaffected
        )
        self._capture_in.bind(self._capture_addr)
        self._proxy_thread = threading.Thread(target=self._proxy, name="bus-proxy", daemon=True)

    def _bind(
        self, kind: int, endpoint: str, var: str, role: str, options: dict[int, int] | None = None
    ) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        for option, value in (options or {}).items():
            sock.setsockopt(option, value)
        if (
            self._server_keys is not None
        ):  # CURVE, and the ZAP domain that says which role may connect
            auth.secure_server(sock, self._server_keys, role)
        # A frame larger than any valid message drops its sender's connection before it is read
        # into memory (libzmq's own check), so no peer can make the bus or a subscriber hold it.
        # Listening sockets take options at bind time.
        sock.maxmsgsize = bounds.MAX_BODY_BYTES + 1024
        sock.backlog = 1024  # a burst of connection attempts (a flood of keyless ones) cannot fill the accept queue
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            self._close_all()
            if exc.errno == errno.EADDRINUSE:
                raise BusError(
                    f"cannot bind {var}={endpoint}: address already in use (is another bus running?)"
                ) from None
            raise BusError(f"cannot bind {var}={endpoint}: {exc.strerror}") from None
        self._bound = [*getattr(self, "_bound", []), sock]
        return sock

    def _close_all(self) -> None:
        for sock in getattr(self, "_bound", []):
            sock.close(linger=0)
        if self._gatekeeper is not None:
            self._gatekeeper.stop()
            self._gatekeeper = None

    def _proxy(self) -> None:
        capture = self.ctx.socket(zmq.PUSH)
        capture.sndhwm = 1000
        capture.linger = 0
        capture.connect(self._capture_addr)
        try:
            zmq.proxy(self._xsub, self._xpub, capture)
        except zmq.ContextTerminated:
            pass
        finally:  # the proxy's sockets are this thread's to close (pyzmq's device.py pattern)
            for sock in (capture, self._xsub, self._xpub):
                sock.close(linger=0)

    def run(self) -> None:
        """Serve until `stop()` (or a signal, via `main`)."""
        self._proxy_thread.start()
        publisher = Publisher("bus", self.config.bus_pub, context=self.ctx, config=self.config)
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._capture_in, zmq.POLLIN)
        for monitor in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        next_beat = time.monotonic()
        rate_mark = (time.monotonic(), 0, 0)
        self._rates = (0.0, 0.0)
        log.info(
            "bus up: publishers -> %s, subscribers <- %s, commands -> %s",
            self.config.bus_pub,
            self.config.bus_sub,
            self.config.bus_ctl,
        )
        if self.auth:
            log.info(
                "bus authentication on: keys in %s (`massive auth list`)",
                auth.KeyStore(self.config.data_dir).dir,
            )
        else:
            log.warning("%s", AUTH_OFF_WARNING)
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(100):
                    if sock is self._capture_in:
                        self._drain_capture()
                    elif sock in self._monitors:
                        self._on_monitor(sock)
                    else:
                        self._on_control(self._router.recv_multipart(copy=False))
                now = time.monotonic()
                if now >= next_beat:
                    elapsed = now - rate_mark[0]
                    self._rates = (
                        (self.messages - rate_mark[1]) / elapsed,
                        (self.bytes - rate_mark[2]) / elapsed,
                    )
                    rate_mark = (now, self.messages, self.bytes)
                    publisher.publish(topics.heartbeat("bus"), self.heartbeat())
                    next_beat = now + HEARTBEAT_INTERVAL
        finally:
            publisher.close()

    def _on_monitor(self, monitor: zmq.Socket) -> None:
        for _ in range(1000):
            try:
                event = zmq.utils.monitor.recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] & _HANDSHAKE_FAILED:
                self.handshakes_refused += 1
                if self.handshakes_refused in (1, 10, 100) or self.handshakes_refused % 10_000 == 0:
                    log.warning(
                        "refused a connection from %s: no valid key (%d so far)",
                        event.get("endpoint", b"?").decode(errors="replace"),
                        self.handshakes_refused,
                    )

    def _drain_capture(self) -> None:
        # The capture socket sees every frame of both directions; data messages are 2-frame
        # [topic, body]; subscription messages from XPUB are single frames.
        sock = self._capture_in
        for _ in range(10_000):
            try:
                frame = sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.bytes += len(frame)
            if frame.more:
                self._in_message = True
            elif (
                self._in_message
            ):  # the last frame of a data message (subscriptions are single frames)
                self._in_message = False
                self.messages += 1

    def heartbeat(self) -> Heartbeat:
        now = time.time_ns()
        up = sum(1 for entry in self.services.values() if health.is_up(entry.last_seen, now_ns=now))
        msg_rate, byte_rate = getattr(self, "_rates", (0.0, 0.0))
        return Heartbeat(
            service="bus",
            instance=self.instance,
            pid=os.getpid(),
            state="ok",
            started=self.started,
            interval=HEARTBEAT_INTERVAL,
            message="" if self.auth else AUTH_OFF_WARNING,
            counters={
                "auth": "on" if self.auth else "off",
                "auth_refused": (self._gatekeeper.refused if self._gatekeeper is not None else 0)
                + self.handshakes_refused,
                "impostors_refused": self.impostors,
                "forged_replies": self.forged_replies,
                "uptime_s": round((now - self.started) / 1e9, 1),
                "messages": self.messages,
                "bytes": self.bytes,
                "msgs_per_s": round(msg_rate, 1),
                "bytes_per_s": round(byte_rate, 1),
                "services_up": up,
                "commands_routed": self.routed,
                "command_errors": self.route_errors,
                "control_rejected": self.control_rejected,
            },
        )

    def _on_control(self, raw: list[zmq.Frame]) -> None:
        try:
            owner = str(raw[-1].get("User-Id") or "") if self.auth else ""
            self._handle_control([frame.bytes for frame in raw], owner)
        except Exception as exc:  # nothing a peer sends may stop the bus
            self._reject("internal", f"a control message could not be handled: {exc!r}")

    def _reject(self, kind: str, detail: str) -> None:
        self.control_rejected += 1
        if kind not in self._logged_rejections:
            self._logged_rejections.add(kind)
            log.warning(
                "skipping a control message (%s); further ones of this kind are only counted",
                detail,
            )

    def _handle_control(self, frames: list[bytes], owner: str) -> None:
        if len(frames) < 2:
            self._reject("frames", f"{len(frames)} frame(s)")
            return
        sender, kind = frames[0], frames[1]
        if kind == control.HELLO and len(frames) == 4:
            name = _service_name(frames[2])
            if name is None:
                self._reject(
                    "hello", "a HELLO whose service name is not 1-64 letters, digits, '-' or '_'"
                )
                return
            try:
                beat = _decode_heartbeat(frames[3])
            except ValueError as exc:
                self._reject("hello", f"a HELLO from {name!r} with an unreadable heartbeat: {exc}")
                return
            refusal = self._refuse_registration(name, owner, sender)
            if refusal:
                self.impostors += 1
                self._reject(
                    f"impostor-{name}-{owner}", f"a HELLO as {name!r} from key {owner!r}: {refusal}"
                )
                return
            self.services[name] = ServiceEntry(name, sender, time.time_ns(), beat, owner)
        elif kind == control.REQ and len(frames) == 4:
            target = _service_name(frames[2])
            if target is None:
                self.route_errors += 1
                self._send(
                    sender,
                    [
                        control.REP,
                        control.encode(
                            control.Reply(
                                id=_request_id(frames[3]),
                                ok=False,
                                error="no such service: a service name is 1-64 letters, digits, '-' or '_'",
                            )
                        ),
                    ],
                )
                return
            self._route_request(sender, target, frames[3])
        elif kind == control.REP and len(frames) == 4:
            if not self._answers_a_request(sender, frames[2], frames[3]):
                self.forged_replies += 1
                self._reject("reply", "a reply to a client that sent its sender no request")
                return
            self._send(frames[2], [control.REP, frames[3]])
        else:
            self._reject("frames", f"{kind[:16]!r} with {len(frames)} frames")

    # A service may answer only a request the bus routed to it, by that request's id: a reply to
    # anything else (a registered peer forging answers to another service's callers) is dropped.
    REPLY_WAIT = 300.0  # seconds a routed request may wait for its reply
    MAX_AWAITED = 100_000

    def _expect_reply(self, service_id: bytes, client: bytes, body: bytes) -> None:
        now = time.monotonic()
        if len(self._awaited) >= self.MAX_AWAITED:
            self._awaited = {key: entry for key, entry in self._awaited.items() if entry[1] > now}
            while len(self._awaited) >= self.MAX_AWAITED:
                self._awaited.pop(next(iter(self._awaited)))
        entry = self._awaited.setdefault((service_id, client, _request_id(body)), [0, 0.0])
        entry[0] += 1  # a client may send several requests under one id
        entry[1] = now + self.REPLY_WAIT

    def _answers_a_request(self, service_id: bytes, client: bytes, body: bytes) -> bool:
        try:
            reply_id = control.decode_reply(body).id
        except control.BadBody:
            reply_id = ""  # an unreadable reply may still answer an unreadable request ("" id)
        key = (service_id, client, reply_id)
        entry = self._awaited.get(key)
        if entry is None:
            return False
        entry[0] -= 1
        if entry[0] <= 0:
            del self._awaited[key]
        return entry[1] >= time.monotonic()

    NAMES_PER_KEY = 16  # services another key may register at once
    FORGET_AFTER_NS = 600 * 10**9  # another key's service down this long is forgotten

    def _refuse_registration(self, name: str, owner: str, sender: bytes) -> str:
        """Why `owner` may not register `name` now ("" if it may).

        The mesh's own key registers any name, and takes it back from anyone (its services restart);
        the mesh's service names are its alone; any other name belongs to the key that registered
        it while that registration is alive, and another key holds at most NAMES_PER_KEY names.
        """
        if not self.auth or owner == auth.MESH:
            return ""
        if name in auth.MESH_SERVICES:
            return (
                f"{name!r} is one of the mesh's own services, which only the mesh's key registers"
            )
        entry = self.services.get(name)
        if (
            entry is not None
            and entry.owner != owner
            and entry.routing_id != sender
            and health.is_up(entry.last_seen)
        ):
            return f"that name belongs to key {entry.owner!r}, whose {name} is up"
        if entry is None or entry.owner != owner:
            self._forget_stale()
            held = sum(1 for e in self.services.values() if e.owner == owner)
            if held >= self.NAMES_PER_KEY:
                return f"key {owner!r} already holds {held} service names (at most {self.NAMES_PER_KEY})"
        return ""

    def _forget_stale(self) -> None:
        """Another key's services that have been down for long leave the registry."""
        cutoff = time.time_ns() - self.FORGET_AFTER_NS
        for name in [
            n
            for n, e in self.services.items()
            if e.owner not in ("", auth.MESH) and e.last_seen < cutoff
        ]:
            del self.services[name]

    def _route_request(self, client: bytes, target: str, body: bytes) -> None:
        if target == "bus":
            self._send(client, [control.REP, control.encode(self._answer(body))])
            return
        entry = self.services.get(target)
        if entry is not None and self._send(entry.routing_id, [control.REQ, client, body]):
            self.routed += 1
            self._expect_reply(entry.routing_id, client, body)
            return
        self.route_errors += 1
        req_id = _request_id(body)
        known = (
            ", ".join(sorted(n for n, e in self.services.items() if health.is_up(e.last_seen)))
            or "none"
        )
        why = "is not connected" if entry is not None else "is not registered with the bus"
        self._send(
            client,
            [
                control.REP,
                control.encode(
                    control.Reply(
                        id=req_id,
                        ok=False,
                        error=f"service {target!r} {why} (services up: {known})",
                    )
                ),
            ],
        )

    def _answer(self, body: bytes) -> control.Reply:
        try:
            req = control.decode_request(body)
        except control.BadBody as exc:
            self._reject(exc.kind, f"a request to the bus: {exc}")
            return control.Reply(id=exc.request_id, ok=False, error=f"unreadable request: {exc}")
        if req.cmd == "ping":
            return control.Reply(id=req.id, ok=True, result="pong")
        if req.cmd == "services":
            return control.Reply(id=req.id, ok=True, result=self.services_report())
        return control.Reply(
            id=req.id, ok=False, error=f"unknown command {req.cmd!r} for bus; known: ping, services"
        )

    def services_report(self) -> dict[str, Any]:
        """Every service the bus has heard from, up or down, with its last heartbeat."""
        now = time.time_ns()
        report: dict[str, Any] = {"bus": _entry_report(self.heartbeat(), now, now)}
        for name, entry in sorted(self.services.items()):
            report[name] = _entry_report(entry.heartbeat, entry.last_seen, now)
        return report

    def _send(self, routing_id: bytes, frames: list[bytes]) -> bool:
        try:
            self._router.send_multipart([routing_id, *frames], flags=zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # EHOSTUNREACH: that peer is gone
            return False

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Close this thread's sockets, then terminate the context, which ends the proxy thread."""
        self._router.close(linger=0)
        self._capture_in.close(linger=0)
        for monitor in self._monitors:
            monitor.close(linger=0)
        if not self._proxy_thread.is_alive():
            self._xsub.close(linger=0)
            self._xpub.close(linger=0)
        if self._gatekeeper is not None:
            self._gatekeeper.stop()
        self.ctx.term()
        self._proxy_thread.join(timeout=2)


_NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _service_name(frame: bytes) -> str | None:
    """A service name as topics allow it (mesh.topics), or None."""
    if not 0 < len(frame) <= bounds.MAX_NAME or not _NAME_CHARS.issuperset(frame):
        return None
    return frame.decode("ascii")


def _decode_heartbeat(body: bytes) -> Heartbeat:
    """A HELLO's heartbeat within mesh.bounds; ValueError otherwise."""
    if len(body) > bounds.MAX_BODY_BYTES:
        raise ValueError("too large")
    try:
        beat: Heartbeat = _heartbeat_decoder.decode(body)
        bounds.check_payload(beat)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (msgspec.DecodeError, msgspec.ValidationError, OverflowError, bounds.Rejected) as exc:
        raise ValueError(str(exc)) from None
    return beat


def _request_id(body: bytes) -> str:
    """The id of a request to answer with an error, or "" when even that is unreadable."""
    try:
        return control.decode_request(body).id
    except control.BadBody as exc:
        return exc.request_id


_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def _entry_report(beat: Heartbeat | None, last_seen: int, now: int) -> dict[str, Any]:
    interval = beat.interval if beat else HEARTBEAT_INTERVAL
    return {
        "up": health.is_up(last_seen, interval, now),
        "age_s": round(health.age_seconds(last_seen, now), 2),
        "state": beat.state if beat else "unknown",
        "message": beat.message if beat else "",
        "pid": beat.pid if beat else None,
        "counters": beat.counters if beat else {},
    }


def main(config: Config, argv: list[str] | None = None) -> int:
    """`massive run bus`."""
    from mesh.argtypes import OneLineParser

    OneLineParser(
        prog="massive run bus",
        description="Run the bus: the XSUB/XPUB proxy on MESH_BUS_PUB/MESH_BUS_SUB and the command router on MESH_BUS_CTL.",
    ).parse_args(argv or [])
    try:
        bus = Bus(config)
    except BusError as exc:
        log.error("%s", exc)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: bus.stop())
    signal.signal(signal.SIGINT, lambda *_: bus.stop())
    try:
        bus.run()
    finally:
        bus.close()
        log.info("bus stopped")
    return 0
