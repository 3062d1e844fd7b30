"""A stand-in kdb+ tickerplant for tests and bench/kdb.py: kdb+ IPC on 127.0.0.1, stdlib only.

It runs as its own process (PyKX connects while holding the GIL, so a server thread in the same
process would deadlock), accepts logins, answers every sync message with (::), and appends one
JSON line per event to --record: {"event": "login", "cred": "user:pw"} and
{"event": "msg", "conn": n, "type": 0|1, "raw": "<hex of the whole message>"}. Each line is
flushed as soon as the message is read, so a SIGKILL loses nothing it had read.

    python fake_tp.py [--port 0] [--record FILE] [--users u:p,...] [--stall-after N] [--lifetime S]

prints `PORT=<n>` once listening. --stall-after N stops reading (every connection, and new logins)
after N async messages: a tickerplant that hangs with its sockets open. --lifetime ends the process
after S seconds whatever happens, so a test can never leave it behind. On SIGTERM it prints
`STATS {...}` (messages, bytes) and exits.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import struct
import sys
import time

NULL_RESPONSE = (
    bytes([1, 2, 0, 0]) + struct.pack("<I", 10) + bytes([101, 0])
)  # a response holding (::)


class Conn:
    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.number = number
        self.buf = bytearray()
        self.logged_in = False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record")
    parser.add_argument(
        "--users", help="comma-separated user:password logins to accept (default: any)"
    )
    parser.add_argument("--stall-after", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=120.0)
    args = parser.parse_args()
    users = set(args.users.split(",")) if args.users else None
    record = open(args.record, "a", encoding="utf-8") if args.record else None  # noqa: SIM115

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(16)
    server.setblocking(False)
    print(f"PORT={server.getsockname()[1]}", flush=True)

    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    conns: dict[socket.socket, Conn] = {}
    stats = {"messages": 0, "async": 0, "sync": 0, "bytes": 0, "logins": 0}
    stalled = False
    stopping = False

    def on_term(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)

    def write(event: dict[str, object]) -> None:
        if record is not None:
            record.write(json.dumps(event) + "\n")
            record.flush()

    def stall() -> None:
        nonlocal stalled
        stalled = True
        for sock in list(sel.get_map()):
            sel.unregister(sock)

    def handle(conn: Conn) -> None:
        buf = conn.buf
        if not conn.logged_in:
            end = buf.find(b"\0")
            if end < 0:
                return
            cred = bytes(buf[: end - 1]).decode(errors="replace")
            cap = buf[end - 1] if end else 0
            del buf[: end + 1]
            write({"event": "login", "cred": cred, "conn": conn.number})
            if users is not None and cred not in users:
                close(conn)
                return
            conn.sock.sendall(bytes([min(cap, 3)]))
            conn.logged_in = True
            stats["logins"] += 1
        pos = 0
        try:
            while len(buf) - pos >= 8 and not stalled:
                length = struct.unpack_from("<I", buf, pos + 4)[0]
                if len(buf) - pos < length:
                    return
                kind = buf[pos + 1]
                stats["messages"] += 1
                stats["bytes"] += length
                if record is not None:
                    write(
                        {
                            "event": "msg",
                            "conn": conn.number,
                            "type": kind,
                            "raw": buf[pos : pos + length].hex(),
                        }
                    )
                pos += length
                if kind == 1:
                    stats["sync"] += 1
                    conn.sock.sendall(NULL_RESPONSE)
                else:
                    stats["async"] += 1
                    if args.stall_after and stats["async"] >= args.stall_after:
                        stall()
        finally:
            del buf[:pos]

    def close(conn: Conn) -> None:
        if conn.sock in sel.get_map():
            sel.unregister(conn.sock)
        conns.pop(conn.sock, None)
        conn.sock.close()

    deadline = time.monotonic() + args.lifetime
    number = 0
    while not stopping and time.monotonic() < deadline:
        if stalled:
            time.sleep(0.2)
            continue
        for key, _ in sel.select(timeout=0.2):
            if stalled:
                break
            sock = key.fileobj
            if sock is server:
                try:
                    client, _addr = server.accept()
                except BlockingIOError:
                    continue
                client.setblocking(True)
                number += 1
                conns[client] = Conn(client, number)
                sel.register(client, selectors.EVENT_READ)
                continue
            conn = conns[sock]  # type: ignore[index]
            try:
                data = conn.sock.recv(1 << 22)
            except OSError:
                data = b""
            if not data:
                close(conn)
                continue
            conn.buf += data
            try:
                handle(conn)
            except OSError:
                close(conn)
    print("STATS " + json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
