"""Where finished recordings go: a local folder or shared object storage (`s3://`).

Everything the recorder publishes to users goes through `Store`, the recordings root as a
`mesh.datasets.storage.Location` (which owns all-or-nothing writes, S3 URIs and their
redaction); this module adds only what is the recorder's: its error type and naming one session
by its folder or URI.
"""

from __future__ import annotations

from pathlib import Path

from mesh.datasets.storage import COMPRESSION, Location, StorageError, redact_uri

__all__ = ["COMPRESSION", "Store", "StoreError", "open_session", "redact_uri"]


class StoreError(StorageError):
    """The output location cannot be used; the message says which and why."""


class Store(Location):
    """The recordings root (`data/recordings` or an `s3://` URI); paths are relative to it."""

    def __init__(self, location: str | Path) -> None:
        try:
            super().__init__(location)
        except StorageError as exc:
            raise StoreError(str(exc).replace("storage location", "recording location")) from None


def open_session(location: str | Path) -> tuple[Store, str]:
    """A session folder or s3:// URI (query options allowed) -> (Store of its parent, session name)."""
    text = str(location)
    base, sep, query = text.partition("?")
    parent, _, name = base.rstrip("/").rpartition("/")
    if not name:
        raise StoreError(f"{location!r} does not name a recording folder")
    return Store((parent or ".") + sep + query), name
