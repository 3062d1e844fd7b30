"""Split-adjusted bars by default, as traded on request: NVDA's 10-for-1 split of 2024-06-10 and
INTC's 1-for-5 reverse split of 2025-06-16, against the sim's REST aggregates and flat files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from massive import RESTClient

from mesh import calendar, cli
from mesh.config import Config
from mesh.fetcher.datasets import write_dataset
from mesh.fetcher.errors import QuotaExceeded
from mesh.fetcher.fetch import Fetcher
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.request import make_request
from mesh.sim import history, market
from mesh.sim.server import SimServer
from tests.fetcher.conftest import config_of, sim_env
from tests.meshproc import massive

ROOT = Path(__file__).resolve().parents[2]
SPLIT_DAY = dt.date(2024, 6, 10)  # NVDA 10-for-1
BEFORE, AFTER = "2024-06-06", "2024-06-11"


def closes_by_day(bars: pa.Table) -> dict[dt.date, float]:
    starts = bars["ts_start"].cast(pa.int64()).to_pylist()
    return dict(zip(map(calendar.et_date_of_ns, starts), bars["close"].to_pylist(), strict=True))


def jump_at_split(bars: pa.Table) -> float:
    """Close on the split day over the close of the session before it."""
    closes = closes_by_day(bars)
    return closes[SPLIT_DAY] / closes[dt.date(2024, 6, 7)]


def fetch(config: Config, symbols: str, start: str, end: str, method: str, adjusted: bool) -> Any:
    request = make_request(symbols, start, end, "1d", method, adjusted=adjusted)
    return Fetcher(config).run(request)


def test_a_default_fetch_across_nvdas_split_is_continuous_and_its_manifest_says_adjusted(
    sim: SimServer, tmp_path: Path
) -> None:
    env = sim_env(sim, tmp_path / "data")
    done = massive(
        env, "fetch", "NVDA", "--start", BEFORE, "--end", AFTER, "--method", "rest", "--json"
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    folder = Path(info["path"])
    manifest = json.loads((folder / "manifest.json").read_text())
    today = calendar.today_et().isoformat()
    assert manifest["adjusted"] is True
    assert manifest["prices"] == f"split-adjusted as of {today}"
    bars = pq.read_table(folder / "bars_1d.parquet")
    assert 0.8 < jump_at_split(bars) < 1.25  # no 10x drop: the earlier closes are divided by 10
    shown = massive(env, "data", "show", info["dataset"])
    assert f"prices:         split-adjusted as of {today}" in shown.stdout, shown.stdout
    listed = json.loads(massive(env, "data", "show", info["dataset"], "--json").stdout)
    assert listed["adjusted"] is True


def test_an_unadjusted_fetch_shows_the_ten_for_one_jump_and_says_as_traded(
    sim: SimServer, tmp_path: Path
) -> None:
    env = sim_env(sim, tmp_path / "data")
    done = massive(
        env,
        "fetch",
        "NVDA",
        "--start",
        BEFORE,
        "--end",
        AFTER,
        "--method",
        "rest",
        "--unadjusted",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    folder = Path(json.loads(done.stdout)["path"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["adjusted"] is False and manifest["prices"] == "as traded"
    bars = pq.read_table(folder / "bars_1d.parquet")
    assert 0.08 < jump_at_split(bars) < 0.125  # the tape's 10x drop


@pytest.mark.parametrize(
    ("symbol", "start", "end"),
    [("NVDA", BEFORE, AFTER), ("INTC", "2025-06-11", "2025-06-17")],
    ids=["NVDA 10-for-1", "INTC 1-for-5 reverse"],
)
def test_rest_and_flat_files_give_the_same_adjusted_bars(
    symbol: str, start: str, end: str, sim_config: Config
) -> None:
    by_rest, _ = fetch(sim_config, symbol, start, end, "rest", adjusted=True)
    by_files, report = fetch(sim_config, symbol, start, end, "flat_file", adjusted=True)
    assert report.method_used == "flat_file" and report.split_calls == 1
    assert by_files.equals(by_rest)  # to the last bit: prices, volumes and VWAPs
    as_traded, _ = fetch(sim_config, symbol, start, end, "rest", adjusted=False)
    assert not by_files.equals(as_traded)


def test_the_dry_run_shows_the_splits_call_and_the_fetch_spends_exactly_it(
    sim: SimServer, tmp_path: Path
) -> None:
    env = sim_env(sim, tmp_path / "data")
    span = ("NVDA,AAPL", "--start", BEFORE, "--end", AFTER, "--method", "flat_file")
    plan = massive(env, "fetch", *span, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert (
        "splits    2 REST call(s)" in plan.stdout
        and "cost      up to 2 REST call(s)" in plan.stdout
    )
    as_json = json.loads(massive(env, "fetch", *span, "--dry-run", "--json").stdout)
    assert as_json["split_calls"] == 2 and as_json["rest_calls"] == 2
    unadjusted = json.loads(
        massive(env, "fetch", *span, "--dry-run", "--json", "--unadjusted").stdout
    )
    assert unadjusted["split_calls"] == 0 and unadjusted["rest_calls"] == 0
    done = massive(env, "fetch", *span, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rest_calls"] == 2 and report["split_calls"] == 2
    quota = json.loads(massive(env, "quota", "--json").stdout)
    assert quota["rest_calls_today"] == 2


def test_an_adjusted_fetch_after_an_as_traded_one_of_the_same_span_is_adjusted(
    sim_config: Config,
) -> None:
    as_traded, first = fetch(sim_config, "NVDA", BEFORE, AFTER, "flat_file", adjusted=False)
    adjusted, second = fetch(sim_config, "NVDA", BEFORE, AFTER, "flat_file", adjusted=True)
    again, third = fetch(sim_config, "NVDA", BEFORE, AFTER, "flat_file", adjusted=False)
    assert first.files_downloaded == 4 and second.files_cached == third.files_cached == 4
    assert 0.08 < jump_at_split(as_traded) < 0.125 and 0.8 < jump_at_split(adjusted) < 1.25
    assert again.equals(as_traded)
    by_rest, _ = fetch(sim_config, "NVDA", BEFORE, AFTER, "rest", adjusted=True)
    assert adjusted.equals(by_rest)


def test_a_flat_file_fetch_without_rest_calls_left_for_the_splits_fails_saying_so(
    sim: SimServer, tmp_path: Path
) -> None:
    config = config_of(sim_env(sim, tmp_path / "data", MASSIVE_REST_CALLS_PER_DAY="1"), tmp_path)
    ledger = QuotaLedger.for_config(config)
    ledger.acquire_rest("/v1/marketstatus/now", wait=False)  # the day's one REST call is spent
    with pytest.raises(QuotaExceeded, match="--unadjusted") as caught:
        Fetcher(config, ledger=ledger).run(make_request("NVDA", BEFORE, AFTER, "1d", "flat_file"))
    assert "splits" in str(caught.value)
    assert ledger.snapshot()["s3_bytes_month"] == 0  # refused before any file was downloaded
    bars, report = Fetcher(config, ledger=ledger).run(
        make_request("NVDA", BEFORE, AFTER, "1d", "flat_file", adjusted=False)
    )
    assert report.rest_calls == 0 and bars.num_rows == 4


def test_the_backtest_report_says_whether_its_bars_are_adjusted(
    sim_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("MESH_DATA_DIR", str(sim_config.data_dir))
    monkeypatch.chdir(tmp_path)
    for name, adjusted in (("adj", True), ("raw", False)):
        request = make_request("NVDA", BEFORE, AFTER, "1h", "rest", adjusted=adjusted)
        bars, report = Fetcher(sim_config).run(request)
        write_dataset(bars, sim_config.data_dir, name, {**request.as_dict(), **report.as_dict()})
    today = calendar.today_et().isoformat()
    assert cli.main(["backtest", "adj", "--strategy", "buy-and-hold", "--no-save"]) == 0
    assert f"prices: split-adjusted as of {today}" in capsys.readouterr().out
    assert cli.main(["backtest", "raw", "--strategy", "buy-and-hold", "--no-save"]) == 0
    assert "prices: as traded" in capsys.readouterr().out
    assert cli.main(["backtest", "adj", "--strategy", "bh", "--no-save", "--json"]) == 0
    dataset = json.loads(capsys.readouterr().out)["dataset"]
    assert dataset["adjusted"] is True and dataset["prices"] == f"split-adjusted as of {today}"


def test_a_split_days_pre_market_already_trades_at_the_new_level() -> None:
    trades = history.day_trades(market.DEFAULT_SEED, "NVDA", SPLIT_DAY)
    _, open_ns, _, _ = history.session_bounds_ns(SPLIT_DAY)
    pre = trades.price[trades.sip_ns < open_ns]
    regular_open = float(trades.price[trades.sip_ns >= open_ns][0])
    assert len(pre) and 0.8 < pre.min() / regular_open and pre.max() / regular_open < 1.25


def test_fetched_day_bars_take_prices_from_the_regular_session_as_massives_do(
    sim_config: Config,
) -> None:
    bars, _ = fetch(sim_config, "AAPL", "2025-03-03", "2025-03-07", "rest", adjusted=True)
    rest = RESTClient(api_key="sim-demo-key", base=sim_config.rest_url, retries=0)
    days = list(rest.list_aggs("AAPL", 1, "day", "2025-03-03", "2025-03-07"))
    assert len(days) == bars.num_rows == 5
    for row, day in zip(bars.to_pylist(), days, strict=True):
        assert (row["open"], row["high"], row["low"], row["close"]) == (
            day.open,
            day.high,
            day.low,
            day.close,
        )
        # minute bars hold no minute whose trades could not set a price, so a little less volume
        assert 0.97 * day.volume <= row["volume"] <= day.volume
