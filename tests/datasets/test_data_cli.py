"""`massive data list | show | migrate`: what a user sees, damaged datasets as one line, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh import cli
from tests.datasets.helpers import V1_HISTORICAL, V1_RECORDING, copy_v1, write_historical


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path / "data"))
    return copy_v1(tmp_path / "data")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def test_list_shows_every_dataset_with_kind_version_range_rows_and_symbols(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_historical(data_dir, "daily")
    code, out, _ = run(["data", "list"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "VER", "START", "END", "ROWS", "SIZE", "SYMBOLS"]
    recording = next(line for line in lines if line.startswith(V1_RECORDING))
    assert recording.split()[1:3] == ["recording", "1"] and "AAPL,MSFT,NVDA,TSLA" in recording
    assert "196" in recording
    daily = next(line for line in lines if line.startswith("daily"))
    assert daily.split()[1:3] == ["historical", "2"] and daily.endswith("AAA,BBB")
    code, out, _ = run(["data", "list", "--json"], capsys)
    listed = {d["name"]: d for d in json.loads(out)}
    assert (
        listed[V1_HISTORICAL]["rows"] == {"bars_5m": 24}
        and listed[V1_HISTORICAL]["schema_version"] == 1
    )
    assert listed[V1_RECORDING]["gaps_total"] == 0 and listed[V1_RECORDING]["intervals"] == [
        "1s",
        "1m",
    ]
    assert listed["daily"]["start"] == "2024-12-04T14:30:00Z" and listed["daily"]["error"] is None


def test_show_gives_the_tables_and_files_of_one_dataset(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["data", "show", V1_RECORDING], capsys)
    assert code == 0 and "schema version: 1" in out and "quotes/part-000001.parquet" in out
    code, out, _ = run(["data", "show", f"historical:{V1_HISTORICAL}", "--json"], capsys)
    shown = json.loads(out)
    assert shown["table_details"] == [
        {
            "name": "bars_5m",
            "kind": "bars",
            "interval": "5m",
            "mid": False,
            "version": 1,
            "rows": 24,
            "bytes": (data_dir / "historical" / V1_HISTORICAL / "bars.parquet").stat().st_size,
            "files": ["bars.parquet"],
        }
    ]


def test_damaged_datasets_are_one_line_in_list_and_show(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = data_dir / "recordings" / V1_RECORDING / "manifest.json"
    manifest.write_text("{not json")
    code, out, _ = run(["data", "list"], capsys)
    assert code == 1
    [row] = [line for line in out.splitlines() if line.startswith(V1_RECORDING)]
    assert f"DAMAGED: {manifest}: not valid JSON (" in row
    code, out, err = run(["data", "show", V1_RECORDING], capsys)
    assert code == 1 and out == "" and err.startswith(f"massive: {manifest}: not valid JSON (")
    assert err.count("\n") == 1
    code, _, err = run(["data", "show", "nope"], capsys)
    assert code == 1 and err.startswith("massive: no dataset 'nope': not a recording in ")


def test_migrate_rewrites_old_datasets_and_says_what_it_did(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["data", "migrate", "--all", "--dry-run"], capsys)
    assert code == 0 and "would delete bars.parquet" in out
    assert (data_dir / "historical" / V1_HISTORICAL / "bars.parquet").is_file()
    code, out, _ = run(["data", "migrate", V1_HISTORICAL], capsys)
    assert code == 0 and out.splitlines()[0] == f"{V1_HISTORICAL}: migrated from version 1 to 2"
    code, out, _ = run(["data", "migrate", "--all", "--json"], capsys)
    done = {d["name"]: d for d in json.loads(out)}
    assert done[V1_HISTORICAL]["actions"] == [] and done[V1_RECORDING]["from_version"] == 1
    code, out, _ = run(["data", "list", "--json"], capsys)
    assert {d["name"]: d["schema_version"] for d in json.loads(out)} == {
        V1_RECORDING: 2,
        V1_HISTORICAL: 2,
    }
    code, _, err = run(["data", "migrate"], capsys)
    assert code == 2 and "give a dataset NAME or --all" in err


def test_show_says_an_old_fetch_without_the_adjusted_key_is_as_traded(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["data", "show", f"historical:{V1_HISTORICAL}"], capsys)
    assert code == 0 and "prices:         as traded\n" in out
    code, out, _ = run(["data", "show", f"historical:{V1_HISTORICAL}", "--json"], capsys)
    shown = json.loads(out)
    assert shown["adjusted"] is False and shown["prices"] == "as traded"
    code, out, _ = run(["data", "show", V1_RECORDING, "--json"], capsys)
    assert json.loads(out)["prices"] == "as traded (recorded live, as live data is)"
