"""The one error every command shows for a dataset it cannot use: not found, ambiguous or damaged.

`massive backtest`, `massive kdb load`, `massive run sim --replay`, `massive data` and the
dashboard all resolve names through `mesh.datasets`, so they fail the same way, with the same one
line. A damaged dataset's line starts with the file at fault and says what is wrong with it:

    data/historical/spy/bars_1d.parquet: not a readable Parquet file (truncated or overwritten): ...
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path


class Problem(StrEnum):
    """What is wrong: nothing answers to the name, several things do, or it cannot be read."""

    NOT_FOUND = "not found"
    AMBIGUOUS = "ambiguous"
    DAMAGED = "damaged"


class DatasetError(ValueError):
    """A dataset that cannot be used; `str()` is one line, `problem` says which kind of failure."""

    def __init__(self, problem: Problem, message: str, path: Path | str | None = None) -> None:
        super().__init__(one_line(message))
        self.problem = problem
        self.path = None if path is None else Path(path)


def one_line(text: str, limit: int = 400) -> str:
    """`text` with its whitespace runs (newlines from Arrow's messages) made single spaces."""
    flat = " ".join(str(text).split()) or "unknown error"
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def shown(text: object, limit: int = 80) -> str:
    """`text` as a user typed it, for a message: its repr, cut to `limit` characters."""
    quoted = repr(str(text))
    return quoted if len(quoted) <= limit else quoted[: limit - 2] + "…" + quoted[-1]


def damaged(path: Path | str, what: str) -> DatasetError:
    """`<file>: <what is wrong>`, the shape of every damaged-dataset message."""
    return DatasetError(Problem.DAMAGED, f"{path}: {what}", path)


def not_found(message: str, path: Path | str | None = None) -> DatasetError:
    return DatasetError(Problem.NOT_FOUND, message, path)
