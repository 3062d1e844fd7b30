"""What can go wrong in a fetch, as exception types a caller can tell apart.

`FetchError` messages are written for the person who asked: they name the symbol, day, file or
limit involved and never contain a credential. The fallback logic keys on the type: a
`FlatFileError` may fall back to REST, a `QuotaExceeded` or `BadRequest` never spends anything.
"""

from __future__ import annotations


class FetchError(RuntimeError):
    """Base class: a fetch that could not be done; the message says why."""


class BadRequest(FetchError, ValueError):
    """The request itself is wrong (symbol, dates, interval, method); nothing was spent."""


class QuotaExceeded(FetchError):
    """Sending would go over a configured limit, so nothing was sent."""

    def __init__(self, message: str, *, limit: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.limit = limit  # "rest_per_day", "rest_per_minute", "s3_bytes_per_month"
        self.retry_after = retry_after


class RestError(FetchError):
    """The REST API refused or answered something unusable."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RestAuthError(RestError):
    """401/403: a bad key or a plan that does not include the data; never retried."""


class RestProtocolError(RestError):
    """A body that is not JSON, or JSON without the fields the protocol promises."""


class FlatFileError(FetchError):
    """The flat-file path failed (credentials, 403, missing day, damaged file); REST may stand in."""


class NoData(FetchError):
    """The request was valid but the source holds no bars for it (e.g. an unknown symbol)."""


class Cancelled(FetchError):
    """The job was cancelled by its owner."""


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every given secret replaced, for messages built from third-party exceptions."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return text
