"""The kdb publisher's throughput: bus batches -> `.u.upd` into a test tickerplant, against PyKX alone.

Ours: encoded bus messages (QuoteBatch, 100 quotes each, as ingest publishes them) are decoded
with the bus codec as the kdb service reads a busy bus (bursts of up to 100 messages, each
topic's batches merged into numpy columns: `wire.decode_many`), rebatched by `mesh.kdb.batcher` to N rows per `.u.upd`, and sent by
`mesh.kdb.sender` (PyKX conversion, own socket, replay buffer, confirming round trips). The clock
stops when the final sync round trip returns, i.e. when the tickerplant has read every message.

Baseline, in the same run and to the same tickerplant: PyKX by itself, the shortest correct
script: column lists built before the clock starts (Python lists, one set of 13 per message, as a
bus batch carries them), then per message `kx.toq(np.asarray(col, dtype))` on each (PyKX turns a
bare list into a general list, so the dtype is needed for the right q type) and
`SyncQConnection(...)('.u.upd', `quote, cols, wait=False)`, and a final sync query. Each JSON line
also gives PyKX sending pre-converted K columns (`pykx_prebuilt_k_rows_per_s`, no conversion at
all): the ceiling of the transport, not a like-for-like comparison.

The tickerplant is tests/kdb/fake_tp.py (kdb+ IPC, reads and counts, answers syncs) in its own
process. Batch sizes 1, 100 and 1,000 rows; the default is 1,000.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ["PYKX_UNLICENSED"] = "true"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pykx as kx  # noqa: E402
from _common import median, report  # noqa: E402

from mesh import topics, wire  # noqa: E402
from mesh.config import KdbTarget  # noqa: E402
from mesh.kdb.batcher import DEFAULT_BATCH_ROWS, Batcher  # noqa: E402
from mesh.kdb.schema import NS_PER_DAY  # noqa: E402
from mesh.kdb.sender import Sender, SenderOptions  # noqa: E402
from mesh.kdb.service import BURST_MESSAGES  # noqa: E402
from mesh.schema import QuoteBatch  # noqa: E402

BUS_BATCH = 100
ROWS = {1: 5_000, 100: 200_000, 1000: 1_000_000}
RUNS = 3
SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY", "QQQ", "AMD"]
T0 = 1_767_346_200_000_000_000


def bus_frames(total: int) -> list[list[bytes]]:
    frames = []
    for offset in range(0, total, BUS_BATCH):
        n = min(BUS_BATCH, total - offset)
        idx = range(offset, offset + n)
        batch = QuoteBatch(
            symbol=[SYMBOLS[i % 10] for i in idx],
            bid_price=[100.0 + i % 500 * 0.01 for i in idx],
            bid_size=[100 + i % 7 for i in idx],
            ask_price=[100.02 + i % 500 * 0.01 for i in idx],
            ask_size=[200 + i % 5 for i in idx],
            bid_exchange=[4] * n,
            ask_exchange=[7] * n,
            condition=[0] * n,
            tape=[3] * n,
            sequence=list(idx),
            ts_event=[T0 + i * 1000 for i in idx],
            ts_recv=[T0 + i * 1000 + 500 for i in idx],
        )
        frames.append(wire.encode(topics.quotes(), batch, src="bench", seq=offset // BUS_BATCH + 1))
    return frames


def ours(port: int, batch_rows: int, frames: list[list[bytes]], total: int) -> float:
    sender = Sender(
        KdbTarget("127.0.0.1", port), SenderOptions(max_queue_rows=max(50_000, 20 * batch_rows))
    )
    batcher = Batcher(
        lambda chunk: sender.submit(chunk, block=True), batch_rows=batch_rows, flush_ms=50
    )
    sender.start()
    assert sender.flush(10), "no connection to the test tickerplant"
    start = time.perf_counter()
    for first in range(0, len(frames), BURST_MESSAGES):  # as the service reads a busy bus: bursts
        for msg in wire.decode_many(frames[first : first + BURST_MESSAGES]).messages:
            batcher.add(msg.payload)
    batcher.flush_all()
    assert sender.flush(120), "the tickerplant did not confirm"
    elapsed = time.perf_counter() - start
    snap = sender.snapshot()
    sender.stop()
    assert snap["confirmed"] == total and snap["dropped"] == 0, snap
    return total / elapsed


DTYPES = [
    "timedelta64[ns]",
    object,
    np.float64,
    np.int64,
    np.float64,
    np.int64,
    np.int64,
    np.int64,
    np.int64,
    np.int64,
    np.int64,
    "datetime64[ns]",
    "datetime64[ns]",
]


def prebuilt_columns(batch_rows: int, total: int) -> list[list[list]]:  # type: ignore[type-arg]
    out = []
    for offset in range(0, total, batch_rows):
        idx = range(offset, min(offset + batch_rows, total))
        n = len(idx)
        ts = [T0 + i * 1000 for i in idx]
        out.append(
            [
                [t % NS_PER_DAY for t in ts],
                [SYMBOLS[i % 10] for i in idx],
                [100.0 + i % 500 * 0.01 for i in idx],
                [100 + i % 7 for i in idx],
                [100.02 + i % 500 * 0.01 for i in idx],
                [200 + i % 5 for i in idx],
                [4] * n,
                [7] * n,
                [0] * n,
                [3] * n,
                list(idx),
                ts,
                [t + 500 for t in ts],
            ]
        )
    return out


def to_k(cols: list) -> list:  # type: ignore[type-arg]
    return [
        kx.toq(
            np.asarray(c, dtype=np.int64).view(d) if isinstance(d, str) else np.asarray(c, dtype=d)
        )
        for c, d in zip(cols, DTYPES, strict=True)
    ]


def baseline(port: int, messages: list[list[list]], total: int, convert: bool = True) -> float:  # type: ignore[type-arg]
    payloads = messages if convert else [to_k(cols) for cols in messages]
    table = kx.SymbolAtom("quote")
    with kx.SyncQConnection("127.0.0.1", port, no_ctx=True) as conn:
        start = time.perf_counter()
        for cols in payloads:
            conn(".u.upd", table, to_k(cols) if convert else cols, wait=False)
        conn(kx.CharVector(""), wait=True)
        return total / (time.perf_counter() - start)


def main() -> None:
    tp = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/kdb/fake_tp.py"), "--lifetime", "600"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert tp.stdout is not None
    port = int(tp.stdout.readline().strip().split("=")[1])
    headline = (0.0, 0.0)
    try:
        for batch_rows, total in ROWS.items():
            frames = bus_frames(total)
            columns = prebuilt_columns(batch_rows, total)
            mine, base = [], []
            for _ in range(RUNS):
                mine.append(ours(port, batch_rows, frames, total))
                base.append(baseline(port, columns, total))
            ceiling = baseline(port, columns, total, convert=False)
            value, base_value = median(mine), median(base)
            print(
                json.dumps(
                    {
                        "bench": "kdb",
                        "batch_rows": batch_rows,
                        "rows": total,
                        "rows_per_s": round(value, 1),
                        "baseline_rows_per_s": round(base_value, 1),
                        "ratio": round(value / base_value, 3),
                        "pykx_prebuilt_k_rows_per_s": round(ceiling, 1),
                    }
                ),
                flush=True,
            )
            if batch_rows == DEFAULT_BATCH_ROWS:
                headline = (value, base_value)
    finally:
        tp.terminate()
        out, _ = tp.communicate(10)
        print(
            f"test tickerplant: {out.strip().splitlines()[-1] if out.strip() else 'no stats'}",
            file=sys.stderr,
        )
    report(
        "kdb",
        f"rows_per_s_at_{DEFAULT_BATCH_ROWS}_rows_per_upd",
        headline[0],
        "rows/s",
        headline[1],
        f">=500000 rows/s at {DEFAULT_BATCH_ROWS} rows per .u.upd and ratio >=0.5",
    )


if __name__ == "__main__":
    main()
