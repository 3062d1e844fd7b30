"""`massive-tui --mesh`: start the Procfile's services as children, stream their output, stop them.

Children get the same environment as the dashboard, with this Python's scripts folder first on
PATH so that `massive run ...` resolves to this installation even when no virtualenv is active.
On exit every child gets SIGTERM, and SIGKILL if it has not gone within five seconds.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SERVICES = ["bus", "sim", "ingest", "recorder", "kdb", "fetcher", "backtester", "strategy"]
_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


def read_procfile(path: Path) -> list[tuple[str, str]]:
    """(name, command) pairs from a Procfile; the built-in mesh when there is none."""
    if path.is_file():
        entries = []
        for raw in path.read_text().splitlines():
            match = _LINE.match(raw.strip())
            if match and not raw.lstrip().startswith("#"):
                entries.append((match.group(1), match.group(2)))
        if entries:
            return entries
    return [(name, f"massive run {name}") for name in DEFAULT_SERVICES]


@dataclass
class MeshProcesses:
    """The children started for `--mesh`."""

    entries: list[tuple[str, str]]
    on_line: Callable[[str, str], None]
    cwd: Path = field(default_factory=Path.cwd)
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("PYKX_UNLICENSED", "true")
        for name, command in self.entries:
            proc = await asyncio.create_subprocess_shell(
                command,
                cwd=self.cwd,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
            self.procs[name] = proc
            self.on_line(name, f"started: {command} (pid {proc.pid})")
            self._readers.append(asyncio.create_task(self._read(name, proc)))

    async def _read(self, name: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            self.on_line(name, line.decode(errors="replace").rstrip())
        code = await proc.wait()
        self.on_line(name, f"exited with code {code}")

    async def stop(self, grace: float = 5.0) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        try:
            await asyncio.wait_for(
                asyncio.gather(*(p.wait() for p in self.procs.values())), timeout=grace
            )
        except TimeoutError:
            for proc in self.procs.values():
                if proc.returncode is None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for task in self._readers:
            task.cancel()

    @property
    def running(self) -> bool:
        return any(p.returncode is None for p in self.procs.values())
