"""Garbage arguments to `massive` subcommands: one line naming the mistake, exit 2, no traceback.

Values argparse takes as numbers or text but no command can use (NaN and infinite costs, an
interval of zero minutes or one year, empty names, dates in year 99999) are refused before
anything is read, sent or spent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh import cli
from mesh.intervals import DAY
from tests.datasets.helpers import write_historical

BACKTEST = ["backtest", "daily", "--strategy", "ma-crossover", "--no-save"]


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path / "data"))
    for var in ("KDB_TICKERPLANT", "MASSIVE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    write_historical(tmp_path / "data", "daily", DAY)
    return tmp_path / "data"


@pytest.mark.parametrize(
    ("argv", "mistake"),
    [
        ([*BACKTEST, "--interval", "0m"], "bad interval '0m'"),
        ([*BACKTEST, "--interval", "1y"], "bad interval '1y'"),
        ([*BACKTEST, "--interval", ""], "bad interval ''"),
        ([*BACKTEST, "--cash", "inf"], "cash must be a finite number, got inf"),
        ([*BACKTEST, "--cash", "nan"], "cash must be a finite number, got nan"),
        ([*BACKTEST, "--commission-bps", "nan"], "commission-bps must be a finite number"),
        ([*BACKTEST, "--slippage-bps", "inf"], "slippage-bps must be a finite number"),
        ([*BACKTEST, "--latency-ms", "nan"], "latency-ms must be a finite number"),
        ([*BACKTEST, "--periods-per-year", "nan"], "periods-per-year must be a finite number"),
        ([*BACKTEST, "--param", "fast="], "parameter fast='': expected a whole number"),
        (["backtest", "", "--strategy", "ma-crossover"], "give a DATASET"),
        (["data", "show", ""], "give a dataset NAME"),
        (["data", "migrate", ""], "give a dataset NAME or --all"),
        (
            ["fetch", "AAPL", "--start", "99999-01-01", "--end", "2024-01-03", "--dry-run"],
            "start date '99999-01-01' is not a date",
        ),
        (
            ["fetch", "AAPL", "--start", "2024-01-02", "--end", "2024-01-03", "--interval", "0m"],
            "unknown interval '0m'",
        ),
        (
            ["fetch", "AAPL", "--start", "2024-01-02", "--end", "2024-01-03", "--interval", "1y"],
            "unknown interval '1y'",
        ),
        (["fetch", "", "--start", "2024-01-02", "--end", "2024-01-03"], "no symbols given"),
        (["kdb", "load", "daily", "--target", ""], "--target '': expected host:port"),
        (["kdb", "load", "daily", "--batch-rows", "0"], "expected a positive number, got 0"),
        (["tap", "--seconds", "nan"], "expected a positive number, got nan"),
        (["run", "sim", "--speed", "0"], "expected a positive number or max, got 0"),
    ],
    ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else None,
)
def test_garbage_arguments_are_one_line_and_exit_2(
    argv: list[str], mistake: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as stopped:  # argparse's own refusals
        code = int(stopped.code or 0)
    out = capsys.readouterr()
    assert code == 2, out
    assert out.err.count("\n") == 1 and mistake in out.err, out.err
    assert "Traceback" not in out.out + out.err
