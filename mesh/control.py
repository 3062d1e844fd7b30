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

Decoding is total (mesh.bounds): an unreadable, oversized or too deeply nested body raises
`BadBody`, which the bus and services answer or count; it never escapes their loops. A client
that hears nothing tells "the bus is unreachable" (`BusUnreachable`) from "the bus is up but the
service is late" (`ServiceBusy`), and waits longer for the latter.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from typing import Any

import msgspec
import zmq

from mesh import auth, bounds

HELLO = b"HELLO"
REQ = b"REQ"
REP = b"REP"
DEFAULT_TIMEOUT = 2.0
BUSY_WAIT = 10.0  # seconds more the CLI gives a service that is late while the bus answers
BUS_PROBE_TIMEOUT = 0.5


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


class BusUnreachable(ControlError):
    """Nothing answers at the bus's control endpoint: the mesh is not running (or not there)."""


class ServiceBusy(ControlError):
    """The bus answers, but the service did not answer in time: busy, stuck or just restarted."""


class BadBody(ValueError):
    """A request or reply body that cannot be read; `kind` as in mesh.bounds (or "body").

    `request_id` is the id of a request that decoded but broke a bound (an argument too long, too
    many values): its error reply carries it, so the client that sent it hears why at once
    instead of waiting out its timeout. It is "" when not even the id could be read.
    """

    def __init__(self, kind: str, detail: str, request_id: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.request_id = request_id


_request_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(Request)
_reply_decoder = msgspec.msgpack.Decoder(Reply)
_ids = itertools.count(1)
_DECODE_ERRORS = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    OverflowError,
    ValueError,
    MemoryError,
)


def encode(record: Request | Reply) -> bytes:
    return _request_encoder.encode(record)


def encode_reply(reply: Reply) -> bytes:
    """`reply` as bytes, or an error reply saying why its result could not be sent."""
    try:
        return _request_encoder.encode(reply)
    except (TypeError, OverflowError, ValueError, RecursionError) as exc:
        return _request_encoder.encode(
            Reply(id=reply.id, ok=False, error=f"the result could not be encoded: {exc}")
        )


def _decode(decoder: msgspec.msgpack.Decoder[Any], body: bytes | memoryview, what: str) -> Any:
    if len(body) > bounds.MAX_BODY_BYTES:
        raise BadBody("size", f"{what} of {len(body):,} bytes")
    try:
        return decoder.decode(body)
    except RecursionError:
        raise BadBody("depth", f"{what} nested too deeply to read") from None
    except _DECODE_ERRORS as exc:
        raise BadBody("body", f"unreadable {what}: {exc}") from None


def decode_request(body: bytes | memoryview) -> Request:
    """A request within mesh.bounds, or `BadBody`."""
    req: Request = _decode(_request_decoder, body, "request")
    try:
        bounds.check_text(req.id, "a request's id")
    except bounds.Rejected as exc:
        raise BadBody(exc.kind, exc.detail) from None
    try:
        bounds.check_name(req.cmd, "a request's command")
        bounds.check_tree(req.args, "a request's arguments")
    except bounds.Rejected as exc:
        raise BadBody(exc.kind, exc.detail, request_id=req.id) from None
    return req


def decode_reply(body: bytes | memoryview) -> Reply:
    """A reply within mesh.bounds, or `BadBody`."""
    reply: Reply = _decode(_reply_decoder, body, "reply")
    try:
        bounds.check_text(reply.id, "a reply's id")
        bounds.check_text(reply.error, "a reply's error")
        bounds.check_tree(reply.result, "a reply's result")
    except bounds.Rejected as exc:
        raise BadBody(exc.kind, exc.detail) from None
    return reply


def new_request(cmd: str, args: dict[str, Any] | None = None) -> Request:
    """A request with an id no other process can guess (so no one can answer it in its place)."""
    return Request(
        id=f"{os.getpid()}-{next(_ids)}-{secrets.token_hex(6)}", cmd=cmd, args=dict(args or {})
    )


def request(
    endpoint: str,
    service: str,
    cmd: str,
    args: dict[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    busy_wait: float = 0.0,
    context: zmq.Context | None = None,
    keys: auth.ClientKeys | None | str = "from-config",
) -> Reply:
    """Send one command and wait for its reply.

    `keys` are the CURVE keys to connect with (mesh.auth; by default those of the configuration in
    the environment, None when auth is off). When nothing answers within `timeout`, the bus itself
    is asked (`ping`): if it answers, the
    service is late rather than gone, and the wait goes on for up to `busy_wait` more seconds
    before `ServiceBusy`; if it does not, `BusUnreachable`. Both are `ControlError`s.
    """
    ctx = context or zmq.Context.instance()
    client_keys = _keys(keys)
    req = new_request(cmd, args)
    with ctx.socket(zmq.DEALER) as sock:
        sock.linger = 0
        auth.secure_client(sock, client_keys)
        sock.connect(endpoint)
        # a bus that refuses the handshake (keys it does not know) leaves no peer to queue for:
        # the send gives up with the timeout instead of waiting for one forever
        sock.sndtimeo = max(1, int(timeout * 1000))
        try:
            sock.send_multipart([REQ, service.encode(), encode(req)])
        except zmq.Again:
            raise BusUnreachable(
                f"could not reach the bus at {endpoint} within {timeout:g}s: is the mesh running, "
                "and do these keys belong to it? (see `massive auth list`)"
            ) from None
        reply = _await_reply(sock, req.id, service, timeout)
        if reply is not None:
            return reply
        if service == "bus" or not _bus_answers(ctx, endpoint, client_keys):
            raise BusUnreachable(
                f"no answer from the bus at {endpoint} within {timeout:g}s: is the mesh running? (start it with `honcho start`)"
            )
        if busy_wait > 0:
            reply = _await_reply(sock, req.id, service, busy_wait)
            if reply is not None:
                return reply
        raise ServiceBusy(
            f"{service} did not answer {cmd!r} within {timeout + max(busy_wait, 0):g}s although the bus is up: "
            f"it is busy or stuck (see `massive status` and its log); the command may still take effect"
        )


def _await_reply(sock: zmq.Socket, req_id: str, service: str, timeout: float) -> Reply | None:
    """The reply to `req_id` arriving within `timeout`, or None."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(int(left * 1000)):
            return None
        frames = sock.recv_multipart()
        if len(frames) == 2 and frames[0] == REP:
            try:
                reply = decode_reply(frames[1])
            except BadBody as exc:
                raise ControlError(f"unreadable reply from {service}: {exc}") from None
            if reply.id == req_id:
                return reply


def _keys(keys: auth.ClientKeys | None | str) -> auth.ClientKeys | None:
    """The keys given, or (by default) those of the configuration in the environment."""
    if isinstance(keys, str):
        from mesh.config import load_config

        return auth.client_keys(load_config())
    return keys


def _bus_answers(ctx: zmq.Context, endpoint: str, keys: auth.ClientKeys | None) -> bool:
    req = new_request("ping")
    with ctx.socket(zmq.DEALER) as sock:
        sock.linger = 0
        auth.secure_client(sock, keys)
        sock.connect(endpoint)
        sock.sndtimeo = max(1, int(BUS_PROBE_TIMEOUT * 1000))
        try:
            sock.send_multipart([REQ, b"bus", encode(req)])
        except zmq.Again:
            return False
        try:
            reply = _await_reply(sock, req.id, "bus", BUS_PROBE_TIMEOUT)
        except ControlError:
            return False
        return reply is not None


def call(
    endpoint: str,
    service: str,
    cmd: str,
    args: dict[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    busy_wait: float = 0.0,
    keys: auth.ClientKeys | None | str = "from-config",
) -> Any:
    """Like `request`, but returns the result or raises `ControlError` with the service's error."""
    reply = request(endpoint, service, cmd, args, timeout=timeout, busy_wait=busy_wait, keys=keys)
    if not reply.ok:
        raise ControlError(f"{service} {cmd}: {reply.error}")
    return reply.result
