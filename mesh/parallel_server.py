"""Imported first by every fork server `mesh.parallel` starts: a pool worker forked after its
command has gone ends quietly.

A Ctrl-C that lands while a command's pool forks its workers ends the command, which removes the
pool's semaphores and pipes on its way out; a worker forked a moment later then fails to read its
start-up message from them (`FileNotFoundError` for a semaphore, `EOFError` for a pipe), and
`multiprocessing` prints that traceback under the command's own one-line message. Such a worker
has nothing left to do or report, so the fork server, and every worker it forks, stays quiet
about exactly that: an error of that kind raised while `multiprocessing.spawn` reads the
worker's start-up message. Anything else (a worker's own failure) is printed as before.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType

_printed = sys.excepthook
GONE = (FileNotFoundError, EOFError, BrokenPipeError, ConnectionResetError)


def _starting(tb: TracebackType | None) -> bool:
    """Whether the traceback passes through `multiprocessing.spawn._main` (a worker starting)."""
    return any(
        frame.name == "_main" and frame.filename.endswith(("multiprocessing/spawn.py",))
        for frame in traceback.extract_tb(tb)
    )


def _hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, GONE) and _starting(tb):
        return  # its command has gone: nobody to tell
    _printed(kind, value, tb)


sys.excepthook = _hook
