"""The flat-file endpoint checks SigV4 as S3 does: tampered, wrongly keyed or stale requests get 403."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from werkzeug.test import EnvironBuilder

from mesh.sim import sigv4
from mesh.sim.server import SimServer
from tests.sim.test_rest import last_days, s3_client

ACCESS, SECRET = "sim-demo-access", "sim-demo-secret"


def day_key(day: dt.date) -> str:
    return f"us_stocks_sip/day_aggs_v1/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


def error_code(response: httpx.Response) -> str:
    m = re.search(r"<Code>([^<]+)</Code>", response.text)
    return m.group(1) if m else ""


def test_a_presigned_url_pointed_at_another_file_is_refused(http_sim: SimServer) -> None:
    first, second = last_days(2)
    url = s3_client(http_sim).generate_presigned_url(
        "get_object", Params={"Bucket": "flatfiles", "Key": day_key(second)}, ExpiresIn=60
    )
    assert httpx.get(url).status_code == 200
    tampered = httpx.get(url.replace(day_key(second), day_key(first)))
    assert tampered.status_code == 403 and error_code(tampered) == "SignatureDoesNotMatch"


def test_a_presigned_url_made_with_the_wrong_secret_is_refused(http_sim: SimServer) -> None:
    url = s3_client(http_sim, ACCESS, "not-the-secret").generate_presigned_url(
        "get_object", Params={"Bucket": "flatfiles", "Key": day_key(last_days(1)[0])}
    )
    refused = httpx.get(url)
    assert refused.status_code == 403 and error_code(refused) == "SignatureDoesNotMatch"


def test_an_expired_presigned_url_is_refused(http_sim: SimServer) -> None:
    url = s3_client(http_sim).generate_presigned_url(
        "get_object", Params={"Bucket": "flatfiles", "Key": day_key(last_days(1)[0])}, ExpiresIn=1
    )
    time.sleep(2.1)
    refused = httpx.get(url)
    assert refused.status_code == 403 and error_code(refused) == "AccessDenied"
    assert "Request has expired" in refused.text


def test_a_signed_request_changed_after_signing_is_refused(http_sim: SimServer) -> None:
    first, second = last_days(2)
    s3 = s3_client(http_sim)

    def change_key(request: Any, **_: Any) -> None:  # what a proxy in the middle would do
        request.url = request.url.replace(day_key(second), day_key(first))

    s3.meta.events.register("before-send.s3.GetObject", change_key)
    with pytest.raises(ClientError) as denied:
        s3.get_object(Bucket="flatfiles", Key=day_key(second))
    assert denied.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    lister = s3_client(http_sim)

    def widen_prefix(request: Any, **_: Any) -> None:
        request.url = request.url.replace("prefix=us_stocks_sip%2Fday_aggs_v1", "prefix=us")

    lister.meta.events.register("before-send.s3.ListObjectsV2", widen_prefix)
    with pytest.raises(ClientError) as denied:
        lister.list_objects_v2(Bucket="flatfiles", Prefix="us_stocks_sip/day_aggs_v1/")
    assert denied.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_an_unsigned_payload_request_is_accepted(http_sim: SimServer) -> None:
    """A client that sends UNSIGNED-PAYLOAD (as SDKs do over TLS) still gets the file."""
    key = day_key(last_days(1)[0])
    host = http_sim.s3_endpoint.removeprefix("http://")
    request = AWSRequest(method="GET", url=f"https://{host}/flatfiles/{key}")
    request.context["client_config"] = BotoConfig(s3={"payload_signing_enabled": False})
    S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(request)
    assert request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    response = httpx.get(f"{http_sim.s3_endpoint}/flatfiles/{key}", headers=dict(request.headers))
    assert response.status_code == 200 and response.content[:2] == b"\x1f\x8b"  # gzip


def captured_get(http_sim: SimServer) -> dict[str, Any]:
    """The WSGI environ of a GetObject exactly as boto3 signed and sent it."""
    sent: list[Any] = []
    s3 = s3_client(http_sim)
    s3.meta.events.register("before-send.s3.GetObject", lambda request, **_: sent.append(request))
    s3.get_object(Bucket="flatfiles", Key=day_key(last_days(1)[0]))
    request = sent[0]
    path, _, query = request.url.split("://", 1)[1].partition("/")[2].partition("?")
    environ: dict[str, Any] = EnvironBuilder(
        path="/" + path,
        query_string=query,
        method=request.method,
        headers={k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()},
    ).get_environ()
    environ["HTTP_HOST"] = http_sim.s3_endpoint.removeprefix("http://")
    environ["REQUEST_URI"] = "/" + path + ("?" + query if query else "")
    return environ


def test_a_header_signed_request_is_refused_once_its_time_is_fifteen_minutes_off(
    http_sim: SimServer,
) -> None:
    environ = captured_get(http_sim)
    signed = sigv4.parse(environ, [])
    at = dt.datetime.strptime(signed.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    sigv4.verify(environ, signed, SECRET, now=at + dt.timedelta(minutes=14))
    for off in (dt.timedelta(minutes=16), -dt.timedelta(minutes=16)):
        with pytest.raises(sigv4.SignatureError) as stale:
            sigv4.verify(environ, signed, SECRET, now=at + off)
        assert stale.value.code == "RequestTimeTooSkewed"
    with pytest.raises(sigv4.SignatureError) as wrong:
        sigv4.verify(environ, signed, "not-the-secret", now=at)
    assert wrong.value.code == "SignatureDoesNotMatch"
