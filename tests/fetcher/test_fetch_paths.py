"""`massive fetch --out` to a place that cannot be written fails in one line before any REST call."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from mesh.sim.server import SimServer
from tests.fetcher.conftest import sim_env
from tests.meshproc import massive

ROOT = Path(__file__).resolve().parents[2]


def rest_calls_today(env: dict[str, str]) -> int:
    return int(json.loads(massive(env, "quota", "--json").stdout)["rest_calls_today"])


@pytest.mark.parametrize("where", ["below a file", "in /proc", "a folder", "no extension"])
def test_an_unwritable_out_fails_before_any_rest_call(
    where: str, sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    env = sim_env(sim, tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = {
        "below a file": blocker / "sub" / "bars.csv",
        "in /proc": Path("/proc/massive-bars.parquet"),
        "a folder": tmp_path,
        "no extension": tmp_path / "bars",
    }[where]
    result = massive(
        env,
        "fetch",
        "AAPL",
        "--start",
        str(days[-2]),
        "--end",
        str(days[-1]),
        "--method",
        "rest",
        "--out",
        str(out),
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "--out" in lines[0] and str(out) in lines[0]
    assert rest_calls_today(env) == 0
    assert not (tmp_path / "data" / "historical").exists() or not any(
        (tmp_path / "data" / "historical").iterdir()
    )


def test_an_unwritable_dataset_folder_fails_before_any_rest_call(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    env = sim_env(sim, tmp_path / "data")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "historical").write_text("a file where the datasets folder should be")
    result = massive(
        env, "fetch", "AAPL", "--start", str(days[-2]), "--end", str(days[-1]), "--method", "rest"
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line]
    assert (
        len(lines) == 1
        and "MESH_DATA_DIR/historical" in lines[0]
        and "nothing was spent" in lines[0]
    ), result.stderr
    assert rest_calls_today(env) == 0


def test_a_writable_out_still_gets_the_bars(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    env = sim_env(sim, tmp_path / "data")
    out = tmp_path / "new" / "folder" / "bars.csv"
    result = massive(
        env,
        "fetch",
        "AAPL",
        "--start",
        str(days[-2]),
        "--end",
        str(days[-1]),
        "--method",
        "rest",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) > 1
    assert not list(out.parent.glob(".write-test*"))
