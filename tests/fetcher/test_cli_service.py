"""`massive fetch`, `massive quota` and `massive run fetcher` as a user runs them."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mesh import client, control
from mesh.bus import Bus
from mesh.config import Config
from mesh.sim.server import SimServer
from tests.fetcher.conftest import config_of, sim_env
from tests.meshproc import massive

ROOT = Path(__file__).resolve().parents[2]


def test_fetch_then_quota_shows_the_calls_made(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    env = sim_env(sim, tmp_path / "data")
    out = tmp_path / "bars.csv"
    run = massive(
        env,
        "fetch",
        "AAPL,MSFT",
        "--start",
        str(days[-3]),
        "--end",
        str(days[-1]),
        "--interval",
        "15m",
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert "method: rest (auto: small query" in run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    assert " rows via rest; 2 REST call(s)" in summary and "historical/AAPL-MSFT_15m_" in summary
    dataset = Path(summary.rsplit(" -> ", 1)[1].split(" and ")[0])
    table = pq.read_table(dataset / "bars_15m.parquet")
    assert (
        table.num_rows
        == int(summary.split(" rows")[0].replace(",", ""))
        == len(out.read_text().splitlines()) - 1
    )
    assert json.loads((dataset / "manifest.json").read_text())["rest_calls"] == 2
    quota = json.loads(massive(env, "quota", "--json").stdout)
    assert (
        quota["rest_calls_today"] == 2
        and quota["rest_calls_minute"] == 2
        and quota["rest_calls_per_day"] == 1000
    )
    text = massive(env, "quota").stdout
    assert "REST calls today         2 of 1000" in text


def test_dry_run_and_bad_input_spend_nothing(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    env = sim_env(sim, tmp_path / "data")
    plan = massive(
        env,
        "fetch",
        "AAPL,MSFT,NVDA,AMZN,META,TSLA",
        "--start",
        str(days[-5]),
        "--end",
        str(days[-1]),
        "--dry-run",
        "--json",
    )
    assert plan.returncode == 0, plan.stderr
    info = json.loads(plan.stdout)
    assert (
        info["method"] == "flat_file"
        and info["files"] == 5
        and info["bytes_to_download"] > 0
        and info["rest_calls"] == info["split_calls"] == 6  # the splits that adjust the files
        and info["fits"]
    )
    bad = massive(env, "fetch", "AAPL", "--start", str(days[-1]), "--end", str(days[-3]))
    assert bad.returncode == 2 and "is before start" in bad.stderr
    weekend = days[-1] + dt.timedelta(days=(5 - days[-1].weekday()) % 7)
    assert (
        massive(
            env,
            "fetch",
            "AAPL",
            "--start",
            str(weekend),
            "--end",
            str(weekend + dt.timedelta(days=1)),
        ).returncode
        == 2
    )
    quota = json.loads(massive(env, "quota", "--json").stdout)
    assert quota["rest_calls_today"] == 0 and quota["s3_bytes_month"] == 0
    assert not (tmp_path / "data" / "flatfiles").exists()


@pytest.fixture
def fetcher_service(sim: SimServer, bus: Bus, mesh_environ: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {
        **mesh_environ,
        **{
            k: v
            for k, v in sim_env(sim, Path(mesh_environ["MESH_DATA_DIR"])).items()
            if k.startswith("MASSIVE_")
        },
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "run", "fetcher"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    config = config_of(env, tmp_path)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.call("fetcher", "ping", config=config, timeout=1.0)
            break
        except control.ControlError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(
                    f"fetcher did not come up: {proc.stderr.read() if proc.stderr else ''}"
                ) from None
            time.sleep(0.2)
    yield config
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def test_service_runs_a_fetch_job_and_publishes_progress_and_quota(
    fetcher_service: Config, days: list[dt.date]
) -> None:
    config = fetcher_service
    plan = client.call(
        "fetcher",
        "plan",
        {"symbols": "AAPL", "start": str(days[-2]), "end": str(days[-1]), "interval": "1h"},
        config=config,
    )
    assert plan["method"] == "rest" and plan["rest_calls"] == 1 and plan["fits"]
    with pytest.raises(control.ControlError, match="unknown interval"):
        client.call(
            "fetcher",
            "fetch",
            {"symbols": "AAPL", "start": str(days[-2]), "end": str(days[-1]), "interval": "7m"},
            config=config,
        )
    with client.Subscriber(["job.", "sys.quota"], config.bus_sub) as sub:
        time.sleep(0.3)
        job = client.call(
            "fetcher",
            "fetch",
            {
                "symbols": ["AAPL", "SPY"],
                "start": str(days[-2]),
                "end": str(days[-1]),
                "interval": "1h",
                "name": "svc",
            },
            config=config,
        )
        states, quota, final = [], None, None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (final is None or quota is None):
            msg = sub.recv(timeout=1.0)
            if msg is None:
                continue
            if msg.topic == "sys.quota":
                quota = msg.payload.stats
            elif msg.topic == job["topic"]:
                states.append(msg.payload.state)
                if msg.payload.state in ("done", "failed"):
                    final = msg.payload
    assert final is not None and final.state == "done", final
    assert "running" in states and final.progress == 1.0
    assert (
        final.result["rows"] > 0
        and final.result["rest_calls"] == 2
        and Path(final.result["path"], "bars_1h.parquet").is_file()
    )
    assert quota is not None and "rest_calls_today" in quota
    assert client.call("fetcher", "quota", config=config)["rest_calls_today"] == 2
    assert [d["name"] for d in client.call("fetcher", "datasets", config=config)] == ["svc"]
    assert client.call("fetcher", "jobs", config=config)[0]["state"] == "done"
