"""Every command that takes a dataset resolves a name the same way, and fails with the same line.

`massive data show`, `massive data quality`, `massive backtest`, `massive kdb load` and `massive run sim --replay` (and the
dashboard, through the backtester service, which resolves like `massive backtest`) all go through
`mesh.datasets.resolve`: the same names find the same folders, and not found, ambiguous and
damaged datasets give the same one line from each, after the command's own prefix, with no
traceback. Damage of every kind (truncated Parquet, missing or corrupt manifest, mixed schema
versions) is named the same way by `data list`, `data show`, `backtest` and `kdb load`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mesh import cli, datasets
from mesh.config import Config
from mesh.sim.replay import open_recording
from mesh.sim.service import main as sim_main
from tests.conftest import free_port
from tests.datasets.helpers import bars, copy_v1, fetch, record

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    record(data, "demo")
    fetch(data, "etfs")
    record(data, "same")
    fetch(data, "same")
    broken = record(data, "broken")
    part = broken / "trades" / "part-000001.parquet"
    part.write_bytes(part.read_bytes()[:100])  # truncated
    monkeypatch.chdir(tmp_path)
    for var in ("KDB_TICKERPLANT", "MASSIVE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MESH_DATA_DIR", str(data))
    return data


def the_line(name: str, data_dir: Path) -> str:
    with pytest.raises(datasets.DatasetError) as caught:
        datasets.resolve(name, data_dir)
    return str(caught.value)


# each command, run as its main with argv: (exit code, the error line without the command's prefix)
def data_show(name: str, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["data", "show", name])
    return code, _last(capsys, "massive: ")


def data_quality(name: str, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["data", "quality", name])
    return code, _last(capsys, "massive: ")


def backtest(name: str, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["backtest", name, "-s", "buy-and-hold", "--no-save"])
    return code, _last(capsys, "massive: ")


def kdb_load(name: str, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["kdb", "load", name, "--target", f"127.0.0.1:{free_port()}"])
    return code, _last(capsys, "massive kdb load: ")


def sim_replay(name: str, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config = Config.load({"MESH_DATA_DIR": str(data_dir)}, cwd=data_dir.parent)
    code = sim_main(config, ["--replay", name])
    return code, _last(capsys, "massive run sim: ")


def _last(capsys: pytest.CaptureFixture[str], prefix: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert last.startswith(prefix), err
    return last[len(prefix) :]


COMMANDS: dict[str, Callable[[str, Path, pytest.CaptureFixture[str]], tuple[int, str]]] = {
    "data show": data_show,
    "data quality": data_quality,
    "backtest": backtest,
    "kdb load": kdb_load,
    "run sim --replay": sim_replay,
}


@pytest.mark.parametrize("name", ["nope", "same", "broken", "recording:nope", "../demo"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_fails_with_the_same_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], command: str, name: str
) -> None:
    expected = the_line(name, data_dir)
    code, line = COMMANDS[command](name, data_dir, capsys)
    assert code in (1, 2) and line == expected


def test_every_command_finds_the_same_dataset_for_a_name(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "demo",
        "recording:demo",
        str(data_dir / "recordings" / "demo"),
        "etfs",
        "historical:same",
    ):
        path = str(datasets.resolve(name, data_dir).path)
        assert cli.main(["data", "show", name, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["path"] == path
        assert cli.main(["backtest", name, "-s", "buy-and-hold", "--no-save", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["dataset"]["path"] == path
        assert cli.main(["kdb", "load", name, "--target", f"127.0.0.1:{free_port()}"]) == 1
        err = capsys.readouterr().err  # resolved, then kdb+ is not there
        assert f" rows from {path} (" in err and "cannot connect to kdb+" in err
        if "demo" in name:
            assert open_recording(name, data_dir).location == path


@pytest.mark.parametrize(
    "argv, prefix",
    [
        (["data", "show", "broken"], "massive: "),
        (["backtest", "broken", "-s", "buy-and-hold"], "massive: "),
        (["kdb", "load", "broken", "--target", "127.0.0.1:9"], "massive kdb load: "),
        (["run", "sim", "--replay", "broken", "--ws-port", "0"], "massive run sim: "),
    ],
)
def test_a_damaged_dataset_is_one_line_from_every_command_run_as_a_process(
    data_dir: Path, argv: list[str], prefix: str
) -> None:
    env = {
        "MESH_DATA_DIR": str(data_dir),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYKX_UNLICENSED": "true",
    }
    run = subprocess.run(
        [sys.executable, "-m", "mesh.cli", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    part = data_dir / "recordings" / "broken" / "trades" / "part-000001.parquet"
    assert run.returncode in (1, 2) and "Traceback" not in run.stderr + run.stdout
    assert run.stderr.strip().splitlines()[-1] == prefix + the_line("broken", data_dir)
    assert the_line("broken", data_dir).startswith(f"{part}: not a readable Parquet file")


def damage(kind: str, data_dir: Path) -> Path:
    """Damage dataset `etfs` (fetched) or `demo` (recorded) one way; returns the file at fault."""
    etfs = data_dir / "historical" / "etfs"
    demo = data_dir / "recordings" / "demo"
    if kind == "truncated Parquet":
        path = etfs / "bars_1m.parquet"
        path.write_bytes(path.read_bytes()[:-200])
    elif kind == "missing manifest":
        path = demo / "manifest.json"
        path.unlink()
    elif kind == "corrupt manifest":
        path = etfs / "manifest.json"
        path.write_text(path.read_text()[:40])
    else:  # mixed schema versions: version-1 bars beside version-2 ones
        path = etfs / "bars.parquet"
        old = bars().rename_columns(["symbol", "timestamp", *bars().column_names[2:]])
        pq.write_table(old.drop_columns(["ts_end", "ts_recv"]), path)
        manifest = json.loads((etfs / "manifest.json").read_text())
        manifest["files"].append("bars.parquet")
        (etfs / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize(
    "kind", ["truncated Parquet", "missing manifest", "corrupt manifest", "mixed schema versions"]
)
def test_damage_of_every_kind_names_the_file_in_list_show_backtest_and_kdb_load(
    data_dir: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = damage(kind, data_dir)
    name = path.parent.name
    line = the_line(name, data_dir)
    assert line.startswith(f"{path}: ") and "\n" not in line
    assert cli.main(["data", "list"]) == 1
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith(name + " ")]
    assert rows and rows[0].endswith(f"DAMAGED: {line}")
    for command in ("data show", "backtest", "kdb load"):
        code, said = COMMANDS[command](name, data_dir, capsys)
        assert (code, said) == (1, line), command


def test_version_1_datasets_open_in_every_command(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy_v1(data_dir)
    for name in ("v1-recording", "AAPL-MSFT_5m_2024-12-04_2024-12-04"):
        assert cli.main(["data", "show", name]) == 0
        assert cli.main(["backtest", name, "-s", "buy-and-hold", "--no-save", "--json"]) == 0
        assert cli.main(["kdb", "load", name, "--target", f"127.0.0.1:{free_port()}"]) == 1
        assert "cannot connect to kdb+" in capsys.readouterr().err
    assert open_recording("v1-recording", data_dir).bars == 8
    shutil.rmtree(data_dir / "recordings" / "broken")
    assert cli.main(["data", "list"]) == 0
