"""Where datasets live under MESH_DATA_DIR, and what their files are called.

```
MESH_DATA_DIR/
  recordings/<name>/                 kind "recording" (the recorder)
    manifest.json
    quotes/part-000001.parquet ...   one file per slice
    trades/part-000001.parquet ...
    gaps/part-000001.parquet ...
    orders/ fills/ pnl/part-000001.parquet ...    paper trading's records (strat.* on the bus)
    bars_1s.parquet  bars_1m.parquet              trade bars
    mid_bars_1s.parquet  mid_bars_1m.parquet      quote-mid bars
    audit.json                                    reconciliation, heals, quality (audit.py)
    healed/trades/part-000001.parquet ...         rows a heal added, once audit.json lists them
  historical/<name>/                 kind "historical" (massive fetch) or "backfill" (gap backfill)
    manifest.json
    bars_5m.parquet                  fetched bars, named after their interval
    trades/part-000001.parquet       backfilled trades and quotes, as in recordings
    quotes/part-000001.parquet
```

The same file names everywhere let one glob cover every dataset of a kind, whatever wrote it:
`data/*/*/bars_1m.parquet` (recorded and fetched minute bars), `data/*/*/trades/*.parquet`.
Files whose names start with `.` or `_` are temporaries or engine metadata, never data.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path

from mesh import intervals
from mesh.intervals import Interval

RECORDINGS = "recordings"
HISTORICAL = "historical"
MANIFEST = "manifest.json"
# tables kept as one Parquet file per slice (orders, fills, pnl: a paper session's records)
PART_TABLES = ("quotes", "trades", "gaps", "orders", "fills", "pnl")
V1_BARS_FILE = "bars.parquet"  # fetched bars before schema version 2

_BAR_STEM = re.compile(r"(mid_)?bars_([0-9]+[a-z]+)")
_PART = re.compile(r"part-([0-9]{6})\.parquet")


class DatasetKind(StrEnum):
    """What wrote a dataset (a Parquet path given by hand is a `file`)."""

    RECORDING = "recording"
    HISTORICAL = "historical"
    BACKFILL = "backfill"
    FILE = "file"


FOLDER_OF = {
    DatasetKind.RECORDING: RECORDINGS,
    DatasetKind.HISTORICAL: HISTORICAL,
    DatasetKind.BACKFILL: HISTORICAL,
}


def is_hidden(name: str) -> bool:
    """A temporary (`.part-1.tmp`) or an engine's metadata (`_SUCCESS`): not data."""
    return name.startswith((".", "_"))


def bar_table(interval: Interval, *, mid: bool = False) -> str:
    """`bars_1m` (trade bars) or `mid_bars_1m` (quote-mid bars): the table and file stem."""
    return f"{'mid_' if mid else ''}bars_{interval.name}"


def bar_file(interval: Interval, *, mid: bool = False) -> str:
    return f"{bar_table(interval, mid=mid)}.parquet"


def parse_bar_table(stem: str) -> tuple[Interval, bool] | None:
    """`bars_5m` -> (5m, False), `mid_bars_1s` -> (1s, True); None for any other name."""
    match = _BAR_STEM.fullmatch(stem)
    if match is None:
        return None
    try:
        return intervals.parse(match.group(2)), match.group(1) is not None
    except intervals.IntervalError:
        return None


def part_name(number: int) -> str:
    """`part-000001.parquet`: the file of slice `number` in a part folder."""
    return f"part-{number:06d}.parquet"


def part_file(table: str, number: int) -> str:
    """`trades/part-000001.parquet`: slice `number` of a table kept in parts."""
    return f"{table}/{part_name(number)}"


def part_number(name: str) -> int | None:
    match = _PART.fullmatch(name)
    return int(match.group(1)) if match else None


def recordings_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / RECORDINGS


def historical_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / HISTORICAL


def dataset_folders(data_dir: Path | str) -> list[tuple[str, Path]]:
    """(`recordings` or `historical`, folder) for every dataset folder, by place then name."""
    found = []
    for place in (RECORDINGS, HISTORICAL):
        root = Path(data_dir) / place
        try:
            entries = sorted(root.iterdir()) if is_folder(root) else []
        except OSError:
            entries = []
        found += [(place, p) for p in entries if is_folder(p) and not is_hidden(p.name)]
    return found


NAME_BYTES = 255  # the longest file name a file system takes


def is_safe_name(name: str) -> bool:
    """A dataset name, not a path: no separators, not `.` or `..`, one file name long."""
    return name_problem(name) is None


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a dataset folder (None if it can)."""
    if not name:
        return "a dataset name is not empty"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "a dataset name has no path separators"
    if "\0" in name:
        return "a dataset name has no NUL characters"
    if len(name.encode("utf-8", "surrogateescape")) > NAME_BYTES:
        return f"a dataset name is at most {NAME_BYTES} bytes"
    return None


# What is at a path, asked without ever raising: a name too long for the file system, a NUL byte,
# a symbolic link that loops or an unreadable folder all mean "not a usable file or folder here".


def is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def exists(path: Path) -> bool:
    """Anything at `path`, a dangling or looping link included."""
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


def what_is_at(path: Path) -> str:
    """Why `path` is not the file or folder expected: `a folder`, `a file`, a bad link, or nothing."""
    if is_folder(path):
        return "a folder"
    if is_file(path):
        return "a file"
    if exists(path):
        return "a symbolic link that leads nowhere (or loops)"
    return "nothing there"
