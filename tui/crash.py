"""Where the dashboard writes what went wrong, so that a crash is never silent and never lost.

A full-screen app cannot print a traceback while it runs, and the one Textual prints on exit
scrolls away with the terminal. So the traceback of an unhandled error (and of the first failure of
each kind the dashboard survives) is written to a file, `MESH_DATA_DIR/logs/tui-<time>-<pid>.log`
(or the system's temporary folder when that cannot be written), and the dashboard exits non-zero
naming that file in one line on stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from textual.worker import WorkerFailed


def unwrap(error: BaseException) -> BaseException:
    """The error itself, not Textual's wrapper around an error raised in a worker."""
    return error.error if isinstance(error, WorkerFailed) else error


class CrashLog:
    """One dashboard run's log file, created when there is first something to write."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path: Path | None = None

    def _open(self) -> Path:
        if self.path is None:
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            name = f"tui-{stamp}-{os.getpid()}.log"
            for folder in (self.data_dir / "logs", Path(tempfile.gettempdir())):
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    path = folder / name
                    path.write_text(
                        f"massive-tui {' '.join(sys.argv[1:])}\npid {os.getpid()}, started logging {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n"
                    )
                except OSError:
                    continue
                self.path = path
                break
            else:
                raise OSError(
                    f"cannot write a log file in {self.data_dir / 'logs'} nor in {tempfile.gettempdir()}"
                )
        return self.path

    def write(self, title: str, error: BaseException | None = None) -> Path | None:
        """Append `title` (and the error's traceback); the file's path, or None if none can be written."""
        try:
            path = self._open()
            lines = [f"\n--- {datetime.now(UTC).isoformat(timespec='milliseconds')} {title}\n"]
            if error is not None:
                lines.extend(traceback.format_exception(error))
            with path.open("a") as out:
                out.writelines(lines)
        except (OSError, RecursionError, ValueError):
            return None
        return path


def summary(error: BaseException) -> str:
    """One line naming the error: `RuntimeError: boom`."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__
