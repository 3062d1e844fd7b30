"""AWS Signature Version 4 checking for the flat-file endpoint, header and presigned-URL forms.

moto serves S3 faithfully but does not check signatures, and Massive's flat files are refused
without the right key pair, so the S3 gateway recomputes each request's signature with the
known secret before moto sees it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

_HEADER = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)"
)


@dataclass(frozen=True)
class Signed:
    """What a request claims: its key, scope, signed headers and signature."""

    access_key: str
    scope: str  # date/region/service/aws4_request
    amz_date: str
    signed_headers: list[str]
    signature: str
    presigned: bool


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
        return Signed(
            access_key,
            scope,
            q.get("X-Amz-Date", ""),
            q.get("X-Amz-SignedHeaders", "host").split(";"),
            q.get("X-Amz-Signature", ""),
            True,
        )
    raise SignatureError("AccessDenied", "Access Denied")


def verify(environ: dict[str, Any], signed: Signed, secret: str) -> None:
    """Raise SignatureError unless the request was signed with `secret`."""
    raw_uri = (
        environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/"))
    )
    path, _, raw_query = raw_uri.partition("?")
    pairs = [_split(p) for p in raw_query.split("&") if p]
    if signed.presigned:
        pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
    canonical_query = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(pairs))
    headers = []
    for name in signed.signed_headers:
        value = _header(environ, name)
        if value is None:
            raise SignatureError("SignatureDoesNotMatch", f"Signed header {name} is missing.")
        headers.append(f"{name}:{' '.join(value.split())}\n")
    payload = (
        "UNSIGNED-PAYLOAD"
        if signed.presigned
        else environ.get("HTTP_X_AMZ_CONTENT_SHA256", "UNSIGNED-PAYLOAD")
    )
    canonical = "\n".join(
        [
            environ["REQUEST_METHOD"],
            path or "/",
            canonical_query,
            "".join(headers),
            ";".join(signed.signed_headers),
            payload,
        ]
    )
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            signed.amz_date,
            signed.scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in signed.scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signed.signature):
        raise SignatureError(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        )


def _split(pair: str) -> tuple[str, str]:
    k, _, v = pair.partition("=")
    return unquote(k.replace("+", "%20")), unquote(v.replace("+", "%20"))


def _enc(text: str) -> str:
    return quote(text, safe="-_.~")


def _header(environ: dict[str, Any], name: str) -> str | None:
    if name == "content-type":
        return environ.get("CONTENT_TYPE")
    if name == "content-length":
        return environ.get("CONTENT_LENGTH")
    return environ.get("HTTP_" + name.upper().replace("-", "_"))
