"""`massive fetch --method flat_file --workers N`: days in parallel, one quota ledger, faults survived.

Each test runs `massive fetch` as a user does, against the simulator's S3 on 127.0.0.1 (directly,
or through tests/fetcher/s3proxy.py to slow down or damage day files), with real worker processes.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesh.config import Config
from mesh.fetcher import bulk
from mesh.fetcher.fetch import Fetcher
from mesh.fetcher.flatfiles import FlatFiles, key_for
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.request import make_request
from mesh.sim.server import SimServer
from tests.fetcher.conftest import config_of, sim_env
from tests.fetcher.s3proxy import S3Proxy
from tests.meshproc import ROOT, massive, wait_for

SYMBOLS = "AAPL,MSFT,SPY"
Reference = Callable[[list[dt.date]], pa.Table]
NEW_YORK = ZoneInfo("America/New_York")


def fetch_args(days: list[dt.date], *more: str) -> list[str]:
    return [
        "fetch",
        SYMBOLS,
        "--start",
        str(days[0]),
        "--end",
        str(days[-1]),
        "--interval",
        "5m",
        "--method",
        "flat_file",
        "--unadjusted",
        "--name",
        "span",
        "--json",
        *more,
    ]


def start_fetch(env: dict[str, str], args: list[str]) -> subprocess.Popen[str]:
    """`massive ARGS` started as a user starts it, left running for the test to disturb."""
    return subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def dataset(data_dir: Path) -> pa.Table:
    return pq.read_table(data_dir / "historical" / "span" / "bars_5m.parquet")


def serial_reference(config: Config, days: list[dt.date]) -> pa.Table:
    """The same span fetched by the serial path, one day after the other in this process."""
    bars, _ = Fetcher(config).run(
        make_request(SYMBOLS, days[0], days[-1], "5m", "flat_file", adjusted=False)
    )
    return bars


@pytest.fixture(scope="module")
def reference(
    sim: SimServer, days: list[dt.date], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[list[dt.date]], pa.Table]:
    """The serial fetch's bars of a span (each span fetched once for the module)."""
    folder = tmp_path_factory.mktemp("reference")
    done: dict[tuple[dt.date, ...], pa.Table] = {}

    def of(span: list[dt.date]) -> pa.Table:
        if tuple(span) not in done:
            done[tuple(span)] = serial_reference(config_of(sim_env(sim, folder), folder), span)
        return done[tuple(span)]

    return of


def bar_days(table: pa.Table) -> set[dt.date]:
    return {ts.astimezone(NEW_YORK).date() for ts in table["ts_start"].to_pylist()}


def cached_days(data_dir: Path, days: list[dt.date]) -> set[dt.date]:
    return {day for day in days if (data_dir / "flatfiles" / key_for(day)).is_file()}


def test_parallel_fetch_writes_the_same_dataset_as_a_serial_fetch(
    sim: SimServer, tmp_path: Path, days: list[dt.date], reference: Reference
) -> None:
    span = days[-4:]
    run = massive(sim_env(sim, tmp_path / "data"), *fetch_args(span, "--workers", "2"))
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["workers"] == 2 and report["files_downloaded"] == len(span)
    assert report["rows"] == reference(span).num_rows > 0 and report["bytes_downloaded"] > 0
    assert dataset(tmp_path / "data").equals(reference(span))  # same rows, same order


def test_workers_racing_for_the_last_bytes_never_exceed_the_monthly_limit(
    sim: SimServer, tmp_path: Path, days: list[dt.date], reference: Reference
) -> None:
    span = days[-4:]
    probe = config_of(sim_env(sim, tmp_path / "probe"), tmp_path)
    files, _ = FlatFiles(probe, QuotaLedger.for_config(probe)).plan(span)
    limit = sum(sorted(f.size for f in files)[:2]) + 1000  # room for about two of four days
    data = tmp_path / "data"
    run = massive(
        sim_env(sim, data, MASSIVE_S3_BYTES_PER_MONTH=str(limit)),
        *fetch_args(span, "--workers", "3", "--no-fallback"),
    )
    assert run.returncode == 1, run.stderr
    quota = QuotaLedger.for_config(config_of(sim_env(sim, data), tmp_path)).snapshot()
    assert 0 < quota["s3_bytes_month"] <= limit
    refused = {
        dt.date.fromisoformat(line.split()[0])
        for line in run.stderr.splitlines()
        if line[:4].isdigit() and " refused: " in line
    }
    fetched = cached_days(data, span)
    assert fetched and refused and fetched | refused == set(span) and not fetched & refused
    assert sum(f.size for f in files if f.day in fetched) == quota["s3_bytes_month"]
    assert bar_days(dataset(data)) == fetched  # the dataset holds exactly the admitted days
    assert "rerunning the same command fetches only what is missing" in run.stderr
    report = json.loads(run.stdout)
    assert {d["day"] for d in report["failed_days"]} == {d.isoformat() for d in refused}

    again = massive(  # serially this time: the same days, the same bars
        sim_env(sim, data, MASSIVE_S3_BYTES_PER_MONTH=str(limit * 3)),
        *fetch_args(span, "--workers", "1", "--no-fallback"),
    )
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["files_cached"] == len(fetched) and second["files_downloaded"] == len(refused)
    assert second["workers"] == 1 and "failed_days" not in json.loads(
        (data / "historical" / "span" / "manifest.json").read_text()
    )
    assert dataset(data).equals(reference(span))


def test_a_worker_killed_mid_download_is_replaced_and_the_dataset_is_complete(
    sim: SimServer, tmp_path: Path, days: list[dt.date], reference: Reference
) -> None:
    span = days[-4:]
    with S3Proxy(sim.s3_endpoint, slow=1.5) as proxy:
        data = tmp_path / "data"
        env = sim_env(sim, data, MASSIVE_S3_ENDPOINT=proxy.endpoint)
        fetch = start_fetch(env, fetch_args(span, "--workers", "2"))
        try:
            victim = wait_for(
                lambda: downloader(fetch.pid, proxy), 60, what="a worker downloading a day file"
            )
            victim.kill()
            out, err = fetch.communicate(timeout=90)
        finally:
            if fetch.poll() is None:
                fetch.kill()
    assert fetch.returncode == 0, err
    assert json.loads(out)["workers"] == 2
    assert dataset(data).equals(reference(span))
    assert len(proxy.downloads) > len(span)  # the killed worker's day was downloaded again
    leftovers = [p.name for p in (data / "flatfiles").rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # its half-written temporary file was removed


def downloader(pid: int, proxy: S3Proxy) -> psutil.Process | None:
    """The worker process of `pid` that is downloading a day file through `proxy` right now."""
    ports = {port for _, port in proxy.downloads}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if any(c.laddr and c.laddr.port in ports for c in child.net_connections("tcp")):
                return child
        except psutil.Error:
            continue
    return None


def test_a_damaged_day_file_is_listed_and_the_other_days_are_kept(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    span = days[-4:]
    bad = span[1]
    with S3Proxy(sim.s3_endpoint, damage=(key_for(bad),)) as proxy:
        data = tmp_path / "data"
        env = sim_env(sim, data, MASSIVE_S3_ENDPOINT=proxy.endpoint)
        run = massive(env, *fetch_args(span, "--workers", "2", "--no-fallback"))
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.startswith(bad.isoformat())]
    assert len(lines) == 1 and " damaged: " in lines[0], run.stderr
    assert key_for(bad) in lines[0] and ".part" not in lines[0]
    assert cached_days(data, span) == set(span) - {bad}  # nothing damaged in the cache
    assert bar_days(dataset(data)) == set(span) - {bad}
    report = json.loads(run.stdout)
    assert [d["day"] for d in report["failed_days"]] == [bad.isoformat()]
    manifest = json.loads((data / "historical" / "span" / "manifest.json").read_text())
    assert [d["day"] for d in manifest["failed_days"]] == [bad.isoformat()]


def test_ctrl_c_keeps_the_finished_days_and_a_rerun_fetches_only_the_rest(
    sim: SimServer, tmp_path: Path, days: list[dt.date], reference: Reference
) -> None:
    span = days  # ten days on two workers: at most five are under way when Ctrl-C comes
    data = tmp_path / "data"
    with S3Proxy(sim.s3_endpoint, slow=1.0) as proxy:
        env = sim_env(sim, data, MASSIVE_S3_ENDPOINT=proxy.endpoint)
        fetch = start_fetch(env, fetch_args(span, "--workers", "2"))
        try:
            wait_for(lambda: len(cached_days(data, span)) >= 2, 60, what="two finished days")
            time.sleep(0.2)
            fetch.send_signal(signal.SIGINT)
            _, err = fetch.communicate(timeout=60)
        finally:
            if fetch.poll() is None:
                fetch.kill()
        assert fetch.returncode == 130, err
        assert "rerunning the same command fetches only what is missing" in err
        kept = cached_days(data, span)
        assert 2 <= len(kept) < len(span)
        assert bar_days(dataset(data)) <= kept  # the finished days are in the dataset
        proxy.slow = 0
        again = massive(env, *fetch_args(span, "--workers", "2"))
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["files_cached"] == len(kept) and report["files_downloaded"] == len(span) - len(
        kept
    )
    assert dataset(data).equals(reference(span))


def test_a_worker_on_another_machine_is_refused_before_spending(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    config = config_of(sim_env(sim, tmp_path / "data"), tmp_path)
    ledger = QuotaLedger.for_config(config)
    here = bulk.place_of(config, ledger, remote=True)
    files, _ = FlatFiles(config, ledger).plan(days[-1:])
    for elsewhere in (
        replace(here, host="node-7"),  # another host name
        replace(here, ledger_id=(0, 0)),  # a file of the same name that is not this ledger
    ):
        task = bulk.DayTask(elsewhere, files[0].day, files[0].key, files[0].size, ("AAPL",))
        result = bulk.fetch_day(task)
        assert result.status == bulk.ELSEWHERE and result.table is None
        assert "cannot reach the quota ledger" in result.message
        assert "fetched by workers on the fetching machine only" in result.message
    assert ledger.snapshot()["s3_bytes_month"] == 0
    assert not (tmp_path / "data" / "flatfiles" / files[0].key).exists()


def test_a_worker_on_another_machine_spends_through_the_fetcher_service_within_the_limit(
    sim: SimServer, tmp_path: Path, days: list[dt.date], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import mesh_env
    from tests.meshproc import Mesh

    data = tmp_path / "data"
    probe = config_of(sim_env(sim, tmp_path / "probe"), tmp_path)
    files, _ = FlatFiles(probe, QuotaLedger.for_config(probe)).plan(days[-2:])
    limit = files[0].size + files[1].size // 2  # room for the first day only
    env = sim_env(sim, data, MASSIVE_S3_BYTES_PER_MONTH=str(limit), **mesh_env(data))
    for key, value in env.items():
        if key.startswith(("MESH_", "MASSIVE_")):
            monkeypatch.setenv(key, value)  # this process is the remote worker's environment
    with Mesh(data, env) as mesh:
        mesh.start("bus")
        mesh.wait_up(["bus"], 20)
        mesh.start("fetcher")
        mesh.wait_up(["fetcher"], 60)
        config = config_of(env, tmp_path)
        ledger = QuotaLedger.for_config(config)
        here = bulk.place_of(config, ledger, remote=True)
        assert here.served
        elsewhere = replace(here, host="node-7", ledger_id=(0, 0))
        first, second = (
            bulk.fetch_day(bulk.DayTask(elsewhere, f.day, f.key, f.size, ("AAPL",))) for f in files
        )
        assert first.status == bulk.OK, first.message
        assert first.table is not None and first.table.num_rows
        assert second.status == bulk.REFUSED and "flat-file monthly limit" in second.message
        # the fetching machine's ledger holds exactly the first day's bytes
        assert ledger.snapshot()["s3_bytes_month"] == files[0].size <= limit
        with pytest.raises(Exception, match="not a reservation made through this service"):
            mesh.call("fetcher", "ledger-settle", row=10**6, nbytes=0)
