"""A damaged dataset is one line naming the file and what is wrong: from resolving and from listing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesh import datasets
from mesh.datasets import DatasetError, Problem
from tests.datasets.helpers import V1_HISTORICAL, V1_RECORDING, bars, copy_v1, write_historical


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def damage_of(name: str, data_dir: Path) -> str:
    with pytest.raises(DatasetError) as caught:
        datasets.resolve(name, data_dir)
    assert caught.value.problem is Problem.DAMAGED
    line = str(caught.value)
    assert "\n" not in line
    listed = {i.name: i for i in datasets.list_datasets(data_dir)}
    assert listed[name].error == line and listed[name].problem is Problem.DAMAGED
    return line


def test_a_truncated_parquet_file_is_named(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    part = tmp_path / "recordings" / V1_RECORDING / "trades" / "part-000001.parquet"
    truncate(part)
    line = damage_of(V1_RECORDING, tmp_path)
    assert line.startswith(f"{part}: not a readable Parquet file (truncated or overwritten?)")


def test_a_missing_manifest_is_named(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    manifest = tmp_path / "historical" / V1_HISTORICAL / "manifest.json"
    manifest.unlink()
    assert (
        damage_of(V1_HISTORICAL, tmp_path) == f"{manifest}: missing (every dataset folder has one)"
    )


def test_a_corrupt_manifest_is_named(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    manifest = tmp_path / "recordings" / V1_RECORDING / "manifest.json"
    manifest.write_text('{"name": "v1-recording", "state": ')
    assert damage_of(V1_RECORDING, tmp_path).startswith(f"{manifest}: not valid JSON (")
    manifest.write_text("[1, 2]")
    assert damage_of(V1_RECORDING, tmp_path) == f"{manifest}: not a JSON object"
    manifest.write_text('{"schema_version": 9}')
    assert "schema_version 9 is newer than this massive reads (2)" in damage_of(
        V1_RECORDING, tmp_path
    )


def test_mixed_schema_versions_are_named(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    folder = tmp_path / "historical" / V1_HISTORICAL
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 2}))
    line = damage_of(V1_HISTORICAL, tmp_path)
    assert line == (
        f"{folder / 'bars.parquet'}: mixed schema versions: manifest.json says schema_version 2, "
        "this file has version-1 bar columns (timestamp instead of ts_start)"
    )
    pq.write_table(bars(), folder / "bars_1m.parquet")
    (folder / "manifest.json").write_text(
        json.dumps({**manifest, "files": ["bars.parquet", "bars_1m.parquet"]})
    )
    line = damage_of(V1_HISTORICAL, tmp_path)
    assert (
        line
        == f"{folder / 'bars.parquet'}: mixed schema versions: version-1 bar columns here, version 2 in bars_1m.parquet"
    )


def test_unknown_columns_are_named(tmp_path: Path) -> None:
    folder = write_historical(tmp_path, "daily")
    pq.write_table(pa.table({"a": [1], "b": [2.0]}), folder / "bars_1d.parquet")
    line = damage_of("daily", tmp_path)
    assert line == f"{folder / 'bars_1d.parquet'}: unknown columns (a, b): expected bars columns"
    odd = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"a": [1]}), odd)
    with pytest.raises(
        DatasetError, match=r"odd.parquet: unknown columns \(a\): expected bars \(open"
    ):
        datasets.resolve(str(odd), tmp_path)


def test_a_listed_file_that_is_gone_is_named(tmp_path: Path) -> None:
    folder = write_historical(tmp_path, "daily")
    (folder / "bars_1d.parquet").unlink()
    line = damage_of("daily", tmp_path)
    assert line == f"{folder / 'bars_1d.parquet'}: listed in manifest.json but missing"


def test_one_damaged_dataset_does_not_hide_the_others(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    shutil.copytree(tmp_path / "recordings" / V1_RECORDING, tmp_path / "recordings" / "broken")
    (tmp_path / "recordings" / "broken" / "manifest.json").unlink()
    listed = {i.name: i for i in datasets.list_datasets(tmp_path)}
    assert listed["broken"].error and listed[V1_RECORDING].error is None
    assert listed[V1_HISTORICAL].error is None and listed[V1_HISTORICAL].total_rows == 24


def test_the_fetcher_service_lists_a_damaged_history_with_its_line(tmp_path: Path) -> None:
    from mesh.fetcher.datasets import list_datasets as fetcher_datasets

    copy_v1(tmp_path)
    write_historical(tmp_path, "daily")
    manifest = tmp_path / "historical" / V1_HISTORICAL / "manifest.json"
    manifest.write_text("{")
    listed = {d["name"]: d for d in fetcher_datasets(tmp_path)}
    assert set(listed) == {"daily", V1_HISTORICAL}  # recordings are not the fetcher's
    assert listed[V1_HISTORICAL]["error"].startswith(f"{manifest}: not valid JSON")
    assert listed["daily"]["interval"] == "1d" and "error" not in listed["daily"]
