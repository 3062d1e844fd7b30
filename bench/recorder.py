"""Recorder throughput: bus batches -> durable write-ahead log -> promoted Parquet.

Three numbers from the same rows in the same run:
  wal       QuoteBatch messages (1,000 rows each, as they come off the bus: msgpack frames decoded
            with mesh.wire into numpy columns, as the recorder does) appended to the write-ahead log with the default 0.2 s fsync interval,
            timed until the last fsync returns (durable)
  promote   those WAL segments promoted to Parquet (zstd), fsync'd and renamed into place
  ceiling   pyarrow.parquet.write_table of the same rows from one in-memory Arrow table

Targets: wal >= 1,000,000 rows/s; promote >= 50 % of the ceiling's rows/s.
Usage: python bench/recorder.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mesh import topics, wire  # noqa: E402
from mesh.recorder.columns import QUOTES, to_record_batch, to_storage  # noqa: E402
from mesh.recorder.promote import promote_segment  # noqa: E402
from mesh.recorder.store import Store  # noqa: E402
from mesh.recorder.wal import Wal, list_segments  # noqa: E402
from mesh.schema import QuoteBatch  # noqa: E402

BATCH = 1_000


def frames(count: int) -> list[list[bytes]]:
    rng = np.random.default_rng(7)
    symbols = [f"S{i:03d}" for i in range(500)]
    out = []
    for b in range(count):
        bid = np.round(100 + rng.normal(0, 1, BATCH), 2)
        first = b * BATCH
        ts = (1_700_000_000_000_000_000 + np.arange(first, first + BATCH) * 1_000).tolist()
        batch = QuoteBatch(
            symbol=[symbols[i % 500] for i in range(first, first + BATCH)],
            bid_price=bid.tolist(),
            bid_size=rng.integers(1, 50, BATCH).tolist(),
            ask_price=(bid + 0.01).tolist(),
            ask_size=rng.integers(1, 50, BATCH).tolist(),
            bid_exchange=rng.integers(1, 20, BATCH).tolist(),
            ask_exchange=rng.integers(1, 20, BATCH).tolist(),
            condition=[0] * BATCH,
            tape=[3] * BATCH,
            sequence=list(range(first, first + BATCH)),
            ts_event=ts,
            ts_recv=[t + 5_000 for t in ts],
        )
        out.append(wire.encode(topics.quotes(), batch, src="bench", seq=b + 1))
    return out


def run_once(data: list[list[bytes]], segments: int) -> tuple[float, float, float]:
    """(wal rows/s, promote rows/s, ceiling rows/s) for one pass over `data`."""
    count = len(data)
    rows = count * BATCH
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        wal_dir = Path(tmp) / "wal"
        # 1. bus frames -> durable WAL (decode, columns, write; fsync every 0.2 s and at the end)
        wal = Wal(wal_dir, 1)
        per_segment = max(1, count // segments)
        start = time.perf_counter()
        for i, frame in enumerate(data):
            msg = wire.decode(frame, columnar=True)
            wal.append(QUOTES, to_record_batch(QUOTES, msg.payload))
            if (i + 1) % per_segment == 0 and i + 1 < count:
                wal.rotate()
        wal.close()
        wal_s = time.perf_counter() - start
        # 2. WAL segments -> Parquet (zstd), all-or-nothing, segments deleted
        store = Store(Path(tmp) / "out")
        start = time.perf_counter()
        for number, files in list_segments(wal_dir).items():
            promote_segment(store, "bench", number, files)
        promote_s = time.perf_counter() - start
        # 3. ceiling: the same rows as one in-memory Arrow table, pq.write_table (zstd)
        table = pa.concat_tables(
            [
                store.read_table(f"bench/quotes/{name}")
                for name in sorted(store.list_files("bench/quotes"))
            ]
        ).combine_chunks()
        assert (
            table.num_rows == rows and table.schema == to_storage(QUOTES, table.slice(0, 0)).schema
        )
        start = time.perf_counter()
        pq.write_table(table, str(Path(tmp) / "ceiling.parquet"), compression="zstd")
        ceiling_s = time.perf_counter() - start
    return rows / wal_s, rows / promote_s, rows / ceiling_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument(
        "--segments",
        type=int,
        default=4,
        help="WAL segments (time slices) the rows are spread over",
    )
    parser.add_argument("--repeat", type=int, default=3, help="passes; each metric is the median")
    args = parser.parse_args()
    data = frames(args.rows // BATCH)
    rows = len(data) * BATCH
    runs = [run_once(data, args.segments) for _ in range(args.repeat)]
    wal_rate, promote_rate, ceiling_rate = (statistics.median(r[i] for r in runs) for i in range(3))
    print(
        json.dumps(
            {
                "bench": "recorder",
                "metric": "wal_rows_per_s",
                "value": round(wal_rate),
                "unit": "rows/s",
                "baseline": None,
                "ratio": None,
                "target": 1_000_000,
                "rows": rows,
                "repeat": args.repeat,
                "fsync_interval_s": 0.2,
                "includes": "msgpack decode of the bus frames",
            }
        )
    )
    print(
        json.dumps(
            {
                "bench": "recorder",
                "metric": "promote_rows_per_s",
                "value": round(promote_rate),
                "unit": "rows/s",
                "baseline": round(ceiling_rate),
                "ratio": round(promote_rate / ceiling_rate, 3),
                "target": 0.5,
                "rows": rows,
                "repeat": args.repeat,
                "baseline_is": "pyarrow.parquet.write_table from an in-memory Arrow table",
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
