"""The control channel: request/reply commands routed by the bus to the service they name.

The bus binds a ROUTER socket on `MESH_BUS_CTL`; services and clients connect DEALER sockets.
Frames (after the ROUTER's routing id):

    service -> bus   [b"HELLO", name, heartbeat-body]        on start and once a second
    client  -> bus   [b"REQ", service, request-body]
    bus -> service   [b"REQ", client-id, request-body]
    service -> bus   [b"REP", client-id, reply-body]
    bus -> client    [b"REP", reply-body]

Bodies are msgpack `Request` / `Reply` records. The bus answers requests to "bus" itself, and
answers at once with an error when the named service is not connected.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import msgspec
import zmq

HELLO = b"HELLO"
REQ = b"REQ"
REP = b"REP"
DEFAULT_TIMEOUT = 2.0


class Request(msgspec.Struct, frozen=True):
    """A command for one service: `cmd` plus keyword arguments."""

    id: str
    cmd: str
    args: dict[str, Any] = {}


class Reply(msgspec.Struct, frozen=True):
    """The answer: `ok` with a `result`, or not ok with an `error` a person can read."""

    id: str
    ok: bool
    result: Any = None
    error: str = ""


class ControlError(RuntimeError):
    """A command that could not be delivered or was refused; the message says why."""


_request_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(Request)
_reply_decoder = msgspec.msgpack.Decoder(Reply)
_ids = itertools.count(1)


def encode(record: Request | Reply) -> bytes:
    return _request_encoder.encode(record)


def decode_request(body: bytes) -> Request:
    return _request_decoder.decode(body)


def decode_reply(body: bytes) -> Reply:
    return _reply_decoder.decode(body)


def new_request(cmd: str, args: dict[str, Any] | None = None) -> Request:
    return Request(id=f"{os.getpid()}-{next(_ids)}", cmd=cmd, args=dict(args or {}))


def request(
    endpoint: str,
    service: str,
    cmd: str,
    args: dict[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    context: zmq.Context | None = None,
) -> Reply:
    """Send one command and wait for its reply; raises `ControlError` when nothing answers."""
    ctx = context or zmq.Context.instance()
    req = new_request(cmd, args)
    with ctx.socket(zmq.DEALER) as sock:
        sock.linger = 0
        sock.connect(endpoint)
        sock.send_multipart([REQ, service.encode(), encode(req)])
        deadline_ms = int(timeout * 1000)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while True:
            if not poller.poll(deadline_ms):
                raise ControlError(
                    f"no answer from the bus at {endpoint} within {timeout:g}s: is the mesh running? (start it with `honcho start`)"
                )
            frames = sock.recv_multipart()
            if len(frames) == 2 and frames[0] == REP:
                try:
                    reply = decode_reply(frames[1])
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise ControlError(f"unreadable reply from {service}: {exc}") from None
                if reply.id == req.id:
                    return reply


def call(endpoint: str, service: str, cmd: str, args: dict[str, Any] | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Like `request`, but returns the result or raises `ControlError` with the service's error."""
    reply = request(endpoint, service, cmd, args, timeout=timeout)
    if not reply.ok:
        raise ControlError(f"{service} {cmd}: {reply.error}")
    return reply.result
