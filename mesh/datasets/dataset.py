"""A dataset opened and checked: which tables it has, in which files, at which schema version.

Opening reads the manifest and every Parquet file's footer (not its data), so a dataset that
opens is one whose files are all there and readable: a truncated file, a missing or corrupt
manifest, files of two schema versions, a file whose columns make no known table, or a known
column of a type no reader can use (prices as text) stop it here with one line naming the file. Historical and backfill manifests list their files, and only those
are the dataset (a file being replaced is not listed until it is complete); a recording is
whatever Parquet its folder holds, as the recorder's manifest can be one slice behind, plus the
healed files its audit.json lists (mesh/datasets/healed.py): a recording's quotes and trades are
the capture and the healed layer, unless it is opened `capture_only`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mesh import intervals
from mesh.bar_schema import SCHEMA_VERSION
from mesh.datasets import healed as healed_layer
from mesh.datasets.errors import damaged, not_found, one_line, shown
from mesh.datasets.layout import (
    HISTORICAL,
    MANIFEST,
    PART_TABLES,
    RECORDINGS,
    DatasetKind,
    bar_table,
    exists,
    is_file,
    is_folder,
    is_hidden,
    parse_bar_table,
    what_is_at,
)
from mesh.datasets.manifest import declared_kind, listed_files, read_manifest, schema_version
from mesh.datasets.tables import (
    WHAT_IS_KNOWN,
    TableKind,
    bar_time_column,
    bar_version,
    classify,
    empty_rows,
    key_columns,
    wrong_types,
)
from mesh.intervals import Interval


@dataclass(frozen=True)
class Table:
    """One table of a dataset: its files, rows, and for bars their interval and prices."""

    name: str  # "quotes", "trades", "gaps", "bars_1m", "mid_bars_1s"; "bars" for a file of bars
    kind: TableKind
    files: tuple[Path, ...]
    rows: int
    interval: Interval | None = None  # bars: their width, when the name or manifest says
    mid: bool = False  # bars of quote mid prices (the recorder's mid_bars_*)
    version: int = SCHEMA_VERSION  # bars: 1 when their start column is not ts_start
    healed: tuple[Path, ...] = ()  # of `files`, those of the healed layer (always last)
    healed_rows: int = 0  # of `rows`, those in `healed`

    @property
    def bytes(self) -> int:
        return sum(_size(f) for f in self.files)

    @property
    def captured(self) -> tuple[Path, ...]:
        """The files the recorder wrote (every file, for a table without a healed layer)."""
        return tuple(f for f in self.files if f not in self.healed)

    @property
    def captured_rows(self) -> int:
        return self.rows - self.healed_rows

    def capture_only(self) -> Table:
        """This table without its healed layer."""
        if not self.healed:
            return self
        return replace(self, files=self.captured, rows=self.captured_rows, healed=(), healed_rows=0)


@dataclass(frozen=True)
class Dataset:
    """A resolved dataset: what it is, where, its tables by name, and its manifest."""

    name: str
    kind: DatasetKind
    path: Path
    tables: Mapping[str, Table] = field(default_factory=dict)
    manifest: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __str__(self) -> str:
        return str(self.path)

    def table(self, kind: TableKind, *, capture_only: bool = False) -> Table | None:
        """The quotes, trades or gaps table (None if the dataset has none).

        A recording's quotes and trades include its healed layer, unless `capture_only`.
        """
        found = None if kind is TableKind.BARS else self.tables.get(kind.value)
        if found is None or not capture_only:
            return found
        return found.capture_only() if found.captured else None

    def capture_only(self) -> Dataset:
        """The dataset as recorded: its tables without the healed layer."""
        if not self.healed:
            return self
        tables = {
            name: t.capture_only() for name, t in self.tables.items() if t.captured or not t.healed
        }
        return replace(self, tables=tables)

    @property
    def healed(self) -> bool:
        """Whether any table includes rows of the healed layer."""
        return any(t.healed for t in self.tables.values())

    def bar_tables(self, *, mid: bool = False) -> list[Table]:
        """Trade bars (or quote-mid bars), finest interval first, unknown intervals last."""
        found = [t for t in self.tables.values() if t.kind is TableKind.BARS and t.mid == mid]
        return sorted(found, key=lambda t: (t.interval is None, t.interval or 0, t.name))

    def has(self, kind: TableKind) -> bool:
        return any(t.kind is kind for t in self.tables.values())

    @property
    def files(self) -> list[Path]:
        return [f for t in self.tables.values() for f in t.files]


# --- opening -------------------------------------------------------------------------------------


def open_path(path: Path, *, capture_only: bool = False) -> Dataset:
    """A dataset given by path: a dataset folder, a folder of Parquet files, or one file.

    `capture_only`: a recording without its healed layer (mesh/datasets/healed.py).
    """
    if is_file(path):
        return open_file(path)
    if is_folder(path):
        place = path.parent.name if path.parent.name in (RECORDINGS, HISTORICAL) else None
        if place is not None or exists(path / MANIFEST):
            return open_folder(path, place=place, capture_only=capture_only)
        return _open_plain_folder(path)
    if exists(path):
        raise damaged(path, f"not a Parquet file or a folder: {what_is_at(path)}")
    raise not_found(f"no dataset at {one_line(str(path), 120)}: no such file or folder", path)


def open_folder(folder: Path, *, place: str | None, capture_only: bool = False) -> Dataset:
    """A dataset folder written by the mesh (`place` is `recordings`/`historical` under the data dir).

    A recording's quotes and trades include the healed files its audit.json lists, unless
    `capture_only`.
    """
    manifest = read_manifest(folder, required=place is not None)
    version = schema_version(manifest, folder)
    kind = _kind(folder, manifest, place)
    listed = (
        listed_files(manifest, folder)
        if kind in (DatasetKind.HISTORICAL, DatasetKind.BACKFILL)
        else None
    )
    files = _listed(folder, listed) if listed is not None else _found(folder)
    declared = manifest.get("interval")
    interval = _interval(declared) if isinstance(declared, str) else None
    placed = [(f, _placement(f, folder, interval)) for f in files]
    _check_versions(placed, version if manifest else None)
    tables = _tables(placed)
    if kind is DatasetKind.RECORDING and not capture_only:
        tables = _with_healed(folder, tables)
    return Dataset(folder.name, kind, folder, tables, manifest, version)


def _with_healed(folder: Path, tables: dict[str, Table]) -> dict[str, Table]:
    """The recording's quotes and trades tables with the healed files audit.json lists."""
    out = dict(tables)
    for name, paths in healed_layer.listed_files(folder).items():
        if not paths:
            continue
        placed = [(path, _placement(path, path.parent.parent, None)) for path in paths]
        rows = sum(p.rows for _, p in placed)
        kind = placed[0][1].kind
        base = out.get(name) or Table(name, kind, (), 0)
        out[name] = replace(
            base,
            files=(*base.files, *paths),
            rows=base.rows + rows,
            healed=tuple(paths),
            healed_rows=rows,
        )
    return out if out.keys() == tables.keys() else _ordered(out)


def open_file(path: Path) -> Dataset:
    """One Parquet file of bars, quotes, trades or gaps, as a dataset of one table."""
    tables = _tables([(path, _placement(path, path.parent, None, loose=True))])
    return Dataset(path.stem, DatasetKind.FILE, path, tables, {}, _lowest_version(tables))


def _open_plain_folder(folder: Path) -> Dataset:
    files = []
    for root, dirs, names in os.walk(folder):  # unreadable sub-folders are passed over
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        found = (Path(root) / n for n in names if n.endswith(".parquet") and not is_hidden(n))
        files += [p for p in found if is_file(p)]
    files.sort()
    if not files:
        raise not_found(f"no dataset at {folder}: the folder holds no Parquet files", folder)
    placed = [(f, _placement(f, f.parent, None, loose=True)) for f in files]
    _check_versions(placed, None)
    tables = _tables(placed)
    return Dataset(folder.name, DatasetKind.FILE, folder, tables, {}, _lowest_version(tables))


def _kind(folder: Path, manifest: dict[str, Any], place: str | None) -> DatasetKind:
    declared = declared_kind(manifest)
    if declared is not None:
        return declared
    if place == RECORDINGS:
        return DatasetKind.RECORDING
    if place == HISTORICAL:
        return DatasetKind.HISTORICAL
    if any((folder / t).is_dir() for t in ("quotes", "trades")):
        return DatasetKind.RECORDING
    return DatasetKind.HISTORICAL


def _found(folder: Path) -> list[Path]:
    """A recording's (or unlisted dataset's) data: top-level Parquet and the part folders'."""
    files = [p for p in sorted(folder.glob("*.parquet")) if not is_hidden(p.name) and is_file(p)]
    for table in PART_TABLES:
        sub = folder / table
        if is_folder(sub):  # a part that is not a file is named when its footer is read
            files += sorted(p for p in sub.glob("*.parquet") if not is_hidden(p.name))
    return files


def _listed(folder: Path, listed: list[str]) -> list[Path]:
    manifest = folder / MANIFEST
    files: list[Path] = []
    for rel in listed:
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts or "\0" in rel:
            raise damaged(
                manifest, f"lists {shown(rel)}, which is not a file inside the dataset folder"
            )
        path = folder / rel
        if path in files:
            raise damaged(manifest, f"lists {shown(rel)} twice")
        if not exists(path):
            raise damaged(path, "listed in manifest.json but missing")
        if not is_file(path):
            raise damaged(path, f"listed in manifest.json, but not a file: {what_is_at(path)}")
        if not _inside(path, folder):
            raise damaged(manifest, f"lists {shown(rel)}, a link to outside the dataset folder")
        files.append(path)
    return files


def _inside(path: Path, folder: Path) -> bool:
    try:
        return folder.resolve() in path.resolve().parents
    except (OSError, RuntimeError, ValueError):  # a link that loops
        return False


@dataclass(frozen=True)
class _Placement:
    table: str
    kind: TableKind
    rows: int
    interval: Interval | None
    mid: bool
    version: int


def _placement(
    path: Path, folder: Path, interval: Interval | None, *, loose: bool = False
) -> _Placement:
    """Which table `path` belongs to, checked against its columns and their types."""
    footer = inspect(path)
    schema, rows = footer.schema, footer.rows
    names = list(schema.names)
    found = classify(names)
    mid = False
    sub = path.parent.name if path.parent != folder else None
    bar = parse_bar_table(path.stem)
    if not loose and sub in PART_TABLES:
        expected: TableKind | None = TableKind(sub)
        table = sub
    elif bar is not None:
        expected, table = TableKind.BARS, path.stem
        interval, mid = bar
    elif path.stem == "bars" and not loose:  # version-1 fetched bars, named after their interval
        expected, table = TableKind.BARS, bar_table(interval) if interval else "bars"
    elif path.stem in PART_TABLES and not loose:  # version-1 backfills: trades.parquet
        expected, table = TableKind(path.stem), path.stem
    else:
        expected, table = found, found.value if found else path.stem
    if found is None or found is not expected:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        wanted = f"{expected.value} columns" if expected else WHAT_IS_KNOWN
        raise damaged(path, f"unknown columns ({shown}): expected {wanted}")
    wrong = wrong_types(found, schema)
    if wrong:
        raise damaged(path, f"wrong column types: {'; '.join(wrong)}")
    for name in key_columns(found, names):
        if footer.nulls.get(name):
            raise damaged(path, empty_rows(name, footer.nulls[name], rows))
    version = bar_version(names) if found is TableKind.BARS else SCHEMA_VERSION
    return _Placement(
        table, found, rows, interval if found is TableKind.BARS else None, mid, version
    )


@dataclass(frozen=True)
class Footer:
    """What a Parquet file's footer says: its columns, rows, and nulls per column (when its
    statistics count them)."""

    schema: pa.Schema
    rows: int
    nulls: Mapping[str, int]


def inspect(path: Path) -> Footer:
    """A Parquet file's footer; damaged if it has no readable footer."""
    if not is_file(path):
        raise damaged(path, f"not a Parquet file: {what_is_at(path)}")
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
        nulls: dict[str, int] = {}
        for group in range(meta.num_row_groups):
            row_group = meta.row_group(group)
            for column in range(row_group.num_columns):
                chunk = row_group.column(column)
                stats = chunk.statistics
                if stats is not None and stats.has_null_count:
                    name = chunk.path_in_schema
                    nulls[name] = nulls.get(name, 0) + int(stats.null_count)
        return Footer(schema, int(meta.num_rows), nulls)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise damaged(
            path,
            f"not a readable Parquet file (truncated or overwritten?): {one_line(str(exc), 160)}",
        ) from None


def _tables(placed: list[tuple[Path, _Placement]]) -> dict[str, Table]:
    grouped: dict[str, list[tuple[Path, _Placement]]] = {}
    for path, p in placed:
        grouped.setdefault(p.table, []).append((path, p))
    tables = {}
    for name, items in grouped.items():
        first = items[0][1]
        tables[name] = Table(
            name,
            first.kind,
            tuple(path for path, _ in items),
            sum(p.rows for _, p in items),
            first.interval,
            first.mid,
            min(p.version for _, p in items),
        )
    return _ordered(tables)


def _ordered(tables: dict[str, Table]) -> dict[str, Table]:
    order = {
        TableKind.QUOTES: 0,
        TableKind.TRADES: 1,
        TableKind.BARS: 2,
        TableKind.GAPS: 3,
        TableKind.ORDERS: 4,
        TableKind.FILLS: 5,
        TableKind.PNL: 6,
    }
    return dict(
        sorted(
            tables.items(),
            key=lambda kv: (order[kv[1].kind], kv[1].mid, kv[1].interval or Interval(0), kv[0]),
        )
    )


def _check_versions(placed: list[tuple[Path, _Placement]], declared: int | None) -> None:
    """Bar files of one dataset share one version, and a current manifest has current bars."""
    bars = [(path, p.version) for path, p in placed if p.kind is TableKind.BARS]
    versions = {v for _, v in bars}
    if len(versions) > 1:
        old = next(path for path, v in bars if v == min(versions))
        new = next(path for path, v in bars if v == max(versions))
        raise damaged(
            old,
            f"mixed schema versions: version-1 bar columns here, version {max(versions)} in {new.name}",
        )
    if declared is not None and declared >= 2 and 1 in versions:
        old = next(path for path, v in bars if v == 1)
        names = inspect(old).schema.names
        raise damaged(
            old,
            f"mixed schema versions: manifest.json says schema_version {declared}, this file has "
            f"version-1 bar columns ({bar_time_column(names)} instead of ts_start)",
        )


def _lowest_version(tables: dict[str, Table]) -> int:
    return min(
        (t.version for t in tables.values() if t.kind is TableKind.BARS), default=SCHEMA_VERSION
    )


def _interval(text: str) -> Interval | None:
    try:
        return intervals.parse(text)
    except intervals.IntervalError:
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
