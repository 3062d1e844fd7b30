"""Drive tests/kdb/fake_tp.py from a test, and read what it recorded with aiokdb's decoder.

aiokdb (pure Python) is independent of PyKX, which built the messages, so a decoding mistake on
either side cannot hide the other's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiokdb

FAKE_TP = Path(__file__).resolve().with_name("fake_tp.py")


@dataclass
class Upd:
    """One decoded `(function; `table; columns)` message."""

    msg_type: int
    function: str
    table: str
    types: list[int]  # q type of each column
    item_types: list[set[int]]  # for general-list columns: the types of their items
    columns: list[list[Any]]

    @property
    def rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def column(self, name: str, names: list[str]) -> list[Any]:
        return self.columns[names.index(name)]


def values(k: Any) -> list[Any]:
    """A decoded q vector as a Python list (ints for temporal types, as on the wire)."""
    t = k.t
    if t in (7, 12, 16):
        return list(k.kJ())
    if t == 9:
        return list(k.kF())
    if t == 11:
        return list(k.kS())
    if t == 1:
        return list(k.kB())
    if t == 10:
        return [k.aS()]
    if t == 0:
        return [k2.aS() if k2.t == 10 else values(k2) for k2 in k.kK()]
    raise AssertionError(f"unexpected q type {t} in a column")


def decode_upd(raw: bytes) -> Upd:
    k = aiokdb.d9(raw)
    assert k.t == 0, f"a .u.upd message is a general list, got type {k.t}"
    fn, table, cols = k.kK()
    assert fn.t == -11 and table.t == -11, "function and table are symbols"
    assert cols.t == 0, "the data is a general list of columns, not a table"
    columns = cols.kK()
    return Upd(
        msg_type=raw[1],
        function=fn.aS(),
        table=table.aS(),
        types=[c.t for c in columns],
        item_types=[{i.t for i in c.kK()} if c.t == 0 else set() for c in columns],
        columns=[values(c) for c in columns],
    )


class FakeTickerplant:
    """A fake_tp.py subprocess on 127.0.0.1; every instance of it appends to one record file."""

    def __init__(
        self, record: Path, *, users: str | None = None, stall_after: int = 0, lifetime: float = 90
    ) -> None:
        self.record = record
        self.users = users
        self.stall_after = stall_after
        self.lifetime = lifetime
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self, port: int = 0) -> int:
        cmd = [
            sys.executable,
            str(FAKE_TP),
            "--port",
            str(port),
            "--record",
            str(self.record),
            "--lifetime",
            str(self.lifetime),
        ]
        if self.users:
            cmd += ["--users", self.users]
        if self.stall_after:
            cmd += ["--stall-after", str(self.stall_after)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("PORT="), f"fake tickerplant did not start: {line!r}"
        self.port = int(line.strip().split("=")[1])
        return self.port

    def kill(self) -> None:
        """SIGKILL: the tickerplant dies mid-stream with no goodbye."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def events(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text().splitlines()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written right now
                break
        return out

    def logins(self) -> list[str]:
        return [e["cred"] for e in self.events() if e["event"] == "login"]

    def raw_messages(self) -> list[bytes]:
        return [bytes.fromhex(e["raw"]) for e in self.events() if e["event"] == "msg"]

    def upds(self, table: str | None = None) -> list[Upd]:
        found = [decode_upd(raw) for raw in self.raw_messages() if raw[1] == 0]
        return [u for u in found if table is None or u.table == table]

    def wait_for(self, predicate: Any, timeout: float = 25.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one by default), from /proc."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
