"""The runtime every service shares: logging, clean stop on SIGTERM/SIGINT, heartbeats, commands.

A service subclasses `Service`, implements `run()`, reports `counters()`, and exposes commands
as `cmd_<name>` methods. `run_service()` does the rest: it connects to the bus, beats once a
second on `sys.heartbeat.<name>` (and registers with the bus's control router at the same time),
answers commands, and on a signal stops everything and closes its sockets in well under honcho's
5-second grace period.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
import zmq
import zmq.asyncio

from mesh import control, topics
from mesh.client import Publisher
from mesh.config import Config
from mesh.gc_tuning import tune_gc
from mesh.schema import Event, Heartbeat, Stats

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 1.0
LINGER_MS = 200
_heartbeat_encoder = msgspec.msgpack.Encoder()


def setup_logging(level: str | None = None) -> None:
    """One line per record on stderr; honcho adds the process name and time."""
    logging.basicConfig(
        level=(level or os.environ.get("MESH_LOG_LEVEL", "INFO")).upper(),
        format="%(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


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

    def __init__(self, service: Service, config: Config, name: str, context: zmq.asyncio.Context) -> None:
        self.service = service
        self.config = config
        self.name = name
        self.context = context
        self.instance = secrets.token_hex(4)
        self.started = time.time_ns()
        self.stopping = asyncio.Event()
        self.publisher = Publisher(name, config.bus_pub, context=zmq.Context.shadow(context.underlying))
        self.commands_handled = 0
        self.command_errors = 0

    def publish(self, topic: str, payload: Any) -> None:
        self.publisher.publish(topic, payload)

    def event(self, level: str, message: str, **data: Any) -> None:
        """A notice on `sys.event.<name>` (errors users must see, state changes)."""
        getattr(log, "error" if level == "error" else "warning" if level == "warning" else "info")(message)
        self.publish(topics.event(self.name), Event(service=self.name, level=level, message=message, data=data))

    def heartbeat(self) -> Heartbeat:
        counters = {"uptime_s": round((time.time_ns() - self.started) / 1e9, 1), "commands": self.commands_handled, "command_errors": self.command_errors}
        counters.update(self.service.counters())
        return Heartbeat(
            service=self.name,
            instance=self.instance,
            pid=os.getpid(),
            state=self.service.state,
            started=self.started,
            interval=HEARTBEAT_INTERVAL,
            counters=counters,
            message=self.service.message,
        )


async def _heartbeat_loop(rt: Runtime, ctl: zmq.asyncio.Socket) -> None:
    while True:
        beat = rt.heartbeat()
        rt.publish(topics.heartbeat(rt.name), beat)
        stats = rt.service.stats()
        if stats is not None:
            rt.publish(topics.stats(rt.name), Stats(service=rt.name, stats=stats))
        await ctl.send_multipart([control.HELLO, rt.name.encode(), _heartbeat_encoder.encode(beat)])
        await asyncio.sleep(HEARTBEAT_INTERVAL)


async def _control_loop(rt: Runtime, ctl: zmq.asyncio.Socket) -> None:
    handlers = rt.service.commands()
    while True:
        frames = await ctl.recv_multipart()
        if len(frames) != 3 or frames[0] != control.REQ:
            continue
        client_id, body = frames[1], frames[2]
        try:
            req = control.decode_request(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            rt.command_errors += 1
            reply = control.Reply(id="", ok=False, error=f"unreadable request: {exc}")
        else:
            reply = await _dispatch(rt, handlers, req)
        await ctl.send_multipart([control.REP, client_id, control.encode(reply)])


async def _dispatch(rt: Runtime, handlers: dict[str, Callable[..., Any]], req: control.Request) -> control.Reply:
    rt.commands_handled += 1
    handler = handlers.get(req.cmd)
    if handler is None:
        rt.command_errors += 1
        known = ", ".join(sorted(handlers))
        return control.Reply(id=req.id, ok=False, error=f"unknown command {req.cmd!r} for {rt.name}; known: {known}")
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
        return control.Reply(id=req.id, ok=False, error=str(exc) or type(exc).__name__)


async def _amain(service: Service, name: str) -> int:
    config = service.config
    ctx = zmq.asyncio.Context()
    ctx.linger = LINGER_MS
    rt = Runtime(service, config, name, ctx)
    service.runtime = rt
    ctl = ctx.socket(zmq.DEALER)
    ctl.linger = 0
    ctl.connect(config.bus_ctl)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rt.stopping.set)

    log.info("%s started (pid %d); bus %s / %s / %s", name, os.getpid(), config.bus_pub, config.bus_sub, config.bus_ctl)
    helpers = [asyncio.create_task(_heartbeat_loop(rt, ctl)), asyncio.create_task(_control_loop(rt, ctl))]
    main = asyncio.create_task(_run_guarded(service, rt))
    stop_wait = asyncio.create_task(rt.stopping.wait())
    code = 0
    try:
        done, _ = await asyncio.wait([main, stop_wait, *helpers], return_when=asyncio.FIRST_COMPLETED)
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
        try:
            rt.publish(topics.heartbeat(name), rt.heartbeat())
        except zmq.ZMQError:
            pass
        rt.publisher.close()
        ctl.close(linger=0)
        ctx.term()
    log.info("%s stopped", name)
    return code


async def _run_guarded(service: Service, rt: Runtime) -> int:
    try:
        await service.run(rt)
        return 0
    except asyncio.CancelledError:
        return 0
    except Exception as exc:
        log.exception("%s failed: %s", rt.name, exc)
        return 1


def run_service(service: Service, name: str | None = None) -> int:
    """Run `service` until it returns or a signal arrives; returns the process exit code."""
    tune_gc()
    return asyncio.run(_amain(service, name or service.name))

