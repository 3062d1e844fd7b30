"""`massive data migrate`: rewrite a dataset written at an older schema version in the current one.

Readers never need this (they migrate on read, see read.py); engines that read the Parquet files
directly (DuckDB, polars, pyarrow.dataset over a glob) do. What changes from version 1:

- historical: `bars.parquet` with a `timestamp` column -> `bars_<interval>.parquet` in the one
  bar schema (`ts_start`, `ts_end`, null `ts_recv`);
- backfill: `trades.parquet` / `quotes.parquet` -> `trades/part-000001.parquet` / `quotes/...`;
- every manifest gains `"schema_version": 2` and its `"kind"`.

Each step is all or nothing, and the order keeps the dataset readable after a `kill -9` at any
point: new files are written beside the old ones (hidden temporaries, then a rename), then the
manifest is replaced in one rename (for historical datasets and backfills it lists the files that
are the dataset, so the old files stop counting at that instant), and only then are the old files
deleted. Running it again finishes whatever an interrupted run left.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mesh.bar_schema import BAR_COLUMNS, BAR_SCHEMA, SCHEMA_VERSION
from mesh.datasets.atomic import write_json, write_parquet
from mesh.datasets.dataset import Dataset, Table
from mesh.datasets.errors import DatasetError, Problem
from mesh.datasets.layout import (
    MANIFEST,
    PART_TABLES,
    V1_BARS_FILE,
    DatasetKind,
    bar_file,
    part_file,
)
from mesh.datasets.read import bar_interval, read_table
from mesh.datasets.tables import TableKind
from mesh.times import iso

_V1_NAMES = (V1_BARS_FILE, "trades.parquet", "quotes.parquet", "gaps.parquet")


@dataclass(frozen=True)
class Migration:
    """What migrating one dataset does (or, with `dry_run`, would do)."""

    name: str
    kind: DatasetKind
    path: str
    from_version: int
    to_version: int
    actions: tuple[str, ...]
    dry_run: bool

    @property
    def needed(self) -> bool:
        return bool(self.actions)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": str(self.kind),
            "path": self.path,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "actions": list(self.actions),
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class _Rewrite:
    table: Table
    target: str  # relative to the dataset folder


def migrate(dataset: Dataset, *, dry_run: bool = False) -> Migration:
    """Bring `dataset` to `SCHEMA_VERSION`; a current dataset is left as it is."""
    if dataset.kind is DatasetKind.FILE:
        raise DatasetError(
            Problem.NOT_FOUND,
            f"{dataset.path} is not a dataset under MESH_DATA_DIR: migrate rewrites recordings, historical datasets and backfills",
            dataset.path,
        )
    if dataset.kind is DatasetKind.RECORDING and dataset.manifest.get("state") == "recording":
        raise DatasetError(
            Problem.DAMAGED,
            f"{dataset.path / MANIFEST}: the session is being recorded; stop it (`massive record stop`) before migrating",
            dataset.path,
        )
    folder = dataset.path
    rewrites = _rewrites(dataset)
    manifest = _new_manifest(dataset, rewrites)
    stale = _stale_files(dataset, rewrites)
    actions = [
        f"write {r.target} ({r.table.rows:,} rows, from {_names(r.table, folder)})"
        for r in rewrites
    ]
    if manifest != dict(dataset.manifest):
        actions.append(f"write {MANIFEST} (schema_version {SCHEMA_VERSION}, kind {dataset.kind})")
    actions += [f"delete {p.relative_to(folder)}" for p in stale]
    if not dry_run:
        _remove_temporaries(folder)
        if rewrites:
            _pin_files(dataset)
        for rewrite in rewrites:
            data = read_table(rewrite.table)
            write_parquet(folder / rewrite.target, data)
        if manifest != dict(dataset.manifest):
            write_json(folder / MANIFEST, manifest)
        for path in stale:
            path.unlink(missing_ok=True)
            if path.parent != folder and not any(path.parent.iterdir()):
                path.parent.rmdir()
    return Migration(
        dataset.name,
        dataset.kind,
        str(folder),
        dataset.schema_version,
        SCHEMA_VERSION,
        tuple(actions),
        dry_run,
    )


def _rewrites(dataset: Dataset) -> list[_Rewrite]:
    """Tables whose files are not yet where and how the current layout keeps them."""
    folder = dataset.path
    out = []
    for table in dataset.tables.values():
        if table.kind is TableKind.BARS:
            interval = bar_interval(table)
            if interval is None:
                continue
            target = bar_file(interval, mid=table.mid)
            in_place = table.files == (folder / target,)
            if in_place and table.version == SCHEMA_VERSION and _is_current_bars(table.files[0]):
                continue
            out.append(_Rewrite(table, target))
        elif dataset.kind is not DatasetKind.RECORDING:
            if all(p.parent == folder / table.name for p in table.files):
                continue
            out.append(_Rewrite(table, part_file(table.name, 1)))
    return out


def _pin_files(dataset: Dataset) -> None:
    """Make a historical or backfill manifest that lists no files list the ones it has now.

    Every writer since version 1 lists them, but a manifest edited by hand may not; then a new
    file written beside the old ones would count before its manifest, and a run killed at that
    point would leave a dataset of two versions (or with rows twice). Listing the current files
    first, in one rename, keeps the new ones out until the final manifest names them.
    """
    if dataset.kind is DatasetKind.RECORDING or isinstance(dataset.manifest.get("files"), list):
        return
    files = [str(p.relative_to(dataset.path)) for p in dataset.files]
    write_json(dataset.path / MANIFEST, {**dataset.manifest, "files": files})


def _is_current_bars(path: Path) -> bool:
    schema = pq.read_schema(path)
    return [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in BAR_SCHEMA]


def _new_manifest(dataset: Dataset, rewrites: list[_Rewrite]) -> dict[str, Any]:
    manifest = dict(dataset.manifest)
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["kind"] = str(dataset.kind)
    if dataset.kind is DatasetKind.RECORDING:
        return manifest
    folder = dataset.path
    moved = {r.table.name: r.target for r in rewrites}
    files = []
    for table in dataset.tables.values():
        if table.name in moved:
            files.append(moved[table.name])
        else:
            files += [str(p.relative_to(folder)) for p in table.files]
    manifest["files"] = files
    bars = dataset.bar_tables()
    if bars:
        manifest["columns"] = list(BAR_COLUMNS)
        interval = bar_interval(bars[0])
        if interval is not None:
            manifest["interval"] = interval.name
        if (
            "first_bar" in manifest
            or "last_bar" in manifest
            or dataset.kind is DatasetKind.HISTORICAL
        ):
            _bar_range(manifest, bars[0])
    return manifest


def _bar_range(manifest: dict[str, Any], table: Table) -> None:
    data = read_table(table, columns=["ts_start"])
    starts = data.column("ts_start").cast(pa.int64())
    if len(starts) == 0:
        return
    first, last = int(pc.min(starts).as_py()), int(pc.max(starts).as_py())
    manifest.update(first_bar=iso(first), last_bar=iso(last), first_bar_ns=first, last_bar_ns=last)


def _stale_files(dataset: Dataset, rewrites: list[_Rewrite]) -> list[Path]:
    """Old files a rewrite replaces, and version-1 files an interrupted migration left behind."""
    folder = dataset.path
    keep = {folder / r.target for r in rewrites}
    stale = [p for r in rewrites for p in r.table.files if p not in keep]
    if dataset.kind is not DatasetKind.RECORDING:
        listed = set(dataset.files) | keep
        stale += [
            folder / name
            for name in _V1_NAMES
            if (folder / name).is_file() and folder / name not in listed
        ]
    return list(dict.fromkeys(stale))


def _remove_temporaries(folder: Path) -> None:
    """Hidden half-written files an interrupted run left (`.bars_5m.parquet.<pid>.tmp`)."""
    for sub in (folder, *(folder / t for t in PART_TABLES)):
        for path in sub.glob(".*.tmp") if sub.is_dir() else ():
            path.unlink(missing_ok=True)


def _names(table: Table, folder: Path) -> str:
    names = [str(p.relative_to(folder)) for p in table.files]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
