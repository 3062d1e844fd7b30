"""`migrate`: old datasets to the current version, all or nothing, readable after a crash at any step."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from mesh import datasets
from mesh.bar_schema import BAR_SCHEMA, SCHEMA_VERSION
from mesh.datasets import migration
from mesh.files import temporary_for
from tests.datasets.helpers import V1_HISTORICAL, V1_RECORDING, copy_v1


def bars_of(name: str, data_dir: Path) -> pa.Table:
    dataset = datasets.resolve(name, data_dir)
    return pa.concat_tables(datasets.read_table(t) for t in dataset.bar_tables())


def test_a_version_1_fetched_dataset_is_rewritten_in_the_current_layout(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    before = bars_of(V1_HISTORICAL, tmp_path)
    done = datasets.migrate(datasets.resolve(V1_HISTORICAL, tmp_path))
    assert (done.from_version, done.to_version) == (1, SCHEMA_VERSION)
    assert done.actions == (
        "write bars_5m.parquet (24 rows, from bars.parquet)",
        "write manifest.json (schema_version 2, kind historical)",
        "delete bars.parquet",
    )
    folder = tmp_path / "historical" / V1_HISTORICAL
    assert sorted(p.name for p in folder.iterdir()) == ["bars_5m.parquet", "manifest.json"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["schema_version"], manifest["kind"], manifest["files"]) == (
        2,
        "historical",
        ["bars_5m.parquet"],
    )
    assert manifest["columns"] == list(BAR_SCHEMA.names) and manifest["method"] == "rest"
    assert bars_of(V1_HISTORICAL, tmp_path).equals(before)
    again = datasets.migrate(datasets.resolve(V1_HISTORICAL, tmp_path))
    assert not again.needed and again.from_version == 2


def test_a_version_1_recording_gains_its_version_and_kind(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    folder = tmp_path / "recordings" / V1_RECORDING
    files = {p: p.read_bytes() for p in folder.rglob("*.parquet")}
    done = datasets.migrate(datasets.resolve(V1_RECORDING, tmp_path))
    assert done.actions == ("write manifest.json (schema_version 2, kind recording)",)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["schema_version"], manifest["kind"], manifest["gaps_total"]) == (
        2,
        "recording",
        0,
    )
    assert all(p.read_bytes() == data for p, data in files.items())  # the data was current already


def test_a_dry_run_says_what_it_would_do_and_does_nothing(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    folder = tmp_path / "historical" / V1_HISTORICAL
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    planned = datasets.migrate(datasets.resolve(V1_HISTORICAL, tmp_path), dry_run=True)
    assert planned.needed and planned.dry_run
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", ["data", "manifest", "delete"])
def test_a_crash_at_any_step_leaves_a_readable_dataset_that_a_rerun_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    copy_v1(tmp_path)
    before = bars_of(V1_HISTORICAL, tmp_path)

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash(step)

    if step == "data":  # killed while the new bars are still a hidden temporary

        def half(path: Path, table: object) -> Path:
            temporary_for(path).write_bytes(b"PAR1 half a file")
            raise Crash(step)

        monkeypatch.setattr(migration, "write_parquet", half)
    elif step == "manifest":  # the new bars are in place, the manifest is still version 1
        monkeypatch.setattr(migration, "write_json", crash)
    else:  # the manifest is version 2, the old bars are still there
        monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(Crash):
        datasets.migrate(datasets.resolve(V1_HISTORICAL, tmp_path))
    monkeypatch.undo()
    assert bars_of(V1_HISTORICAL, tmp_path).equals(before)
    listed = {i.name: i for i in datasets.list_datasets(tmp_path)}
    assert listed[V1_HISTORICAL].error is None and listed[V1_HISTORICAL].total_rows == 24
    datasets.migrate(datasets.resolve(V1_HISTORICAL, tmp_path))
    folder = tmp_path / "historical" / V1_HISTORICAL
    assert sorted(p.name for p in folder.iterdir()) == [
        "bars_5m.parquet",
        "manifest.json",
    ]
    assert bars_of(V1_HISTORICAL, tmp_path).equals(before)
