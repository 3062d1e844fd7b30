"""The socket to a kdb+ process: login handshake, async sends, a sync round trip. Nothing else.

We own this socket instead of using PyKX's `SyncQConnection` for sending, because (measured,
reference kdb-pykx.md §4.3) PyKX's send busy-spins a core while a stalled tickerplant does not
read, ignores its timeout there, and sleeps inside the call while it reconnects. Here a blocked
send waits in the kernel and gives up after `send_timeout` seconds, and reconnection policy
belongs to the sender thread. The bytes on the wire are the ones PyKX would send (see encode.py).

The password is sent once, in the handshake, and is never part of an error message.
"""

from __future__ import annotations

import socket
import struct

from mesh.config import Secret
from mesh.kdb.encode import CHASER, RESPONSE

CAPABILITY = 3  # compression, timestamps, timespans, UUIDs; messages under 2 GB


class QIPCError(ConnectionError):
    """The kdb+ process refused us, went away, stopped reading, or answered with a q error."""


class QConnection:
    """A connected, logged-in IPC socket to host:port."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str = "",
        password: Secret | None = None,
        *,
        connect_timeout: float = 2.0,
        send_timeout: float = 5.0,
    ) -> None:
        self.address = f"{host}:{port}"
        self.send_timeout = send_timeout
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise QIPCError(
                f"cannot connect to kdb+ at {self.address}: {exc.strerror or exc}"
            ) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            credentials = f"{user}:{password.reveal() if password else ''}".encode()
            sock.sendall(credentials + bytes([CAPABILITY, 0]))
            reply = sock.recv(1)
        except OSError as exc:
            sock.close()
            raise QIPCError(
                f"kdb+ at {self.address} did not complete the handshake: {exc.strerror or exc}"
            ) from None
        if not reply:
            sock.close()
            who = f"user {user!r}" if user else "an anonymous login"
            raise QIPCError(
                f"kdb+ at {self.address} refused {who} (check the credentials in KDB_TICKERPLANT)"
            )
        sock.settimeout(send_timeout)
        self.capability = reply[0]
        self._sock = sock

    def send(self, message: bytes) -> None:
        """Write one whole message; raises QIPCError if the peer is gone or stops reading."""
        try:
            self._sock.sendall(message)
        except TimeoutError:
            raise QIPCError(
                f"kdb+ at {self.address} stopped reading (send blocked for {self.send_timeout:g} s)"
            ) from None
        except OSError as exc:
            raise QIPCError(f"kdb+ at {self.address} went away: {exc.strerror or exc}") from None

    def round_trip(self) -> None:
        """A sync chaser (q's `h""`): returns once kdb+ has processed everything sent before it."""
        self.send(CHASER)
        while True:
            header = self._read(8)
            length = struct.unpack_from("<I", header, 4)[0]
            body = self._read(length - 8)
            if header[1] != RESPONSE:
                continue  # an async message to us; a tickerplant sends none to a publisher
            if body[:1] == b"\x80":  # a q error: -128 then the message
                error = body[1:].split(b"\0")[0].decode(errors="replace")
                raise QIPCError(f"kdb+ at {self.address} answered with an error: '{error}")
            return

    def _read(self, n: int) -> bytes:
        chunks = []
        while n:
            try:
                data = self._sock.recv(min(n, 1 << 20))
            except TimeoutError:
                raise QIPCError(
                    f"kdb+ at {self.address} did not answer within {self.send_timeout:g} s"
                ) from None
            except OSError as exc:
                raise QIPCError(
                    f"kdb+ at {self.address} went away: {exc.strerror or exc}"
                ) from None
            if not data:
                raise QIPCError(f"kdb+ at {self.address} closed the connection")
            chunks.append(data)
            n -= len(data)
        return b"".join(chunks)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
