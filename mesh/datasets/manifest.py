"""`manifest.json`, as far as every dataset shares it: its kind and its schema version.

Each writer puts its own fields in its manifest (the recorder's runs and gaps, the fetcher's
method and quota spent); all of them carry `"kind"` (`recording`, `historical`, `backfill`) and
`"schema_version"` (mesh/bar_schema.py's `SCHEMA_VERSION`). A manifest without
`schema_version` was written at version 1. A manifest that is missing where one must be, is not
JSON, holds a version this code does not know, or gives a field readers use a value of the wrong
type (a number for `interval`, text for `gaps_total`, a time beyond int64 ns) makes the dataset
damaged.

Prices: a fetched dataset's manifest says `"adjusted": true` (split-adjusted, the fetcher's
default) or `false` (as traded), with a human line in `"prices"`. A manifest without `adjusted`
(fetches before the key existed, recordings, backfills) holds prices as traded (`prices_of`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.bar_schema import SCHEMA_VERSION
from mesh.datasets.errors import damaged, one_line
from mesh.datasets.layout import MANIFEST, DatasetKind
from mesh.files import read_regular

# kind names older manifests used
_KIND_SPELLINGS = {"historical-bars": DatasetKind.HISTORICAL}


def read_manifest(folder: Path, *, required: bool) -> dict[str, Any]:
    """The folder's manifest.json as a dict; {} when there is none and none is required."""
    path = folder / MANIFEST
    try:
        text = read_regular(path)
    except FileNotFoundError:
        if required:
            raise damaged(path, "missing (every dataset folder has one)") from None
        return {}
    except OSError as exc:
        raise damaged(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text, parse_int=_whole_number)
    except (ValueError, RecursionError) as exc:
        raise damaged(path, f"not valid JSON ({one_line(str(exc), 120)})") from None
    if not isinstance(data, dict):
        raise damaged(path, "not a JSON object")
    if _depth(data) > MAX_DEPTH:
        raise damaged(path, f"nested more than {MAX_DEPTH} levels deep")
    _check_fields(data, path)
    return data


def _whole_number(digits: str) -> int:
    """A JSON integer, refused beyond 64 bits: no count or time a manifest holds is larger, and
    a listing that carries the manifest (the fetcher's `datasets` answer) could not encode it."""
    if len(digits.lstrip("-")) > 20:
        raise ValueError(f"a number of {len(digits.lstrip('-')):,} digits")
    value = int(digits)
    if not -(1 << 63) <= value < 1 << 64:
        raise ValueError(f"{value} does not fit in 64 bits")
    return value


def _depth(value: object) -> int:
    """How deeply lists and objects nest in `value` (a scalar is 0)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth + 1)
            todo += [
                (child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)
            ]
    return deepest


MAX_DEPTH = 32  # nesting a manifest may have (the control channel's bound on any value)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_TEXT_FIELDS = ("kind", "state", "created", "interval", "first_bar", "last_bar", "prices")
_TIME_FIELDS = ("first_event_ns", "last_event_ns", "first_bar_ns", "last_bar_ns")
_COUNT_FIELDS = ("gaps_total", "missing_total")


def _check_fields(manifest: dict[str, Any], path: Path) -> None:
    """The fields every reader takes from a manifest have their types (null stands for absent)."""

    def wrong(key: str, expected: str) -> Exception:
        shown = one_line(json.dumps(manifest[key]), 60)
        return damaged(path, f"`{key}` is {shown}, expected {expected}")

    for key in _TEXT_FIELDS:
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            raise wrong(key, "text")
    for key in _TIME_FIELDS:
        value = manifest.get(key)
        if value is not None and not (_is_int(value) and _INT64[0] <= value <= _INT64[1]):
            raise wrong(key, "a time in ns since the epoch (a whole number within int64)")
    for key in _COUNT_FIELDS:
        value = manifest.get(key)
        if value is not None and not (_is_int(value) and 0 <= value <= _INT64[1]):
            raise wrong(key, "a count (a whole number, 0 or more)")
    if manifest.get("adjusted") is not None and not isinstance(manifest["adjusted"], bool):
        raise wrong("adjusted", "true or false")
    symbols = manifest.get("symbols")
    if symbols is not None and not (
        isinstance(symbols, list) and all(isinstance(s, str) for s in symbols)
    ):
        raise wrong("symbols", "a list of tickers")


@dataclass(frozen=True)
class Prices:
    """Whether a dataset's bar prices are split-adjusted, and the line that says so."""

    adjusted: bool
    text: str


def prices_of(manifest: Mapping[str, Any], kind: DatasetKind | None) -> Prices:
    """A dataset's prices: adjusted only when its manifest says `"adjusted": true`."""
    if manifest.get("adjusted") is True:
        return Prices(True, str(manifest.get("prices") or "split-adjusted"))
    if kind is DatasetKind.RECORDING:
        return Prices(False, "as traded (recorded live, as live data is)")
    if kind is DatasetKind.BACKFILL:
        return Prices(False, "as traded (backfilled trades and quotes)")
    if kind is DatasetKind.FILE:
        return Prices(False, "as traded (assumed: a file says nothing of its prices)")
    return Prices(False, "as traded")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def schema_version(manifest: dict[str, Any], folder: Path) -> int:
    """The manifest's `schema_version` (1 when absent); damaged when it is not one we read."""
    value = manifest.get("schema_version", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        shown = one_line(json.dumps(value), 60)
        raise damaged(folder / MANIFEST, f"schema_version {shown} is not a version number")
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
    if files is None or files == []:
        return None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise damaged(folder / MANIFEST, "`files` is not a list of file names")
    return list(files)
