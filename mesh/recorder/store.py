"""Where finished recordings go: a local folder or shared object storage (`s3://`).

Everything the recorder publishes to users goes through `Store`, and every write is all or
nothing: a local file is written under a hidden temporary name, fsync'd and renamed into place
(then the folder is fsync'd); an S3 object is uploaded in one request, which S3 makes visible only
when complete. Readers therefore never see half a file, and re-doing a write after a crash
replaces the file instead of duplicating it.

S3 locations use pyarrow's S3 filesystem and its URI options, for example
`s3://team-data/recordings?endpoint_override=minio.local:9000&scheme=http`; credentials come
from the usual `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` variables, never from the URI we show.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mesh.files import fsync_dir

COMPRESSION = "zstd"
_SECRET_PARAMS = {"access_key", "secret_key", "session_token"}


def redact_uri(uri: str) -> str:
    """The URI without credentials in its query string."""
    parts = urlsplit(uri)
    if not parts.query:
        return uri
    query = [(k, "<redacted>" if k in _SECRET_PARAMS else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="<>:/")))


class StoreError(OSError):
    """The output location cannot be used; the message says which and why."""


class Store:
    """The recordings root (`data/recordings` or an `s3://` URI); paths are relative to it."""

    def __init__(self, location: str | Path) -> None:
        text = str(location)
        self.raw_location = text  # may hold credentials in its query: never show it
        self.is_local = not text.startswith("s3://")
        if self.is_local:
            self.fs: pafs.FileSystem = pafs.LocalFileSystem()
            self.root = str(Path(text).expanduser().absolute())
            self.display = self.root
        else:
            try:
                self.fs, self.root = pafs.FileSystem.from_uri(text)
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise StoreError(
                    f"cannot use recording location {redact_uri(text)}: {exc}"
                ) from None
            self.root = self.root.rstrip("/")
            self.display = "s3://" + self.root
        self.location = redact_uri(text)

    def path(self, rel: str) -> str:
        """The filesystem path of `rel` (for `self.fs`)."""
        return posixpath.join(self.root, rel) if rel else self.root

    def uri(self, rel: str = "") -> str:
        """What to show a user and hand to pandas/polars/DuckDB: a local path or an s3:// URI."""
        return self.path(rel) if self.is_local else "s3://" + self.path(rel)

    # --- reading ---------------------------------------------------------------------------

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def list_files(self, rel_dir: str) -> dict[str, int]:
        """File name -> size for the visible files directly in `rel_dir` (none if it is missing)."""
        try:
            infos = self.fs.get_file_info(
                pafs.FileSelector(self.path(rel_dir), allow_not_found=True)
            )
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"cannot list {self.uri(rel_dir)}: {exc}") from None
        return {
            info.base_name: info.size or 0
            for info in infos
            if info.type == pafs.FileType.File and not info.base_name.startswith(".")
        }

    def list_dirs(self) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        return sorted(
            info.base_name
            for info in infos
            if info.type == pafs.FileType.Directory and not info.base_name.startswith(".")
        )

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(self.path(rel)) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as exc:
            if not self.exists(rel):
                return None
            raise StoreError(f"cannot read {self.uri(rel)}: {exc}") from None

    def parquet_file(self, rel: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.path(rel), filesystem=self.fs)

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path(rel), columns=columns, filesystem=self.fs)

    # --- writing (all or nothing) ----------------------------------------------------------

    def makedirs(self, rel: str) -> None:
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
            stream = self.fs.open_output_stream(self.path(rel))
            stream.write(data)
            stream.close()  # only a completed upload becomes visible
        return len(data)

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
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(rel))

    def move(self, rel_from: str, rel_to: str) -> None:
        self.fs.move(self.path(rel_from), self.path(rel_to))


def open_session(location: str | Path) -> tuple[Store, str]:
    """A session folder or s3:// URI (query options allowed) -> (Store of its parent, session name)."""
    text = str(location)
    base, sep, query = text.partition("?")
    parent, _, name = base.rstrip("/").rpartition("/")
    if not name:
        raise StoreError(f"{location!r} does not name a recording folder")
    return Store((parent or ".") + sep + query), name
