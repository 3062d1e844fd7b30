"""`massive run NAME` with options the service does not take: one line naming the mistake, exit 2.

Each service parses its own options (`massive run NAME --help`); a mistake there reads like one
made to any other `massive` command, not argparse's usage block.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh import cli
from mesh.run_cli import SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_service_given_an_unknown_option_says_so_in_one_line(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        cli.main(["run", name, "--no-such-option"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert err == (
        f"massive run {name}: unrecognized arguments: --no-such-option "
        f"(see massive run {name} --help)\n"
    )


@pytest.mark.parametrize(
    ("argv", "mistake"),
    [
        (["run", "sim", "--speed", "nan"], "argument --speed: expected a positive number or max"),
        (["run", "sim", "--rate", "0"], "argument --rate: expected a positive number, got 0"),
        (["run", "sim", "--at", "99999-01-01"], "argument --at: expected a date and time"),
        (["run", "kdb", "--batch-rows", "0"], "argument --batch-rows: expected a positive number"),
    ],
)
def test_a_bad_service_option_value_is_one_line(
    argv: list[str],
    mistake: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and mistake in err, err
