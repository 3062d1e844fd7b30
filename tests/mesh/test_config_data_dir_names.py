"""A MESH_DATA_DIR no file system takes (a name of 300 characters, a NUL byte) is one line naming
the variable, exit 2 from every command, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh import cli
from mesh.config import Config, ConfigError


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("/tmp/" + "x" * 300, "cannot create the folder (File name too long)"),
        ("/tmp/a\x00b", "not a path (embedded null byte)"),
    ],
    ids=["300-character-name", "nul-byte"],
)
def test_a_data_dir_no_file_system_takes_is_one_line(
    value: str,
    why: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.load(environ={"MESH_DATA_DIR": value}, cwd=tmp_path)
    line = str(caught.value)
    assert line.startswith("MESH_DATA_DIR='/tmp/") and why in line and len(line) < 400
    if "\x00" not in value:  # the environment itself cannot hold a NUL byte
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MESH_DATA_DIR", value)
        assert cli.main(["data", "list"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("massive: configuration: MESH_DATA_DIR=") and err.count("\n") == 1
