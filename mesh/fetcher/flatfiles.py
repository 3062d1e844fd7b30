"""Massive flat files over S3 (boto3): list the day files of a range, download, verify, cache.

Day files are cached under data/flatfiles/ with the bucket's key layout. A download goes to a
temporary name next to its final place, is checked (the size S3 announced, then a full
decompress-and-parse pass with the documented header), and only then renamed into place, so
the cache never holds half a file: a cached file whose size differs from the listing is fetched
again, and one that fails to parse is removed and fetched again once. Bytes are reserved in the
quota ledger before a download starts and corrected to what actually arrived. A temporary file
left by a process that died mid-download (a killed worker of a parallel fetch) is removed when
that file is next downloaded.

The S3 key pair is separate from the REST key (config.s3_credentials); neither appears in any
message this module produces.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from mesh.fetcher.errors import Cancelled, FlatFileError, scrub
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.minutefile import DamagedFile, read_minute_file

T = TypeVar("T")

log = logging.getLogger(__name__)

PREFIX = "us_stocks_sip"
MINUTE_AGGS = "minute_aggs_v1"
DAY_AGGS = "day_aggs_v1"
CHUNK = 1 << 20


def key_for(day: dt.date, dataset: str = MINUTE_AGGS) -> str:
    """`us_stocks_sip/minute_aggs_v1/2024/03/2024-03-07.csv.gz`"""
    return f"{PREFIX}/{dataset}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


@dataclass(frozen=True)
class DayFile:
    """One day file of the plan: where it is, how big, and whether the cache already has it."""

    day: dt.date
    key: str
    size: int
    cached: bool


class FlatFiles:
    """The flat-file bucket and the local cache of its day files."""

    def __init__(
        self, config: Any, ledger: QuotaLedger, *, cancel: threading.Event | None = None
    ) -> None:
        self.endpoint = config.s3_endpoint
        self.bucket = config.s3_bucket
        self._credentials: tuple[str, str] | None = config.s3_credentials
        self.cache_dir = Path(config.data_dir) / "flatfiles"
        self.ledger = ledger
        self.cancel = cancel
        self._client: Any = None
        self.bytes_downloaded = 0
        self.files_downloaded = 0
        self.files_from_cache = 0

    # --- S3 ------------------------------------------------------------------------------------

    def _s3(self) -> Any:
        if self._credentials is None:
            raise FlatFileError(
                "no flat-file credentials: set MASSIVE_S3_ACCESS_KEY_ID and MASSIVE_S3_SECRET_ACCESS_KEY (a key pair separate from the API key)"
            )
        if self._client is None:
            import boto3
            from botocore.config import Config as BotoConfig

            key_id, secret = self._credentials
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                region_name="us-east-1",
                config=BotoConfig(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                ),
            )
        return self._client

    def _error(self, exc: Exception, what: str) -> FlatFileError:
        """A user-facing error for a boto3/botocore failure, with no credential in it."""
        from botocore.exceptions import BotoCoreError, ClientError

        secrets = self._credentials or ("", "")
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "")) or str(
                exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
            )
            if code in (
                "403",
                "AccessDenied",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "Forbidden",
            ):
                text = f"{what}: flat files refused access ({code}); check MASSIVE_S3_ACCESS_KEY_ID / MASSIVE_S3_SECRET_ACCESS_KEY and that your plan includes flat files"
            elif code in ("404", "NoSuchKey", "NotFound"):
                text = (
                    f"{what}: no such file in the bucket ({code}); the day may not be published yet"
                )
            elif code == "NoSuchBucket":
                text = f"{what}: bucket {self.bucket!r} does not exist at {self.endpoint} (MASSIVE_S3_BUCKET)"
            else:
                text = f"{what}: flat-file request failed ({code}: {err.get('Message', '')})"
        elif isinstance(exc, BotoCoreError):
            text = f"{what}: cannot reach flat files at {self.endpoint} ({type(exc).__name__})"
        else:
            text = f"{what}: {type(exc).__name__}: {exc}"
        return FlatFileError(scrub(text, *secrets))

    def list_sizes(self, days: Iterable[dt.date], dataset: str = MINUTE_AGGS) -> dict[dt.date, int]:
        """Size in bytes of every day file that exists among `days` (one listing per month)."""
        from botocore.exceptions import BotoCoreError, ClientError

        wanted = {key_for(day, dataset): day for day in days}
        months = sorted({(day.year, day.month) for day in wanted.values()})
        sizes: dict[dt.date, int] = {}
        s3 = self._s3()
        for year, month in months:
            prefix = f"{PREFIX}/{dataset}/{year:04d}/{month:02d}/"
            try:
                for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix
                ):
                    for item in page.get("Contents", ()):
                        day = wanted.get(item["Key"])
                        if day is not None:
                            sizes[day] = int(item["Size"])
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, f"listing {prefix}") from None
        return sizes

    def plan(
        self, days: Iterable[dt.date], dataset: str = MINUTE_AGGS
    ) -> tuple[list[DayFile], list[dt.date]]:
        """(the day files to read, trading days with no file in the bucket)."""
        days = list(days)
        sizes = self.list_sizes(days, dataset)
        files = []
        for day in days:
            if day in sizes:
                key = key_for(day, dataset)
                path = self.cache_dir / key
                files.append(
                    DayFile(
                        day, key, sizes[day], path.is_file() and path.stat().st_size == sizes[day]
                    )
                )
        return files, [day for day in days if day not in sizes]

    # --- cache and download --------------------------------------------------------------------

    def read(
        self, file: DayFile, symbols: list[str], *, on_bytes: Callable[[int], None] | None = None
    ) -> pa.Table:
        """The minute bars of `symbols` in one day file, from the cache or freshly downloaded."""
        return self.parse(file, lambda path: read_minute_file(path, symbols), on_bytes=on_bytes)

    def parse(
        self,
        file: DayFile,
        parse: Callable[[Path], T],
        *,
        on_bytes: Callable[[int], None] | None = None,
    ) -> T:
        """`parse` of one day file, read from the cache or freshly downloaded.

        `parse` is also the file's check: a cached file it rejects (a FlatFileError) is fetched
        again; a download it rejects is not cached, and the error is raised.
        """
        path = self.cache_dir / file.key
        if path.is_file() and path.stat().st_size == file.size:
            try:
                parsed = parse(path)
                self.files_from_cache += 1
                if on_bytes is not None:
                    on_bytes(file.size)
                return parsed
            except FlatFileError as exc:
                log.warning("cached %s is damaged (%s); fetching it again", file.key, exc)
                path.unlink(missing_ok=True)
        elif path.exists():
            log.info(
                "cached %s has %d bytes, the bucket %d; fetching it again",
                file.key,
                path.stat().st_size,
                file.size,
            )
            path.unlink(missing_ok=True)
        return self._download_and_parse(file, path, parse, on_bytes)

    def _download_and_parse(
        self,
        file: DayFile,
        path: Path,
        parse: Callable[[Path], T],
        on_bytes: Callable[[int], None] | None,
    ) -> T:
        """Fetch one day file into the cache: reserved in the ledger, written to a temporary
        file, checked by `parse` (whose result is returned), then renamed into place."""
        from botocore.exceptions import BotoCoreError, ClientError

        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(path)
        tmp = path.with_name(f".{path.name}.part-{os.getpid()}-{threading.get_ident()}")
        row = self.ledger.reserve_bytes(file.key, file.size)
        got = 0
        try:
            try:
                response = self._s3().get_object(Bucket=self.bucket, Key=file.key)
                expected = int(response.get("ContentLength", file.size))
                body = response["Body"]
                with open(tmp, "wb") as out:
                    while True:
                        if self.cancel is not None and self.cancel.is_set():
                            raise Cancelled(f"cancelled while downloading {file.key}")
                        chunk = body.read(CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        got += len(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
                    out.flush()
                    os.fsync(out.fileno())
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, file.key) from None
            if got != expected:
                raise DamagedFile(f"{file.key}: download ended after {got} of {expected} bytes")
            try:
                parsed = parse(tmp)  # the verification: full gzip + header + values
            except DamagedFile as exc:  # named after the file, not its temporary name
                raise DamagedFile(str(exc).replace(tmp.name, file.key)) from None
            os.replace(tmp, path)
            self.files_downloaded += 1
            return parsed
        finally:
            self.bytes_downloaded += got
            if got != file.size:
                self.ledger.settle_bytes(row, got)
            tmp.unlink(missing_ok=True)

    def tickers_on(self, day: dt.date) -> set[str] | None:
        """Every ticker in the small day-aggregates file of `day` (cached), or None if unavailable."""
        from mesh.fetcher.minutefile import read_tickers

        try:
            files, _ = self.plan([day], DAY_AGGS)
            if not files:
                return None
            file = files[0]
            path = self.cache_dir / file.key
            if not file.cached:
                if not self._download_to_cache(file, path):
                    return None
            return read_tickers(path)
        except (FlatFileError, OSError) as exc:
            log.info("cannot check symbols against %s: %s", key_for(day, DAY_AGGS), exc)
            return None

    def _download_to_cache(self, file: DayFile, path: Path) -> bool:
        """Fetch a small file into the cache (verified); False if it could not be fetched intact."""
        from mesh.fetcher.minutefile import read_tickers

        try:
            self._download_and_parse(file, path, lambda p: read_minute_file(p, []), None)
        except DamagedFile:
            return False
        try:
            read_tickers(path)
        except DamagedFile:
            path.unlink(missing_ok=True)
            return False
        return True


def _remove_orphans(path: Path) -> None:
    """Remove temporary files of `path` left by processes that died mid-download (killed workers)."""
    for part in path.parent.glob(f".{path.name}.part-*"):
        pid = part.name.rsplit(".part-", 1)[1].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except OSError:
            pass  # alive (someone else's): leave it
