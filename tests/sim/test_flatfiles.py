"""Flat files over S3, as boto3 sees them."""

from __future__ import annotations

import gzip

import pytest
from botocore.exceptions import ClientError

from mesh.sim import market
from mesh.sim.flatfiles import HEADERS
from mesh.sim.server import SimServer
from tests.sim.test_rest import last_days, s3_client


def test_boto3_lists_and_downloads_a_day_file_with_the_massive_header(http_sim: SimServer) -> None:
    s3 = s3_client(http_sim)
    day = last_days(1)[0]
    prefix = f"us_stocks_sip/quotes_v1/{day:%Y}/{day:%m}/{day.isoformat()}"
    listed = s3.list_objects_v2(Bucket="flatfiles", Prefix=prefix)["Contents"]
    assert [o["Key"] for o in listed] == [prefix + ".csv.gz"] and listed[0]["Size"] > 10_000
    body = s3.get_object(Bucket="flatfiles", Key=prefix + ".csv.gz")["Body"].read()
    assert len(body) == listed[0]["Size"]
    lines = gzip.decompress(body).decode().splitlines()
    assert lines[0] == HEADERS["quotes_v1"]
    first = lines[1].split(",")
    assert first[0] == "AAPL" and len(first[11]) == 19  # sip_timestamp in nanoseconds
    assert s3.head_object(Bucket="flatfiles", Key=prefix + ".csv.gz")["ContentLength"] == len(body)


def test_month_listing_holds_trading_days_only(http_sim: SimServer) -> None:
    s3 = s3_client(http_sim)
    day = last_days(30)[0]
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(
            Bucket="flatfiles", Prefix=f"us_stocks_sip/day_aggs_v1/{day:%Y}/{day:%m}/"
        )["Contents"]
    ]
    dates = [market.dt.date.fromisoformat(k.rsplit("/", 1)[1][:10]) for k in keys]
    assert dates and all(market.is_trading_day(d) for d in dates)
    assert dates == [d for d in market.trading_days(dates[0], dates[-1])]


def test_missing_day_is_404_and_bad_credentials_are_403(http_sim: SimServer) -> None:
    day = last_days(1)[0]
    sunday = day - market.dt.timedelta(days=day.weekday() + 1)
    with pytest.raises(ClientError) as missing:
        s3_client(http_sim).get_object(
            Bucket="flatfiles",
            Key=f"us_stocks_sip/trades_v1/{sunday:%Y}/{sunday:%m}/{sunday.isoformat()}.csv.gz",
        )
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    key = f"us_stocks_sip/day_aggs_v1/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"
    for access, secret, code in [
        ("someone-else", "sim-demo-secret", "InvalidAccessKeyId"),
        ("sim-demo-access", "wrong-secret", "SignatureDoesNotMatch"),
    ]:
        with pytest.raises(ClientError) as denied:
            s3_client(http_sim, access, secret).get_object(Bucket="flatfiles", Key=key)
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert denied.value.response["Error"]["Code"] == code


def test_presigned_urls_work_and_files_are_read_only(http_sim: SimServer) -> None:
    import httpx

    s3 = s3_client(http_sim)
    day = last_days(1)[0]
    key = f"us_stocks_sip/day_aggs_v1/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "flatfiles", "Key": key}, ExpiresIn=60
    )
    r = httpx.get(url)
    assert r.status_code == 200 and gzip.decompress(r.content).decode().startswith(
        HEADERS["day_aggs_v1"]
    )
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket="flatfiles", Key="us_stocks_sip/x.csv.gz", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
