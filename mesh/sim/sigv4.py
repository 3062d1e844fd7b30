"""AWS Signature Version 4 checking for the flat-file endpoint, header and presigned-URL forms.

moto serves S3 faithfully but does not check signatures, and Massive's flat files are refused
without the right key pair, so the S3 gateway checks each request before moto sees it. The
signature itself is botocore's: the request is rebuilt from the WSGI environ as an `AWSRequest`
holding exactly the headers it claims to have signed, and botocore's S3 signer computes its
signature with the known secret at the request's own `X-Amz-Date`, region and service. This
module only reads what a request claims (botocore has no parser for that) and compares.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_HEADER = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)"
)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
MAX_SKEW = dt.timedelta(minutes=15)  # S3's limit between a signed request's time and its own
MAX_EXPIRES = 7 * 24 * 3600  # the longest a presigned URL may live (seconds)
_MISMATCH = "The request signature we calculated does not match the signature you provided. Check your key and signing method."


@dataclass(frozen=True)
class Signed:
    """What a request claims: its key, scope, signed headers and signature."""

    access_key: str
    scope: str  # date/region/service/aws4_request
    amz_date: str
    signed_headers: list[str]
    signature: str
    presigned: bool
    expires: int = 0  # seconds a presigned URL lives; 0 for the header form


class SignatureError(Exception):
    """Why a request is refused: an S3 error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse(environ: dict[str, Any], query: list[tuple[str, str]]) -> Signed:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth:
        m = _HEADER.match(auth)
        if not m:
            raise SignatureError("AccessDenied", "Only AWS4-HMAC-SHA256 signatures are accepted.")
        access_key, _, scope = m.group(1).partition("/")
        return Signed(
            access_key,
            scope,
            environ.get("HTTP_X_AMZ_DATE", ""),
            m.group(2).split(";"),
            m.group(3),
            False,
        )
    q = dict(query)
    if q.get("X-Amz-Algorithm") == "AWS4-HMAC-SHA256" and "X-Amz-Credential" in q:
        access_key, _, scope = q["X-Amz-Credential"].partition("/")
        expires = q.get("X-Amz-Expires", "")
        if not expires.isdigit() or not 1 <= int(expires) <= MAX_EXPIRES:
            raise SignatureError(
                "AuthorizationQueryParametersError",
                f"X-Amz-Expires must be a number of seconds from 1 to {MAX_EXPIRES}.",
            )
        return Signed(
            access_key,
            scope,
            q.get("X-Amz-Date", ""),
            q.get("X-Amz-SignedHeaders", "host").split(";"),
            q.get("X-Amz-Signature", ""),
            True,
            int(expires),
        )
    raise SignatureError("AccessDenied", "Access Denied")


def verify(
    environ: dict[str, Any], signed: Signed, secret: str, now: dt.datetime | None = None
) -> None:
    """Raise SignatureError unless the request was signed with `secret` and is still valid."""
    when = _check_time(signed, now or dt.datetime.now(dt.UTC))
    region, service = _check_scope(signed, when)
    request = _rebuild(environ, signed)
    request.context["timestamp"] = signed.amz_date
    credentials = Credentials(signed.access_key, secret)
    signer: SigV4Auth = (
        S3SigV4QueryAuth(credentials, service, region, expires=signed.expires)
        if signed.presigned
        else S3SigV4Auth(credentials, service, region)
    )
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    if not hmac.compare_digest(expected.encode(), signed.signature.encode()):
        raise SignatureError("SignatureDoesNotMatch", _MISMATCH)


def _check_time(signed: Signed, now: dt.datetime) -> dt.datetime:
    """The request's signing time; refuses an expired URL or a header-signed request out of skew."""
    try:
        when = dt.datetime.strptime(signed.amz_date, _AMZ_DATE).replace(tzinfo=dt.UTC)
    except ValueError:
        raise SignatureError(
            "AccessDenied", "AWS authentication requires a valid X-Amz-Date (YYYYMMDDTHHMMSSZ)."
        ) from None
    if signed.presigned:
        if now > when + dt.timedelta(seconds=signed.expires):
            raise SignatureError("AccessDenied", "Request has expired")
        if when - now > MAX_SKEW:
            raise SignatureError("AccessDenied", "Request is not valid yet")
    elif abs(now - when) > MAX_SKEW:
        raise SignatureError(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        )
    return when


def _check_scope(signed: Signed, when: dt.datetime) -> tuple[str, str]:
    """(region, service) of a well-formed S3 credential scope dated the day the request was signed."""
    parts = signed.scope.split("/")
    if (
        len(parts) != 4
        or parts[0] != when.strftime("%Y%m%d")
        or parts[2] != "s3"
        or parts[3] != "aws4_request"
        or not parts[1]
    ):
        raise SignatureError(
            "AuthorizationHeaderMalformed",
            f"The credential scope {signed.scope!r} is not DATE/REGION/s3/aws4_request for the request's date.",
        )
    return parts[1], parts[2]


def _rebuild(environ: dict[str, Any], signed: Signed) -> AWSRequest:
    """The request as its client signed it: method, path, query and the signed headers only."""
    raw_uri = (
        environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/"))
    )
    raw_path, _, raw_query = raw_uri.partition("?")
    # S3's canonical path is each segment URI-encoded once; clients differ in what they escape
    path = quote(unquote(raw_path or "/"), safe="/~")
    params = [_split(p) for p in raw_query.split("&") if p]
    if signed.presigned:
        params = [(k, v) for k, v in params if k != "X-Amz-Signature"]
    headers = {}
    for name in signed.signed_headers:
        value = _header(environ, name)
        if value is None:
            raise SignatureError("SignatureDoesNotMatch", f"Signed header {name} is missing.")
        headers[name] = value
    host = environ.get("HTTP_HOST", "")
    return AWSRequest(
        method=environ["REQUEST_METHOD"],
        url=f"http://{host}{path}",
        headers=headers,
        params=params,  # re-encoded by the signer in SigV4's canonical form
    )


def _split(pair: str) -> tuple[str, str]:
    k, _, v = pair.partition("=")
    return unquote(k.replace("+", "%20")), unquote(v.replace("+", "%20"))


def _header(environ: dict[str, Any], name: str) -> str | None:
    if name == "content-type":
        return environ.get("CONTENT_TYPE")
    if name == "content-length":
        return environ.get("CONTENT_LENGTH")
    return environ.get("HTTP_" + name.upper().replace("-", "_"))
