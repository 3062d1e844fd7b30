"""What a dataset name or path means, the same for every command that takes one.

- `recording:NAME`, `historical:NAME`, `backfill:NAME`: that folder under MESH_DATA_DIR
  (`backfill:` and `historical:` both look in `historical/`).
- `NAME` (no path separator): `recordings/NAME` or `historical/NAME`; a name in both places is
  ambiguous and must be written with its prefix. A NAME found in neither is tried as a path.
- a path (`data/my_bars.parquet`, `./exports/`, `~/spy`): a dataset folder, a folder of Parquet
  files, or one Parquet file.

Failures are `DatasetError`s with one line each: not found (naming where it looked and the
datasets there are), ambiguous (naming the prefixes to use), damaged (naming the file).
"""

from __future__ import annotations

from pathlib import Path

from mesh.datasets.dataset import Dataset, open_folder, open_path
from mesh.datasets.errors import DatasetError, Problem, damaged, not_found, shown
from mesh.datasets.layout import (
    HISTORICAL,
    RECORDINGS,
    DatasetKind,
    dataset_folders,
    exists,
    is_folder,
    name_problem,
    what_is_at,
)

PREFIXES = {
    "recording": (RECORDINGS,),
    "historical": (HISTORICAL,),
    "backfill": (HISTORICAL,),
}
_SEPARATORS = ("/", "\\")


def resolve(spec: str | Path, data_dir: Path | str, *, capture_only: bool = False) -> Dataset:
    """The dataset `spec` names (see the module docstring); raises `DatasetError`.

    A recording's quotes and trades include its healed layer, unless `capture_only`.
    """
    data_dir = Path(data_dir)
    text = str(spec).strip()
    if not text:
        raise not_found(
            "no dataset given: name a recording or historical dataset (see `massive data list`), or give a Parquet path"
        )
    prefix, _, rest = text.partition(":")
    if prefix in PREFIXES and rest:
        return _by_name(rest, data_dir, prefix, capture_only)
    if isinstance(spec, Path) or any(s in text for s in _SEPARATORS) or text.startswith("~"):
        return open_path(Path(text).expanduser(), capture_only=capture_only)
    try:
        return _by_name(text, data_dir, None, capture_only)
    except DatasetError as exc:
        if exc.problem is Problem.NOT_FOUND and exists(Path(text)):
            return open_path(Path(text), capture_only=capture_only)
        raise


def _by_name(name: str, data_dir: Path, prefix: str | None, capture_only: bool) -> Dataset:
    problem = name_problem(name)
    if problem is not None:
        raise not_found(f"no dataset {shown(name)}: {problem}")
    places = PREFIXES[prefix] if prefix else (RECORDINGS, HISTORICAL)
    candidates = [(place, data_dir / place / name) for place in places]
    found = [(place, folder) for place, folder in candidates if is_folder(folder)]
    if not found:
        odd = [folder for _, folder in candidates if exists(folder)]
        if odd:  # a stray file, or a link to nothing, where a dataset folder would be
            raise damaged(odd[0], f"not a dataset folder: {what_is_at(odd[0])}")
    if len(found) > 1:
        raise DatasetError(
            Problem.AMBIGUOUS,
            f"{name!r} is both a recording and a historical dataset: say recording:{name} or historical:{name}",
        )
    if not found:
        raise _unknown(name, data_dir, prefix)
    place, folder = found[0]
    dataset = open_folder(folder, place=place, capture_only=capture_only)
    if prefix == "backfill" and dataset.kind is not DatasetKind.BACKFILL:
        raise not_found(f"no backfill {name!r}: {folder} is a {dataset.kind} dataset", folder)
    return dataset


def _unknown(name: str, data_dir: Path, prefix: str | None) -> DatasetError:
    where = {
        RECORDINGS: f"not a recording in {data_dir / RECORDINGS}",
        HISTORICAL: f"not a historical dataset in {data_dir / HISTORICAL}",
    }
    looked = [where[p] for p in PREFIXES[prefix]] if prefix else [*where.values(), "not a path"]
    known = sorted({folder.name for _, folder in dataset_folders(data_dir)})
    if known:
        hint = f"; known datasets: {', '.join(known[:20])}{', ...' if len(known) > 20 else ''}"
    elif not is_folder(data_dir):  # (the folder is named once above: a message stays one line)
        hint = "; the data folder does not exist (MESH_DATA_DIR)"
    else:
        hint = "; the data folder has no recordings or historical datasets yet"
    asked = f"{prefix}:{name}" if prefix else name
    return not_found(f"no dataset {shown(asked)}: {', '.join(looked)}{hint}")
