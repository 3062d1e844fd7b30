"""All-or-nothing file writes: a hidden temporary beside the file, then one rename over it.

Recordings, datasets, the recorder's session note, the key registry and continuity snapshots are
all replaced this way, so a crash, a full disk or a `kill -9` leaves either the old file or the new
one, never half of one, and no temporary behind (the temporary is removed on any failure; one
left by a killed process is hidden, `.<name>.<pid>.tmp`, and every reader skips hidden files).
Durable writes fsync the file before the rename and the folder after it, so a power cut keeps the
new name; a file rewritten every second may skip that cost (`durable=False`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path


class StorageError(OSError):
    """A place for files (a folder, an s3:// prefix) cannot be used; the message is one line saying which and why."""


def temporary_for(path: Path) -> Path:
    """The hidden temporary `path` is written to before its rename."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def replace_file(
    path: Path,
    content: bytes | str | Callable[[Path], object],
    *,
    durable: bool = True,
    mode: int = 0o666,
) -> Path:
    """Make `path` hold `content` (bytes, text, or a function that writes a given path) at once.

    `mode` is the new file's permission bits before the umask; the temporary is created with
    them, so a secret is never readable by others, not even for a moment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_for(path)
    try:
        if callable(content):
            content(tmp)
            if mode != 0o666:
                os.chmod(tmp, mode)
        else:
            data = content.encode() if isinstance(content, str) else content
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        if durable:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def fsync_dir(folder: Path) -> None:
    """Make a new or renamed entry in `folder` durable.

    A failure is raised (a write-ahead log must know), except on file systems that cannot sync a
    folder at all (EINVAL), where there is nothing more to do.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def read_regular(path: Path) -> bytes:
    """The bytes of the regular file at `path`; OSError (FileNotFoundError when there is nothing)
    for anything else. Opened without blocking: a FIFO put in a file's place would otherwise wait
    for a writer forever, and with it whoever reads the file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return file.read()
