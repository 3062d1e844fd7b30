"""`manifest.json`, as far as every dataset shares it: its kind and its schema version.

Each writer puts its own fields in its manifest (the recorder's runs and gaps, the fetcher's
method and quota spent); all of them carry `"kind"` (`recording`, `historical`, `backfill`) and
`"schema_version"` (mesh/bar_schema.py's `SCHEMA_VERSION`). A manifest without
`schema_version` was written at version 1. A manifest that is missing where one must be, is not
JSON, or holds a version this code does not know makes the dataset damaged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mesh.bar_schema import SCHEMA_VERSION
from mesh.datasets.errors import damaged, one_line
from mesh.datasets.layout import MANIFEST, DatasetKind

# kind names older manifests used
_KIND_SPELLINGS = {"historical-bars": DatasetKind.HISTORICAL}


def read_manifest(folder: Path, *, required: bool) -> dict[str, Any]:
    """The folder's manifest.json as a dict; {} when there is none and none is required."""
    path = folder / MANIFEST
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise damaged(path, "missing (every dataset folder has one)") from None
        return {}
    except OSError as exc:
        raise damaged(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise damaged(path, f"not valid JSON ({one_line(str(exc), 120)})") from None
    if not isinstance(data, dict):
        raise damaged(path, "not a JSON object")
    return data


def schema_version(manifest: dict[str, Any], folder: Path) -> int:
    """The manifest's `schema_version` (1 when absent); damaged when it is not one we read."""
    value = manifest.get("schema_version", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise damaged(folder / MANIFEST, f"schema_version {value!r} is not a version number")
    if value > SCHEMA_VERSION:
        raise damaged(
            folder / MANIFEST,
            f"schema_version {value} is newer than this massive reads ({SCHEMA_VERSION}): upgrade massive-mesh",
        )
    return value


def declared_kind(manifest: dict[str, Any]) -> DatasetKind | None:
    """The manifest's `kind`, if it names one of ours."""
    value = manifest.get("kind")
    if not isinstance(value, str):
        return None
    if value in _KIND_SPELLINGS:
        return _KIND_SPELLINGS[value]
    try:
        kind = DatasetKind(value)
    except ValueError:
        return None
    return None if kind is DatasetKind.FILE else kind


def listed_files(manifest: dict[str, Any], folder: Path) -> list[str] | None:
    """The data files a historical or backfill manifest lists (`files`), or None if it lists none."""
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        return None
    if not all(isinstance(f, str) for f in files):
        raise damaged(folder / MANIFEST, "`files` is not a list of file names")
    return list(files)
