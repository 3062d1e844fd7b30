"""Parallel flat-file fetch: `massive fetch --method flat_file` of several full-market days, serial vs workers.

Each day is bench/flatfiles.py's synthetic full-market minute-aggregates file (about 10,000
tickers, 2.4 million rows, generated once into the temp directory), served by a plain S3 (moto)
on 127.0.0.1 under the keys of consecutive trading days. `massive fetch` runs as a user runs it,
in a fresh data folder each time (so every day file is downloaded), with `--workers 1` (one day
after the other in the command's process) and then `--workers N` (a process pool), and the
bars of both runs must be equal. Reported: the wall time of each command and the fetch's own
`seconds`; the metric is the parallel fetch's seconds, the baseline the serial one's.
`--link S` puts tests/fetcher/s3proxy.py in front of the bucket so that each file takes at least
S seconds to arrive, as over a real network link (39 MB in 1.5 s is about 26 MB/s per stream).
Usage: python bench/fetch_parallel.py [--days 4] [--workers 2] [--link SECONDS]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import pyarrow.parquet as pq
from moto.server import ThreadedMotoServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import free_port, report  # noqa: E402
from bench.flatfiles import GZIP_LEVEL, ROWS, TICKERS, synthetic_day  # noqa: E402
from mesh import calendar  # noqa: E402
from mesh.fetcher.flatfiles import key_for  # noqa: E402
from tests.fetcher.s3proxy import S3Proxy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIRST = dt.date(2024, 3, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--link",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="serve each day file over at least SECONDS, as a network link would (default: at once)",
    )
    args = parser.parse_args()
    folder = Path(tempfile.gettempdir()) / "massive-mesh-bench-flatfiles"
    folder.mkdir(exist_ok=True)
    path = folder / f"2024-03-07-{TICKERS}x{ROWS}-l{GZIP_LEVEL}.csv.gz"
    if not path.exists():
        print(f"generating {path.name} (once)", file=sys.stderr)
        synthetic_day(path)
    names = [line.split(",", 1)[0] for line in _first_lines(path)]
    body = path.read_bytes()
    days = calendar.trading_days(FIRST, FIRST + dt.timedelta(days=3 * args.days))[: args.days]
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    link: S3Proxy | None = None
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="bench")
        for day in days:
            s3.put_object(Bucket="bench", Key=key_for(day), Body=body)
        if args.link:
            link = S3Proxy(endpoint, slow=args.link).__enter__()
            endpoint = link.endpoint
        symbols = ",".join(sorted(set(names))[:20])
        runs = {}
        for workers in (1, args.workers):
            with tempfile.TemporaryDirectory() as data:
                env = {
                    k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_"))
                }
                env.update(
                    MESH_DATA_DIR=data,
                    MASSIVE_API_KEY="bench-key",
                    MASSIVE_REST_URL="http://127.0.0.1:9",
                    MASSIVE_S3_ENDPOINT=endpoint,
                    MASSIVE_S3_BUCKET="bench",
                    MASSIVE_S3_ACCESS_KEY_ID="bench",
                    MASSIVE_S3_SECRET_ACCESS_KEY="bench",
                )
                started = time.monotonic()
                run = subprocess.run(
                    [sys.executable, "-m", "mesh.cli", "fetch", symbols, "--start", str(days[0])]
                    + ["--end", str(days[-1]), "--interval", "5m", "--method", "flat_file"]
                    + ["--unadjusted", "--name", "bench", "--json", "--workers", str(workers)],
                    env=env,
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                )
                wall = time.monotonic() - started
                if run.returncode != 0:
                    raise SystemExit(run.stderr)
                info = json.loads(run.stdout)
                bars = pq.read_table(Path(data) / "historical" / "bench" / "bars_5m.parquet")
                runs[workers] = (wall, info["seconds"], bars, info["bytes_downloaded"])
                print(
                    f"workers {workers}: {wall:.1f} s wall, fetch {info['seconds']:.1f} s, "
                    f"{len(days)} day(s), {info['bytes_downloaded'] / 1e6:.0f} MB, {info['rows']:,} rows",
                    file=sys.stderr,
                )
        serial, parallel = runs[1], runs[args.workers]
        assert serial[2].equals(parallel[2]), "the parallel fetch's bars differ from the serial's"
    finally:
        if link is not None:
            link.__exit__(None, None, None)
        server.stop()
    report(
        "fetch_parallel",
        "parallel fetch seconds",
        parallel[1],
        "s",
        serial[1],
        "below the serial fetch's",
        days=len(days),
        workers=args.workers,
        link_seconds=args.link,
        cores=os.cpu_count(),
        serial_wall=round(serial[0], 1),
        parallel_wall=round(parallel[0], 1),
        mb_per_day=round(len(body) / 1e6, 1),
    )


def _first_lines(path: Path) -> list[str]:
    import gzip

    with gzip.open(path, "rt") as f:
        next(f)
        return [next(f) for _ in range(200_000)]


if __name__ == "__main__":
    main()
