"""Flat files over S3: Massive's `flatfiles` bucket, served by moto behind a credential check.

Day files (`us_stocks_sip/{trades_v1,quotes_v1,minute_aggs_v1,day_aggs_v1}/YYYY/MM/DATE.csv.gz`)
are built lazily from `history`: on the first GET/HEAD of a key the gateway writes the gzipped CSV
into moto, which then answers like S3 (ranges, ETags, 404 NoSuchKey for a missing day).
ListObjectsV2 is answered by the gateway itself from the calendar, so history back to 2003 lists
without being built: common prefixes (`Delimiter=/`) cost nothing, and only the keys on the page
asked for are built, since their sizes are real. Requests must be SigV4-signed with the sim's key
pair, else 403; the files are read-only.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import gzip
import hashlib
import itertools
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from werkzeug.test import EnvironBuilder

from mesh.sim import history, market, queries, sigv4
from mesh.sim.wsgi import BackgroundServer

log = logging.getLogger(__name__)

BUCKET = "flatfiles"
PREFIX = "us_stocks_sip"
DATASETS = ("trades_v1", "quotes_v1", "minute_aggs_v1", "day_aggs_v1")
HEADERS = {
    "trades_v1": "ticker,conditions,correction,exchange,id,participant_timestamp,price,sequence_number,sip_timestamp,size,tape,trf_id,trf_timestamp",
    "quotes_v1": "ticker,ask_exchange,ask_price,ask_size,bid_exchange,bid_price,bid_size,conditions,indicators,participant_timestamp,sequence_number,sip_timestamp,tape,trf_timestamp",
    "minute_aggs_v1": "ticker,volume,open,close,high,low,window_start,transactions",
    "day_aggs_v1": "ticker,volume,open,close,high,low,window_start,transactions",
}
_KEY = re.compile(
    rf"^{PREFIX}/({'|'.join(DATASETS)})/(\d{{4}})/(\d{{2}})/(\d{{4}}-\d{{2}}-\d{{2}})\.csv\.gz$"
)
# trade condition flags -> CSV field: several codes are one quoted field, as in Massive's files
_CONDITION_FIELDS = ["", "12", "14", '"12,14"', "37", '"12,37"', '"14,37"', '"12,14,37"']


def key_for(dataset: str, day: dt.date) -> str:
    return f"{PREFIX}/{dataset}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


def parse_key(key: str) -> tuple[str, dt.date] | None:
    m = _KEY.match(key)
    if not m:
        return None
    try:
        day = dt.date.fromisoformat(m.group(4))
    except ValueError:
        return None
    if (f"{day:%Y}", f"{day:%m}") != (m.group(2), m.group(3)):
        return None
    return m.group(1), day


class FlatFiles:
    """Which day files exist, and their gzipped CSV bytes."""

    def __init__(
        self,
        seed: int,
        symbols: Iterable[str],
        window: Callable[[], market.HistoryWindow],
        scale: float = history.DEFAULT_SCALE,
    ) -> None:
        self.seed = seed
        self.scale = scale
        self.symbols = sorted(symbols)
        self.window = window
        self._keys: tuple[market.HistoryWindow, list[str]] | None = None

    def keys(self) -> list[str]:
        w = self.window()
        cached = self._keys
        if cached is None or cached[0] is not w:
            out = [key_for("day_aggs_v1", d) for d in w.day_bars]
            out += [
                key_for(ds, d)
                for ds in ("trades_v1", "quotes_v1", "minute_aggs_v1")
                for d in w.intraday
            ]
            cached = self._keys = (w, sorted(out))
        return cached[1]

    def exists(self, key: str) -> bool:
        parsed = parse_key(key)
        if parsed is None:
            return False
        dataset, day = parsed
        w = self.window()
        return day in (w.day_bar_set if dataset == "day_aggs_v1" else w.intraday_set)

    def build(self, key: str) -> bytes:
        parsed = parse_key(key)
        assert parsed is not None
        dataset, day = parsed
        lines = getattr(self, f"_{dataset}")(day)
        text = HEADERS[dataset] + "\n" + ("\n".join(lines) + "\n" if len(lines) else "")
        return gzip.compress(text.encode(), compresslevel=6, mtime=0)

    def _trades_v1(self, day: dt.date) -> list[str]:
        parts = [(s, history.day_trades(self.seed, s, day, self.scale)) for s in self.symbols]
        parts = [(s, t) for s, t in parts if len(t)]
        if not parts:
            return []
        col = _Columns(parts)
        cond = pa.array(_CONDITION_FIELDS).take(pa.array(col.cat("flags").astype(np.int64)))
        return _join(
            col.ticker(), cond, "0", col.num("exchange"), col.num("trade_id"), col.num("participant_ns"), col.num("price"),
            col.num("sequence"), col.num("sip_ns"), col.num("size"), col.tape(), col.num("trf_id"), col.num("trf_ns"),
        )  # fmt: skip

    def _quotes_v1(self, day: dt.date) -> list[str]:
        parts = [(s, history.day_quotes(self.seed, s, day, self.scale)) for s in self.symbols]
        parts = [(s, q) for s, q in parts if len(q)]
        if not parts:
            return []
        col = _Columns(parts)
        return _join(
            col.ticker(), col.num("ask_exchange"), col.num("ask_price"), col.num("ask_size"), col.num("bid_exchange"),
            col.num("bid_price"), col.num("bid_size"), "", "", col.num("participant_ns"), col.num("sequence"),
            col.num("sip_ns"), col.tape(), "0",
        )  # fmt: skip

    def _minute_aggs_v1(self, day: dt.date) -> list[str]:
        return self._bars(day, history.minute_bars)

    def _day_aggs_v1(self, day: dt.date) -> list[str]:
        return self._bars(day, queries.day_bar)

    def _bars(
        self, day: dt.date, load: Callable[[int, str, dt.date, float], history.Bars]
    ) -> list[str]:
        parts = [(s, load(self.seed, s, day, self.scale)) for s in self.symbols]
        parts = [(s, b) for s, b in parts if len(b)]
        if not parts:
            return []
        col = _Columns(parts)
        window_start = pa.array(col.cat("t") * 1_000_000)
        return _join(
            col.ticker(),
            col.num("v"),
            col.num("o"),
            col.num("c"),
            col.num("h"),
            col.num("low"),
            pc.cast(window_start, pa.string()),
            col.num("n"),
        )


class _Columns:
    """Per-symbol arrays stacked into day-file columns (sorted by ticker, then time)."""

    def __init__(self, parts: list[tuple[str, Any]]) -> None:
        self.parts = parts
        self.lengths = [len(p) for _, p in parts]

    def cat(self, field: str) -> np.ndarray:
        return np.concatenate([getattr(p, field) for _, p in self.parts])

    def num(self, field: str) -> pa.Array:
        return pc.cast(pa.array(self.cat(field)), pa.string())

    def ticker(self) -> pa.Array:
        return pa.array(
            list(
                itertools.chain.from_iterable(
                    itertools.repeat(s, n)
                    for (s, _), n in zip(self.parts, self.lengths, strict=True)
                )
            )
        )

    def tape(self) -> pa.Array:
        return pa.array(np.repeat([p.tape for _, p in self.parts], self.lengths)).cast(pa.string())


def _join(*columns: pa.Array | str) -> list[str]:
    return pc.binary_join_element_wise(*columns, ",").to_pylist()


# --- the S3 endpoint -----------------------------------------------------------------------------

_account_ids = itertools.count(100000000001)
_owners: dict[str, S3Gateway] = {}
_owners_lock = threading.Lock()
# moto wants a signed-looking request to treat a write as the owner's; it does not check it
_INTERNAL_AUTH = "AWS4-HMAC-SHA256 Credential=sim/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"


class S3Gateway:
    """WSGI middleware in front of moto's S3 app: checks SigV4, refuses writes, makes files on demand."""

    def __init__(
        self, files: FlatFiles, access_key: str, secret_key: str, bucket: str = BUCKET
    ) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app

        self.files = files
        self.access_key = access_key
        self._secret = secret_key
        self.bucket = bucket
        self.account_id = str(next(_account_ids))  # moto state of this sim only
        self.moto = create_backend_app("s3")
        self.requests = 0
        self.denied = 0
        self.files_built = 0
        self._made: set[str] = set()
        self._listed: dict[str, _Listed] = {}  # what ListObjectsV2 shows of each built key
        self._lock = threading.Lock()
        self._own_bucket()

    def _own_bucket(self) -> None:
        """Bucket names are global in S3 (and moto): the newest sim in a process takes it over."""
        with _owners_lock:
            previous = _owners.get(self.bucket)
            if previous is self:
                return
            if previous is not None:
                previous._release()
            self._made.clear()
            self._internal("PUT", f"/{self.bucket}")
            _owners[self.bucket] = self

    def _release(self) -> None:
        for key in sorted(self._made):
            self._internal("DELETE", f"/{self.bucket}/{key}")
        self._made.clear()
        self._listed.clear()
        self._internal("DELETE", f"/{self.bucket}")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.requests += 1
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        try:
            signed = sigv4.parse(environ, query)
            if signed.access_key != self.access_key:
                raise sigv4.SignatureError(
                    "InvalidAccessKeyId",
                    "The AWS Access Key Id you provided does not exist in our records.",
                )
            sigv4.verify(environ, signed, self._secret)
            if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
                raise sigv4.SignatureError(
                    "AccessDenied", "Access Denied: flat files are read-only."
                )
        except sigv4.SignatureError as exc:
            self.denied += 1
            return _s3_error(environ, start_response, exc.code, str(exc))
        bucket, _, key = environ.get("PATH_INFO", "/").lstrip("/").partition("/")
        if _owners.get(self.bucket) is not self:
            self._own_bucket()
        if bucket == self.bucket:
            args = dict(query)
            if key:
                self._ensure([key])
            elif args.get("list-type") == "2" and environ["REQUEST_METHOD"] == "GET":
                return self._list_v2(args, start_response)
            else:
                prefix = args.get("prefix", "")
                self._ensure([k for k in self.files.keys() if k.startswith(prefix)])
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = self.account_id
        return self.moto(environ, start_response)

    def _ensure(self, keys: list[str]) -> None:
        for key in keys:
            if key in self._made or not self.files.exists(key):
                continue
            with self._lock:
                if key in self._made:
                    continue
                body = self.files.build(key)
                self._internal("PUT", f"/{self.bucket}/{key}", body)
                self._listed[key] = _Listed(
                    len(body),
                    hashlib.md5(body, usedforsecurity=False).hexdigest(),
                    dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                )
                self._made.add(key)
                self.files_built += 1

    def _list_v2(self, args: dict[str, str], start_response: Callable[..., Any]) -> list[bytes]:
        """ListObjectsV2 from the calendar: only the objects on this page are built."""
        listing = list_page(
            self.files.keys(),
            args.get("prefix", ""),
            args.get("delimiter", ""),
            _max_keys(args.get("max-keys")),
            _token_key(args.get("continuation-token")) or args.get("start-after", ""),
        )
        self._ensure(listing.keys)
        url = args.get("encoding-type") == "url"

        def name(text: str) -> str:
            return escape(quote(text, safe="/") if url else text)

        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            f"<Name>{escape(self.bucket)}</Name><Prefix>{name(args.get('prefix', ''))}</Prefix>",
            f"<MaxKeys>{_max_keys(args.get('max-keys'))}</MaxKeys>",
            f"<KeyCount>{len(listing.keys) + len(listing.common_prefixes)}</KeyCount>",
            f"<IsTruncated>{'true' if listing.next_after else 'false'}</IsTruncated>",
        ]
        if args.get("delimiter"):
            parts.append(f"<Delimiter>{name(args['delimiter'])}</Delimiter>")
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        if args.get("continuation-token"):
            parts.append(
                f"<ContinuationToken>{escape(args['continuation-token'])}</ContinuationToken>"
            )
        elif args.get("start-after"):
            parts.append(f"<StartAfter>{name(args['start-after'])}</StartAfter>")
        if listing.next_after:
            parts.append(
                f"<NextContinuationToken>{_token_for(listing.next_after)}</NextContinuationToken>"
            )
        for key in listing.keys:
            seen = self._listed[key]
            parts.append(
                f"<Contents><Key>{name(key)}</Key><LastModified>{seen.last_modified}</LastModified>"
                f'<ETag>"{seen.etag}"</ETag><Size>{seen.size}</Size>'
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        for common in listing.common_prefixes:
            parts.append(f"<CommonPrefixes><Prefix>{name(common)}</Prefix></CommonPrefixes>")
        parts.append("</ListBucketResult>")
        body = "".join(parts).encode()
        start_response(
            "200 OK", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
        )
        return [body]

    def _internal(self, method: str, path: str, body: bytes = b"") -> None:
        environ = EnvironBuilder(
            path=path,
            method=method,
            data=body,
            headers=[
                ("Host", "127.0.0.1"),
                ("x-moto-account-id", self.account_id),
                ("Authorization", _INTERNAL_AUTH),
            ],
        ).get_environ()
        status: list[str] = []

        def start_response(
            status_line: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> Callable[[bytes], object]:
            status.append(status_line)
            return lambda data: None

        out = b"".join(self.moto(environ, start_response))
        if not status or status[0][:3] not in ("200", "204"):
            raise RuntimeError(f"moto refused {method} {path}: {status} {out[:200]!r}")


@dataclass(frozen=True)
class _Listed:
    """A built file as a listing shows it."""

    size: int
    etag: str  # the body's MD5, as S3 gives a single-part object
    last_modified: str


@dataclass(frozen=True)
class ListPage:
    """One ListObjectsV2 page: its keys, its common prefixes, and the key after which it resumes."""

    keys: list[str]
    common_prefixes: list[str]
    next_after: str  # "" when the listing is complete


def list_page(keys: list[str], prefix: str, delimiter: str, max_keys: int, after: str) -> ListPage:
    """S3's ListObjectsV2 arithmetic over sorted `keys`: a common prefix counts as one entry."""
    i = bisect.bisect_right(keys, after) if after > prefix else bisect.bisect_left(keys, prefix)
    found: list[str] = []
    common: list[str] = []
    resume = ""
    while i < len(keys) and keys[i].startswith(prefix):
        if len(found) + len(common) >= max_keys:
            return ListPage(found, common, resume)
        key = keys[i]
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            group = key[: cut + len(delimiter)]
            common.append(group)
            resume = group + _PAST_ALL
            i = bisect.bisect_left(keys, resume)
        else:
            found.append(key)
            resume = key
            i += 1
    return ListPage(found, common, "")


_PAST_ALL = "\U0010ffff"  # sorts after any key character: resumes past a whole common prefix


def _max_keys(text: str | None) -> int:
    try:
        return max(0, min(int(text), 1000)) if text else 1000
    except ValueError:
        return 1000


def _token_for(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode()


def _token_key(token: str | None) -> str:
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def _s3_error(
    environ: dict[str, Any], start_response: Callable[..., Any], code: str, message: str
) -> list[bytes]:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{uuid.uuid4().hex[:16]}</RequestId></Error>'
    ).encode()
    start_response(
        "403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
    )
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


class S3Server(BackgroundServer):
    """The gateway on a werkzeug threaded server in a background thread (moto's request handler)."""

    def __init__(self, gateway: S3Gateway, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler

        self.gateway = gateway
        super().__init__(gateway, host, port, "sim-s3", MotoRequestHandler)
