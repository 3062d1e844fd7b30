"""Bad MESH_DATA_DIR and MESH_LOG_LEVEL: one clear line from the real CLI, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.config import Config, ConfigError, log_level
from tests.conftest import mesh_env

ROOT = Path(__file__).resolve().parents[2]


def massive(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    base.update(mesh_env(tmp_path / "data"))
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "mesh.cli", *argv],
        env=base,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_missing_data_dir_is_created(tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet" / "there"
    result = massive(tmp_path, "quota", MESH_DATA_DIR=str(target))
    assert result.returncode == 0, result.stderr
    assert target.is_dir() and (target / "state" / "quota.sqlite").is_file()


def test_a_data_dir_that_is_a_file_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    afile = tmp_path / "data.txt"
    afile.write_text("not a folder")
    for command in (
        ["quota"],
        ["config"],
        ["fetch", "AAPL", "--start", "2024-03-04", "--end", "2024-03-05"],
    ):
        result = massive(tmp_path, *command, MESH_DATA_DIR=str(afile))
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "MESH_DATA_DIR" in lines[0] and "is a file" in lines[0]


def test_a_data_dir_below_a_file_cannot_be_created_and_says_so(tmp_path: Path) -> None:
    afile = tmp_path / "data.txt"
    afile.write_text("")
    with pytest.raises(ConfigError, match="MESH_DATA_DIR=.*cannot create the folder"):
        Config.load(environ={"MESH_DATA_DIR": str(afile / "sub")}, cwd=tmp_path)


def test_a_bogus_log_level_is_one_line_listing_the_valid_levels(tmp_path: Path) -> None:
    result = massive(tmp_path, "config", MESH_LOG_LEVEL="bogus")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "MESH_LOG_LEVEL='bogus'" in lines[0]
    for level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        assert level in lines[0]


def test_log_level_accepts_any_case_and_defaults_to_info() -> None:
    assert log_level({}) == "INFO"
    assert log_level({"MESH_LOG_LEVEL": " debug "}) == "DEBUG"
    assert log_level({"MESH_LOG_LEVEL": "warn"}) == "WARNING"
    with pytest.raises(ConfigError, match="MESH_LOG_LEVEL"):
        log_level({"MESH_LOG_LEVEL": "loud"})


def test_a_service_with_a_bogus_log_level_exits_with_one_line(tmp_path: Path) -> None:
    result = massive(tmp_path, "run", "bus", MESH_LOG_LEVEL="chatty")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "MESH_LOG_LEVEL='chatty'" in lines[0] and "WARNING" in lines[0]
