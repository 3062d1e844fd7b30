"""A damaged download leaves nothing in the cache; gap backfill fetches what ingest missed."""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer

from mesh import calendar, datasets
from mesh.fetcher.backfill import backfill
from mesh.fetcher.errors import FlatFileError
from mesh.fetcher.fetch import Fetcher
from mesh.fetcher.flatfiles import key_for
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.request import make_request
from mesh.sim.server import SimServer
from tests.conftest import free_port
from tests.fetcher.conftest import config_of, sim_env


@pytest.fixture(scope="module")
def plain_s3() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_truncated_gzip_from_s3_is_not_cached_and_rest_stands_in(
    plain_s3: str, sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    day = days[-1]
    s3 = boto3.client(
        "s3",
        endpoint_url=plain_s3,
        aws_access_key_id="a",
        aws_secret_access_key="b",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="cut")
    whole = gzip.compress(
        (
            "ticker,volume,open,close,high,low,window_start,transactions\n"
            + "AAPL,1,1,1,1,1,1,1\n" * 20000
        ).encode()
    )
    s3.put_object(Bucket="cut", Key=key_for(day), Body=whole[: len(whole) // 2])
    env = sim_env(
        sim,
        tmp_path / "data",
        MASSIVE_S3_ENDPOINT=plain_s3,
        MASSIVE_S3_BUCKET="cut",
        MASSIVE_S3_ACCESS_KEY_ID="a",
        MASSIVE_S3_SECRET_ACCESS_KEY="b",
    )
    config = config_of(env, tmp_path)
    request = make_request(["AAPL"], day, day, "1h", "flat_file")
    with pytest.raises(FlatFileError, match="ends early"):
        Fetcher(config).run(request, fallback=False)
    cache = Path(config.data_dir) / "flatfiles"
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # no partial entry, no temp file
    bars, report = Fetcher(config).run(request)
    assert "ends early" in report.fallback and report.rest_calls == 1 and bars.num_rows > 0


def test_backfill_fetches_the_trades_inside_a_gap(sim_config, days: list[dt.date]) -> None:  # type: ignore[no-untyped-def]
    start = calendar.midnight_ns(days[-1]) + 10 * 3600 * 10**9  # 10:00 New York
    gaps = [
        {"symbol": "AAPL", "kind": "trade", "ts_from": start, "ts_to": start + 600 * 10**9},
        {
            "symbol": "AAPL",
            "kind": "trade",
            "ts_from": start + 300 * 10**9,
            "ts_to": start + 900 * 10**9,
        },  # overlaps: merged
        {"symbol": "MSFT", "kind": "quote", "ts_from": start, "ts_to": start + 120 * 10**9},
        {
            "symbol": "MSFT",
            "kind": "bus",
            "ts_from": start,
            "ts_to": start + 1,
        },  # not a market-data gap
    ]
    report = backfill(gaps, sim_config, name="gaps-1")
    assert (
        report["ok"]
        and report["requests"] == 2
        and report["skipped"] == 1
        and report["rest_calls"] == 2
    )
    trades = pq.read_table(Path(report["path"]) / "trades" / "part-000001.parquet").to_pylist()
    quotes = pq.read_table(Path(report["path"]) / "quotes" / "part-000001.parquet").to_pylist()
    assert (
        len(trades) == report["rows"]["trades"] > 0 and len(quotes) == report["rows"]["quotes"] > 0
    )
    lo, hi = start, start + 900 * 10**9
    assert all(lo < t["ts_event"].value < hi for t in trades) and {t["symbol"] for t in trades} == {
        "AAPL"
    }
    backfilled = datasets.resolve("backfill:gaps-1", sim_config.data_dir)
    assert backfilled.kind is datasets.DatasetKind.BACKFILL and backfilled.schema_version == 2
    assert {n: t.rows for n, t in backfilled.tables.items()} == report["rows"]


def test_backfill_that_the_quota_cannot_cover_sends_nothing(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    config = config_of(sim_env(sim, tmp_path / "data", MASSIVE_REST_CALLS_PER_DAY="1"), tmp_path)
    start = calendar.midnight_ns(days[-1]) + 10 * 3600 * 10**9
    gaps = [
        {"symbol": s, "kind": "trade", "ts_from": start, "ts_to": start + 10**9}
        for s in ("AAPL", "MSFT")
    ]
    report = backfill(gaps, config)
    assert not report["ok"] and "would not allow" in report["message"]
    assert QuotaLedger.for_config(config).snapshot()["rest_calls_today"] == 0
