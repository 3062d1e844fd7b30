"""Fetching from the simulator: both methods agree, auto picks by the seeds' rule, fallbacks work."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mesh.bar_schema import BAR_SCHEMA
from mesh.config import Config
from mesh.fetcher.errors import BadRequest, FlatFileError, RestAuthError, RestError
from mesh.fetcher.fetch import Fetcher
from mesh.fetcher.flatfiles import key_for
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.request import make_request
from mesh.historical import fetch_data, list_datasets, load_dataset
from mesh.sim.server import SimServer
from tests.fetcher.conftest import base_env, config_of, sim_env

SIX = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META"]


@pytest.mark.parametrize("interval", ["1m", "5m", "15m", "1h", "1d"])
def test_rest_and_flat_files_return_identical_bars(
    sim_config: Config, days: list[dt.date], interval: str
) -> None:
    fetcher = Fetcher(sim_config)
    rest, rest_report = fetcher.run(
        make_request(["AAPL", "SPY"], days[-3], days[-1], interval, "rest")
    )
    flat, flat_report = fetcher.run(
        make_request(["AAPL", "SPY"], days[-3], days[-1], interval, "flat_file")
    )
    assert (
        rest_report.method == "rest"
        and rest_report.rest_calls == 2
        and rest_report.bytes_downloaded > 0
    )  # the symbol check reads day aggregates
    assert (
        flat_report.method == "flat_file"
        and flat_report.rest_calls == flat_report.split_calls == 2  # the splits adjust the files
        and flat_report.files_downloaded == 3
    )
    assert rest.schema == flat.schema == BAR_SCHEMA
    assert rest.num_rows > 0 and rest.equals(flat)
    assert set(rest["symbol"].to_pylist()) == {"AAPL", "SPY"}


def test_dataframe_types_and_day_bars(sim_config: Config, days: list[dt.date]) -> None:
    df = fetch_data("AAPL", days[-2], days[-1], "1d", config=sim_config, verbose=False)
    assert list(df.columns) == list(BAR_SCHEMA.names)  # the one bar schema (docs/data.md)
    assert str(df["ts_start"].dtype) == str(df["ts_end"].dtype) == "datetime64[ns, UTC]"
    assert len(df) == 2 and df["ts_recv"].isna().all()  # history was not received live
    # day bars are stamped at midnight New York time, like Massive's, and end at the next midnight
    stamps = [ts.tz_convert("America/New_York") for ts in df["ts_start"]]
    ends = [ts.tz_convert("America/New_York") for ts in df["ts_end"]]
    assert all((s.hour, s.minute) == (0, 0) for s in stamps + ends)
    assert [s.date() for s in stamps] == [days[-2], days[-1]]
    assert [e.date() - s.date() for s, e in zip(stamps, ends, strict=True)] == [
        dt.timedelta(days=1)
    ] * 2
    assert (
        (df["low"] <= df["open"]).all()
        and (df["open"] <= df["high"]).all()
        and (df["low"] <= df["vwap"]).all()
        and (df["vwap"] <= df["high"]).all()
    )
    assert df.attrs["fetch"]["method"] == "rest"


def test_auto_picks_rest_at_five_symbols_and_seven_days(
    sim_config: Config, days: list[dt.date]
) -> None:
    start = days[-1] - dt.timedelta(days=6)  # 7 calendar days
    _, report = Fetcher(sim_config).run(make_request(SIX[:5], start, days[-1], "1d"))
    assert report.method == "rest" and report.rest_calls == 5
    assert "small query" in report.reason


def test_auto_picks_flat_files_above_five_symbols(sim_config: Config, days: list[dt.date]) -> None:
    _, report = Fetcher(sim_config).run(make_request(SIX, days[-2], days[-1], "1d"))
    assert report.method == "flat_file" and report.rest_calls == report.split_calls == 6
    assert "more than 5 symbols" in report.reason


def test_auto_picks_flat_files_above_seven_days(sim_config: Config, days: list[dt.date]) -> None:
    start = days[-1] - dt.timedelta(days=7)  # 8 calendar days
    _, report = Fetcher(sim_config).run(make_request(["AAPL"], start, days[-1], "1d"))
    assert report.method == "flat_file" and report.rest_calls == report.split_calls == 1
    assert "more than 7 days" in report.reason


def test_wrong_s3_secret_falls_back_to_rest(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    env = sim_env(
        sim,
        tmp_path / "data",
        MASSIVE_S3_ACCESS_KEY_ID="sim-demo-access",
        MASSIVE_S3_SECRET_ACCESS_KEY="not-the-secret",
    )
    bars, report = Fetcher(config_of(env, tmp_path)).run(
        make_request(SIX, days[-2], days[-1], "5m")
    )
    assert "falling back to REST" in report.fallback and "refused access" in report.fallback
    assert "not-the-secret" not in report.fallback
    assert report.rest_calls == len(SIX) and report.method_used == "rest (fallback)"
    reference, _ = Fetcher(config_of(sim_env(sim, tmp_path / "ref"), tmp_path)).run(
        make_request(SIX, days[-2], days[-1], "5m", "flat_file")
    )
    assert bars.equals(reference)


def test_missing_s3_credentials_fall_back_to_rest(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    env = base_env(tmp_path / "data")
    env.update(
        MASSIVE_API_KEY="sim-demo-key",
        MASSIVE_REST_URL=sim.rest_url,
        MASSIVE_REST_CALLS_PER_MINUTE="100",
    )
    config = config_of(env, tmp_path)
    assert config.s3_credentials is None
    bars, report = Fetcher(config).run(make_request(["AAPL"], days[-9], days[-1], "1h"))
    assert report.method == "flat_file" and "no flat-file credentials" in report.fallback
    assert report.rest_calls == 1 and bars.num_rows > 0


def test_no_fallback_when_refused(sim: SimServer, tmp_path: Path, days: list[dt.date]) -> None:
    env = sim_env(
        sim,
        tmp_path / "data",
        MASSIVE_S3_SECRET_ACCESS_KEY="wrong",
        MASSIVE_S3_ACCESS_KEY_ID="sim-demo-access",
    )
    config = config_of(env, tmp_path)
    with pytest.raises(FlatFileError, match="refused access"):
        Fetcher(config).run(
            make_request(SIX, days[-2], days[-1], "1d", "flat_file"), fallback=False
        )
    assert QuotaLedger.for_config(config).snapshot()["rest_calls_today"] == 0


def test_fallback_refused_when_rest_quota_is_short(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    env = sim_env(
        sim,
        tmp_path / "data",
        MASSIVE_S3_SECRET_ACCESS_KEY="wrong",
        MASSIVE_S3_ACCESS_KEY_ID="sim-demo-access",
        MASSIVE_REST_CALLS_PER_DAY="3",
    )
    config = config_of(env, tmp_path)
    with pytest.raises(FlatFileError, match="REST quota does not allow the fallback"):
        Fetcher(config).run(make_request(SIX, days[-2], days[-1], "1d"))
    assert QuotaLedger.for_config(config).snapshot()["rest_calls_today"] == 0


def test_cached_files_are_reused_and_a_truncated_one_is_fetched_again(
    sim_config: Config, days: list[dt.date]
) -> None:
    request = make_request(SIX, days[-3], days[-1], "15m", "flat_file")
    first, r1 = Fetcher(sim_config).run(request)
    assert r1.files_downloaded == 3 and r1.files_cached == 0
    again, r2 = Fetcher(sim_config).run(request)
    assert r2.files_downloaded == 0 and r2.files_cached == 3 and r2.bytes_downloaded == 0
    assert again.equals(first)
    cached = Path(sim_config.data_dir) / "flatfiles" / key_for(days[-2])
    data = cached.read_bytes()
    cached.write_bytes(data[: len(data) // 2])  # a download cut short by a crash
    healed, r3 = Fetcher(sim_config).run(request)
    assert r3.files_downloaded == 1 and r3.files_cached == 2 and r3.bytes_downloaded == len(data)
    assert healed.equals(first) and cached.stat().st_size == len(data)


def test_a_corrupt_cached_file_of_the_right_size_is_fetched_again(
    sim_config: Config, days: list[dt.date]
) -> None:
    request = make_request(SIX, days[-1], days[-1], "1h", "flat_file")
    first, _ = Fetcher(sim_config).run(request)
    cached = Path(sim_config.data_dir) / "flatfiles" / key_for(days[-1])
    data = bytearray(cached.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\0" * 64
    cached.write_bytes(bytes(data))
    again, report = Fetcher(sim_config).run(request)
    assert report.files_downloaded == 1 and again.equals(first)


def test_unknown_symbol_is_refused_before_rest_is_spent(
    sim_config: Config, days: list[dt.date]
) -> None:
    with pytest.raises(BadRequest, match="unknown symbol ZZZZQ"):
        Fetcher(sim_config).run(make_request(["AAPL", "ZZZZQ"], days[-2], days[-1], "1d", "rest"))
    assert QuotaLedger.for_config(sim_config).snapshot()["rest_calls_today"] == 0


def test_unknown_symbol_in_flat_files_says_so(sim_config: Config, days: list[dt.date]) -> None:
    with pytest.raises(Exception, match="no bars for ZZZZQ"):
        Fetcher(sim_config).run(
            make_request(["AAPL", "ZZZZQ"], days[-2], days[-1], "1d", "flat_file")
        )
    assert QuotaLedger.for_config(sim_config).snapshot()["rest_calls_today"] == 0


def test_bad_api_key_is_not_retried(sim: SimServer, tmp_path: Path, days: list[dt.date]) -> None:
    env = sim_env(sim, tmp_path / "data", MASSIVE_API_KEY="not-a-real-key")
    config = config_of(env, tmp_path)
    with pytest.raises(RestAuthError, match="401") as err:
        Fetcher(config).run(
            make_request(["AAPL"], days[-1], days[-1], "1d", "rest"), check_symbols=False
        )
    assert "not-a-real-key" not in str(err.value)
    assert QuotaLedger.for_config(config).snapshot()["rest_calls_today"] == 1


def test_free_key_429_is_retried_then_reported(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    # a ledger configured above the plan's real limit: the server's 429s are retried, then reported
    env = sim_env(
        sim, tmp_path / "data", MASSIVE_API_KEY="sim-free-key", MASSIVE_REST_CALLS_PER_MINUTE="100"
    )
    config = config_of(env, tmp_path)
    fetcher = Fetcher(config)
    with pytest.raises(RestError, match="429") as err:
        for symbol in SIX:
            fetcher.run(
                make_request([symbol], days[-1], days[-1], "1d", "rest"), check_symbols=False
            )
    assert "giving up" in str(err.value)
    snap = QuotaLedger.for_config(config).snapshot()
    assert snap["throttled_24h"] == 4 and snap["rest_calls_today"] == 5 + 4  # every attempt counted


def test_dataset_parquet_is_what_the_backtester_reads(
    sim_config: Config, days: list[dt.date]
) -> None:

    df = fetch_data(
        ["AAPL", "MSFT"],
        days[-2],
        days[-1],
        "5m",
        "rest",
        save="pair",
        config=sim_config,
        verbose=False,
    )
    folder = Path(sim_config.data_dir) / "historical" / "pair"
    assert sorted(p.name for p in folder.iterdir()) == ["bars_5m.parquet", "manifest.json"]
    table = load_dataset("pair", config=sim_config)
    assert list(table.columns) == list(BAR_SCHEMA.names) and len(table) == len(df)
    manifest = list_datasets(config=sim_config)[0]
    assert (
        manifest["name"] == "pair"
        and manifest["symbols"] == ["AAPL", "MSFT"]
        and manifest["interval"] == "5m"
    )
    assert (
        manifest["rows"] == len(df)
        and (manifest["schema_version"], manifest["kind"]) == (2, "historical")
        and manifest["method"] == "rest"
        and manifest["start"] == days[-2].isoformat()
    )
    assert (folder / "manifest.json").is_file() and not list(folder.glob(".*tmp*"))
