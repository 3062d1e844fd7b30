"""The runtime every service shares: logging, clean stop on SIGTERM/SIGINT, heartbeats, commands.

A service subclasses `Service`, implements `run()`, reports `counters()`, and exposes commands
as `cmd_<name>` methods. `run_service()` does the rest: it connects to the bus, beats once a
second on `sys.heartbeat.<name>` (and registers with the bus's control router at the same time),
answers commands, and on a signal stops everything and closes its sockets in well under honcho's
5-second grace period.

Heartbeats and the control socket live on their own thread (`ControlThread`), not on the
service's event loop: a service busy with a firehose still beats on time (so it is never shown
DOWN for being busy) and still answers `ping` at once; other commands run on the event loop, and
the heartbeat's `loop_lag_s` says how long that loop has been too busy to take one. Nothing a peer
sends can stop either path: an unreadable request is answered with an error and counted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
import zmq
import zmq.asyncio

from mesh import auth, bounds, control, topics
from mesh.client import Publisher
from mesh.config import Config, ConfigError, log_level
from mesh.gc_tuning import tune_gc
from mesh.schema import Event, Heartbeat, Stats

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 1.0
LINGER_MS = 200
LOOP_TICK = 0.25  # seconds between the event loop's proofs of life (`loop_lag_s`)
BUSY_AFTER = 5.0  # seconds of loop lag after which the heartbeat says the service is busy
_heartbeat_encoder = msgspec.msgpack.Encoder()


def setup_logging(level: str | None = None) -> None:
    """One line per record on stderr; honcho adds the process name and time.

    An unknown `MESH_LOG_LEVEL` stops the process with one line saying which levels exist.
    """
    try:
        chosen = level.upper() if level else log_level()
    except ConfigError as exc:
        raise SystemExit(f"massive: {exc}") from None
    logging.basicConfig(
        level=chosen,
        format="%(levelname)-7s %(name)s: %(message)s",
        handlers=[_StderrHandler()],
        force=True,
    )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to `sys.stderr` as it is when a record is emitted, so a service run in-process by a
    caller that later swaps or closes its stderr (an embedding tool, a test runner) never logs
    into a closed stream."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class Service:
    """Base class for a mesh service. Subclasses set `name` and implement `run`."""

    name: ClassVar[str] = "service"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = "ok"  # ok | degraded | disabled | error | stopping
        self.message = ""
        self.runtime: Runtime | None = None

    async def run(self, runtime: Runtime) -> None:
        """The service's work; return or raise to stop the process. Default: wait for the stop signal."""
        await runtime.stopping.wait()

    def counters(self) -> dict[str, Any]:
        """Flat counters for the heartbeat (numbers or short strings)."""
        return {}

    def stats(self) -> dict[str, Any] | None:
        """Detailed statistics for `sys.stats.<name>`, or None to publish none."""
        return None

    def commands(self) -> dict[str, Callable[..., Any]]:
        """Command name -> handler, from the `cmd_<name>` methods."""
        found = {}
        for attr in dir(self):
            if attr.startswith("cmd_"):
                found[attr[4:].replace("_", "-")] = getattr(self, attr)
        return found

    def cmd_ping(self) -> str:
        return "pong"

    def cmd_counters(self) -> dict[str, Any]:
        return self.counters()


class Runtime:
    """What a running service gets from the runtime: config, a publisher, a stop event."""

    def __init__(
        self, service: Service, config: Config, name: str, context: zmq.asyncio.Context
    ) -> None:
        self.service = service
        self.config = config
        self.name = name
        self.context = context
        self.instance = secrets.token_hex(4)
        self.started = time.time_ns()
        self.stopping = asyncio.Event()
        self.publisher = Publisher(
            name, config.bus_pub, context=zmq.Context.shadow(context.underlying), config=config
        )
        self.commands_handled = 0
        self.command_errors = 0
        self.commands_rejected = 0  # requests that could not be read
        self.loop_tick = time.monotonic()  # the event loop's last proof of life
        self._counters: dict[str, Any] = {}

    def publish(self, topic: str, payload: Any) -> None:
        self.publisher.publish(topic, payload)

    def event(self, level: str, message: str, **data: Any) -> None:
        """A notice on `sys.event.<name>` (errors users must see, state changes)."""
        getattr(log, "error" if level == "error" else "warning" if level == "warning" else "info")(
            message
        )
        self.publish(
            topics.event(self.name),
            Event(service=self.name, level=level, message=message, data=data),
        )

    def heartbeat(self) -> Heartbeat:
        """This service's heartbeat; safe to call from the control thread while the loop runs."""
        lag = max(0.0, time.monotonic() - self.loop_tick - LOOP_TICK)
        counters: dict[str, Any] = {
            "uptime_s": round((time.time_ns() - self.started) / 1e9, 1),
            "commands": self.commands_handled,
            "command_errors": self.command_errors,
            "commands_rejected": self.commands_rejected,
            "loop_lag_s": round(lag, 2),
        }
        try:
            self._counters = dict(self.service.counters())
        except (
            Exception
        ) as exc:  # read while the loop changed them, or a bug: last good ones, once logged
            log.debug("counters unavailable this beat: %r", exc)
        counters.update(self._counters)
        state, message = self.service.state, self.service.message
        if lag > BUSY_AFTER and state == "ok":
            state, message = "degraded", f"busy: its event loop has not been free for {lag:.0f} s"
        return Heartbeat(
            service=self.name,
            instance=self.instance,
            pid=os.getpid(),
            state=state,
            started=self.started,
            interval=HEARTBEAT_INTERVAL,
            counters=bounds.counters(counters),
            message=message,
        )


async def _loop_ticker(rt: Runtime) -> None:
    """Proves to the control thread that the event loop still gets to run."""
    while True:
        rt.loop_tick = time.monotonic()
        await asyncio.sleep(LOOP_TICK)


class ControlThread(threading.Thread):
    """Heartbeats, HELLOs and commands on their own sockets and thread (see the module docstring).

    `ping` is answered here; every other command runs on the service's event loop and its reply
    comes back through a queue. A final heartbeat (state "stopping") goes out when it stops.
    """

    def __init__(self, rt: Runtime, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name=f"{rt.name}-control", daemon=True)
        self.rt = rt
        self.loop = loop
        self.handlers = rt.service.commands()
        self.replies: queue.Queue[tuple[bytes, control.Reply]] = queue.Queue()
        self.stop = threading.Event()
        self.failed: BaseException | None = None
        self._logged: set[str] = set()

    def run(self) -> None:
        rt = self.rt
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.shadow(rt.context.underlying)
        ctl = ctx.socket(zmq.DEALER)
        ctl.linger = 0
        auth.secure_client(ctl, auth.client_keys(rt.config))
        ctl.connect(rt.config.bus_ctl)
        beats = Publisher(rt.name, rt.config.bus_pub, context=ctx, config=rt.config)
        next_beat = time.monotonic()
        try:
            while not self.stop.is_set():
                if time.monotonic() >= next_beat:
                    self._beat(beats, ctl)
                    next_beat = time.monotonic() + HEARTBEAT_INTERVAL
                self._send_replies(ctl)
                if ctl.poll(20):
                    self._on_frames(ctl, ctl.recv_multipart())
            self._send_replies(ctl)
            self._beat(beats, ctl)  # the last word: "stopping"
        except Exception as exc:
            self.failed = exc
            log.exception("%s: control thread failed", rt.name)
        finally:
            beats.close()
            ctl.close(linger=0)

    def _beat(self, beats: Publisher, ctl: zmq.Socket) -> None:
        rt = self.rt
        try:
            beat = rt.heartbeat()
            beats.publish(topics.heartbeat(rt.name), beat)
            stats = rt.service.stats()
            if stats is not None:
                beats.publish(topics.stats(rt.name), Stats(service=rt.name, stats=stats))
            ctl.send_multipart(
                [control.HELLO, rt.name.encode(), _heartbeat_encoder.encode(beat)],
                flags=zmq.NOBLOCK,
            )
        except zmq.Again:
            pass  # the bus is not there yet: the next beat registers
        except Exception as exc:  # a beat must never stop beating
            self._log_once("beat", f"a heartbeat could not be sent: {exc!r}")

    def _send_replies(self, ctl: zmq.Socket) -> None:
        while True:
            try:
                client_id, reply = self.replies.get_nowait()
            except queue.Empty:
                return
            try:
                ctl.send_multipart(
                    [control.REP, client_id, control.encode_reply(reply)], flags=zmq.NOBLOCK
                )
            except zmq.ZMQError as exc:
                self._log_once("reply", f"a reply could not be sent: {exc}")

    def _on_frames(self, ctl: zmq.Socket, frames: list[bytes]) -> None:
        rt = self.rt
        if len(frames) != 3 or frames[0] != control.REQ:
            rt.commands_rejected += 1
            self._log_once(
                "frames", f"a control message of {len(frames)} frame(s) that is not a request"
            )
            return
        client_id, body = frames[1], frames[2]
        try:
            req = control.decode_request(body)
        except control.BadBody as exc:
            rt.commands_rejected += 1
            self._log_once(exc.kind, f"an unreadable request: {exc}")
            reply = control.Reply(id=exc.request_id, ok=False, error=f"unreadable request: {exc}")
            self.replies.put((client_id, reply))
            return
        if req.cmd == "ping" and not req.args:
            rt.commands_handled += 1
            self.replies.put((client_id, control.Reply(id=req.id, ok=True, result="pong")))
            return
        future = asyncio.run_coroutine_threadsafe(_dispatch(rt, self.handlers, req), self.loop)
        future.add_done_callback(lambda done: self.replies.put((client_id, _outcome(req, done))))

    def _log_once(self, kind: str, message: str) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s: skipping %s; further ones are only counted", self.rt.name, message)


def _outcome(req: control.Request, done: Any) -> control.Reply:
    try:
        return done.result()  # type: ignore[no-any-return]
    except BaseException as exc:  # cancelled at shutdown, or a bug in dispatch
        return control.Reply(id=req.id, ok=False, error=f"not done: {exc!r}")


async def _dispatch(
    rt: Runtime, handlers: dict[str, Callable[..., Any]], req: control.Request
) -> control.Reply:
    rt.commands_handled += 1
    handler = handlers.get(req.cmd)
    if handler is None:
        rt.command_errors += 1
        known = ", ".join(sorted(handlers))
        return control.Reply(
            id=req.id, ok=False, error=f"unknown command {req.cmd!r} for {rt.name}; known: {known}"
        )
    try:
        inspect.signature(handler).bind(**req.args)
    except TypeError as exc:
        rt.command_errors += 1
        return control.Reply(id=req.id, ok=False, error=f"bad arguments for {req.cmd!r}: {exc}")
    try:
        result = handler(**req.args)
        if inspect.isawaitable(result):
            result = await result
        return control.Reply(id=req.id, ok=True, result=result)
    except Exception as exc:  # a failing command is answered, never fatal to the service
        rt.command_errors += 1
        log.warning("command %s failed: %s", req.cmd, exc)
        return control.Reply(id=req.id, ok=False, error=(str(exc) or type(exc).__name__)[:2000])


async def _amain(service: Service, name: str) -> int:
    config = service.config
    ctx = zmq.asyncio.Context()
    ctx.linger = LINGER_MS
    rt = Runtime(service, config, name, ctx)
    service.runtime = rt

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rt.stopping.set)

    log.info(
        "%s started (pid %d); bus %s / %s / %s",
        name,
        os.getpid(),
        config.bus_pub,
        config.bus_sub,
        config.bus_ctl,
    )
    control_thread = ControlThread(rt, loop)
    control_thread.start()
    helpers = [asyncio.create_task(_loop_ticker(rt))]
    main = asyncio.create_task(_run_guarded(service, rt))
    stop_wait = asyncio.create_task(rt.stopping.wait())
    code = 0
    try:
        done, _ = await asyncio.wait(
            [main, stop_wait, *helpers], return_when=asyncio.FIRST_COMPLETED
        )
        if main in done:
            code = main.result()
        for task in helpers:
            if task in done and task.exception() is not None:
                log.error("%s: internal task failed: %s", name, task.exception())
                code = 1
    finally:
        rt.stopping.set()
        service.state = "stopping"
        if not main.done():
            try:
                await asyncio.wait_for(main, timeout=2.0)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("%s did not stop within 2 s; cancelling", name)
            except Exception:
                pass
        for leftover in [*helpers, stop_wait]:
            leftover.cancel()
        await asyncio.gather(*helpers, stop_wait, return_exceptions=True)
        control_thread.stop.set()
        await asyncio.to_thread(control_thread.join, 2.0)
        rt.publisher.close()
        ctx.term()
    log.info("%s stopped", name)
    return code


async def _run_guarded(service: Service, rt: Runtime) -> int:
    try:
        await service.run(rt)
        return 0
    except asyncio.CancelledError:
        return 0
    except SystemExit as exc:  # a service that has said why it stops (e.g. a port in use)
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        log.exception("%s failed: %s", rt.name, exc)
        return 1


def run_service(service: Service, name: str | None = None) -> int:
    """Run `service` until it returns or a signal arrives; returns the process exit code."""
    tune_gc()
    return asyncio.run(_amain(service, name or service.name))
