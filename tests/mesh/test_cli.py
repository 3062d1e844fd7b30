"""`massive` as a user meets it: `--help` lists every command, each command module registers its
commands, and a mistake on the command line is one line and exit code 2."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mesh import cli
from mesh.commandline import OneLineParser

ROOT = Path(__file__).resolve().parents[2]

# the commands DESIGN.md promises that exist today
PROMISED = {
    "run",
    "tap",
    "status",
    "config",
    "record",
    "fetch",
    "quota",
    "backtest",
    "kdb",
    "data",
    "auth",
}


def _commands(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each subcommand of `parser` with its one-line help, as `--help` lists them."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {choice.dest: choice.help or "" for choice in action._choices_actions}


def _massive(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_massive_help_lists_every_command_with_a_one_line_description() -> None:
    commands = _commands(cli.build_parser())
    assert PROMISED <= set(commands)
    result = _massive("--help")
    assert result.returncode == 0, result.stderr
    listed = " ".join(result.stdout.split())  # argparse wraps long help lines
    for name, help_text in commands.items():
        assert help_text and "\n" not in help_text, f"{name} has no one-line description"
        assert f"{name} {' '.join(help_text.split())}" in listed, f"{name} missing from --help"


def test_each_command_module_in_the_list_registers_its_commands() -> None:
    seen: set[str] = set()
    for module in cli.COMMANDS:
        parser = OneLineParser(prog="massive")
        module.register(parser.add_subparsers(dest="command", metavar="COMMAND"))
        commands = _commands(parser)
        assert commands, f"{module.__name__} registered no command"
        assert not seen & set(commands), f"{module.__name__} registers a name taken already"
        seen |= set(commands)
        for name in commands:
            assert _runs_something(_subparser(parser, name)), (
                f"{module.__name__}: `massive {name}` runs nothing"
            )
    assert set(_commands(cli.build_parser())) == seen


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices[name]


def _runs_something(command: argparse.ArgumentParser) -> bool:
    """The command sets `func`, or each of its actions does (`record start|stop|status`)."""
    if command.get_default("func") is not None:
        return True
    actions = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
    return bool(actions) and all(
        _runs_something(sub) for action in actions for sub in action.choices.values()
    )


@pytest.mark.parametrize(
    "argv, says",
    [
        ([], "the following arguments are required: COMMAND"),
        (["nosuch"], "invalid choice: 'nosuch'"),
        (["run", "nosuch"], "invalid choice: 'nosuch'"),
        (["tap", "--count", "-3"], "expected a positive number, got -3"),
        (["tap", "--seconds", "nan"], "expected a positive number, got nan"),
        (["status", "--timeout", "soon"], "expected a number, got 'soon'"),
        (["record"], "the following arguments are required: ACTION"),
        (["fetch", "AAPL", "--end", "2024-01-05"], "the following arguments are required: --start"),
        (["quota", "--rest-today", "-1"], "must not be negative, got '-1'"),
        (["backtest", "demo", "--fills", "sometimes"], "invalid choice: 'sometimes'"),
        (["kdb", "load"], "the following arguments are required: DATASET"),
        (["kdb", "load", "demo", "--batch-rows", "0"], "expected a positive number, got 0"),
        (["auth", "add", "someone", "--role", "root"], "invalid choice: 'root'"),
        (["config", "--verbose"], "unrecognized arguments: --verbose"),
    ],
)
def test_bad_usage_is_one_line_and_exit_code_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], captured.err
    assert lines[0].startswith("massive") and "--help)" in lines[0]


def test_bad_usage_from_the_installed_command_is_one_line_without_a_traceback() -> None:
    result = _massive("fetch", "AAPL", "--start", "2024-01-02", "--end", "2024-01-05", "--json=1")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "massive fetch: argument --json: ignored explicit argument '1' (see massive fetch --help)"
    )


def test_a_configuration_that_does_not_parse_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    env.update(MESH_DATA_DIR=str(tmp_path / "data"), MESH_LOG_LEVEL="LOUD")
    for argv in (("config",), ("quota",), ("auth", "list"), ("kdb", "load", "demo")):
        result = _massive(*argv, env=env)
        assert result.returncode == 2, (argv, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "MESH_LOG_LEVEL" in lines[0], (argv, result.stderr)


def test_massive_help_does_not_wait_for_the_heavy_libraries() -> None:
    """Command modules import pyarrow, pandas, PyKX, numba, rich and textual only when a command
    runs, so `massive --help` and a mistyped command answer at once."""
    heavy = ("pyarrow", "pandas", "pykx", "numba", "rich", "textual", "httpx", "boto3")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, contextlib, io\n"
            "from mesh import cli\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    cli.main(['--help'])\n"
            f"print(' '.join(m for m in {heavy!r} if m in sys.modules))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported by `massive --help`: {result.stdout.strip()}"
