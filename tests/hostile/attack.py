"""Raw ZeroMQ sockets that throw hostile frames at a running bus, and a `massive tap` to watch it.

Nothing here goes through mesh.client: the frames are sent as they are, so a message can have the
wrong frame count, a non-ASCII topic or any body at all.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import zmq

from mesh import auth
from mesh.config import Config
from tests.hostile.junk import Frames

ROOT = Path(__file__).resolve().parents[2]


class Thrower:
    """A PUB socket on the bus's data input, a DEALER for control requests and one for raw router frames."""

    def __init__(self, config: Config) -> None:
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.sndhwm = 0  # never drop on our side: what is thrown arrives
        self.pub.linger = 2000
        keys = auth.client_keys(config)  # an authenticated peer gone bad: the mesh's own key
        auth.secure_client(self.pub, keys)
        self.pub.connect(config.bus_pub)
        self.ctl = self.ctx.socket(zmq.DEALER)
        self.ctl.rcvhwm = self.ctl.sndhwm = 0
        self.ctl.linger = 0
        auth.secure_client(self.ctl, keys)
        self.ctl.connect(config.bus_ctl)
        self.router = self.ctx.socket(zmq.DEALER)
        self.router.linger = 0
        auth.secure_client(self.router, keys)
        self.router.connect(config.bus_ctl)
        self.sent = {"data": 0, "control": 0, "router": 0}
        self.replies: list[list[bytes]] = []

    def throw(self, messages: Iterable[Frames], pause_every: int = 500) -> None:
        for i, msg in enumerate(messages):
            sock = (
                self.pub
                if msg.channel == "data"
                else self.ctl
                if msg.channel == "control"
                else self.router
            )
            if msg.frames:
                sock.send_multipart(msg.frames)
            self.sent[msg.channel] += 1
            if i % pause_every == pause_every - 1:
                self.collect_replies(0.01)  # let the mesh breathe, and keep the reply queue short

    def collect_replies(self, quiet: float) -> int:
        """Read control replies until none has come for `quiet` seconds; returns how many were read."""
        got = 0
        while self.ctl.poll(int(quiet * 1000)):
            self.replies.append(self.ctl.recv_multipart())
            got += 1
        while self.router.poll(0):  # whatever the bus says to the raw frames is read and dropped
            self.router.recv_multipart()
        return got

    def close(self) -> None:
        self.ctx.destroy(linger=0)


class Tap:
    """`massive tap PREFIX...` as a user runs it, its lines collected."""

    def __init__(self, env: dict[str, str], *prefixes: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mesh.cli", "tap", *prefixes],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[bytes] = []
        self.err: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream: object, into: list[bytes]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    def printed(self, needle: bytes) -> bool:
        return any(needle in line for line in list(self.lines))

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self, timeout: float = 10) -> int:
        """Ctrl-C, as a user stops it; the tap then prints what it skipped on stderr."""
        if self.alive:
            self.proc.send_signal(2)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for thread in self._threads:
            thread.join(5)
        return code

    def stderr(self) -> str:
        return b"".join(self.err).decode(errors="replace")


def wait_until(predicate: object, timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
