"""Where datasets live: a local folder or an `s3://bucket/prefix` in S3-compatible storage.

`Location` is the one owner of that question for every writer (the recorder's promoted files,
`massive fetch`, sweep results) and reader (`massive data`, `massive backtest`). Paths inside a
location are relative, `/`-separated (`historical/demo/manifest.json`).

Every write is all or nothing. A local file is written under a hidden temporary name, fsync'd
and renamed into place (then the folder is fsync'd); an S3 object is uploaded in one request,
which S3 makes visible only when complete. Readers never see half a file, and re-doing a write
after a crash replaces the file instead of duplicating it.

S3 locations use pyarrow's S3 filesystem and its URI options, for example
`s3://team-data/mesh?endpoint_override=minio.local:9000&scheme=http&region=us-east-1`.
Credentials come from the usual `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` variables (or the
AWS config files); a URI is only ever shown through `redact_uri`, and nothing written holds one.

    from mesh.datasets import storage

    where = storage.Location("s3://team-data/mesh?endpoint_override=127.0.0.1:9000&scheme=http")
    storage.write_table(where.join("sweeps", sweep_id, "results.parquet"), table)
    table = storage.read_table(where.join("sweeps", sweep_id, "results.parquet"))

The tools that read datasets file by file (listing, opening, checking footers) work on local
folders; `mirror` keeps a local copy of part of an S3 location up to date (only files that
changed are downloaded), which is how `massive data` and `massive backtest` read from S3.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import posixpath
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mesh.datasets.layout import HISTORICAL, RECORDINGS, is_safe_name
from mesh.files import StorageError, fsync_dir

COMPRESSION = "zstd"
SECRET_PARAMS = frozenset({"access_key", "secret_key", "session_token"})


def is_remote(location: str | Path) -> bool:
    """Whether `location` names object storage (`s3://...`) rather than a local folder."""
    return str(location).startswith("s3://")


def join_uri(uri: str, *parts: str) -> str:
    """`s3://b/p?opts` + `x`, `y` -> `s3://b/p/x/y?opts` (a local path is joined as a path)."""
    if not is_remote(uri):
        return str(Path(uri, *parts))
    base, sep, query = uri.partition("?")
    return posixpath.join(base.rstrip("/"), *parts) + sep + query


def redact_uri(uri: str) -> str:
    """The URI without credentials in its query string."""
    parts = urlsplit(uri)
    if not parts.query:
        return uri
    query = [(k, "<redacted>" if k in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="<>:/")))


def shown_uri(uri: str) -> str:
    """What to show of an s3:// URI: bucket and prefix only, never its options or keys."""
    return uri.partition("?")[0]


@dataclass(frozen=True)
class Entry:
    """One thing directly inside a folder of a location."""

    name: str
    is_dir: bool
    size: int = 0
    mtime_ns: int = 0


class Location:
    """A local folder or an s3:// prefix; paths given to its methods are relative to it."""

    def __init__(self, location: str | Path) -> None:
        text = str(location)
        self.raw_location = text  # may hold credentials in its query: never show it
        self.is_local = not is_remote(text)
        self._query = ""
        if self.is_local:
            self.fs: pafs.FileSystem = pafs.LocalFileSystem()
            self.root = str(Path(text).expanduser().absolute())
            self.display = self.root
        else:
            base, _, self._query = text.partition("?")
            try:
                self.fs, self.root = pafs.FileSystem.from_uri(text)
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise StorageError(
                    f"cannot use storage location {redact_uri(text)}: {_one_line(exc)}"
                ) from None
            self.root = self.root.rstrip("/")
            self.display = "s3://" + self.root
        self.location = redact_uri(text)

    def __repr__(self) -> str:
        return f"Location({self.display!r})"

    def __str__(self) -> str:
        return self.display

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other.raw_location == self.raw_location

    def __hash__(self) -> int:
        return hash(self.raw_location)

    # --- naming ----------------------------------------------------------------------------

    def join(self, *parts: str) -> Location:
        """The location `parts` below this one (same S3 options)."""
        rel = posixpath.join(*parts) if parts else ""
        if self.is_local:
            return Location(Path(self.root, rel))
        joined = copy.copy(self)  # the same filesystem (and its connections), a deeper root
        joined.root = self.path(rel).rstrip("/")
        joined.display = "s3://" + joined.root
        joined.raw_location = joined.display + (f"?{self._query}" if self._query else "")
        joined.location = redact_uri(joined.raw_location)
        return joined

    @property
    def name(self) -> str:
        return posixpath.basename(self.root)

    def path(self, rel: str = "") -> str:
        """The filesystem path of `rel` (for `self.fs`)."""
        return posixpath.join(self.root, rel) if rel else self.root

    def uri(self, rel: str = "") -> str:
        """What to show a user and hand to pandas/polars/DuckDB: a local path or an s3:// URI."""
        return self.path(rel) if self.is_local else "s3://" + self.path(rel)

    def filesystem(self, rel: str = "") -> tuple[pafs.FileSystem, str]:
        """(pyarrow filesystem, path) for `rel`: for `pyarrow.dataset`, `pq.read_table`, ..."""
        return self.fs, self.path(rel)

    # --- reading ---------------------------------------------------------------------------

    def exists(self, rel: str = "") -> bool:
        try:
            return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot reach {self.uri(rel)}: {_one_line(exc)}") from None

    def is_dir(self, rel: str = "") -> bool:
        try:
            return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.Directory
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot reach {self.uri(rel)}: {_one_line(exc)}") from None

    def check(self) -> None:
        """Raise `StorageError` (one line) unless the location can be reached (its bucket exists)."""
        if self.is_local:
            return
        bucket = self.root.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot reach {self.display}: {_one_line(exc)}") from None
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"cannot use {self.display}: there is no bucket {bucket!r}")

    def entries(self, rel: str = "", *, recursive: bool = False) -> list[Entry]:
        """What is in folder `rel` (nothing if it is missing), hidden names skipped, by name.

        With `recursive`, names are paths relative to `rel` and only files are listed.
        """
        base = self.path(rel)
        try:
            infos = self.fs.get_file_info(
                pafs.FileSelector(base, allow_not_found=True, recursive=recursive)
            )
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot list {self.uri(rel)}: {_one_line(exc)}") from None
        out = []
        for info in infos:
            name = posixpath.relpath(info.path, base) if recursive else info.base_name
            if any(part.startswith((".", "_")) for part in name.split("/")):
                continue
            is_dir = info.type == pafs.FileType.Directory
            if recursive and is_dir:
                continue
            mtime = info.mtime_ns or 0
            out.append(Entry(name, is_dir, info.size or 0 if not is_dir else 0, mtime))
        return sorted(out, key=lambda e: e.name)

    def list_files(self, rel_dir: str = "") -> dict[str, int]:
        """File name -> size for the visible files directly in `rel_dir` (none if it is missing)."""
        return {e.name: e.size for e in self.entries(rel_dir) if not e.is_dir}

    def list_dirs(self, rel_dir: str = "") -> list[str]:
        return [e.name for e in self.entries(rel_dir) if e.is_dir]

    def read_bytes(self, rel: str = "") -> bytes | None:
        """The file's bytes, or None if there is no such file."""
        try:
            with self.fs.open_input_stream(self.path(rel)) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as exc:
            # S3 says a missing key is FileNotFoundError; anything else (no connection) is asked
            # about once only, not again through exists() and its retries
            if self.is_local and not self.exists(rel):
                return None
            raise StorageError(f"cannot read {self.uri(rel)}: {_one_line(exc)}") from None

    def read_text(self, rel: str = "") -> str | None:
        data = self.read_bytes(rel)
        return None if data is None else data.decode()

    def read_json(self, rel: str = "") -> Any:
        text = self.read_text(rel)
        return None if text is None else json.loads(text)

    def parquet_file(self, rel: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.path(rel), filesystem=self.fs)

    def read_table(self, rel: str = "", columns: list[str] | None = None) -> pa.Table:
        try:
            return pq.read_table(self.path(rel), columns=columns, filesystem=self.fs)
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot read {self.uri(rel)}: {_one_line(exc)}") from None

    # --- writing (all or nothing) ----------------------------------------------------------

    def makedirs(self, rel: str = "") -> None:
        if self.is_local:
            Path(self.path(rel)).mkdir(parents=True, exist_ok=True)

    def write_bytes(self, rel: str, data: bytes) -> int:
        if self.is_local:
            with self._local_atomic(rel) as tmp:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
        else:
            try:
                stream = self.fs.open_output_stream(self.path(rel))
                stream.write(data)
                stream.close()  # only a completed upload becomes visible
            except (OSError, pa.ArrowException) as exc:
                raise StorageError(f"cannot write {self.uri(rel)}: {_one_line(exc)}") from None
        return len(data)

    def write_text(self, rel: str, text: str) -> int:
        return self.write_bytes(rel, text.encode())

    def write_json(self, rel: str, data: Any) -> int:
        return self.write_text(rel, json.dumps(data, indent=2) + "\n")

    def write_table(self, rel: str, table: pa.Table) -> int:
        """`table` as one zstd Parquet file at `rel`, all or nothing; returns its size."""
        with self.parquet_writer(rel, table.schema) as writer:
            writer.write_table(table)
        return self.size(rel)

    def size(self, rel: str) -> int:
        try:
            return int(self.fs.get_file_info(self.path(rel)).size or 0)
        except (OSError, pa.ArrowException):
            return 0

    @contextlib.contextmanager
    def parquet_writer(self, rel: str, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
        """A ParquetWriter whose file appears at `rel` only if the block finishes without error."""
        if self.is_local:
            with self._local_atomic(rel) as tmp:
                writer = pq.ParquetWriter(tmp, schema, compression=COMPRESSION)
                try:
                    yield writer
                finally:
                    writer.close()
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        else:
            sink = pa.BufferOutputStream()
            writer = pq.ParquetWriter(sink, schema, compression=COMPRESSION)
            try:
                yield writer
            finally:
                writer.close()
            self.write_bytes(rel, sink.getvalue().to_pybytes())

    @contextlib.contextmanager
    def _local_atomic(self, rel: str) -> Iterator[str]:
        final = Path(self.path(rel))
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            yield str(tmp)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        fsync_dir(final.parent)

    def upload(self, local: Path, rel: str) -> int:
        """Copy the local file `local` to `rel`, all or nothing; returns its size."""
        return self.write_bytes(rel, Path(local).read_bytes())

    def remove_temporaries(self, rel_dir: str) -> int:
        """Delete temporary files a crash left behind in a local folder; returns how many."""
        if not self.is_local:
            return 0
        removed = 0
        directory = Path(self.path(rel_dir))
        if directory.is_dir():
            for path in directory.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException) as exc:
            if self.exists(rel):
                raise StorageError(f"cannot delete {self.uri(rel)}: {_one_line(exc)}") from None

    def move(self, rel_from: str, rel_to: str) -> None:
        self.fs.move(self.path(rel_from), self.path(rel_to))

    # --- a local copy, for readers that work on folders --------------------------------------

    def mirror(self, rel: str, local: Path) -> Path:
        """Make the local folder `local` a copy of folder `rel`; returns `local`.

        Only files whose size or time differ from the copy's are downloaded (each all or
        nothing, then given the object's time); local files no longer there are removed. A local location is its own copy: its folder is returned.
        """
        if self.is_local:
            return Path(self.path(rel))
        remote = {e.name: e for e in self.entries(rel, recursive=True)}
        local = Path(local)
        for name, entry in remote.items():
            target = local / name
            with contextlib.suppress(OSError):
                st = target.stat()
                if st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns:
                    continue
            data = self.read_bytes(posixpath.join(rel, name) if rel else name)
            if data is None:  # removed while we looked
                continue
            Location(target.parent).write_bytes(target.name, data)
            with contextlib.suppress(OSError):  # the copy carries the object's time: compared
                os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))  # as is, whatever the clocks
        if local.is_dir():  # another process may be copying here too: leave its temporaries
            for path in sorted(local.rglob("*"), reverse=True):
                name = path.relative_to(local).as_posix()
                if any(part.startswith((".", "_")) for part in name.split("/")):
                    continue
                with contextlib.suppress(OSError):
                    if path.is_file() and name not in remote:
                        path.unlink()
                    elif path.is_dir() and not any(path.iterdir()):
                        path.rmdir()
        return local


def cache_folder(location: Location, state_dir: Path) -> Path:
    """Where the local copy of an S3 location's datasets is kept: STATE/cache/s3/BUCKET/PREFIX."""
    return Path(state_dir) / "cache" / "s3" / location.root


def local_datasets(data_location: str | Path, state_dir: Path, spec: str | None = None) -> Path:
    """The local folder to read datasets from: the data folder itself, or a copy of an s3:// one.

    For S3, `spec` (a dataset name, `kind:NAME`, or None for every dataset) says which
    datasets' folders to bring up to date in the copy; a path given as `spec` needs none.
    """
    if not is_remote(data_location):
        return Path(data_location)
    where = Location(data_location)
    cache = cache_folder(where, state_dir)
    cache.mkdir(parents=True, exist_ok=True)
    if spec is None:
        where.check()
        for place in (RECORDINGS, HISTORICAL):
            where.mirror(place, cache / place)
        return cache
    text = str(spec).strip()
    prefix, _, rest = text.partition(":")
    places: dict[str, tuple[str, ...]] = {
        "recording": (RECORDINGS,),
        "historical": (HISTORICAL,),
        "backfill": (HISTORICAL,),
    }
    if prefix in places and rest:
        wanted, name = places[prefix], rest
    else:
        wanted, name = (RECORDINGS, HISTORICAL), text
    if is_safe_name(name):  # a path given as `spec` is read where it is
        where.check()
        for place in wanted:
            where.mirror(f"{place}/{name}", cache / place / name)
    return cache


def shown_path(path: str | Path, data_location: str | Path, state_dir: Path) -> str:
    """A path inside the local copy of an s3:// data location, shown as the s3:// URI it copies
    (also every such path in a message, such as a `DatasetError`'s line)."""
    text = str(path)
    if not is_remote(data_location):
        return text
    where = Location(data_location)
    cache = str(cache_folder(where, state_dir))
    return re.sub(
        re.escape(cache) + r"([^\s:;,'\"]*)",
        lambda m: "s3://" + where.root + m.group(1).replace(os.sep, "/"),
        text,
    )


def require_local(data_location: str | Path, what: str) -> None:
    """Raise `StorageError` (one line) if `what` (which rewrites datasets in place, so needs a
    local folder) is asked of an s3:// data location."""
    if is_remote(data_location):
        raise StorageError(
            f"{what} rewrites datasets in place and needs a local data folder; MESH_DATA_DIR is {shown_uri(str(data_location))}"
        )


def write_table(location: Location | str, table: pa.Table) -> int:
    """Write `table` as the Parquet file `location` names, all or nothing; returns its size."""
    where = location if isinstance(location, Location) else Location(location)
    parent, name = _split(where)
    return parent.write_table(name, table)


def read_table(location: Location | str, columns: list[str] | None = None) -> pa.Table:
    """The Parquet file `location` names; `FileNotFoundError` if there is none."""
    where = location if isinstance(location, Location) else Location(location)
    return where.read_table("", columns=columns)


def write_json(location: Location | str, data: Any) -> int:
    where = location if isinstance(location, Location) else Location(location)
    parent, name = _split(where)
    return parent.write_json(name, data)


def read_json(location: Location | str) -> Any:
    """The JSON in the file `location` names, or None if there is none."""
    where = location if isinstance(location, Location) else Location(location)
    return where.read_json("")


def _split(where: Location) -> tuple[Location, str]:
    parent = posixpath.dirname(where.root)
    if where.is_local:
        return Location(parent), where.name
    query = where.raw_location.partition("?")[2]
    return Location("s3://" + parent + (f"?{query}" if query else "")), where.name


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return redact_text(text)


def redact_text(text: str) -> str:
    """`text` with the AWS keys of this process's environment blanked out."""
    for var in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        secret = os.environ.get(var)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return text
