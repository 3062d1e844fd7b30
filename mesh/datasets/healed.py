"""The healed layer of a recording: rows a heal fetched from Massive to fill what the capture missed.

```
recordings/<name>/
  trades/part-000001.parquet ...        the capture (the recorder's; never rewritten)
  healed/trades/part-000001.parquet ... the healed layer: the storage schema plus `source`
  healed/quotes/part-000001.parquet ...
  audit.json                            lists the healed files that count (`Heal.files`)
```

A healed file counts only once audit.json lists it (mesh/datasets/audit.py): a heal writes its
files first, then audit.json in one rename, so a heal killed in between leaves files nobody
lists. Readers ignore those, and the next heal removes them (`stray_files`).

Healed rows carry one more column than captured ones, `source` (`"rest /v3/trades"`, ...), and a
`ts_recv` that is the time the heal fetched them. Readers put them in time order among the
captured rows (`merge_order`) without reordering the capture: a healed row goes after every
captured row whose event time (running maximum, in recorded order) is not later than its own.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec
import numpy as np

from mesh.datasets import audit
from mesh.datasets.layout import exists, is_file, is_hidden, part_name, part_number

SOURCE = "source"  # the healed layer's one extra column: where its rows came from
KINDS = ("trades", "quotes")  # the tables a heal can add rows to


def folder(session: Path, kind: str) -> Path:
    """`recordings/<name>/healed/<kind>`."""
    return Path(session) / audit.HEALED / kind


def inside(session: Path, path: Path) -> bool:
    """Whether `path`, links followed, lies in the session's folder: the healed layer is only what
    does, so a link out of it is never read, written through, or emptied of "stray" files."""
    try:
        return Path(path).resolve().is_relative_to(Path(session).resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def leads_out(session: Path) -> Path | None:
    """The healed layer's folder, or a table folder in it, that is a link out of the session."""
    for place in (Path(session) / audit.HEALED, *(folder(session, kind) for kind in KINDS)):
        if exists(place) and not inside(session, place):
            return place
    return None


def relative(kind: str, number: int) -> str:
    """`healed/trades/part-000001.parquet`: how audit.json names a healed file."""
    return f"{audit.HEALED}/{kind}/{part_name(number)}"


def listed_in(raw: bytes | None) -> list[tuple[str, str]]:
    """(table, path relative to the session) of each healed file an audit.json's bytes list.

    For readers that reach a recording through another file system than the local one (the
    recorder's store); nothing when there is no audit or it cannot be read as one.
    """
    if not raw:
        return []
    try:
        found = msgspec.json.decode(raw, type=audit.Audit)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return []
    return [(kind, rel) for rel in found.healed_files() if (kind := _kind_of(rel)) is not None]


def _kind_of(rel: str) -> str | None:
    parts = Path(rel).parts
    if len(parts) != 3 or parts[0] != audit.HEALED or parts[1] not in KINDS:
        return None
    return parts[1] if part_number(parts[2]) is not None else None


def listed_files(session: Path, listed: audit.Audit | None = None) -> dict[str, list[Path]]:
    """The healed files that count, per table (`trades`, `quotes`), in the order they were written.

    A listed file that is not there (removed by hand), or that a link puts outside the session, is
    passed over: the capture and the rest of the healed layer still read.
    """
    current = listed if listed is not None else audit.read_audit(Path(session))
    out: dict[str, list[Path]] = {kind: [] for kind in KINDS}
    for rel in current.healed_files():
        kind = _kind_of(rel)
        path = Path(session) / rel
        if kind is not None and is_file(path) and inside(session, path) and path not in out[kind]:
            out[kind].append(path)
    return out


def stray_files(session: Path, listed: audit.Audit) -> list[Path]:
    """Healed files (and temporaries) audit.json does not list: what a killed heal left."""
    counted = {p for paths in listed_files(session, listed).values() for p in paths}
    stray = []
    for kind in KINDS:
        place = folder(session, kind)
        if not inside(session, place):
            continue
        with contextlib.suppress(OSError):
            for path in sorted(place.iterdir()) if place.is_dir() else ():
                if path not in counted and (is_hidden(path.name) or path.suffix == ".parquet"):
                    stray.append(path)
    return stray


def remove_strays(session: Path, listed: audit.Audit) -> list[Path]:
    """Remove what a killed heal left (call under `audit.locked`); returns what was removed."""
    removed = []
    for path in stray_files(session, listed):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def next_number(session: Path, kind: str) -> int:
    """The number of the next healed part of `kind` (after every file there, listed or not)."""
    place = folder(session, kind)
    numbers = [part_number(p.name) or 0 for p in place.glob("part-*.parquet")]
    return max(numbers, default=0) + 1


def running_max(times: np.ndarray, start: int | None = None) -> np.ndarray:
    """The running maximum of captured event times (continuing from `start`, an earlier batch's)."""
    times = np.asarray(times, dtype=np.int64)
    if start is not None:
        times = np.maximum(times, start)
    return np.maximum.accumulate(times) if len(times) else times


def merge_order(captured: np.ndarray, healed: np.ndarray, *, keyed: bool = False) -> np.ndarray:
    """Positions into `concat(captured, healed)` that put healed rows in time among captured ones.

    `captured` and `healed` are event times (ns). The capture keeps its recorded order; each
    healed row (in time order among themselves) goes after every captured row whose running
    maximum event time is at or before its own. `keyed`: `captured` is that running maximum already.
    """
    captured = np.asarray(captured, dtype=np.int64)
    healed = np.asarray(healed, dtype=np.int64)
    keys = captured if keyed else running_max(captured)
    position = np.arange(len(captured) + len(healed), dtype=np.int64)
    which = np.r_[np.zeros(len(captured), np.int64), np.ones(len(healed), np.int64)]
    return np.lexsort((position, which, np.r_[keys, healed]))
