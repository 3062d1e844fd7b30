"""`massive backtest`: the table, the run folder, --json, comparisons, sweeps, and error exits."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mesh import cli
from tests.backtest.helpers import random_quotes, write_history, write_recording


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    for key in ("MESH_DATA_DIR", "MASSIVE_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MESH_DATA_DIR", str(root))
    monkeypatch.chdir(tmp_path)
    write_history(root, "daily", n=300)
    write_recording(root, "live", random_quotes(3000))
    return root


def test_a_run_prints_the_metrics_and_writes_the_run_folder(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(
            [
                "backtest",
                "daily",
                "--strategy",
                "ma-crossover",
                "--param",
                "fast=5",
                "--param",
                "slow=20",
                "--commission-bps",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for label in (
        "Total return",
        "CAGR",
        "Volatility (ann.)",
        "Sharpe",
        "Sortino",
        "Max drawdown",
        "Max DD duration",
        "Trades",
        "Win rate",
        "Avg trade",
        "Exposure",
        "Fees paid",
    ):
        assert label in out
    assert "ma-crossover fast=5 slow=20" in out
    runs = list((data / "backtests").iterdir())
    assert len(runs) == 1 and f"saved ma-crossover fast=5 slow=20: {runs[0]}" in out
    assert sorted(p.name for p in runs[0].iterdir()) == [
        "config.json",
        "equity.parquet",
        "fills.parquet",
        "metrics.json",
        "trades.parquet",
    ]
    doc = json.loads((runs[0] / "metrics.json").read_text())
    assert doc["params"] == {"fast": 5, "slow": 20, "kind": "sma", "short": False}
    config = json.loads((runs[0] / "config.json").read_text())
    assert config["options"]["commission_bps"] == 2.0 and config["dataset"] == "daily"
    equity = pd.read_parquet(runs[0] / "equity.parquet")
    assert len(equity) == 300 and list(equity.columns)[:3] == ["ts", "equity", "cash"]
    assert equity["equity"].iloc[-1] == pytest.approx(doc["metrics"]["final_equity"])
    trades = pd.read_parquet(runs[0] / "trades.parquet")
    assert len(trades) == doc["metrics"]["trades"] > 0
    assert (trades["entry_time"] < trades["exit_time"]).all()


def test_json_output_and_a_side_by_side_comparison(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(
            [
                "backtest",
                "live",
                "-s",
                "buy-and-hold",
                "-s",
                "momentum",
                "--interval",
                "1m",
                "--json",
                "--no-save",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert [r["strategy"] for r in doc["runs"]] == ["buy-and-hold", "momentum"]
    assert (
        doc["dataset"]["symbols"] == ["AAA", "BBB"]
        and doc["runs"][0]["metrics"]["fills_mode"] == "quotes"
    )
    assert not (data / "backtests").exists()
    assert cli.main(["backtest", "live", "-s", "buy-and-hold", "-s", "momentum", "--no-save"]) == 0
    out = capsys.readouterr().out
    header = next(
        line for line in out.splitlines() if "buy-and-hold" in line and "momentum" in line
    )
    assert header.index("buy-and-hold") < header.index("momentum")


def test_a_comma_separated_parameter_sweeps(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(
            [
                "backtest",
                "daily",
                "-s",
                "ma-crossover",
                "-p",
                "fast=3,5,8",
                "-p",
                "slow=30",
                "--json",
                "--no-save",
            ]
        )
        == 0
    )
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["params"]["fast"] for r in runs] == [3, 5, 8]
    assert len({r["metrics"]["final_equity"] for r in runs}) == 3


def test_listing_datasets_and_strategies(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["backtest", "--datasets"]) == 0
    out = capsys.readouterr().out
    assert "daily" in out and "live" in out and "historical" in out and "recording" in out
    # readable datasets are listed with their span and rows, not as unreadable
    assert "unreadable" not in out
    daily = next(line for line in out.splitlines() if line.startswith("daily"))
    assert "2023-11-14" in daily and "600" in daily  # 2 symbols x 300 bars
    assert cli.main(["backtest", "--strategies", "--json"]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)]
    assert "mean-reversion" in names


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (
            ["backtest", "nowhere/at/all.parquet", "-s", "buy-and-hold"],
            1,
            "no dataset at nowhere/at/all.parquet: no such file or folder",
        ),
        (["backtest", "daily", "-s", "moon-phase"], 2, "unknown strategy 'moon-phase'"),
        (
            ["backtest", "daily", "-s", "ma-crossover", "-p", "fast=ten"],
            2,
            "fast='ten': expected a whole number",
        ),
        (
            ["backtest", "daily", "-s", "ma-crossover", "-p", "depth=3"],
            2,
            "no selected strategy has a parameter 'depth'",
        ),
        (["backtest", "daily", "-s", "buy-and-hold", "--interval", "1x"], 2, "bad interval '1x'"),
        (["backtest", "daily"], 2, "give at least one --strategy"),
    ],
)
def test_errors_are_one_clear_line(
    data: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_run_on_a_recording_says_its_prices_are_as_traded(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["backtest", "live", "--strategy", "buy-and-hold", "--no-save"]) == 0
    assert "prices: as traded (recorded live, as live data is)" in capsys.readouterr().out
    assert cli.main(["backtest", "live", "--strategy", "bh", "--no-save", "--json"]) == 0
    dataset = json.loads(capsys.readouterr().out)["dataset"]
    assert dataset["adjusted"] is False and dataset["prices"].startswith("as traded")
