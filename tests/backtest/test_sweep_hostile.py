"""Hostile sweep folders under MESH_DATA_DIR/sweeps/<id>/: a damaged or planted sweep.json or
results.parquet gives one clear line and a non-zero exit, never a traceback, a hang, or a write
outside the data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = {
    "sweep_id": "s",
    "dataset": "mins",
    "strategies": ["ma-crossover"],
    "params": ["fast=5"],
    "options": {},
    "per_symbol": False,
    "symbols": None,
    "top_k": 1,
    "sort": "sharpe",
    "no_save": True,
}


def massive(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESH_DATA_DIR": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "mesh.cli", "backtest", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def one_clear_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def sweep_folder(data: Path, name: str) -> Path:
    folder = data / "sweeps" / name
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("mode", ["--sweep", "--resume"])
def test_a_fifo_in_place_of_sweep_json_is_refused_without_hanging(tmp_path: Path, mode: str):
    os.mkfifo(sweep_folder(tmp_path, "f") / "sweep.json")
    assert "not a regular file" in one_clear_line(massive(tmp_path, mode, "f"))


def test_a_fifo_in_place_of_results_parquet_is_refused_without_hanging(tmp_path: Path):
    folder = sweep_folder(tmp_path, "f")
    (folder / "sweep.json").write_text(json.dumps(SPEC))
    os.mkfifo(folder / "results.parquet")
    assert "not a regular file" in one_clear_line(massive(tmp_path, "--sweep", "f"))


def test_the_sweep_list_marks_a_fifo_sweep_json_unreadable_without_hanging(tmp_path: Path):
    os.mkfifo(sweep_folder(tmp_path, "f") / "sweep.json")
    out = massive(tmp_path, "--sweeps", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["state"] == "unreadable"


def test_resuming_a_sweep_json_symlinked_outside_the_data_folder_leaves_it_alone(tmp_path: Path):
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(SPEC))
    data = tmp_path / "data"
    (sweep_folder(data, "s") / "sweep.json").symlink_to(outside)
    assert "not a regular file" in one_clear_line(massive(data, "--resume", "s"))
    assert json.loads(outside.read_text()) == SPEC


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {**SPEC, "options": 5},
        {**SPEC, "strategies": 3},
        {**SPEC, "symbols": 7},
    ],
    ids=["empty", "options", "strategies", "symbols"],
)
def test_resuming_a_sweep_json_of_wrong_shape_says_it_is_damaged(tmp_path: Path, doc: dict):
    (sweep_folder(tmp_path, "s") / "sweep.json").write_text(json.dumps(doc))
    assert "sweep 's'" in one_clear_line(massive(tmp_path, "--resume", "s"))


def test_a_worker_count_no_machine_could_start_is_refused_before_any_process_starts():
    from mesh import parallel

    with pytest.raises(parallel.ExecutorError, match="at most"):
        with parallel.open_executor(99999999999999999999):
            pass


@pytest.mark.parametrize("command", [["backtest", "mins", "--strategy", "ma-crossover"], ["fetch"]])
def test_a_huge_workers_argument_is_refused_in_one_line(tmp_path: Path, command: list[str]):
    env = {**os.environ, "MESH_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "mesh.cli", *command, "--workers", "99999999999999999999"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "argument --workers: expected at most" in one_clear_line(out)


@pytest.mark.parametrize(
    "runs", [["x", "y"], [1.5, float("nan")]], ids=["text", "fractional-and-nan"]
)
def test_resuming_a_sweep_whose_results_have_no_whole_run_numbers_says_it_is_damaged(
    tmp_path: Path, runs: list
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = sweep_folder(tmp_path, "s")
    (folder / "sweep.json").write_text(json.dumps(SPEC))
    pq.write_table(pa.table({"run": runs}), folder / "results.parquet")
    assert "sweep 's' is damaged" in one_clear_line(massive(tmp_path, "--resume", "s"))


@pytest.mark.parametrize(
    "wrong",
    [{"param_columns": 5}, {"param_columns": [1, None]}, {"sort": [1]}, {"strategies": 5}],
    ids=["param-columns", "param-column-names", "sort", "strategies"],
)
def test_showing_and_listing_a_sweep_json_of_wrong_types_is_one_clear_line(
    tmp_path: Path, wrong: dict
):
    (sweep_folder(tmp_path, "s") / "sweep.json").write_text(json.dumps({**SPEC, **wrong}))
    assert "sweep 's' is damaged" in one_clear_line(massive(tmp_path, "--sweep", "s"))
    listed = massive(tmp_path, "--sweeps")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert "unreadable" in listed.stdout
