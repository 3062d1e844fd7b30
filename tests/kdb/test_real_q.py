"""Against a real kdb+tick (tick.q + r.q) with q/sym.q: runs only where a licensed q exists.

Needs `q` on PATH (or PYKX_Q_EXECUTABLE) and KDB_TICK_DIR pointing at a checkout of
https://github.com/KxSystems/kdb-tick; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mesh.config import KdbTarget
from mesh.kdb.batcher import Batcher
from mesh.kdb.buffer import Chunk
from mesh.kdb.sender import Sender, SenderOptions
from tests.conftest import free_port
from tests.kdb.conftest import bars, paper_records, quotes, trades

ROOT = Path(__file__).resolve().parents[2]
Q = os.environ.get("PYKX_Q_EXECUTABLE") or shutil.which("q")
TICK = os.environ.get("KDB_TICK_DIR")

pytestmark = pytest.mark.skipif(
    not Q or not TICK or not (Path(TICK or ".") / "tick.q").exists(),
    reason="needs a licensed q and KDB_TICK_DIR (a kdb-tick checkout)",
)


def wait_port(port: int, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listening on {port}")


def test_rows_published_with_sym_q_arrive_in_a_real_rdb(tmp_path: Path) -> None:
    import pykx as kx

    tick = tmp_path / "kdb-tick"
    shutil.copytree(TICK, tick)  # type: ignore[arg-type]
    shutil.copy(ROOT / "q/sym.q", tick / "tick/sym.q")
    tp_port, rdb_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [Q, "tick.q", "sym", str(tmp_path / "log"), "-p", str(tp_port)],
            cwd=tick,
            stdin=subprocess.PIPE,
        )
    ]  # type: ignore[list-item]
    try:
        wait_port(tp_port)
        procs.append(
            subprocess.Popen(
                [Q, "tick/r.q", f":{tp_port}", "-p", str(rdb_port)], cwd=tick, stdin=subprocess.PIPE
            )
        )  # type: ignore[list-item]
        wait_port(rdb_port)
        time.sleep(0.5)
        chunks: list[Chunk] = []
        batcher = Batcher(chunks.append, batch_rows=100)
        orders, fills, pnls = paper_records("momo", 3)
        for batch in (quotes(250), trades(30), bars(5, "1m"), bars(5, "1s"), *orders, *fills):
            batcher.add(batch)
        for pnl in pnls:
            batcher.add(pnl)
        batcher.flush_all()
        sender = Sender(KdbTarget("127.0.0.1", tp_port), SenderOptions(confirm_interval=0.2))
        sender.start()
        for chunk in chunks:
            sender.submit(chunk)
        assert sender.flush(10)
        sender.stop()
        with kx.SyncQConnection("127.0.0.1", rdb_port, no_ctx=True) as rdb:
            counts: Any = None
            for _ in range(50):
                counts = rdb("count each (quote;trade;bar;order;fill;pnl)").py()
                if counts == [250, 30, 10, 3, 3, 3]:
                    break
                time.sleep(0.1)
            assert counts == [250, 30, 10, 3, 3, 3]
            assert rdb("exec fill_count from pnl").py() == [1, 2, 3]
            assert rdb("exec distinct name from fill").py() == ["momo"]
            assert rdb("meta fill").pd()["t"].tolist() == list("nssjffffpff")
            assert rdb("exec last sequence from quote").py() == 249
            assert rdb("meta quote").pd()["t"].tolist()[:4] == ["n", "s", "f", "j"]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(5)
