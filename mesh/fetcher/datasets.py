"""Historical datasets on disk: data/historical/<name>/ with bars.parquet and manifest.json.

A dataset is what the backtester, `massive kdb load` and the dashboard's History view open by
name. The Parquet file has the bar columns of `bars.BAR_SCHEMA` (timestamp[ns, tz=UTC]); the
manifest says what was asked for and how it was fetched, so a listing needs no Parquet read.
Both files are written under a temporary name and renamed, so a crash never leaves a dataset
that looks complete but is not.
"""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mesh.fetcher.bars import BAR_SCHEMA
from mesh.fetcher.errors import BadRequest

FORMAT = 1
BARS_FILE = "bars.parquet"
MANIFEST = "manifest.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,120}")


def historical_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / "historical"


def default_name(symbols: list[str] | tuple[str, ...], interval: str, start: str, end: str) -> str:
    """e.g. `AAPL-MSFT_5m_2024-03-04_2024-03-08` (`AAPL-MSFT-and-8-more_...` for long lists)."""
    head = "-".join(s.replace(".", "") for s in symbols[:3])
    if len(symbols) > 3:
        head += f"-and-{len(symbols) - 3}-more"
    return f"{head}_{interval}_{start}_{end}"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise BadRequest(
            f"dataset name {name!r}: use letters, digits, '.', '_' and '-' (up to 120 characters)"
        )
    return name


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_dataset(bars: pa.Table, data_dir: Path | str, name: str, info: dict[str, Any]) -> Path:
    """Write `bars` as dataset `name`; `info` (request and report fields) goes into the manifest."""
    folder = historical_dir(data_dir) / check_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    bars = bars.cast(BAR_SCHEMA)
    _atomic_write(folder / BARS_FILE, lambda tmp: pq.write_table(bars, tmp, compression="zstd"))
    first = pc.min(bars["timestamp"]).as_py() if bars.num_rows else None
    last = pc.max(bars["timestamp"]).as_py() if bars.num_rows else None
    manifest = {
        "format": FORMAT,
        "name": name,
        "kind": "historical-bars",
        "symbols": info.get("symbols", []),
        "interval": info.get("interval"),
        "start": info.get("start"),
        "end": info.get("end"),
        "rows": bars.num_rows,
        "method": info.get("method_used") or info.get("method"),
        "reason": info.get("reason", ""),
        "fallback": info.get("fallback", ""),
        "rest_calls": info.get("rest_calls", 0),
        "bytes_downloaded": info.get("bytes_downloaded", 0),
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "first_bar": first.isoformat().replace("+00:00", "Z") if first else None,
        "last_bar": last.isoformat().replace("+00:00", "Z") if last else None,
        "files": [BARS_FILE],
        "columns": BAR_SCHEMA.names,
        "prices": "as traded (not split-adjusted)",
        "vwap": "volume-weighted typical price (high+low+close)/3 of the bar's minutes",
    }
    _atomic_write(
        folder / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    )
    return folder


def list_datasets(data_dir: Path | str) -> list[dict[str, Any]]:
    """Every historical dataset's manifest (plus `path`), newest first."""
    root = historical_dir(data_dir)
    out = []
    for manifest in root.glob(f"*/{MANIFEST}") if root.is_dir() else ():
        try:
            entry = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        entry["path"] = str(manifest.parent)
        out.append(entry)
    out.sort(key=lambda e: str(e.get("created", "")), reverse=True)
    return out


def read_dataset(name_or_path: str | Path, data_dir: Path | str | None = None) -> pa.Table:
    """The bars of a dataset given by folder path or name under data/historical/."""
    path = Path(name_or_path)
    if not path.exists() and data_dir is not None:
        path = historical_dir(data_dir) / str(name_or_path)
    if path.is_dir():
        path = path / BARS_FILE
    if not path.is_file():
        raise BadRequest(f"no historical dataset {str(name_or_path)!r} (looked for {path})")
    return pq.read_table(path)


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
        _atomic_write(path, lambda tmp: pq.write_table(bars, tmp, compression="zstd"))
    elif suffix == ".csv":
        import pyarrow.csv as pcsv

        _atomic_write(path, lambda tmp: pcsv.write_csv(bars, tmp))
    else:
        raise BadRequest(f"--out {str(path)!r}: expected a .parquet or .csv file name")
    return path
