"""Which strategies a service may load when the name arrives over the bus: built-ins, and files
inside the directories the user listed in `MESH_STRATEGY_PATH`.

A strategy reference is code to run. The local `massive backtest` runs the user's own code in
the user's own process, so it may import any `module:function`. The backtester service takes the
reference from whoever can reach the control channel, so it must never import a name it was
given (`os:system`, `subprocess:call`, `builtins:eval`): it looks the reference up as a file
under one of the configured directories, checks that the file's real path (after `..` and
symlinks) is still inside that directory, and only then loads that one file by its path. Anything
else is refused with one line, before anything is imported or executed.

`MESH_STRATEGY_PATH` holds directories separated by `os.pathsep` (`:` on Linux and macOS);
unset or empty means none, i.e. built-ins only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mesh.backtest.errors import StrategyError
from mesh.backtest.strategies import ALIASES, BUILTINS, Strategy, load_strategy_file

VAR = "MESH_STRATEGY_PATH"


def strategy_dirs(
    environ: Mapping[str, str] | None = None, cwd: Path | str | None = None
) -> tuple[Path, ...]:
    """The directories in `MESH_STRATEGY_PATH`, each as its real absolute path (relative entries
    are taken from `cwd`); an entry that is not a directory is a `StrategyError`."""
    raw = (os.environ if environ is None else environ).get(VAR, "")
    base = Path(cwd or os.getcwd())
    dirs: list[Path] = []
    for entry in raw.split(os.pathsep):
        if not entry.strip():
            continue
        real = Path(os.path.realpath(base / entry.strip()))
        if not real.is_dir():
            raise StrategyError(f"{VAR} entry {entry.strip()!r} is not a directory")
        if real not in dirs:
            dirs.append(real)
    return tuple(dirs)


@dataclass(frozen=True)
class StrategyPath:
    """Built-ins plus `FILE:function` from `dirs` (real absolute paths); nothing else."""

    dirs: tuple[Path, ...] = ()

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, cwd: Path | str | None = None
    ) -> StrategyPath:
        return cls(strategy_dirs(environ, cwd))

    def describe(self) -> str:
        """The configured directories (real paths), or `not set`."""
        return os.pathsep.join(str(d) for d in self.dirs) if self.dirs else "not set"

    def check(self, spec: str) -> tuple[Path, str] | None:
        """None for a built-in, the file and attribute for an allowed `FILE:function`; for
        anything else a `StrategyError`. Nothing is imported."""
        if ALIASES.get(spec, spec) in BUILTINS:
            return None
        if ":" not in spec:
            raise StrategyError(
                f"unknown strategy {_shown(spec)}; built-in: {', '.join(BUILTINS)}; "
                f"or FILE:function from a directory in {VAR} ({self.describe()})"
            )
        return self.locate(spec)

    def load(self, spec: str) -> Strategy:
        """A built-in by name, or the strategy from a file inside one of the directories."""
        found = self.check(spec)
        if found is None:
            return BUILTINS[ALIASES.get(spec, spec)]
        path, attr = found
        return load_strategy_file(spec, path, attr)

    def locate(self, spec: str) -> tuple[Path, str]:
        """The file and attribute `spec` names, if the file is inside a configured directory;
        otherwise the refusal. Reads nothing but directory entries."""
        reference, _, attr = spec.rpartition(":")
        if not reference or not attr.isidentifier() or "\0" in spec or not self.dirs:
            raise self.refusal(spec)
        if reference.endswith(".py") or "/" in reference or os.sep in reference:
            given = Path(reference)
            candidates = [given] if given.is_absolute() else [d / given for d in self.dirs]
        else:
            parts = reference.split(".")
            if not all(part.isidentifier() for part in parts):
                raise self.refusal(spec)
            candidates = [d.joinpath(*parts[:-1], f"{parts[-1]}.py") for d in self.dirs]
        for candidate in candidates:
            try:
                real = Path(os.path.realpath(candidate))
                if any(real.is_relative_to(d) for d in self.dirs) and real.is_file():
                    return real, attr
            except (OSError, ValueError):  # a name too long for the file system, and the like
                continue
        raise self.refusal(spec)

    def refusal(self, spec: str) -> StrategyError:
        return StrategyError(
            f"strategy {_shown(spec)} refused: the backtester service runs only built-in strategies "
            f"and FILE:function from a .py file inside the directories in {VAR} "
            f"({self.describe()}); to run other code, use `massive backtest` on your own machine"
        )


def _shown(spec: str, limit: int = 80) -> str:
    """`spec` quoted for a one-line message, cut short when it is long."""
    return repr(spec) if len(spec) <= limit else repr(spec[:limit]) + f"... ({len(spec)} chars)"
