"""Writing fetched history as a dataset: data/historical/<name>/ with bars_<interval>.parquet and manifest.json.

The bars are in the one bar schema (mesh/bar_schema.py) and named after their interval like the
recorder's (`bars_5m.parquet` beside a recording's `bars_1m.parquet`), so one glob covers both.
The manifest says what was asked for and how it was fetched (`adjusted` and the `prices` line:
split-adjusted as of the fetch's day, or as traded), and lists the dataset's files; a dataset
missing days a parallel flat-file fetch could not get lists them in `failed_days`. The
bars are written first and the manifest last, each under a hidden temporary name and renamed
(mesh/datasets/atomic.py), so a crash never leaves a dataset that looks complete but is not; a
file of an earlier fetch under the same name is removed once the new manifest is in place.
Finding, listing and reading datasets is `mesh.datasets`'s.
"""

from __future__ import annotations

import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mesh import datasets as shared
from mesh import intervals
from mesh.bar_schema import BAR_COLUMNS, BAR_SCHEMA, SCHEMA_VERSION
from mesh.datasets import DatasetError, DatasetKind, atomic, layout, storage
from mesh.fetcher.errors import BadRequest
from mesh.times import iso

FORMAT = 1  # the layout of manifest.json; `schema_version` is the data's
MANIFEST = layout.MANIFEST
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,120}")


def historical_dir(data_dir: Path | str) -> Path:
    return layout.historical_dir(data_dir)


def default_name(symbols: list[str] | tuple[str, ...], interval: str, start: str, end: str) -> str:
    """e.g. `AAPL-MSFT_5m_2024-03-04_2024-03-08` (`AAPL-MSFT-and-8-more_...` for long lists)."""
    head = "-".join(s.replace(".", "") for s in symbols[:3])
    if len(symbols) > 3:
        head += f"-and-{len(symbols) - 3}-more"
    return f"{head}_{interval}_{start}_{end}"


def check_name(name: str) -> str:
    if not isinstance(name, str):  # a name from a control request may be anything
        raise BadRequest(f"dataset name {name!r:.40}: expected text")
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise BadRequest(
            f"dataset name {name!r}: use letters, digits, '.', '_' and '-' (up to 120 characters)"
        )
    return name


def write_dataset(
    bars: pa.Table, data_dir: Path | str, name: str, info: dict[str, Any]
) -> Path | str:
    """Write `bars` as dataset `name`; `info` (request and report fields) goes into the manifest.

    `data_dir` is the data folder or an s3:// data location (mesh.datasets.storage); returns the
    dataset's folder (a Path) or its s3:// URI (without the location's options).
    """
    where = storage.Location(data_dir).join(layout.HISTORICAL, check_name(name))
    interval = intervals.parse(str(info.get("interval") or "1d"))
    bars = bars.cast(BAR_SCHEMA)
    bars_file = layout.bar_file(interval)
    where.write_table(bars_file, bars)
    starts = bars["ts_start"].cast(pa.int64())
    first = pc.min(starts).as_py() if bars.num_rows else None
    last = pc.max(starts).as_py() if bars.num_rows else None
    adjusted = info.get("adjusted") is True
    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "kind": str(DatasetKind.HISTORICAL),
        "name": name,
        "symbols": info.get("symbols", []),
        "interval": interval.name,
        "start": info.get("start"),
        "end": info.get("end"),
        "rows": bars.num_rows,
        "method": info.get("method_used") or info.get("method"),
        "reason": info.get("reason", ""),
        "fallback": info.get("fallback", ""),
        "rest_calls": info.get("rest_calls", 0),
        "bytes_downloaded": info.get("bytes_downloaded", 0),
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "first_bar": iso(first),
        "last_bar": iso(last),
        "first_bar_ns": first,
        "last_bar_ns": last,
        "files": [bars_file],
        "columns": list(BAR_COLUMNS),
        "adjusted": adjusted,
        "prices": str(info.get("prices") or ("split-adjusted" if adjusted else "as traded")),
        "vwap": "volume-weighted typical price (high+low+close)/3 of the bar's minutes",
    }
    if info.get("failed_days"):  # a parallel flat-file fetch that kept the days it could get
        manifest["failed_days"] = info["failed_days"]
    where.write_json(MANIFEST, manifest)
    for old in where.list_files():  # an earlier fetch under this name
        is_bars = old.startswith("bars_") and old.endswith(".parquet")
        if (is_bars or old == layout.V1_BARS_FILE) and old != bars_file:
            where.delete(old)
    return Path(where.root) if where.is_local else where.uri()


def list_datasets(data_dir: Path | str) -> list[dict[str, Any]]:
    """Every historical dataset's and backfill's manifest (plus `path`), newest first.

    The fetcher service's `datasets` answer; a damaged dataset is `{name, path, error}` with its
    one line (mesh.datasets).
    """
    out = []
    for place, folder in layout.dataset_folders(data_dir):
        if place != layout.HISTORICAL:
            continue
        try:
            manifest = dict(shared.open_folder(folder, place=place).manifest)
        except DatasetError as exc:
            out.append({"name": folder.name, "path": str(folder), "error": str(exc)})
            continue
        out.append({**manifest, "name": folder.name, "path": str(folder)})
    out.sort(key=lambda e: str(e.get("created", "")), reverse=True)
    return out


def check_writable(folder: Path | str, what: str) -> Path:
    """Make sure a file can be created in `folder` (created if missing), before anything is spent.

    Raises `BadRequest` naming `what` (e.g. "--out /x/y.csv") and the reason.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BadRequest(
            f"{what}: cannot write to {folder} ({exc.strerror or exc}); nothing was spent"
        ) from None
    return folder


def check_destination(data_location: str | Path) -> None:
    """Make sure fetched datasets can be written under `data_location` before anything is spent.

    A local data folder is checked by writing a file in its `historical/`; an s3:// location by
    reaching it. Raises `BadRequest` with one line naming the place and the reason.
    """
    if not storage.is_remote(data_location):
        check_writable(
            historical_dir(data_location), "the dataset folder (MESH_DATA_DIR/historical)"
        )
        return
    try:
        storage.Location(data_location).check()
    except OSError as exc:
        raise BadRequest(f"MESH_DATA_DIR: {exc}; nothing was spent") from None


def check_export(path: Path | str) -> Path:
    """The `--out` file name, checked (extension, writable folder) before anything is spent."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise BadRequest(f"--out {str(path)!r}: expected a .parquet or .csv file name")
    if path.is_dir():
        raise BadRequest(f"--out {str(path)!r} is a folder: give a .parquet or .csv file name")
    check_writable(path.parent, f"--out {str(path)!r}")
    return path


def export(bars: pa.Table, path: Path | str) -> Path:
    """Write `bars` to one file, `.parquet` or `.csv` by the extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        atomic.write_parquet(path, bars)
    elif suffix == ".csv":
        import pyarrow.csv as pcsv

        atomic.write_atomic(path, lambda tmp: pcsv.write_csv(bars, tmp))
    else:
        raise BadRequest(f"--out {str(path)!r}: expected a .parquet or .csv file name")
    return path
